//! kubegate's proxy: classify each Kubernetes API request, decide it from the user's role, rewrite its headers for upstream.

pub mod authz;
pub mod headers;
pub mod request_info;

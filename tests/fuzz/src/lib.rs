//! The parsers under fuzzing. The proxy's request classification and header rewrite and the
//! kubeconfig renderer are compiled here from the services' own source files (by path, the
//! very code the services run) so that the instrumented build does not drag in the services'
//! runtimes (tokio, hyper, NATS, PostgreSQL, OpenTelemetry): minutes instead of twenty.
//! The token and event crates are small and used as they are.

#[path = "../../../services/proxy/src/request_info.rs"]
pub mod request_info;

#[path = "../../../services/proxy/src/headers.rs"]
pub mod headers;

#[path = "../../../services/kubeconfig/src/kubeconfig_file.rs"]
pub mod kubeconfig_file;

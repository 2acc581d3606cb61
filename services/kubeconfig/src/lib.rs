//! kubegate's kubeconfig service: for now, the kubeconfig file model and its renderer.

pub mod kubeconfig_file;

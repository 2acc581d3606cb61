//! `kubegate-identity`: parses its configuration, then runs until SIGTERM or Ctrl-C.

/// mimalloc, as in the proxy: every request and event allocates and frees small buffers, and
/// glibc's allocator held ~7 % of this service's CPU time during kubeconfig downloads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    kubegate_config::service_main("kubegate-identity", kubegate_identity::run)
}

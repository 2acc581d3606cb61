//! `kubegate-proxy`: parses its configuration, then runs until SIGTERM or Ctrl-C.

/// mimalloc: the hot path allocates and frees small buffers on every request, from two worker
/// threads; glibc's allocator spent several percent of the proxy's CPU there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    kubegate_config::service_main("kubegate-proxy", kubegate_proxy::run)
}

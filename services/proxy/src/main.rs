//! `kubegate-proxy`: parses its configuration, then runs until SIGTERM or Ctrl-C.

fn main() {
    kubegate_config::service_main("kubegate-proxy", kubegate_proxy::run)
}

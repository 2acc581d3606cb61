//! `kubegate-kubeconfig`: parses its configuration, then runs the service until SIGTERM or Ctrl-C.

use kubegate_kubeconfig::{Config, run};

fn main() {
    let config: Config = kubegate_config::parse_or_exit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubegate-kubeconfig: cannot start the runtime: {e}");
            std::process::exit(70);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = kubegate_telemetry::signals::shutdown_on_signals();
        match run(config, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kubegate-kubeconfig: {e}");
                e.exit_code()
            }
        }
    });
    std::process::exit(code);
}

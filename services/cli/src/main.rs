//! `kubegate`: the admin command line.

fn main() {
    let cli: kubegate_cli::Cli = kubegate_config::parse_or_exit();
    match kubegate_cli::run(cli) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("kubegate: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

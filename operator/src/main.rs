//! The Hostplane operator. For now it only sets up logging and reports its version; the
//! `TenantControlPlane` API and its controller come next.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    // RUST_LOG selects what is logged (default: info); an invalid RUST_LOG is an error, not ignored.
    let filter = match EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
    {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("hostplane-operator: invalid RUST_LOG: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not in a pod's log.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "hostplane-operator starting"
    );
    ExitCode::SUCCESS
}

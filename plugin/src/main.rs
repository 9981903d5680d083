//! `kubectl hostplane`: the TenantControlPlane chores without base64.
//!
//!   kubectl hostplane kubeconfig TCP [-n NS] [-o FILE]   the tenant's admin kubeconfig
//!   kubectl hostplane join TCP [-n NS]                   the `kubeadm join` command for a node
//!   kubectl hostplane status TCP [-n NS]                 phase, conditions, nodes, certificates
//!   kubectl hostplane create NAME --version V [-n NS] [--apply]
//!
//! It talks to the seed cluster of `$KUBECONFIG` (or `--kubeconfig`) like kubectl does.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-hostplane",
    version,
    about = "Hostplane TenantControlPlanes from kubectl"
)]
struct Cli {
    /// Namespace of the TenantControlPlane (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,

    /// The seed cluster's kubeconfig (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the tenant's admin kubeconfig (the `<tcp>-kubeconfig` Secret), or write it to a file.
    Kubeconfig {
        tcp: String,
        /// Write to this file (mode 0600) instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Print the `kubeadm join` command of the tenant's current bootstrap token.
    Join { tcp: String },
    /// Show phase, endpoint, conditions, nodes and certificate expiry.
    Status { tcp: String },
    /// Print a TenantControlPlane manifest, or apply it with --apply.
    Create {
        name: String,
        /// Kubernetes version, e.g. 1.36.3.
        #[arg(long)]
        version: String,
        /// Apply it to the seed (server-side) instead of printing it.
        #[arg(long)]
        apply: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent_and_parses() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "kubectl-hostplane",
            "-n",
            "t",
            "create",
            "a",
            "--version",
            "1.36.3",
        ]);
        assert_eq!(cli.namespace.as_deref(), Some("t"));
        assert!(matches!(cli.command, Command::Create { apply: false, .. }));
        assert!(Cli::try_parse_from(["kubectl-hostplane", "create", "a"]).is_err());
    }
}

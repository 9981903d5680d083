//! The Hostplane operator: reconciles every TenantControlPlane of the seed cluster it reaches
//! through `$KUBECONFIG` or its in-cluster ServiceAccount.
//!
//! Settings (environment): `RUST_LOG` (default info), `HOSTPLANE_SEED_CLUSTER_DOMAIN` (default
//! cluster.local), `HOSTPLANE_CONCURRENCY` (TenantControlPlanes reconciled at once, default 16),
//! `HOSTPLANE_METRICS_ADDR` (where `/metrics`, `/healthz` and `/readyz` are served, default
//! 0.0.0.0:8080; `off` serves none), `HOSTPLANE_LEADER_ELECTION` (`off` to run without a Lease;
//! default on), `HOSTPLANE_NAMESPACE` (where the Lease `hostplane-operator` lives, default
//! `default`), `HOSTPLANE_IDENTITY` (this replica's name in the Lease, default host name and pid).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use hostplane_operator::leader;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
    // HOSTPLANE_LOG_FORMAT: `text` (default) or `json` (one object per line, for log pipelines).
    match std::env::var("HOSTPLANE_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Colours only for a person at a terminal, not in a pod's log.
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .init(),
        Ok(other) => {
            eprintln!(
                "hostplane-operator: HOSTPLANE_LOG_FORMAT must be text or json, not {other:?}"
            );
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "hostplane-operator starting"
    );
    let concurrency = match std::env::var("HOSTPLANE_CONCURRENCY")
        .ok()
        .map(|v| v.parse::<u16>())
    {
        None => 16,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!(
                "hostplane-operator: HOSTPLANE_CONCURRENCY must be a whole number from 1 to 65535"
            );
            return ExitCode::FAILURE;
        }
    };
    let settings = hostplane_operator::controller::Settings {
        seed_cluster_domain: std::env::var("HOSTPLANE_SEED_CLUSTER_DOMAIN")
            .unwrap_or_else(|_| "cluster.local".to_owned()),
        concurrency,
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no seed cluster to talk to (KUBECONFIG or in-cluster config)");
            return ExitCode::FAILURE;
        }
    };
    let addr = std::env::var("HOSTPLANE_METRICS_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let endpoints = if addr == "off" {
        None
    } else {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!(error = %e, %addr, "cannot serve the metrics and health endpoints (HOSTPLANE_METRICS_ADDR)");
                return ExitCode::FAILURE;
            }
        }
    };
    let election =
        (std::env::var("HOSTPLANE_LEADER_ELECTION").as_deref() != Ok("off")).then(|| {
            leader::Election {
                namespace: std::env::var("HOSTPLANE_NAMESPACE")
                    .unwrap_or_else(|_| "default".into()),
                name: "hostplane-operator".into(),
                identity: std::env::var("HOSTPLANE_IDENTITY").unwrap_or_else(|_| {
                    let host =
                        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    format!("{}-{}", host.trim(), std::process::id())
                }),
            }
        });
    let Some(election) = election else {
        hostplane_operator::controller::run(client, settings, endpoints, async { true }).await;
        tracing::info!("hostplane-operator stopped");
        return ExitCode::SUCCESS;
    };
    run_leading(client, settings, endpoints, election).await
}

/// Runs the controller once this replica holds the Lease; exits at once if it loses it.
async fn run_leading(
    client: kube::Client,
    settings: hostplane_operator::controller::Settings,
    endpoints: Option<tokio::net::TcpListener>,
    election: leader::Election,
) -> ExitCode {
    let (lead_tx, lead_rx) = tokio::sync::oneshot::channel();
    let lease_client = client.clone();
    let leading = async move {
        match leader::acquire(lease_client, &election).await {
            Ok(leadership) => lead_tx.send(leadership).is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "leader election failed");
                false
            }
        }
    };
    let controller = hostplane_operator::controller::run(client, settings, endpoints, leading);
    tokio::pin!(controller);
    let mut leadership = tokio::select! {
        () = &mut controller => return ExitCode::FAILURE, // the election failed
        leadership = lead_rx => match leadership {
            Ok(leadership) => leadership,
            Err(_) => return ExitCode::FAILURE,
        },
    };
    tokio::select! {
        () = &mut controller => {
            leadership.release().await;
            tracing::info!("hostplane-operator stopped; the Lease is released");
            ExitCode::SUCCESS
        }
        () = leadership.lost() => {
            // Another replica may be reconciling already: stop at once, restart as a standby.
            tracing::error!("lost the Lease; stopping");
            ExitCode::FAILURE
        }
    }
}

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
    // The steps backup and restore Jobs run in the operator's image (hostplane_operator::snapshot).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("snapshot-finish") => return snapshot_finish(rest).await,
        Some("restore-check") => return restore_check(rest),
        Some("restore-swap") => return restore_swap(rest),
        _ => {}
    }
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
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no seed cluster to talk to (KUBECONFIG or in-cluster config)");
            return ExitCode::FAILURE;
        }
    };
    let settings = hostplane_operator::controller::Settings {
        seed_cluster_domain: std::env::var("HOSTPLANE_SEED_CLUSTER_DOMAIN")
            .unwrap_or_else(|_| "cluster.local".to_owned()),
        concurrency,
        operator_image: operator_image(&client).await,
        gitops_agent_image: std::env::var("HOSTPLANE_GITOPS_AGENT_IMAGE")
            .unwrap_or_else(|_| hostplane_operator::build::gitops::DEFAULT_AGENT_IMAGE.to_owned()),
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

/// The operator's own image, which backup Jobs run: `HOSTPLANE_IMAGE`, else the image of this pod
/// (`HOSTNAME` in `HOSTPLANE_NAMESPACE`). None outside a pod: no backup Job can start.
async fn operator_image(client: &kube::Client) -> Option<String> {
    if let Ok(image) = std::env::var("HOSTPLANE_IMAGE") {
        return Some(image);
    }
    let (Ok(namespace), Ok(pod)) = (
        std::env::var("HOSTPLANE_NAMESPACE"),
        std::env::var("HOSTNAME"),
    ) else {
        tracing::warn!("not in a pod and HOSTPLANE_IMAGE is unset: backups cannot start");
        return None;
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &namespace);
    match pods.get(&pod).await {
        Ok(p) => {
            let image = p
                .spec
                .and_then(|s| s.containers.into_iter().next())
                .and_then(|c| c.image);
            tracing::info!(
                image = image.as_deref().unwrap_or("none"),
                "backup Jobs run this image"
            );
            image
        }
        Err(e) => {
            tracing::warn!(error = %e, pod, namespace, "reading this pod's image failed: backups cannot start; set HOSTPLANE_IMAGE");
            None
        }
    }
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Prints `message` and writes it as the container's termination message (which the operator
/// reads from the pod's status; absent outside a pod).
fn report(message: &str, ok: bool) -> ExitCode {
    println!("{message}");
    let _ = std::fs::write("/dev/termination-log", message);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `snapshot-finish --dir D --name N --tenant NS/NAME --uid U --retain K [--s3-endpoint E
/// --s3-bucket B --s3-region R --s3-prefix P]`: checks, names, keeps; and copies the snapshot and
/// its metadata to the S3 store (credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
async fn snapshot_finish(args: &[String]) -> ExitCode {
    let (Some(dir), Some(name), Some(tenant), Some(uid), Some(retain)) = (
        flag(args, "--dir"),
        flag(args, "--name"),
        flag(args, "--tenant"),
        flag(args, "--uid"),
        flag(args, "--retain").and_then(|r| r.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: hostplane-operator snapshot-finish --dir DIR --name NAME --tenant NS/NAME --uid UID --retain N [--s3-endpoint URL --s3-bucket B --s3-region R --s3-prefix P]"
        );
        return ExitCode::from(2);
    };
    let s3 = flag(args, "--s3-endpoint").map(|endpoint| hostplane_operator::s3::Target {
        endpoint: endpoint.to_owned(),
        bucket: flag(args, "--s3-bucket").unwrap_or_default().to_owned(),
        region: flag(args, "--s3-region").unwrap_or("us-east-1").to_owned(),
        prefix: flag(args, "--s3-prefix").unwrap_or_default().to_owned(),
    });
    let taken_at =
        k8s_openapi::jiff::Timestamp::from_second(k8s_openapi::jiff::Timestamp::now().as_second())
            .map(|t| t.to_string())
            .unwrap_or_default();
    let dir = std::path::Path::new(dir);
    let mut snapshot =
        match hostplane_operator::snapshot::finish(dir, name, tenant, uid, &taken_at, retain) {
            Ok(metadata) => metadata.snapshot,
            Err(e) => return report(&e.to_string(), false),
        };
    if let Some(target) = s3 {
        let files = [format!("{name}.db"), format!("{name}.json")];
        let copied = match hostplane_operator::s3::credentials_from_env() {
            Ok(credentials) => {
                let files = [files[0].as_str(), files[1].as_str()];
                hostplane_operator::s3::upload(&target, &credentials, dir, &files).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = copied {
            return report(
                &format!(
                    "snapshot {} is checked and kept on the volume, but copying it to {} failed: {e}",
                    snapshot.name,
                    target.location(&files[0])
                ),
                false,
            );
        }
        snapshot.uploaded_to = Some(target.location(&files[0]));
    }
    report(&serde_json::to_string(&snapshot).unwrap_or_default(), true)
}

/// `restore-check --dir D --name N.db --uid U --member M`: the snapshot is whole and this
/// tenant's; the member's data is not touched.
fn restore_check(args: &[String]) -> ExitCode {
    let (Some(dir), Some(name), Some(uid), Some(member)) = (
        flag(args, "--dir"),
        flag(args, "--name"),
        flag(args, "--uid"),
        flag(args, "--member"),
    ) else {
        eprintln!(
            "usage: hostplane-operator restore-check --dir DIR --name NAME.db --uid UID --member DIR"
        );
        return ExitCode::from(2);
    };
    match hostplane_operator::snapshot::check_for_restore(
        std::path::Path::new(dir),
        name,
        uid,
        std::path::Path::new(member),
    ) {
        Ok(m) => report(
            &format!("snapshot {} of {} checked", m.snapshot.name, m.tenant),
            true,
        ),
        Err(e) => report(&e.to_string(), false),
    }
}

/// `restore-swap --member M --stamp S`: the restored data takes the old data's place.
fn restore_swap(args: &[String]) -> ExitCode {
    let (Some(member), Some(stamp)) = (flag(args, "--member"), flag(args, "--stamp")) else {
        eprintln!("usage: hostplane-operator restore-swap --member DIR --stamp STAMP");
        return ExitCode::from(2);
    };
    match hostplane_operator::snapshot::swap(std::path::Path::new(member), stamp) {
        Ok(()) => report("restored data in place; the old data is kept aside", true),
        Err(e) => report(&e.to_string(), false),
    }
}

//! The operator as users run it: installed from `manifests/` into `hostplane-system` (by
//! `e2e/install-operator`), one Deployment whose replicas share the Lease `hostplane-operator`.
//! Its pods, its Lease, its logs and endpoints; restarting, killing and scaling it. Shared by the
//! test binaries `tenant` and `chaos` (`#[path]`), each of which uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, kubectl, poll_until};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

pub const NAMESPACE: &str = "hostplane-system";
const DEPLOYMENT: &str = "deployment/hostplane-operator";
const SELECTOR: &str = "app.kubernetes.io/name=hostplane-operator";
pub const LEASE: &str = "hostplane-operator";
/// The port of /healthz, /readyz and /metrics (charts/hostplane's `metricsPort`).
const PORT: u16 = 8080;

/// One replica of the operator.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    ip: String,
    pub restarts: i32,
}

impl Replica {
    /// Its endpoints, reachable from the seed's host (pod IPs are routed there).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{PORT}{path}", hostplane_e2e::url_host(&self.ip))
    }

    /// Its container's log; `previous`: the container before the last restart.
    pub async fn log(&self, previous: bool) -> Result<String> {
        let mut args = vec!["-n", NAMESPACE, "logs", &self.name];
        if previous {
            args.push("--previous");
        }
        Ok(kubectl(&args)
            .await?
            .ok()
            .with_context(|| format!("reading the log of {}", self.name))?
            .stdout)
    }

    /// Lines of its current log that mention `needle`.
    pub async fn log_lines(&self, needle: &str) -> Result<usize> {
        Ok(self
            .log(false)
            .await?
            .lines()
            .filter(|l| l.contains(needle))
            .count())
    }
}

/// The running replicas (not terminating) with an IP.
pub async fn replicas() -> Result<Vec<Replica>> {
    let pods: Api<Pod> = Api::namespaced(hostplane_e2e::client().await?, NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .context("listing the operator's pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status?;
            (status.phase.as_deref() == Some("Running")).then_some(())?;
            Some(Replica {
                name: p.metadata.name?,
                ip: status.pod_ip?,
                restarts: status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.restart_count)
                    .sum(),
            })
        })
        .collect())
}

/// The Lease's holder, if any.
pub async fn holder() -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(hostplane_e2e::client().await?, NAMESPACE);
    Ok(leases
        .get_opt(LEASE)
        .await
        .context("reading the operator's Lease")?
        .and_then(|l| l.spec?.holder_identity))
}

/// The replica that leads: it holds the Lease, runs, and answers /readyz 200 (its cache synced).
/// `not`: replicas that must not be it (ones just replaced or killed).
pub async fn leader(not: &[String], timeout: Duration) -> Result<Replica> {
    let http = hostplane_e2e::http_client()?;
    poll_until("an operator replica leads", timeout, || async {
        let holder = holder().await?.unwrap_or_default();
        let replicas = replicas().await?;
        let Some(replica) = replicas
            .into_iter()
            .find(|r| r.name == holder && !not.contains(&r.name))
        else {
            return Ok(Attempt::NotYet(format!(
                "the Lease is held by {holder:?}, not a running replica other than {not:?}"
            )));
        };
        let ready = http.get(replica.url("/readyz")).send().await;
        Ok(match ready {
            Ok(r) if r.status().is_success() => Attempt::Done(replica),
            Ok(r) => Attempt::NotYet(format!("{} answers /readyz {}", replica.name, r.status())),
            Err(e) => Attempt::NotYet(format!("{}: /readyz: {e}", replica.name)),
        })
    })
    .await
}

/// A rolling restart of the Deployment (as an upgrade of the operator does); returns the new leader.
pub async fn restart() -> Result<Replica> {
    let old: Vec<String> = replicas().await?.into_iter().map(|r| r.name).collect();
    kubectl(&["-n", NAMESPACE, "rollout", "restart", DEPLOYMENT])
        .await?
        .ok()?;
    rollout().await?;
    leader(&old, Duration::from_secs(60)).await
}

/// Scales the Deployment to `n` replicas and waits for them (for none: until no pod is left).
pub async fn scale(n: u32) -> Result<()> {
    kubectl(&[
        "-n",
        NAMESPACE,
        "scale",
        DEPLOYMENT,
        &format!("--replicas={n}"),
    ])
    .await?
    .ok()?;
    rollout().await?;
    if n > 0 {
        return Ok(());
    }
    // The rollout counts no stopping pod: one may still finish a pass (and write) for a while.
    poll_until(
        "no operator pod is left",
        Duration::from_secs(120),
        || async {
            let pods = kubectl(&["-n", NAMESPACE, "get", "pods", "-l", SELECTOR, "-o", "name"])
                .await?
                .ok()?;
            Ok(if pods.stdout.trim().is_empty() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(pods.stdout)
            })
        },
    )
    .await
}

async fn rollout() -> Result<()> {
    kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        DEPLOYMENT,
        "--timeout=120s",
    ])
    .await?
    .ok()
    .context("the operator's Deployment did not roll out")?;
    Ok(())
}

/// SIGKILL to the operator process of `replica` (on the local seed's host, found by the
/// identity its environment carries): it gets no chance to release the Lease.
pub fn kill_process(replica: &Replica) -> Result<()> {
    let identity = format!("HOSTPLANE_IDENTITY={}", replica.name);
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let path = entry?.path();
        let Ok(environ) = std::fs::read(path.join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == identity.as_bytes()) {
            continue;
        }
        let Some(pid) = path
            .file_name()
            .and_then(|p| p.to_str())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -KILL {pid} failed");
        killed += 1;
    }
    ensure!(
        killed > 0,
        "no process with {identity} on this host (is the operator on the local seed?)"
    );
    Ok(())
}

//! Day 2 (issue 8): a version upgrade (1.35.4 to 1.36.3) and certificate renewals (20-minute
//! leaves, renewed 11 min 40 s after issue) of a tenant with two API servers and a real worker, while a pod on
//! the worker calls the tenant's API every second with its service-account token and a client
//! calls it through the endpoint four times a second: none of their requests fails, the worker
//! stays Ready, and the upgrade goes in order (API server, then controllers, then kube-proxy).
//! Before that, a kubelet the new version would not support holds the upgrade with a Condition;
//! during the renewal the service-account key is rotated (sa_keys.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, TestEnv, install_crds, poll_until, random_token};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

use super::{OPERATOR, Scratch, Tcp, kubectl_as, patch_spec};

const FROM: &str = "1.35.4";
const TO: &str = "1.36.3";
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seed/seed");
/// Two API servers rolled one pod at a time, then two controllers, then kube-proxy.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(900);
/// `Small` (its requests): two API servers rolled out again and again beside the other tests
/// would otherwise wait for room on the seed's two CPUs (what the tests check is the order and
/// that no request fails, not the sizing).
const TCP_SPEC: &str = "  profile: Small\n  controlPlane:\n    apiServer:\n      replicas: 2\n  pki:\n    certificateValidity: 20m\n    caValidity: 2h\n";

#[tokio::test]
async fn an_upgrade_and_cert_renewals_fail_no_request_of_a_pod_on_a_worker_or_a_client()
-> Result<()> {
    if !std::env::var("E2E_LOCAL_SEED").is_ok_and(|v| v == "1") {
        return hostplane_e2e::skip(
            "an_upgrade_and_cert_renewals_fail_no_request_of_a_pod_on_a_worker_or_a_client",
            "adds a worker node of Kubernetes 1.35.4 with `e2e/seed/seed node add --version`, \
             which only the local seed has (E2E_LOCAL_SEED=1)",
        );
    }
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-upgrade").await?;
    let tcp = Tcp::apply_version(&env, "u1", FROM, TCP_SPEC).await?;
    tcp.wait_ready().await?;
    let version = jsonpath(&env, "tcp/u1", "{.status.version}").await?;
    ensure!(version == FROM, "status.version {version:?}");
    let scratch = Scratch::new()?;
    let admin_yaml = tcp.kubeconfig().await?;
    let admin = scratch.write("admin", &admin_yaml)?;
    let (env, tcp, scratch, admin, admin_yaml) = (&env, &tcp, &scratch, &admin, &admin_yaml);
    with_worker(env, "u1", FROM, |node| async move {
        upgrade_checks(env, tcp, scratch, admin, admin_yaml, &node).await
    })
    .await
}

/// Runs `checks` with a worker of Kubernetes `version` joined to tcp/`tcp` by `e2e/seed/seed node
/// add` (given its name), and removes the worker after, whatever `checks` returned.
pub(super) async fn with_worker<F, Fut>(
    env: &TestEnv,
    tcp: &str,
    version: &str,
    checks: F,
) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let node = format!("e2e{}", &random_token()[4..10]);
    let join = format!("{tcp}-join@{}", env.namespace());
    let added = hostplane_e2e::run_command(
        SEED,
        &["node", "add", &node, "--join", &join, "--version", version],
    )
    .await;
    let result = match &added {
        Ok(out) if out.success() => checks(node.clone()).await,
        _ => Ok(()),
    };
    let removed = hostplane_e2e::run_command(SEED, &["node", "rm", &node]).await;
    added?.ok().context("seed node add")?;
    result?;
    removed?.ok().context("seed node rm")?;
    Ok(())
}

/// The worker `node` is Ready in the tenant, and kube-proxy (and CoreDNS) run on it: a pod
/// started on it then can call the API from its first second.
pub(super) async fn worker_settles(tcp: &Tcp<'_>, tenant: &Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(tenant.clone());
    poll_until(
        &format!("node {node} is Ready in the tenant"),
        Duration::from_secs(180),
        || async {
            let n = nodes.get_opt(node).await?;
            Ok(if n.as_ref().is_some_and(node_ready) {
                Attempt::Done(())
            } else {
                Attempt::NotYet("not Ready yet".to_owned())
            })
        },
    )
    .await?;
    poll_until(
        "the tenant reports AddonsReady with one Ready node",
        Duration::from_secs(180),
        || async {
            let (status, reason, message) = tcp.condition("AddonsReady").await?;
            let _ = tcp.touch("worker-settling").await; // no seed event announces it
            Ok(if status == "True" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("{reason}: {message}"))
            })
        },
    )
    .await
}

/// `kubectl get OBJECT -o jsonpath=PATH` in the test's namespace of the seed, trimmed.
pub(super) async fn jsonpath(env: &TestEnv, object: &str, path: &str) -> Result<String> {
    let out = env
        .kubectl(&["get", object, "-o", &format!("jsonpath={path}")])
        .await?
        .ok()?;
    Ok(out.stdout.trim().to_owned())
}

/// `{.status.phase} {.status.version}` of tcp/u1.
const PHASE_VERSION: &str = "{.status.phase} {.status.version}";

/// `admin`: the path of the tenant's admin kubeconfig, `admin_yaml` its content.
async fn upgrade_checks(
    env: &TestEnv,
    tcp: &Tcp<'_>,
    scratch: &Scratch,
    admin: &str,
    admin_yaml: &str,
    node: &str,
) -> Result<()> {
    let tenant = hostplane_e2e::tenant_client(admin_yaml).await?;
    let nodes: Api<Node> = Api::all(tenant.clone());
    worker_settles(tcp, &tenant, node).await?;
    start_pod_poller(scratch, admin, "5s").await?;
    // Calls are counted from here: the upgrade, the renewals and their rollouts.
    let since = time_now();
    let cert_before = apiserver_cert(env).await?;
    let renewal_before = next_renewal(env).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let client = spawn_client(tenant.clone(), stop.clone());
    let sampler = spawn_sampler(
        env.namespace().to_owned(),
        tenant.clone(),
        node.to_owned(),
        stop.clone(),
    );
    let steps = async {
        skew_holds_the_upgrade(env, tcp, &nodes).await?;
        wait_upgraded(env, &tenant).await?;
        // The renewal comes 11 min 40 s after the certificates were issued (two-thirds of their
        // life, which starts five minutes before issue); meanwhile the service-account key is
        // rotated, which waits eight minutes for the pod's new token. The clients of this test
        // hold the first admin certificate: valid 20 minutes, long enough for both.
        let (rotated, renewed) = tokio::join!(
            super::sa_keys::rotate_under_a_pod(env, "u1", admin, admin_yaml),
            wait_renewed(env, &cert_before)
        );
        rotated.context("the service-account key rotation")?;
        renewed
    }
    .await;
    // Ten more seconds of calls after the last rollout.
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = client.await.context("the client task")?;
    let seen = sampler.await.context("the sampler task")?;
    steps?;

    calls.check("requests through the endpoint during the upgrade and renewals")?;
    check_pod_poller(admin, &since).await?;
    check_order(&seen)?;
    let renewal_after = next_renewal(env).await?;
    ensure!(
        renewal_after > renewal_before,
        "status.certificates.nextRenewal did not move on: {renewal_before} then {renewal_after}"
    );
    let events = super::event_messages(env, "involvedObject.name=u1,reason=Upgraded").await?;
    ensure!(
        events.contains(&format!("runs {TO} (was {FROM})")),
        "no Upgraded Event: {events:?}"
    );
    eprintln!("upgrade e2e: {} samples", seen.len());
    Ok(())
}

pub(super) fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod on the worker reading ConfigMaps from the tenant's API every second (a read that reaches
/// etcd), as an in-cluster client does: the `kubernetes` Service's IP, the cluster's CA bundle and
/// a projected service-account token (bound to the `view` role) of ten minutes, the shortest
/// the API server issues, so the kubelet replaces it during the test (after eight).
/// `timeout`: of each call (a Go duration).
pub(super) async fn start_pod_poller(scratch: &Scratch, admin: &str, timeout: &str) -> Result<()> {
    kubectl_as(
        admin,
        &[
            "create",
            "clusterrolebinding",
            "poller-view",
            "--clusterrole=view",
            "--serviceaccount=default:default",
        ],
    )
    .await?
    .ok()?;
    let dir = "/var/run/secrets/tenant-api";
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "poller", "namespace": "default"},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "poller",
                "image": "hostplane.dev/e2e/test-client:dev",
                "imagePullPolicy": "Never",
                "command": [
                    "/usr/local/bin/test-client", "poll",
                    "https://10.96.0.1/api/v1/namespaces/default/configmaps?limit=1",
                    "--ca", format!("{dir}/ca.crt"),
                    "--bearer-token-file", format!("{dir}/token"),
                    "--timeout", timeout,
                ],
                "volumeMounts": [{"name": "tenant-api", "mountPath": dir, "readOnly": true}],
            }],
            "volumes": [{"name": "tenant-api", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]}}],
        },
    });
    let manifest = scratch.write("poller.json", &pod.to_string())?;
    kubectl_as(admin, &["apply", "-f", &manifest]).await?.ok()?;
    kubectl_as(
        admin,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/poller",
            "--timeout=60s",
        ],
    )
    .await?
    .ok()
    .context("the poller pod did not become Ready on the worker")?;
    poll_until(
        "the poller pod's first call succeeds",
        Duration::from_secs(30),
        || async {
            let logs = kubectl_as(admin, &["logs", "poller"]).await?.ok()?;
            Ok(if logs.stdout.lines().any(|l| l.ends_with(" ok")) {
                Attempt::Done(())
            } else {
                Attempt::NotYet(logs.stdout)
            })
        },
    )
    .await
}

/// Now as the poller prints it (RFC 3339, seconds, UTC), which sorts as text.
pub(super) fn time_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(now).unwrap_or_default())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Every call the poller pod made from `since` on succeeded, and it kept calling (and its
/// container never restarted, which would hide calls). Calls before (while it started) are
/// printed, not counted.
pub(super) async fn check_pod_poller(admin: &str, since: &str) -> Result<()> {
    let logs = kubectl_as(admin, &["logs", "poller"]).await?.ok()?;
    let (before, lines): (Vec<&str>, Vec<&str>) = logs.stdout.lines().partition(|l| *l < since);
    eprintln!(
        "upgrade e2e: the pod's calls before the upgrade phase: {} ({} failed)",
        before.len(),
        before.iter().filter(|l| l.contains(" FAIL ")).count()
    );
    let failed: Vec<&&str> = lines.iter().filter(|l| l.contains(" FAIL ")).collect();
    ensure!(
        failed.is_empty(),
        "{} of {} calls of the pod on the worker failed: {:?}",
        failed.len(),
        lines.len(),
        failed.iter().take(10).collect::<Vec<_>>()
    );
    ensure!(
        lines.len() > 120,
        "the pod on the worker made only {} calls",
        lines.len()
    );
    let restarts = kubectl_as(
        admin,
        &[
            "get",
            "pod",
            "poller",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
    )
    .await?
    .ok()?;
    ensure!(
        restarts.stdout.trim() == "0",
        "the poller restarted {} times",
        restarts.stdout
    );
    Ok(())
}

/// What the client of `spawn_client` saw.
#[derive(Debug, Default)]
pub(super) struct Calls {
    ok: usize,
    /// Each failed call: when, and its error with the causes.
    failures: Vec<String>,
    /// Calls that succeeded when made again because the server had closed the connection under
    /// them (`hostplane_e2e::call_as_go_would`): when, and the first error.
    retried: Vec<String>,
}

impl Calls {
    /// No call failed and more than 100 were made; `what` names the calls.
    pub(super) fn check(&self, what: &str) -> Result<()> {
        ensure!(
            self.failures.is_empty(),
            "{} of {} {what} failed: {:?}",
            self.failures.len(),
            self.ok + self.failures.len(),
            self.failures.iter().take(10).collect::<Vec<_>>()
        );
        ensure!(self.ok > 100, "only {} {what} were made", self.ok);
        eprintln!(
            "{} {what}, none failed; {} made again after the server closed the connection under \
             them (as a Go client does): {:?}",
            self.ok,
            self.retried.len(),
            self.retried
        );
        Ok(())
    }
}

/// Lists the tenant's namespaces through its endpoint four times a second until `stop`.
pub(super) fn spawn_client(tenant: Client, stop: Arc<AtomicBool>) -> JoinHandle<Calls> {
    let namespaces: Api<Namespace> = Api::all(tenant);
    tokio::spawn(async move {
        let mut calls = Calls::default();
        // A read that reaches etcd, not only the API server.
        let one = ListParams::default().limit(1);
        while !stop.load(Ordering::Relaxed) {
            let (result, retried) = hostplane_e2e::call_as_go_would(|| namespaces.list(&one)).await;
            match (result, retried) {
                (Ok(_), None) => calls.ok += 1,
                (Ok(_), Some(first)) => {
                    calls.ok += 1;
                    calls.retried.push(format!("{}: {first}", time_now()));
                }
                (Err(e), first) => calls.failures.push(format!(
                    "{}: {:#}{}",
                    time_now(),
                    // With its causes: kube-rs' own text hides them ("client error (SendRequest)").
                    anyhow::Error::new(e),
                    first
                        .map(|f| format!(" (made again after: {f})"))
                        .unwrap_or_default()
                )),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        calls
    })
}

/// What the sampler saw at one moment.
#[derive(Debug, Clone, Default)]
struct Sample {
    at: Duration,
    apiserver: Option<Rollout>,
    kcm: Option<Rollout>,
    scheduler: Option<Rollout>,
    kube_proxy: Option<String>,
    phase: String,
    version: String,
    node_ready: Option<bool>,
    /// A read from the tenant that failed (it counts like a failed request of the client).
    tenant_error: Option<String>,
}

/// A control-plane Deployment at one moment.
#[derive(Debug, Clone)]
struct Rollout {
    /// The version its template runs.
    tag: String,
    /// Its rollout is over: a status about this template, every pod of it, one available.
    done: bool,
    /// Pods of the template, pods in all, available pods.
    pods: (i32, i32, i32),
}

fn rollout_of(d: &Deployment) -> Option<Rollout> {
    let image = d
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()?;
    let tag = image.rsplit(":v").next().unwrap_or_default().to_owned();
    let s = d.status.clone().unwrap_or_default();
    let pods = (
        s.updated_replicas.unwrap_or(0),
        s.replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    );
    let current = s.observed_generation.is_some() && s.observed_generation >= d.metadata.generation;
    Some(Rollout {
        tag,
        done: current && pods.0 == pods.1 && pods.2 >= 1,
        pods,
    })
}

/// Every second until `stop`: the control plane's Deployments in the seed, kube-proxy in the
/// tenant, the TCP's phase and version, the worker's Ready.
fn spawn_sampler(
    namespace: String,
    tenant: Client,
    node: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut samples = Vec::new();
        let Ok(seed) = hostplane_e2e::client().await else {
            return samples;
        };
        let deployments: Api<Deployment> = Api::namespaced(seed, &namespace);
        let daemonsets: Api<DaemonSet> = Api::namespaced(tenant.clone(), "kube-system");
        let nodes: Api<Node> = Api::all(tenant);
        while !stop.load(Ordering::Relaxed) {
            let get = |name: &'static str| {
                let deployments = deployments.clone();
                async move {
                    deployments
                        .get(name)
                        .await
                        .ok()
                        .as_ref()
                        .and_then(rollout_of)
                }
            };
            let status = hostplane_e2e::kubectl(&[
                "-n",
                &namespace,
                "get",
                "tcp/u1",
                "-o",
                &format!("jsonpath={PHASE_VERSION}"),
            ])
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
            let mut status = status.split_whitespace().map(str::to_owned);
            // Like the client's calls: made again when the server closed the connection under one.
            let (proxy, _) = hostplane_e2e::call_as_go_would(|| daemonsets.get("kube-proxy")).await;
            let (node, _) = hostplane_e2e::call_as_go_would(|| nodes.get(&node)).await;
            let (proxy, node) = (
                proxy.map_err(anyhow::Error::new),
                node.map_err(anyhow::Error::new),
            );
            let tenant_error = [proxy.as_ref().err(), node.as_ref().err()]
                .into_iter()
                .flatten()
                .map(|e| format!("{e:#}"))
                .next();
            samples.push(Sample {
                at: start.elapsed(),
                apiserver: get("u1-apiserver").await,
                kcm: get("u1-controller-manager").await,
                scheduler: get("u1-scheduler").await,
                kube_proxy: proxy.ok().and_then(|ds| {
                    let image = ds.spec?.template.spec?.containers.first()?.image.clone()?;
                    Some(image.rsplit(":v").next().unwrap_or_default().to_owned())
                }),
                phase: status.next().unwrap_or_default(),
                version: status.next().unwrap_or_default(),
                node_ready: node.ok().as_ref().map(node_ready),
                tenant_error,
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples
    })
}

/// A kubelet older than the new version supports (a Node whose status says v1.32.0) holds the
/// upgrade: VersionCurrent False with reason VersionSkew naming it, nothing rolls, the phase is
/// not Upgrading. Once it is gone the upgrade starts.
async fn skew_holds_the_upgrade(env: &TestEnv, tcp: &Tcp<'_>, nodes: &Api<Node>) -> Result<()> {
    let old: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "old-kubelet"},
    }))?;
    nodes.create(&PostParams::default(), &old).await?;
    nodes
        .patch_status(
            "old-kubelet",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeInfo": {"kubeletVersion": "v1.32.0"}}})),
        )
        .await?;
    patch_spec(env, "u1", &format!(r#"{{"version":"{TO}"}}"#)).await?;
    let held = poll_until(
        "VersionCurrent says the v1.32.0 kubelet holds the upgrade",
        Duration::from_secs(60),
        || async {
            let (status, reason, message) = tcp.condition("VersionCurrent").await?;
            Ok(
                if status == "False"
                    && reason == "VersionSkew"
                    && message.contains("old-kubelet (v1.32.0)")
                {
                    Attempt::Done(message)
                } else {
                    Attempt::NotYet(format!("{status} {reason} {message}"))
                },
            )
        },
    )
    .await?;
    ensure!(
        held.contains("supports kubelets from 1.33 to 1.36"),
        "{held}"
    );
    let seen = jsonpath(env, "tcp/u1", PHASE_VERSION).await?;
    ensure!(
        seen == format!("Ready {FROM}"),
        "a held upgrade must leave phase Ready and version {FROM}: {seen:?}"
    );
    let image = jsonpath(
        env,
        "deploy/u1-apiserver",
        "{.spec.template.spec.containers[0].image}",
    )
    .await?;
    ensure!(
        image.ends_with(&format!(":v{FROM}")),
        "the API server moved to {image:?} while the upgrade was held"
    );
    nodes
        .delete("old-kubelet", &DeleteParams::default())
        .await?;
    tcp.touch("skew-gone").await
}

/// status.version reaches TO with phase Ready, and kube-proxy in the tenant runs TO.
async fn wait_upgraded(env: &TestEnv, tenant: &Client) -> Result<()> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(tenant.clone(), "kube-system");
    poll_until(
        &format!("tcp/u1 is upgraded to {TO}: Ready, status.version, kube-proxy"),
        UPGRADE_TIMEOUT,
        || async {
            let seen = jsonpath(env, "tcp/u1", PHASE_VERSION).await?;
            let proxy = daemonsets.get("kube-proxy").await.ok().and_then(|ds| {
                let rolled = ds.status.as_ref().is_some_and(|s| {
                    s.updated_number_scheduled == Some(s.desired_number_scheduled)
                });
                let image = ds.spec?.template.spec?.containers.first()?.image.clone()?;
                Some((image, rolled))
            });
            let proxy_done = proxy
                .as_ref()
                .is_some_and(|(image, rolled)| image.ends_with(&format!(":v{TO}")) && *rolled);
            Ok(if seen == format!("Ready {TO}") && proxy_done {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("{seen:?}, kube-proxy {proxy:?}"))
            })
        },
    )
    .await
}

/// The API server's serving certificate as stored now.
async fn apiserver_cert(env: &TestEnv) -> Result<Vec<u8>> {
    let secret = env.api::<Secret>().get("u1-apiserver-cert").await?;
    secret
        .data
        .and_then(|d| d.get("tls.crt").map(|b| b.0.clone()))
        .context("Secret u1-apiserver-cert has no tls.crt")
}

async fn next_renewal(env: &TestEnv) -> Result<String> {
    let at = jsonpath(env, "tcp/u1", "{.status.certificates.nextRenewal}").await?;
    ensure!(
        !at.is_empty(),
        "tcp/u1 has no status.certificates.nextRenewal"
    );
    Ok(at)
}

/// The serving certificate was renewed (20-minute leaves are due 11 min 40 s after issue), and
/// the API servers rolled onto it: every pod of the latest template, both available.
async fn wait_renewed(env: &TestEnv, before: &[u8]) -> Result<()> {
    poll_until(
        "the API server's serving certificate is renewed and rolled out",
        Duration::from_secs(900),
        || async {
            let now = apiserver_cert(env).await?;
            let d = env.api::<Deployment>().get("u1-apiserver").await?;
            let rolled = rollout_of(&d).is_some_and(|r| r.done && r.pods == (2, 2, 2));
            Ok(if now != before && rolled {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("renewed {}, rolled out {rolled}", now != before))
            })
        },
    )
    .await
}

/// The samples show the upgrade in order: while a pod of the old API server was left, the
/// controllers ran the old version; until the controllers' rollout was over, kube-proxy did;
/// status.version showed TO only once everything ran it; the phase was Upgrading on the way; the
/// worker was Ready throughout.
fn check_order(samples: &[Sample]) -> Result<()> {
    let tag = |d: &Option<Rollout>| d.as_ref().map(|d| d.tag.clone());
    let done = |d: &Option<Rollout>| d.as_ref().is_some_and(|d| d.tag == TO && d.done);
    let api_done = samples
        .iter()
        .position(|s| done(&s.apiserver))
        .context("no sample shows the API server rolled out at the new version")?;
    ensure!(
        samples[..api_done]
            .iter()
            .any(|s| tag(&s.apiserver).as_deref() == Some(TO)),
        "no sample caught the API server rolling"
    );
    for s in &samples[..api_done] {
        ensure!(
            tag(&s.kcm).as_deref() != Some(TO) && tag(&s.scheduler).as_deref() != Some(TO),
            "at {:?} a controller ran {TO} before the API server's rollout was over: {s:?}",
            s.at
        );
    }
    let controllers_done = samples
        .iter()
        .position(|s| done(&s.kcm) && done(&s.scheduler))
        .context("no sample shows the controllers rolled out at the new version")?;
    ensure!(
        controllers_done >= api_done,
        "controllers before the API server"
    );
    for s in &samples[..controllers_done] {
        ensure!(
            s.kube_proxy.as_deref() != Some(TO),
            "at {:?} kube-proxy ran {TO} before the controllers' rollout was over: {s:?}",
            s.at
        );
    }
    // Where status.version first says TO (read before the Deployments of that sample), every
    // rollout was over. (Later, renewals roll them again: not an upgrade.)
    let s = samples
        .iter()
        .find(|s| s.version == TO)
        .context("no sample shows status.version at the new version")?;
    ensure!(
        [&s.apiserver, &s.kcm, &s.scheduler].iter().all(|d| done(d)),
        "at {:?} status.version said {TO} before every component ran it: {s:?}",
        s.at
    );
    ensure!(
        samples.iter().any(|s| s.phase == "Upgrading"),
        "no sample shows phase Upgrading"
    );
    let failed: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.tenant_error.is_some())
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of the sampler's reads from the tenant failed: {:?}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    let not_ready: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.node_ready != Some(true))
        .collect();
    ensure!(
        not_ready.is_empty(),
        "the worker was not Ready at {:?}",
        not_ready.iter().map(|s| s.at).collect::<Vec<_>>()
    );
    Ok(())
}

/// (image tag, rollout over) of Deployment `name` in the test's namespace.
async fn deployment_rollout(env: &TestEnv, name: &str) -> Result<Option<Rollout>> {
    Ok(env
        .api::<Deployment>()
        .get_opt(name)
        .await?
        .as_ref()
        .and_then(rollout_of))
}

/// An upgrade whose operator goes away half-way — the API server already rolling to the new
/// version — stays where it was (the controllers on the old version, `status.version` old, phase
/// Upgrading) and goes on from there once an operator runs again: nothing is stored but what the
/// Deployments and the status show. Then the same for a service-account key rotation.
#[tokio::test]
async fn an_upgrade_and_a_key_rotation_resume_where_they_were_after_the_operator_stops_half_way()
-> Result<()> {
    let _operator = OPERATOR.write().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-upgrade-resume").await?;
    // Two API servers: their rollout lasts long enough to stop the operator in the middle of it.
    let spec = "  profile: Small\n  controlPlane:\n    apiServer:\n      replicas: 2\n";
    let tcp = Tcp::apply_version(&env, "r1", FROM, spec).await?;
    tcp.wait_ready().await?;
    patch_spec(&env, "r1", &format!(r#"{{"version":"{TO}"}}"#)).await?;
    poll_until(
        "the API server's template moves to the new version",
        Duration::from_secs(60),
        || async {
            let api = deployment_rollout(&env, "r1-apiserver").await?;
            Ok(match api {
                Some(r) if r.tag == TO => Attempt::Done(()),
                other => Attempt::NotYet(format!("{other:?}")),
            })
        },
    )
    .await?;
    super::operator::scale(0).await?;
    let halted = async {
        // The seed's Deployment controller finishes the API server's rollout on its own.
        poll_until(
            "the API server's rollout ends without the operator",
            Duration::from_secs(120),
            || async {
                let api = deployment_rollout(&env, "r1-apiserver").await?;
                Ok(match api {
                    Some(r) if r.tag == TO && r.done => Attempt::Done(()),
                    other => Attempt::NotYet(format!("{other:?}")),
                })
            },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        for name in ["r1-controller-manager", "r1-scheduler"] {
            let tag = deployment_rollout(&env, name).await?.map(|r| r.tag);
            ensure!(
                tag.as_deref() == Some(FROM),
                "{name} moved to {tag:?} with no operator running"
            );
        }
        let seen = jsonpath(&env, "tcp/r1", PHASE_VERSION).await?;
        ensure!(
            seen == format!("Upgrading {FROM}"),
            "half-way the status says {seen:?}"
        );
        Ok(())
    }
    .await;
    super::operator::scale(1).await?;
    halted?;
    poll_until(
        "the operator, back, finishes the upgrade",
        Duration::from_secs(300),
        || async {
            let seen = jsonpath(&env, "tcp/r1", PHASE_VERSION).await?;
            let kcm = deployment_rollout(&env, "r1-controller-manager").await?;
            let done = seen == format!("Ready {TO}") && kcm.as_ref().is_some_and(|r| r.tag == TO);
            Ok(if done {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("{seen:?}, controller-manager {kcm:?}"))
            })
        },
    )
    .await?;
    super::sa_keys::resumes_after_the_operator_stops(&env, "r1").await?;
    super::ca_rotation::resumes_after_the_operator_stops(&env, "r1").await
}

/// An upgrade asked for while the tenant sleeps waits for it to wake: nothing starts (no pod,
/// `status.version` and phase unchanged); once woken it runs the new version, with its data and
/// the `Upgraded` Event (issue 9).
#[tokio::test]
async fn an_upgrade_asked_for_while_hibernated_is_applied_on_wake() -> Result<()> {
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-upgrade-wake").await?;
    let tcp = Tcp::apply_version(&env, "w1", FROM, "").await?;
    tcp.wait_ready().await?;
    let kubeconfig = tcp.kubeconfig().await?;
    let marker = random_token();
    let config_maps = || async {
        let client = hostplane_e2e::tenant_client(&kubeconfig).await?;
        Ok::<_, anyhow::Error>(Api::<ConfigMap>::namespaced(client, "default"))
    };
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "before-sleep"}, "data": {"marker": marker},
    }))?;
    config_maps()
        .await?
        .create(&PostParams::default(), &cm)
        .await
        .context("creating a ConfigMap in the tenant")?;
    super::day2::hibernation(&env, "w1", r#"{"enabled":true}"#).await?;
    super::day2::wait_hibernated(&env, "w1").await?;

    patch_spec(&env, "w1", &format!(r#"{{"version":"{TO}"}}"#)).await?;
    // A window for a start that should not happen (an upgrade of a sleeping tenant would start
    // pods or move the status), not a speed check.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let seen = jsonpath(&env, "tcp/w1", PHASE_VERSION).await?;
    ensure!(
        seen == format!("Hibernated {FROM}"),
        "asleep, after the version changed, the status says {seen:?}"
    );
    let pods = env
        .kubectl(&["get", "pods", "-l", "hostplane.dev/tenant=w1", "-o", "name"])
        .await?
        .ok()?;
    ensure!(
        pods.stdout.trim().is_empty(),
        "pods started while asleep: {}",
        pods.stdout
    );

    super::day2::hibernation(&env, "w1", "null").await?;
    poll_until("tcp/w1 woke and upgraded", UPGRADE_TIMEOUT, || async {
        let seen = jsonpath(&env, "tcp/w1", PHASE_VERSION).await?;
        Ok(if seen == format!("Ready {TO}") {
            Attempt::Done(())
        } else {
            Attempt::NotYet(seen)
        })
    })
    .await?;
    let back = config_maps()
        .await?
        .get("before-sleep")
        .await
        .context("reading the ConfigMap written before hibernation")?;
    ensure!(
        back.data.as_ref().and_then(|d| d.get("marker")) == Some(&marker),
        "the ConfigMap came back different: {:?}",
        back.data
    );
    let events = super::event_messages(&env, "involvedObject.name=w1,reason=Upgraded").await?;
    ensure!(
        events.contains(&format!("runs {TO} (was {FROM})")),
        "no Upgraded Event: {events:?}"
    );
    Ok(())
}

//! Chaos (issue 11): TenantControlPlanes created one after another while the operator is killed
//! at random moments, half the time with SIGKILL (no Lease released, its pod force-deleted), half
//! the time by deleting its pod (SIGTERM); then a tenant's API server pod deleted and the seed's
//! own API server restarted. In the end every tenant is Ready with its data, every root of trust
//! (the CAs, the service-account key, the encryption key) is the one first seen, every tenant has
//! exactly one of each object and no object is orphaned.
//!
//! Local seed only: it kills processes on the seed's host and restarts the seed's API server.
//! `E2E_CHAOS_TCPS` tenants (default 3) and `E2E_CHAOS_KILLS` kills (default 8); the full
//! run is `E2E_CHAOS_TCPS=10 E2E_CHAOS_KILLS=100` (docs/reliability.md).

#[path = "common/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use hostplane_e2e::{Attempt, TestEnv, install_crds, kubectl, poll_until, random_token};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};

/// The Secrets of a tenant that must never change once made (suffixes of `<tcp>-`).
const ROOTS: [&str; 5] = ["ca", "front-proxy-ca", "etcd-ca", "sa", "encryption-key"];
/// What each tenant owns, by kind, exactly once (names are fixed, so a second one would be a
/// second name): the counts are compared between tenants and with these.
const OWNED: [(&str, usize); 5] = [
    ("statefulsets", 1),
    ("deployments", 3),
    ("services", 2),
    ("networkpolicies", 4),
    ("poddisruptionbudgets", 0),
];
/// From the last kill to every tenant Ready: provisioning of all of them on a 2-core machine.
const SETTLE: Duration = Duration::from_secs(600);

fn count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// A random number in `0..n` (n > 0).
fn random_below(n: u64) -> u64 {
    let token = random_token();
    u64::from_str_radix(token.trim_start_matches("tok-"), 16).unwrap_or(0) % n
}

fn tcp_api(env: &TestEnv) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "hostplane.dev".into(),
        version: "v1alpha1".into(),
        api_version: "hostplane.dev/v1alpha1".into(),
        kind: "TenantControlPlane".into(),
        plural: "tenantcontrolplanes".into(),
    };
    Api::namespaced_with(env.client.clone(), env.namespace(), &resource)
}

async fn create_tcp(env: &TestEnv, name: &str) -> Result<()> {
    let version = env.config.kubernetes_version.trim_start_matches('v');
    let tcp: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "hostplane.dev/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": name},
        "spec": {"version": version, "profile": "Small"},
    }))?;
    tcp_api(env)
        .create(&PostParams::default(), &tcp)
        .await
        .with_context(|| format!("creating tcp/{name}"))?;
    Ok(())
}

/// The roots of trust first seen for each Secret name, and every change seen after.
#[derive(Default)]
struct Roots {
    first: BTreeMap<String, BTreeMap<String, ByteString>>,
    changed: Vec<String>,
}

impl Roots {
    async fn observe(&mut self, secrets: &Api<Secret>, tenants: &[String]) -> Result<()> {
        for s in secrets.list(&ListParams::default()).await?.items {
            let name = s.metadata.name.clone().unwrap_or_default();
            let is_root = tenants
                .iter()
                .any(|t| ROOTS.iter().any(|suffix| name == format!("{t}-{suffix}")));
            if !is_root {
                continue;
            }
            let data = s.data.unwrap_or_default();
            match self.first.get(&name) {
                None => {
                    self.first.insert(name, data);
                }
                Some(first) if *first != data => self.changed.push(name),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Watches the roots every 300 ms until `stop`; a root that disappears is not a change (the
/// test never deletes one), one whose data changes is.
fn watch_roots(
    env: &TestEnv,
    tenants: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<Roots>> {
    let secrets: Api<Secret> = env.api();
    tokio::spawn(async move {
        let mut roots = Roots::default();
        while !stop.load(Ordering::Relaxed) {
            // The seed's API server restarts in this test: a failed list is tried again.
            let _ = roots.observe(&secrets, &tenants).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        roots.observe(&secrets, &tenants).await?;
        Ok(roots)
    })
}

/// Kills the leading replica: SIGKILL and a forced pod deletion (the Lease stays held until its
/// term ends) or a pod deletion (SIGTERM: it releases the Lease). Returns how.
async fn kill_leader() -> Result<&'static str> {
    let leader = operator::leader(&[], Duration::from_secs(120)).await?;
    let mut delete = vec![
        "-n",
        operator::NAMESPACE,
        "delete",
        "pod",
        &leader.name,
        "--wait=false",
    ];
    let how = if random_below(2) == 0 {
        operator::kill_process(&leader)?;
        delete.extend(["--grace-period=0", "--force"]);
        "SIGKILL"
    } else {
        "SIGTERM"
    };
    kubectl(&delete).await?.ok()?;
    Ok(how)
}

async fn ready(env: &TestEnv, name: &str) -> Result<bool> {
    let tcp = tcp_api(env).get(name).await?;
    Ok(tcp.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

async fn all_ready(env: &TestEnv, tenants: &[String], timeout: Duration) -> Result<()> {
    poll_until("every tenant is Ready", timeout, || async {
        let mut not = Vec::new();
        for t in tenants {
            if !ready(env, t).await.unwrap_or(false) {
                not.push(t.clone());
            }
        }
        Ok(if not.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::NotYet(format!("not Ready: {not:?}"))
        })
    })
    .await
}

async fn tenant_client(env: &TestEnv, name: &str) -> Result<Client> {
    let secret = env
        .api::<Secret>()
        .get(&format!("{name}-kubeconfig"))
        .await?;
    let value = secret
        .data
        .and_then(|d| d.get("value").cloned())
        .with_context(|| format!("{name}-kubeconfig has no key value"))?;
    hostplane_e2e::tenant_client(&String::from_utf8(value.0)?).await
}

/// Exactly one of each object per tenant, each owned by its live TenantControlPlane.
async fn assert_no_duplicate_no_orphan(env: &TestEnv, tenants: &[String]) -> Result<()> {
    let tcps = tcp_api(env).list(&ListParams::default()).await?.items;
    let uids: BTreeMap<String, String> = tcps
        .iter()
        .map(|t| {
            (
                t.metadata.name.clone().unwrap_or_default(),
                t.metadata.uid.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut secrets_per_tenant = BTreeMap::new();
    for (kind, want) in OWNED.iter().copied().chain([("secrets", usize::MAX)]) {
        let out = env
            .kubectl(&["get", kind, "-o", "json"])
            .await?
            .ok()?
            .stdout;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let Some(tenant) = item["metadata"]["labels"]["hostplane.dev/tenant"].as_str() else {
                continue;
            };
            let owner_uid = item["metadata"]["ownerReferences"][0]["uid"]
                .as_str()
                .unwrap_or_default();
            ensure!(
                uids.get(tenant).is_some_and(|u| u == owner_uid),
                "{kind}/{name} of tenant {tenant} is orphaned: owner uid {owner_uid:?}, the \
                 TenantControlPlanes are {uids:?}"
            );
            *per_tenant.entry(tenant.to_owned()).or_default() += 1;
        }
        for t in tenants {
            let n = per_tenant.get(t).copied().unwrap_or(0);
            if kind == "secrets" {
                secrets_per_tenant.insert(t.clone(), n);
            } else {
                ensure!(n == want, "tcp/{t} has {n} {kind}, want {want}");
            }
        }
    }
    let counts: Vec<usize> = secrets_per_tenant.values().copied().collect();
    ensure!(
        counts.windows(2).all(|w| w[0] == w[1]) && counts.first().is_some_and(|n| *n > 15),
        "Secrets per tenant differ (one made twice or missing): {secrets_per_tenant:?}"
    );
    // One pod per workload replica: no ReplicaSet of an old template left running (pods being
    // deleted aside).
    let out = env
        .kubectl(&["get", "pods", "-l", "hostplane.dev/tenant", "-o", "json"])
        .await?
        .ok()?
        .stdout;
    let pods: serde_json::Value = serde_json::from_str(&out)?;
    for t in tenants {
        let n = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["metadata"]["labels"]["hostplane.dev/tenant"] == t.as_str()
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        ensure!(
            n == 4,
            "tcp/{t} runs {n} pods, want 4 (etcd, apiserver, two controllers)"
        );
    }
    Ok(())
}

/// Writes a ConfigMap into each tenant.
async fn write_data(env: &TestEnv, tenants: &[String], value: &str) -> Result<()> {
    for t in tenants {
        let api: Api<ConfigMap> = Api::namespaced(tenant_client(env, t).await?, "default");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "chaos"}, "data": {"value": value},
        }))?;
        api.create(&PostParams::default(), &cm)
            .await
            .with_context(|| format!("writing into tcp/{t}"))?;
    }
    Ok(())
}

/// Reads it back (each tenant may still be coming back: retried for 3 minutes).
async fn read_data(env: &TestEnv, tenants: &[String], value: &str) -> Result<()> {
    for t in tenants {
        poll_until(
            &format!("tcp/{t} serves the ConfigMap written before"),
            Duration::from_secs(180),
            || async {
                let client = match tenant_client(env, t).await {
                    Ok(c) => c,
                    Err(e) => return Ok(Attempt::NotYet(e.to_string())),
                };
                let api: Api<ConfigMap> = Api::namespaced(client, "default");
                Ok(match api.get("chaos").await {
                    Ok(cm) => {
                        let got = cm.data.and_then(|d| d.get("value").cloned());
                        ensure!(
                            got.as_deref() == Some(value),
                            "tcp/{t} has other data: {got:?}"
                        );
                        Attempt::Done(())
                    }
                    Err(e) => Attempt::NotYet(e.to_string()),
                })
            },
        )
        .await?;
    }
    Ok(())
}

async fn restart_seed_apiserver() -> Result<()> {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/seed/seed");
    let out = hostplane_e2e::run_command(seed, &["restart-apiserver"]).await?;
    if !out.success() {
        bail!("{seed} restart-apiserver failed: {}", out.stderr);
    }
    Ok(())
}

#[tokio::test]
async fn tenants_provisioned_while_the_operator_is_killed_end_ready_with_their_first_roots()
-> Result<()> {
    if std::env::var("E2E_LOCAL_SEED").as_deref() != Ok("1") {
        return hostplane_e2e::skip(
            "tenants_provisioned_while_the_operator_is_killed_end_ready_with_their_first_roots",
            "kills the operator's process and restarts the seed's API server, which only the local seed allows (E2E_LOCAL_SEED=1)",
        );
    }
    let tcps = count("E2E_CHAOS_TCPS", 3)?.max(1);
    let kills = count("E2E_CHAOS_KILLS", 8)?;
    install_crds().await?;
    let env = TestEnv::new("chaos").await?;
    let tenants: Vec<String> = (0..tcps).map(|i| format!("c{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_roots(&env, tenants.clone(), stop.clone());
    let started = Instant::now();

    // The tenants are created spread over the kills, so that kills land in every stage of their
    // provisioning; each kill after a random 0-5 s of work of the new leader.
    let mut created = 0;
    let mut how = BTreeMap::<&str, usize>::new();
    for k in 0..kills {
        while created < tcps && created * kills <= k * tcps {
            create_tcp(&env, &tenants[created]).await?;
            created += 1;
        }
        operator::leader(&[], Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_millis(random_below(5000))).await;
        *how.entry(kill_leader().await?).or_default() += 1;
    }
    for t in &tenants[created..] {
        create_tcp(&env, t).await?;
    }
    println!(
        "{kills} operator kills ({how:?}) over {} tenants in {:.0} s",
        tcps,
        started.elapsed().as_secs_f64()
    );
    all_ready(&env, &tenants, SETTLE).await?;
    println!(
        "all {tcps} Ready {:.0} s after the first was created",
        started.elapsed().as_secs_f64()
    );
    assert_no_duplicate_no_orphan(&env, &tenants).await?;

    // A tenant's API server pod and the seed's API server: every tenant back with its data.
    write_data(&env, &tenants, "before").await?;
    env.kubectl(&[
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/component=kube-apiserver,hostplane.dev/tenant=c0",
        "--wait=false",
    ])
    .await?
    .ok()?;
    restart_seed_apiserver().await?;
    all_ready(&env, &tenants, SETTLE).await?;
    read_data(&env, &tenants, "before").await?;

    stop.store(true, Ordering::Relaxed);
    let roots = watcher.await.context("the roots watcher")??;
    ensure!(
        roots.first.len() == tcps * ROOTS.len(),
        "saw {} roots of trust, want {}: {:?}",
        roots.first.len(),
        tcps * ROOTS.len(),
        roots.first.keys().collect::<Vec<_>>()
    );
    ensure!(
        roots.changed.is_empty(),
        "roots of trust replaced during the chaos: {:?}",
        roots.changed
    );
    assert_no_duplicate_no_orphan(&env, &tenants).await
}

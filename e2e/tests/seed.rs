//! The seed cluster works as the operator will need it: a Ready node of the pinned version,
//! Deployments behind ClusterIP and NodePort Services, cluster DNS, logs and exec, volumes from the
//! default StorageClass, and (on the local seed) the network guard.
//!
//! Runs against `$KUBECONFIG`; see `e2e/README.md`.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{
    ETCD_HEALTHY, SERVICE_TIMEOUT, TestEnv, guard, http_get_until_ok, node_internal_ip,
    random_token, skip, test_client_pod, url_host, with_claim, with_http_readiness,
};
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, Service,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn node_is_ready_and_reports_pinned_version() -> Result<()> {
    let env = TestEnv::new("node-version").await?;
    let want = env.config.kubernetes_version.as_str();

    let nodes = Api::<Node>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .context("listing nodes")?;
    ensure!(!nodes.items.is_empty(), "the cluster has no Node");
    let mut problems = Vec::new();
    for node in &nodes.items {
        let name = node.name_any();
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => problems.push(format!(
                "node {name} is not Ready: Ready={} ({}: {})",
                c.status,
                c.reason.as_deref().unwrap_or("?"),
                c.message.as_deref().unwrap_or("")
            )),
            None => problems.push(format!("node {name} has no Ready condition")),
        }
        let kubelet = status
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.as_str());
        if kubelet != Some(want) {
            problems.push(format!("node {name} runs kubelet {kubelet:?}, want {want}"));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));

    let info = env
        .client
        .apiserver_version()
        .await
        .context("GET /version")?;
    ensure!(
        info.git_version == want,
        "the API server reports {}, want {want}",
        info.git_version
    );
    Ok(())
}

#[tokio::test]
async fn etcd_deployment_answers_health_via_clusterip_and_nodeport() -> Result<()> {
    let env = TestEnv::new("etcd-services").await?;
    let etcd = env.deploy_etcd("etcd", true).await?;

    assert_healthy_from_a_pod(&env, &etcd.cluster_health_url()).await?;

    let node_ip = node_internal_ip(&env.client).await?;
    let port = etcd
        .node_port
        .context("the etcd NodePort Service has no port")?;
    let url = format!("http://{}:{port}/health", url_host(&node_ip));
    let body = http_get_until_ok(&url, SERVICE_TIMEOUT).await?;
    ensure!(
        body.contains(ETCD_HEALTHY),
        "GET {url} from the host answered {body:?}, want {ETCD_HEALTHY}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_logs_and_exec_work() -> Result<()> {
    let env = TestEnv::new("logs-exec").await?;
    let token = random_token();
    let pod = test_client_pod(&env.config, "server", &["serve", "--message", &token]);
    // Ready only once it serves, and it prints its start line before it serves.
    env.start_test_client(with_http_readiness(pod, "/healthz", 8080))
        .await?;

    let logs = env.kubectl(&["logs", "server"]).await?.ok()?;
    ensure!(
        logs.stdout.contains("serving on"),
        "`kubectl logs server` shows no start line (\"serving on ...\"):\n{}",
        logs.stdout
    );

    let echo = env.exec_test_client("server", &["echo", &token]).await?;
    ensure!(
        echo.stdout.trim_end() == token,
        "`kubectl exec server -- test-client echo {token}` printed {:?}",
        echo.stdout
    );
    // The exec'd process reaches the server in the same pod, which answers with the token.
    let get = env
        .exec_test_client("server", &["get", "http://127.0.0.1:8080/"])
        .await?;
    ensure!(
        get.stdout == token,
        "the server answered {:?}, want {token}",
        get.stdout
    );
    Ok(())
}

#[tokio::test]
async fn pvc_binds_and_keeps_data_across_pod_restart() -> Result<()> {
    let env = TestEnv::new("pvc").await?;
    // No storageClassName: the cluster's default StorageClass provisions it.
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("1Gi".to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    env.create(&claim).await?;

    let token = random_token();
    let writer = test_client_pod(&env.config, "writer", &["sleep"]);
    env.start_test_client(with_claim(writer, "data", "/data"))
        .await?;
    env.exec_test_client("writer", &["write", "/data/token", &token])
        .await?;
    env.delete_pod("writer").await?;

    let reader = test_client_pod(&env.config, "reader", &["sleep"]);
    env.start_test_client(with_claim(reader, "data", "/data"))
        .await?;
    let read = env
        .exec_test_client("reader", &["read", "/data/token"])
        .await?;
    ensure!(
        read.stdout == token,
        "a new pod read {:?} from the volume, want {token}",
        read.stdout
    );

    // Bound (also where binding waits for the first consumer, as on kind), by the default class.
    let claim = env
        .api::<PersistentVolumeClaim>()
        .get("data")
        .await
        .context("reading PVC data")?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    ensure!(phase == Some("Bound"), "PVC data is {phase:?}, want Bound");
    let defaults: Vec<String> = Api::<StorageClass>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .context("listing StorageClasses")?
        .items
        .iter()
        .filter(|sc| {
            sc.annotations()
                .get("storageclass.kubernetes.io/is-default-class")
                .is_some_and(|v| v == "true")
        })
        .map(ResourceExt::name_any)
        .collect();
    ensure!(
        !defaults.is_empty(),
        "no StorageClass is annotated storageclass.kubernetes.io/is-default-class=true"
    );
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .context("PVC data is Bound but names no volume")?;
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&volume)
        .await
        .with_context(|| format!("reading PV {volume}"))?;
    let class = pv.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    ensure!(
        class.as_ref().is_some_and(|c| defaults.contains(c)),
        "PV {volume} has storageClassName {class:?}, want the default class ({defaults:?})"
    );
    Ok(())
}

/// An address in 192.168.0.0/16 that the guard must drop; nothing is sent before the guard is
/// checked to be in place for it.
const GUARD_PROBE_IP: &str = "192.168.255.1";
const GUARD_PROBE_RANGE: &str = "192.168.0.0/16";

#[tokio::test]
async fn network_guard_drops_private_ranges_but_services_work() -> Result<()> {
    if !hostplane_e2e::Config::from_env()?.local_seed {
        return skip(
            "network_guard_drops_private_ranges_but_services_work",
            "needs the local seed (E2E_LOCAL_SEED=1); on kind the host network is Docker's",
        );
    }
    let env = TestEnv::new("network-guard").await?;

    guard::check_in_place(GUARD_PROBE_IP).await?;
    let before = guard::drop_counters().await?;
    let probe = env
        .run_test_client(
            "probe",
            &[
                "connect",
                &format!("{GUARD_PROBE_IP}:80"),
                "--timeout",
                "3s",
            ],
        )
        .await?;
    ensure!(
        !probe.succeeded(),
        "a pod connected to {GUARD_PROBE_IP}:80 through the guard:\n{}",
        probe.logs
    );
    // Dropped packets time out; "refused" or "unreachable" would mean something else stopped it.
    ensure!(
        probe.logs.contains("timeout"),
        "the connect to {GUARD_PROBE_IP}:80 failed, but not by timing out as a drop does:\n{}",
        probe.logs
    );
    let after = guard::drop_counters().await?;
    let count = |c: &BTreeMap<String, u64>| c.get(GUARD_PROBE_RANGE).copied().unwrap_or(0);
    ensure!(
        count(&after) > count(&before),
        "the guard's DROP counter for {GUARD_PROBE_RANGE} stayed at {}: the probe was not dropped \
         by the guard",
        count(&before)
    );

    // Service traffic, which stays on the machine, still flows.
    let etcd = env.deploy_etcd("etcd", false).await?;
    let url = etcd.cluster_health_url();
    assert_healthy_from_a_pod(&env, &url).await?;
    let body = http_get_until_ok(&url, SERVICE_TIMEOUT).await?;
    ensure!(
        body.contains(ETCD_HEALTHY),
        "GET {url} from the host answered {body:?}, want {ETCD_HEALTHY}"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_dns_resolves_service_names() -> Result<()> {
    let env = TestEnv::new("dns").await?;
    let kubernetes = Api::<Service>::namespaced(env.client.clone(), "default")
        .get("kubernetes")
        .await
        .context("reading Service default/kubernetes")?;
    let want = kubernetes
        .spec
        .and_then(|s| s.cluster_ip)
        .context("Service default/kubernetes has no ClusterIP")?;
    let name = "kubernetes.default.svc.cluster.local";
    let run = env
        .run_test_client("lookup", &["lookup", name, "--timeout", "10s"])
        .await?
        .ok()?;
    ensure!(
        run.logs.lines().any(|l| l.trim() == want),
        "{name} resolved to {:?} from a pod, want {want}",
        run.logs.trim()
    );
    Ok(())
}

/// A one-shot test-client pod GETs etcd's `/health` at `url` (retrying while kube-proxy programs
/// a new Service's rules) and must see it healthy.
async fn assert_healthy_from_a_pod(env: &TestEnv, url: &str) -> Result<()> {
    let run = env
        .run_test_client("health-probe", &["get", url, "--retry-for", "30s"])
        .await?
        .ok()?;
    ensure!(
        run.logs.contains(ETCD_HEALTHY),
        "GET {url} from a pod answered {:?}, want {ETCD_HEALTHY}",
        run.logs
    );
    Ok(())
}

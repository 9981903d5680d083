use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hostplane_api::v1alpha1::TenantControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt as _;
use serde_json::json;

use super::pod::CONFIG_HASH;
use super::*;
use crate::pki::{self, ExistingSecrets};

const KEY: [u8; 32] = [7; 32];

fn tcp(spec: &serde_json::Value) -> TenantControlPlane {
    serde_json::from_value(json!({
        "apiVersion": "hostplane.dev/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": "t", "namespace": "ns", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn tenant(spec: &serde_json::Value) -> Tenant {
    let endpoint = Endpoint {
        host: "10.86.0.50".into(),
        port: 6443,
    };
    Tenant::new(&tcp(spec), "cluster.local", Some(endpoint)).unwrap()
}

fn pki_for(tenant: &Tenant) -> Pki {
    let now = time::OffsetDateTime::now_utc();
    pki::execute(
        pki::plan(&tenant.pki_inputs(), &ExistingSecrets::new(), now).unwrap(),
        now,
    )
    .unwrap()
}

fn children(spec: &serde_json::Value) -> (Tenant, Children) {
    let t = tenant(spec);
    let pki = pki_for(&t);
    let c = build(&t, &pki, &KEY).unwrap();
    (t, c)
}

fn args(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

fn deployment<'a>(c: &'a Children, name: &str) -> &'a Deployment {
    c.deployments.iter().find(|d| d.name_any() == name).unwrap()
}

fn hash(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH]
        .clone()
}

#[test]
fn every_child_is_named_owned_and_labelled() {
    let (_, c) = children(&json!({"version": "1.36.3"}));
    let Children {
        secrets,
        services,
        statefulsets,
        deployments,
        pdbs,
    } = &c;
    let mut metas: Vec<&ObjectMeta> = Vec::new();
    metas.extend(secrets.iter().map(|o| &o.metadata));
    metas.extend(services.iter().map(|o| &o.metadata));
    metas.extend(statefulsets.iter().map(|o| &o.metadata));
    metas.extend(deployments.iter().map(|o| &o.metadata));
    metas.extend(pdbs.iter().map(|o| &o.metadata));
    assert_eq!(
        metas.len(),
        14 + 5 + 2 + 1 + 3,
        "PKI, kubeconfigs + encryption, services, etcd, deployments"
    );
    for m in metas {
        let name = m.name.as_deref().unwrap();
        assert!(name.starts_with("t-"), "{name}");
        assert_eq!(m.namespace.as_deref(), Some("ns"), "{name}");
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true)),
            "{name}"
        );
        assert_eq!(m.labels.as_ref().unwrap()[TENANT_LABEL], "t", "{name}");
    }
    assert!(
        pdbs.is_empty(),
        "single replicas need no PodDisruptionBudget"
    );
}

#[test]
fn the_same_inputs_build_the_same_objects() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let pki = pki_for(&t);
    let a = build(&t, &pki, &KEY).unwrap();
    let b = build(&t, &pki, &KEY).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn apiserver_flags_point_at_etcd_keys_and_encryption() {
    let (_, c) = children(&json!({"version": "1.36.3"}));
    let a = args(deployment(&c, "t-apiserver"));
    for want in [
        "--etcd-servers=https://t-etcd-0.t-etcd.ns.svc.cluster.local:2379",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa/sa.key",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--encryption-provider-config=/etc/kubernetes/encryption/encryption-config.yaml",
        "--advertise-address=10.86.0.50",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
    ] {
        assert!(a.contains(&want.to_owned()), "missing {want} in {a:?}");
    }
    assert!(
        !a.iter().any(|f| f.starts_with("--goaway-chance")),
        "goaway with one replica"
    );
    let image = deployment(&c, "t-apiserver")
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("registry.k8s.io/kube-apiserver:v1.36.3")
    );
}

#[test]
fn replicas_bring_goaway_chance_pdbs_and_an_etcd_member_list() {
    let (_, c) = children(&json!({
        "version": "1.36.3",
        "controlPlane": {"apiServer": {"replicas": 2}, "scheduler": {"replicas": 2}},
        "etcd": {"managed": {"replicas": 3}},
    }));
    assert!(args(deployment(&c, "t-apiserver")).contains(&"--goaway-chance=0.001".to_owned()));
    assert!(args(deployment(&c, "t-scheduler")).contains(&"--leader-elect=true".to_owned()));
    let pdbs: Vec<String> = c.pdbs.iter().map(kube::ResourceExt::name_any).collect();
    assert_eq!(pdbs, ["t-apiserver", "t-scheduler", "t-etcd"]);
    let etcd_args = c.statefulsets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let cluster = etcd_args
        .iter()
        .find(|a| a.starts_with("--initial-cluster="))
        .unwrap();
    assert_eq!(cluster.matches("https://t-etcd-").count(), 3, "{cluster}");
}

#[test]
fn extra_args_override_and_extend_the_defaults() {
    let (_, c) = children(&json!({
        "version": "1.36.3",
        "controlPlane": {"apiServer": {"extraArgs": {"authorization-mode": "RBAC", "v": "4"}}},
    }));
    let a = args(deployment(&c, "t-apiserver"));
    assert_eq!(
        a.iter()
            .filter(|f| f.starts_with("--authorization-mode="))
            .collect::<Vec<_>>(),
        ["--authorization-mode=RBAC"]
    );
    assert!(a.contains(&"--v=4".to_owned()));
}

#[test]
fn user_kubeconfig_follows_the_cluster_api_contract() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let pki = pki_for(&t);
    let c = build(&t, &pki, &KEY).unwrap();
    let s = c
        .secrets
        .iter()
        .find(|s| s.name_any() == "t-kubeconfig")
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some(kubeconfig::CAPI_SECRET_TYPE));
    assert_eq!(s.labels()[kubeconfig::CAPI_CLUSTER_LABEL], "t");
    let value = String::from_utf8(
        s.data.as_ref().unwrap()[kubeconfig::KUBECONFIG_KEY]
            .0
            .clone(),
    )
    .unwrap();
    let parsed = kube::config::Kubeconfig::from_yaml(&value).unwrap();
    assert_eq!(
        parsed.clusters[0]
            .cluster
            .as_ref()
            .unwrap()
            .server
            .as_deref(),
        Some("https://10.86.0.50:6443")
    );
    let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
    let cert = STANDARD
        .decode(user.client_certificate_data.as_ref().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(cert).unwrap(),
        pki.cert(pki::Item::AdminClient).unwrap().cert_pem()
    );
    // The operator's own credential is a different, system:masters one, on the in-seed name.
    let sa = c
        .secrets
        .iter()
        .find(|s| s.name_any() == "t-super-admin-kubeconfig")
        .unwrap();
    let value = String::from_utf8(
        sa.data.as_ref().unwrap()[kubeconfig::KUBECONFIG_KEY]
            .0
            .clone(),
    )
    .unwrap();
    assert!(
        value.contains("server: https://t-apiserver.ns.svc.cluster.local:6443"),
        "{value}"
    );
}

#[test]
fn a_changed_secret_rolls_only_the_pods_that_mount_it() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let pki = pki_for(&t);
    let before = build(&t, &pki, &KEY).unwrap();
    let after = build(&t, &pki, &[8; 32]).unwrap();
    assert_ne!(
        hash(deployment(&before, "t-apiserver")),
        hash(deployment(&after, "t-apiserver"))
    );
    for unchanged in ["t-controller-manager", "t-scheduler"] {
        assert_eq!(
            hash(deployment(&before, unchanged)),
            hash(deployment(&after, unchanged)),
            "{unchanged}"
        );
    }
}

#[test]
fn node_port_service_and_no_key_of_a_ca_where_only_its_cert_is_needed() {
    let (_, c) = children(
        &json!({"version": "1.36.3", "controlPlane": {"service": {"type": "NodePort", "nodePort": 30443}}}),
    );
    let svc = c
        .services
        .iter()
        .find(|s| s.name_any() == "t-apiserver")
        .unwrap()
        .spec
        .clone()
        .unwrap();
    assert_eq!(svc.type_.as_deref(), Some("NodePort"));
    assert_eq!(svc.ports.unwrap()[0].node_port, Some(30443));
    let pod = deployment(&c, "t-apiserver")
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap();
    let ca = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "ca")
        .unwrap()
        .secret
        .unwrap();
    let keys: BTreeMap<_, _> = ca
        .items
        .unwrap()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        ["ca.crt"],
        "the apiserver must not get the CA key"
    );
}

#[test]
fn etcd_image_tag_is_the_pinned_one() {
    let pinned = VERSIONS_ENV
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_VERSION="))
        .unwrap();
    assert!(
        etcd_image_tag().starts_with(pinned.split_whitespace().next().unwrap()),
        "{}",
        etcd_image_tag()
    );
}

#[test]
fn every_component_is_probed_and_counts_as_started_within_a_second() {
    let (_, c) = children(&json!({"version": "1.36.3"}));
    let containers = c
        .deployments
        .iter()
        .filter_map(|d| d.spec.as_ref()?.template.spec.as_ref())
        .chain(
            c.statefulsets
                .iter()
                .filter_map(|s| s.spec.as_ref()?.template.spec.as_ref()),
        )
        .flat_map(|p| p.containers.iter());
    let mut seen = 0;
    for container in containers {
        seen += 1;
        let name = &container.name;
        let startup = container.startup_probe.as_ref().unwrap();
        let ready = container.readiness_probe.as_ref().unwrap();
        let live = container.liveness_probe.as_ref().unwrap();
        assert_eq!(startup.period_seconds, Some(1), "{name}");
        // Up to five minutes to start before the kubelet restarts it.
        assert_eq!(startup.failure_threshold, Some(300), "{name}");
        assert_eq!(ready.period_seconds, Some(5), "{name}");
        assert_eq!(live.period_seconds, Some(5), "{name}");
        let get = |p: &k8s_openapi::api::core::v1::Probe| {
            let g = p.http_get.as_ref().unwrap();
            (g.path.clone().unwrap(), g.port.clone(), g.scheme.clone())
        };
        assert_eq!(get(startup).1, get(ready).1, "{name}: one port");
        assert_eq!(get(startup).0, get(live).0, "{name}: started = alive");
        match name.as_str() {
            "etcd" => assert_eq!(get(ready).0, "/readyz"),
            "kube-apiserver" => {
                assert_eq!(get(ready).0, "/readyz");
                assert_eq!(get(ready).2.as_deref(), Some("HTTPS"));
            }
            _ => assert_eq!(get(ready).0, "/healthz", "{name}"),
        }
    }
    assert_eq!(seen, 4, "etcd, apiserver, controller-manager, scheduler");
}

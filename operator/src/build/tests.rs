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
    let metas = c.metas();
    assert_eq!(
        metas.len(),
        14 + 5 + 2 + 1 + 3 + 4,
        "PKI, kubeconfigs + encryption, services, etcd, deployments, network policies"
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
        c.pdbs.is_empty(),
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
fn the_kubernetes_service_points_at_the_endpoint_that_the_operator_writes_itself() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let (endpoints, slice) = crate::build::addons::kubernetes_endpoints(&t)
        .unwrap()
        .unwrap();
    let subset = &endpoints.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.86.0.50");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 6443);
    assert_eq!(
        endpoints.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.endpoints.as_ref().unwrap()[0].addresses,
        ["10.86.0.50"]
    );
    assert_eq!(slice.labels()["kubernetes.io/service-name"], "kubernetes");
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(6443));
    // Behind a port that is not the API server's own (a LoadBalancer on 443, a NodePort): the
    // port pods reach it on.
    let mapped = Tenant::new(
        &tcp(&json!({"version": "1.36.3"})),
        "cluster.local",
        Some(Endpoint {
            host: "10.86.0.50".into(),
            port: 443,
        }),
    )
    .unwrap();
    let (endpoints, slice) = crate::build::addons::kubernetes_endpoints(&mapped)
        .unwrap()
        .unwrap();
    assert_eq!(
        endpoints.subsets.as_ref().unwrap()[0]
            .ports
            .as_ref()
            .unwrap()[0]
            .port,
        443
    );
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(443));
    // A DNS name as the endpoint: the API server keeps writing them (lease reconciler).
    let endpoint = Endpoint {
        host: "api.example.com".into(),
        port: 6443,
    };
    let named = Tenant::new(
        &tcp(&json!({"version": "1.36.3"})),
        "cluster.local",
        Some(endpoint),
    )
    .unwrap();
    assert!(
        crate::build::addons::kubernetes_endpoints(&named)
            .unwrap()
            .is_none()
    );
    let c = build(&named, &pki_for(&named), &KEY).unwrap();
    let a = args(deployment(&c, "t-apiserver"));
    assert!(
        !a.iter()
            .any(|f| f.starts_with("--endpoint-reconciler-type")),
        "{a:?}"
    );
}

#[test]
fn a_rotated_out_service_account_key_is_trusted_as_long_as_the_longest_token_lives() {
    let lifetime = |args: serde_json::Value| {
        let t = tenant(
            &json!({"version": "1.36.3", "controlPlane": {"apiServer": {"extraArgs": args}}}),
        );
        apiserver::max_token_lifetime(&t)
    };
    assert_eq!(lifetime(json!({})), time::Duration::hours(24));
    let key = "service-account-max-token-expiration";
    assert_eq!(lifetime(json!({key: "720h"})), time::Duration::hours(720));
    assert_eq!(
        lifetime(json!({format!("--{key}"): "2h"})),
        time::Duration::hours(2),
        "spelled as a flag"
    );
    assert_eq!(
        lifetime(json!({key: "1h30m15s"})),
        time::Duration::seconds(5415)
    );
    for unreadable in ["", "1d", "h", "24", "1.5h", "-1h"] {
        assert_eq!(
            lifetime(json!({key: unreadable})),
            time::Duration::days(365),
            "{unreadable:?}"
        );
    }
}

#[test]
fn a_service_account_key_rotation_step_rolls_the_api_servers_and_the_controller_manager() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let mut pki = pki_for(&t);
    let hashes = |pki: &Pki| {
        let built = build(&t, pki, &KEY).unwrap();
        ["t-apiserver", "t-controller-manager", "t-scheduler"]
            .map(|name| hash(deployment(&built, name)))
    };
    let mut before = hashes(&pki);
    let when = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    for change in [
        pki::RotationStep::Start("r1".to_owned()),
        pki::RotationStep::Switch,
        pki::RotationStep::Schedule(when),
        pki::RotationStep::Retire,
    ] {
        pki.rotate_service_account(&change).unwrap();
        let after = hashes(&pki);
        // The time the old key falls due is bookkeeping, mounted by no pod: nothing rolls.
        let rolls = !matches!(change, pki::RotationStep::Schedule(_));
        assert_eq!(before[0] != after[0], rolls, "apiserver, {change:?}");
        assert_eq!(
            before[1] != after[1],
            rolls,
            "controller-manager, {change:?}"
        );
        assert_eq!(before[2], after[2], "scheduler, {change:?}");
        before = after;
    }
}

#[test]
fn a_ca_rotation_rolls_the_control_plane_each_step_etcd_at_its_end_and_bundles_hold_both_cas() {
    let t = tenant(&json!({"version": "1.36.3", "pki": {"certificateValidity": "20m"}}));
    let mut pki = pki_for(&t);
    let pod_hashes = |pki: &Pki| {
        let built = build(&t, pki, &KEY).unwrap();
        let etcd = built.statefulsets[0].spec.clone().unwrap().template;
        let etcd = etcd.metadata.unwrap().annotations.unwrap()[CONFIG_HASH].clone();
        let mut all = ["t-apiserver", "t-controller-manager", "t-scheduler"]
            .map(|name| hash(deployment(&built, name)))
            .to_vec();
        all.push(etcd);
        (all, built)
    };
    let kubeconfig_cas = |built: &Children| {
        let secret = built
            .secrets
            .iter()
            .find(|s| s.name_any() == "t-kubeconfig")
            .unwrap();
        let value = String::from_utf8(secret.data.as_ref().unwrap()["value"].0.clone()).unwrap();
        let line = value
            .lines()
            .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
            .unwrap();
        let pem = STANDARD.decode(line.split(": ").nth(1).unwrap()).unwrap();
        pem::parse_many(pem).unwrap().len()
    };
    let (mut before, built) = pod_hashes(&pki);
    assert_eq!(kubeconfig_cas(&built), 1);
    let when = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    let inputs = t.pki_inputs();
    for (step, cas) in [
        (pki::RotationStep::Start("r1".to_owned()), 2),
        (pki::RotationStep::Switch, 2),
        (pki::RotationStep::Schedule(when), 2),
        (pki::RotationStep::Retire, 1),
    ] {
        for ca in pki::CaItem::ALL {
            pki.rotate_ca(ca, &step, &inputs, when).unwrap();
        }
        let (after, built) = pod_hashes(&pki);
        // The time the old CAs fall due is bookkeeping, mounted by no pod: nothing rolls.
        let rolls = !matches!(step, pki::RotationStep::Schedule(_));
        for (i, name) in ["apiserver", "controller-manager", "scheduler"]
            .iter()
            .enumerate()
        {
            assert_eq!(before[i] != after[i], rolls, "{name}, {step:?}");
        }
        // etcd reads its CA bundle only when it starts: the cross-signed chains keep it
        // working, so only the old CA's leaving restarts it (after that it trusts the new CA
        // alone); with one member a restart fails requests for seconds.
        let etcd_rolls = matches!(step, pki::RotationStep::Retire);
        assert_eq!(before[3] != after[3], etcd_rolls, "etcd, {step:?}");
        assert_eq!(kubeconfig_cas(&built), cas, "{step:?}");
        before = after;
    }
    // The next rotation does not restart etcd before its end either.
    for step in [
        pki::RotationStep::Start("r2".to_owned()),
        pki::RotationStep::Switch,
    ] {
        for ca in pki::CaItem::ALL {
            pki.rotate_ca(ca, &step, &inputs, when).unwrap();
        }
        assert_eq!(pod_hashes(&pki).0[3], before[3], "etcd, r2 {step:?}");
    }
    // The controller-manager trusts and publishes (kube-root-ca.crt) the bundle, signs with the
    // signing CA, and signs kubelet certificates for as long as the leaves live.
    let (_, c) = children(&json!({"version": "1.36.3", "pki": {"certificateValidity": "20m"}}));
    let a = args(deployment(&c, "t-controller-manager"));
    for want in [
        "--root-ca-file=/etc/kubernetes/pki/ca/ca.crt",
        "--client-ca-file=/etc/kubernetes/pki/ca/ca.crt",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca/tls.crt",
        "--cluster-signing-duration=1200s",
    ] {
        assert!(a.contains(&want.to_owned()), "missing {want} in {a:?}");
    }
    let duration = |extra: serde_json::Value| {
        controllers::signing_duration(&tenant(&json!({"version": "1.36.3",
            "pki": {"certificateValidity": "20m"},
            "controlPlane": {"controllerManager": {"extraArgs": extra}}})))
    };
    // Without the flag in extraArgs: a year, as kubelets may hold certificates signed before the
    // operator set the flag.
    assert_eq!(duration(json!({})), time::Duration::days(365));
    assert_eq!(
        duration(json!({"--cluster-signing-duration": "2h"})),
        time::Duration::hours(2)
    );
    assert_eq!(
        duration(json!({"cluster-signing-duration": "bad"})),
        time::Duration::days(365)
    );
}

#[test]
fn apiserver_flags_point_at_etcd_keys_and_encryption() {
    let (_, c) = children(&json!({"version": "1.36.3"}));
    let a = args(deployment(&c, "t-apiserver"));
    for want in [
        "--etcd-servers=https://t-etcd-0.t-etcd.ns.svc.cluster.local:2379",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa/sa.key",
        "--service-account-key-file=/etc/kubernetes/pki/sa/verify.pub",
        "--service-account-max-token-expiration=24h",
        "--endpoint-reconciler-type=none",
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

mod node_bootstrap {
    use kube::config::Kubeconfig;
    use time::OffsetDateTime;
    use x509_parser::prelude::FromDer as _;

    use super::super::node_bootstrap::*;
    use super::*;

    fn token(expiration: OffsetDateTime) -> BootstrapToken {
        BootstrapToken::from_chars(b"abc123def456ghi789jk0z", expiration).unwrap()
    }

    fn text(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    }

    #[test]
    fn a_token_is_kubeadm_shaped_and_never_debug_printed() {
        let now = OffsetDateTime::now_utc();
        let t = token(now);
        assert_eq!(t.token(), "abc123.def456ghi789jk0z");
        assert_eq!(t.id, "abc123");
        assert!(!format!("{t:?}").contains("def456"), "{t:?}");
        assert!(BootstrapToken::from_chars(b"ABC123def456ghi789jk0z", now).is_none());
        assert!(BootstrapToken::from_chars(b"abc123def456ghi789jk0.", now).is_none());
    }

    #[test]
    fn a_new_token_is_due_when_a_third_of_its_life_is_left() {
        let now = OffsetDateTime::now_utc();
        let day = 86_400;
        let fresh = token(now + time::Duration::hours(24));
        assert!(!fresh.rotation_due(now, day));
        assert!(
            !token(now + time::Duration::hours(8) + time::Duration::seconds(1))
                .rotation_due(now, day)
        );
        assert!(token(now + time::Duration::hours(8)).rotation_due(now, day));
        assert!(token(now - time::Duration::hours(1)).rotation_due(now, day));
        assert_eq!(fresh.rotation_at(day), now + time::Duration::hours(16));
    }

    #[test]
    fn the_tenant_gets_kubeadms_bootstrap_objects_and_no_more_rights() {
        let t = tenant(&json!({"version": "1.36.3"}));
        let pki = pki_for(&t);
        let expiration = OffsetDateTime::parse(
            "2026-11-23T10:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let o = tenant_objects(&t, &pki, &token(expiration)).unwrap();

        let [secret] = o.secrets.as_slice() else {
            panic!("one token Secret")
        };
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("bootstrap-token-abc123")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("bootstrap.kubernetes.io/token")
        );
        assert_eq!(text(secret, "token-id"), "abc123");
        assert_eq!(text(secret, "token-secret"), "def456ghi789jk0z");
        assert_eq!(text(secret, "expiration"), "2026-11-23T10:00:00Z");
        assert_eq!(text(secret, "usage-bootstrap-authentication"), "true");
        assert_eq!(text(secret, "usage-bootstrap-signing"), "true");
        assert_eq!(text(secret, "auth-extra-groups"), BOOTSTRAPPERS_GROUP);

        // cluster-info: the endpoint and the CA, nothing secret.
        let info = o
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("cluster-info"))
            .unwrap();
        assert_eq!(info.metadata.namespace.as_deref(), Some("kube-public"));
        let kubeconfig = Kubeconfig::from_yaml(&info.data.as_ref().unwrap()["kubeconfig"]).unwrap();
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.86.0.50:6443"));
        let ca_pem = STANDARD
            .decode(cluster.certificate_authority_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(ca_pem).unwrap(),
            pki.cert(pki::Item::Ca).unwrap().cert_pem()
        );
        assert!(kubeconfig.auth_infos.is_empty());

        let kubeadm = o
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("kubeadm-config"))
            .unwrap();
        let cluster_configuration = &kubeadm.data.as_ref().unwrap()["ClusterConfiguration"];
        assert!(cluster_configuration.contains("kubernetesVersion: v1.36.3"));
        assert!(cluster_configuration.contains("controlPlaneEndpoint: \"10.86.0.50:6443\""));
        assert!(cluster_configuration.contains("serviceSubnet: 10.96.0.0/16"));
        let kubelet = o
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("kubelet-config"))
            .unwrap();
        assert!(kubelet.data.as_ref().unwrap()["kubelet"].contains("clusterDNS: [\"10.96.0.10\"]"));
    }

    /// Who gets what: bootstrappers create and auto-approve node client CSRs; nodes renew their
    /// own; anonymous reads cluster-info only. No admin, no serving-cert approval.
    #[test]
    fn bootstrap_rbac_grants_what_kubeadm_grants_and_no_more() {
        let t = tenant(&json!({"version": "1.36.3"}));
        let pki = pki_for(&t);
        let o = tenant_objects(&t, &pki, &token(OffsetDateTime::now_utc())).unwrap();
        let bindings: Vec<(String, String, String)> = o
            .cluster_role_bindings
            .iter()
            .map(|b| {
                let subject = &b.subjects.as_ref().unwrap()[0];
                (
                    b.role_ref.name.clone(),
                    subject.kind.clone(),
                    subject.name.clone(),
                )
            })
            .collect();
        let expect = |role: &str, kind: &str, who: &str| {
            assert!(
                bindings.contains(&(role.into(), kind.into(), who.into())),
                "{role} -> {kind}/{who} missing in {bindings:?}"
            );
        };
        expect("system:node-bootstrapper", "Group", BOOTSTRAPPERS_GROUP);
        expect(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            BOOTSTRAPPERS_GROUP,
        );
        expect(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            "system:nodes",
        );
        expect("kubeadm:get-nodes", "Group", BOOTSTRAPPERS_GROUP);
        assert_eq!(bindings.len(), 4);
        for (role, _, _) in &bindings {
            assert!(
                !role.contains("admin") && !role.contains("selfnodeserver"),
                "{role}"
            );
        }
        let anonymous = o
            .role_bindings
            .iter()
            .filter(|b| {
                b.subjects
                    .iter()
                    .flatten()
                    .any(|s| s.name == "system:anonymous")
            })
            .collect::<Vec<_>>();
        assert_eq!(anonymous.len(), 1);
        assert_eq!(
            anonymous[0].metadata.namespace.as_deref(),
            Some("kube-public")
        );
        let role = o
            .roles
            .iter()
            .find(|r| r.metadata.name == anonymous[0].metadata.name)
            .unwrap();
        let only = &role.rules.as_ref().unwrap()[0];
        assert_eq!(
            only.resource_names.as_deref(),
            Some(&["cluster-info".to_owned()][..])
        );
        assert_eq!(only.verbs, ["get"]);
    }

    #[test]
    fn the_join_secret_carries_token_pin_kubeconfig_and_command() {
        let t = tenant(&json!({"version": "1.36.3"}));
        let pki = pki_for(&t);
        let expiration =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(24);
        let tok = token(expiration);
        let secret = join_secret(&t, &pki, &tok).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("t-join"));
        assert_eq!(
            secret.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        assert_eq!(BootstrapToken::from_join_secret(&secret), Some(tok.clone()));

        // The pin is the SHA-256 of the CA's SubjectPublicKeyInfo, computed here independently.
        let ca_der = pki.cert(pki::Item::Ca).unwrap().cert_der().to_vec();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&ca_der).unwrap();
        let digest =
            ring::digest::digest(&ring::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
        let hex = digest
            .as_ref()
            .iter()
            .fold(String::new(), |hex, b| hex + &format!("{b:02x}"));
        assert_eq!(text(&secret, JOIN_CA_CERT_HASH), format!("sha256:{hex}"));
        assert_eq!(
            text(&secret, JOIN_COMMAND),
            format!(
                "kubeadm join 10.86.0.50:6443 --token abc123.def456ghi789jk0z --discovery-token-ca-cert-hash sha256:{hex}"
            )
        );
        let kubeconfig = Kubeconfig::from_yaml(&text(&secret, JOIN_KUBECONFIG)).unwrap();
        assert!(
            kubeconfig.auth_infos[0]
                .auth_info
                .as_ref()
                .unwrap()
                .token
                .is_some()
        );
        let raw: serde_json::Value = serde_json::from_str(&text(&secret, JOIN_KUBECONFIG)).unwrap();
        assert_eq!(raw["users"][0]["user"]["token"], "abc123.def456ghi789jk0z");
        assert_eq!(kubeconfig.current_context.as_deref(), Some("tls-bootstrap"));
        // A damaged Secret holds no token (a new one is minted).
        let mut damaged = secret.clone();
        damaged.data.as_mut().unwrap().insert(
            JOIN_TOKEN.into(),
            k8s_openapi::ByteString(b"abc.def".to_vec()),
        );
        assert_eq!(BootstrapToken::from_join_secret(&damaged), None);
    }
}

mod addons {
    use super::super::addons::*;
    use super::*;

    #[test]
    fn coredns_serves_the_dns_service_ip_without_root() {
        let t = tenant(&json!({"version": "1.36.3", "network": {"clusterDomain": "tenant.local"}}));
        let a = coredns(&t).unwrap();
        let svc = &a.services[0];
        assert_eq!(svc.metadata.name.as_deref(), Some(KUBE_DNS_SERVICE));
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        for port in spec.ports.as_ref().unwrap().iter().filter(|p| p.port == 53) {
            assert_eq!(
                port.target_port,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(COREDNS_PORT))
            );
        }
        let corefile = &a.config_maps[0].data.as_ref().unwrap()["Corefile"];
        assert!(corefile.starts_with(".:1053 {"), "{corefile}");
        assert!(corefile.contains("kubernetes tenant.local in-addr.arpa"));
        assert!(corefile.contains("forward . /etc/resolv.conf"));
        let pod = a.deployments[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.15.0")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    }

    #[test]
    fn kube_proxy_reaches_the_api_server_at_the_endpoint_not_the_service() {
        let t = tenant(&json!({"version": "1.35.4", "registry": "mirror.example/k8s"}));
        let a = kube_proxy(&t).unwrap();
        let data = a.config_maps[0].data.as_ref().unwrap();
        let kubeconfig: serde_json::Value = serde_json::from_str(&data["kubeconfig.conf"]).unwrap();
        assert_eq!(
            kubeconfig["clusters"][0]["cluster"]["server"],
            "https://10.86.0.50:6443"
        );
        let config: serde_json::Value = serde_json::from_str(&data["config.conf"]).unwrap();
        assert_eq!(config["clusterCIDR"], "10.244.0.0/16");
        assert_eq!(config["mode"], "iptables");
        let ds = &a.daemon_sets[0];
        let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("mirror.example/k8s/kube-proxy:v1.35.4")
        );
        let binding = &a.cluster_role_bindings[0];
        assert_eq!(binding.role_ref.name, "system:node-proxier");
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "kube-proxy", Some("kube-system"))
        );
    }
}

fn containers(c: &Children) -> Vec<k8s_openapi::api::core::v1::Container> {
    let pods = c
        .deployments
        .iter()
        .map(|d| d.spec.as_ref().unwrap().template.clone())
        .chain(
            c.statefulsets
                .iter()
                .map(|s| s.spec.as_ref().unwrap().template.clone()),
        );
    pods.flat_map(|t| t.spec.unwrap().containers).collect()
}

fn env_names(c: &k8s_openapi::api::core::v1::Container) -> Vec<String> {
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

#[test]
fn the_small_profile_tunes_every_component_and_standard_leaves_them_upstream() {
    let (_, standard) = children(&json!({"version": "1.36.3"}));
    let (_, small) = children(&json!({"version": "1.36.3", "profile": "Small"}));
    let (standard, small) = (containers(&standard), containers(&small));
    assert_eq!(standard.len(), 4);
    for (std_c, small_c) in standard.iter().zip(&small) {
        assert_eq!(std_c.name, small_c.name);
        let extra: Vec<String> = env_names(std_c)
            .into_iter()
            .filter(|n| n != "POD_NAME")
            .collect();
        assert!(extra.is_empty(), "{}: Standard sets {extra:?}", std_c.name);
        assert!(
            env_names(small_c).contains(&"GOGC".to_owned()),
            "{}",
            small_c.name
        );
        assert_ne!(std_c.resources, small_c.resources, "{}", small_c.name);
    }
    let etcd = small.iter().find(|c| c.name == "etcd").unwrap();
    let snapshot: Vec<&String> = etcd
        .args
        .iter()
        .flatten()
        .filter(|a| a.starts_with("--snapshot-count="))
        .collect();
    assert_eq!(snapshot, ["--snapshot-count=2000"]);
}

#[test]
fn resources_in_the_spec_win_over_the_profile() {
    let (_, c) = children(&json!({
        "version": "1.36.3",
        "profile": "Small",
        "controlPlane": {"apiServer": {"resources": {"requests": {"memory": "1Gi"}}}},
    }));
    let api = containers(&c)
        .into_iter()
        .find(|c| c.name == "kube-apiserver")
        .unwrap();
    let requests = api.resources.unwrap().requests.unwrap();
    assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("1Gi"));
    assert_eq!(requests.get("cpu"), None);
}

/// The controller applies the apiserver Service first (before the endpoint is known) and skips it
/// among the children when it is the same object: it must not depend on the endpoint.
#[test]
fn the_apiserver_service_does_not_depend_on_the_endpoint() {
    let spec = json!({"version": "1.36.3", "controlPlane": {"service": {"type": "NodePort"}}});
    let (_, c) = children(&spec);
    let unplaced = Tenant::new(&tcp(&spec), "cluster.local", None).unwrap();
    assert!(c.services.contains(&apiserver::service(&unplaced)));
}

#[test]
fn a_hibernated_tenant_has_every_workload_at_zero_and_the_same_pods_to_wake_to() {
    let spec = json!({"version": "1.36.3", "controlPlane": {"apiServer": {"replicas": 2}}});
    let awake_tenant = tenant(&spec);
    let mut asleep_tenant = awake_tenant.clone();
    asleep_tenant.asleep = true;
    // One PKI for both: a different one would change the config hashes.
    let pki = pki_for(&awake_tenant);
    let awake = build(&awake_tenant, &pki, &KEY).unwrap();
    let asleep = build(&asleep_tenant, &pki, &KEY).unwrap();
    let replicas: Vec<i32> = asleep
        .deployments
        .iter()
        .map(|d| d.spec.as_ref().unwrap().replicas.unwrap())
        .chain(
            asleep
                .statefulsets
                .iter()
                .map(|s| s.spec.as_ref().unwrap().replicas.unwrap()),
        )
        .collect();
    assert_eq!(replicas, [0, 0, 0, 0], "apiserver, kcm, scheduler, etcd");
    assert_eq!(
        awake.deployments[0].spec.as_ref().unwrap().replicas,
        Some(2)
    );
    // Waking changes the replicas only: the pod templates (and so the config hashes, flags and
    // the etcd member list) are the same asleep and awake.
    for (a, b) in asleep.deployments.iter().zip(&awake.deployments) {
        assert_eq!(
            a.spec.as_ref().unwrap().template,
            b.spec.as_ref().unwrap().template
        );
    }
    assert_eq!(
        asleep.statefulsets[0].spec.as_ref().unwrap().template,
        awake.statefulsets[0].spec.as_ref().unwrap().template
    );
    // The Secrets and Services stay: the kubeconfig keeps working after waking.
    assert_eq!(asleep.secrets, awake.secrets);
    assert_eq!(asleep.services, awake.services);
}

#[test]
fn a_backup_job_saves_with_etcdctl_then_checks_with_the_operator_image() {
    let t = tenant(&json!({"version": "1.36.3", "backup": {"retain": 3}}));
    let spec = t.spec.backup.clone().unwrap();
    let claim = backup::volume_claim(&t, &spec).unwrap();
    assert_eq!(claim.name_any(), "t-etcd-backups");
    assert_eq!(claim.owner_references()[0].uid, "uid-1");
    let job = backup::job(
        &t,
        &spec,
        &backup::JobInputs {
            job: "t-backup-202611231200",
            snapshot: "t-20261123-120000",
            operator_image: "example.org/hostplane-operator:v0",
        },
    )
    .unwrap();
    assert_eq!(job.name_any(), "t-backup-202611231200");
    let pod = job.spec.unwrap().template.spec.unwrap();
    let save = &pod.init_containers.unwrap()[0];
    assert_eq!(save.command.as_deref(), Some(&["etcdctl".to_owned()][..]));
    let save_args = save.args.clone().unwrap();
    assert!(
        save_args
            .contains(&"--endpoints=https://t-etcd-0.t-etcd.ns.svc.cluster.local:2379".to_owned()),
        "{save_args:?}"
    );
    assert!(save_args.ends_with(&[
        "snapshot".into(),
        "save".into(),
        "/backups/t-20261123-120000.db.saving".into()
    ]));
    let finish = &pod.containers[0];
    assert_eq!(
        finish.image.as_deref(),
        Some("example.org/hostplane-operator:v0")
    );
    assert_eq!(
        finish.args.clone().unwrap(),
        [
            "snapshot-finish",
            "--dir",
            "/backups",
            "--name",
            "t-20261123-120000",
            "--tenant",
            "ns/t",
            "--uid",
            "uid-1",
            "--retain",
            "3"
        ]
    );
    // No API token in the Job's pod; the etcd client key only where etcdctl runs.
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        finish
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.name == "backups")
    );
}

#[test]
fn a_backup_job_with_s3_copies_with_the_keys_of_the_users_secret() {
    let finish = |s3: serde_json::Value| {
        let t = tenant(&json!({"version": "1.36.3", "backup": {"s3": s3}}));
        let spec = t.spec.backup.clone().unwrap();
        let inputs = backup::JobInputs {
            job: "t-backup-now-1",
            snapshot: "t-20261123-120000",
            operator_image: "example.org/hostplane-operator:v0",
        };
        let job = backup::job(&t, &spec, &inputs).unwrap();
        job.spec.unwrap().template.spec.unwrap().containers[0].clone()
    };
    let plain = finish(json!({"endpoint": "http://s3.backups.svc:9000/",
        "bucket": "b", "credentialsSecretRef": {"name": "keys"}}));
    let args = plain.args.clone().unwrap();
    // The trailing '/' of the endpoint goes; region and prefix have their defaults.
    assert!(
        args.ends_with(&[
            "--s3-endpoint".into(),
            "http://s3.backups.svc:9000".into(),
            "--s3-bucket".into(),
            "b".into(),
            "--s3-region".into(),
            "us-east-1".into(),
            "--s3-prefix".into(),
            "ns/t/".into(),
        ]),
        "{args:?}"
    );
    let env = serde_json::to_value(plain.env.unwrap()).unwrap();
    assert_eq!(
        env,
        json!([
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "AWS_SECRET_ACCESS_KEY"}}},
        ])
    );
    let set = finish(json!({"endpoint": "https://s3.example", "bucket": "b",
        "region": "eu-central-1", "prefix": "p/", "credentialsSecretRef": {"name": "keys"}}));
    let args = set.args.unwrap();
    assert!(
        args.ends_with(&[
            "--s3-region".into(),
            "eu-central-1".into(),
            "--s3-prefix".into(),
            "p/".into(),
        ]),
        "{args:?}"
    );
}

#[test]
fn restore_jobs_check_and_restore_aside_then_swap_one_member() {
    let t = tenant(&json!({"version": "1.36.3", "etcd": {"managed": {"replicas": 3}}}));
    let inputs = backup::RestoreInputs {
        job: "t-restore-1-20261123-130000",
        member: "t-etcd-1",
        snapshot: "t-20261123-120000.db",
        claim: "src-etcd-backups",
        uid: "uid-of-src",
        stamp: "20261123-130000",
        operator_image: "example.org/hostplane-operator:v0",
    };
    let job = backup::restore_job(&t, backup::RestoreStage::Prepare, &inputs).unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(
        spec.backoff_limit,
        Some(0),
        "a failed restore is reported, not retried"
    );
    let pod = spec.template.spec.unwrap();
    let init = pod.init_containers.unwrap();
    let names: Vec<&str> = init
        .iter()
        .chain(&pod.containers)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["check", "restore"]);
    let check = init[0].args.clone().unwrap();
    assert_eq!(
        check,
        [
            "restore-check",
            "--dir",
            "/backups",
            "--name",
            "t-20261123-120000.db",
            "--uid",
            "uid-of-src",
            "--member",
            "/var/lib/etcd"
        ]
    );
    let restore = pod.containers[0].args.clone().unwrap();
    for want in [
        "--data-dir=/var/lib/etcd/data.restoring",
        "--name=t-etcd-1",
        "--initial-advertise-peer-urls=https://t-etcd-1.t-etcd.ns.svc.cluster.local:2380",
        "--initial-cluster-token=t",
        "--mark-compacted",
    ] {
        assert!(
            restore.contains(&want.to_owned()),
            "{want} missing in {restore:?}"
        );
    }
    let cluster = restore
        .iter()
        .find(|a| a.starts_with("--initial-cluster="))
        .unwrap();
    assert_eq!(cluster.matches("=https://").count(), 3, "{cluster}");
    let volumes: Vec<(String, String)> = pod
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.persistent_volume_claim.unwrap().claim_name))
        .collect();
    assert_eq!(
        volumes,
        [
            ("backups".to_owned(), "src-etcd-backups".to_owned()),
            ("data".to_owned(), "data-t-etcd-1".to_owned())
        ]
    );
    // The swap: its own Job, retried (it can run again), only the member's volume.
    let swap = backup::restore_job(&t, backup::RestoreStage::Swap, &inputs).unwrap();
    let spec = swap.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].args.clone().unwrap(),
        [
            "restore-swap",
            "--member",
            "/var/lib/etcd",
            "--stamp",
            "20261123-130000"
        ]
    );
    assert_eq!(pod.volumes.unwrap().len(), 1);
    // The member's claim as the StatefulSet would make it.
    let claim = etcd::member_claim(&t, "t-etcd-1").unwrap();
    assert_eq!(claim.name_any(), "data-t-etcd-1");
    let (_, c) = children(&json!({"version": "1.36.3", "etcd": {"managed": {"replicas": 3}}}));
    let template = &c.statefulsets[0]
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    assert_eq!(claim.spec, template.spec);
}

/// What the `restricted` Pod Security Standard (the checks of the API server's PodSecurity
/// admission, latest version) finds wrong with `pod`: empty when it would admit it.
fn restricted_violations(what: &str, pod: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    let mut found = Vec::new();
    let pod_ctx = pod.security_context.clone().unwrap_or_default();
    if pod.host_network == Some(true) || pod.host_pid == Some(true) || pod.host_ipc == Some(true) {
        found.push(format!("{what}: host namespaces"));
    }
    for v in pod.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if !allowed {
            found.push(format!("{what}: volume {} of a restricted type", v.name));
        }
    }
    let pod_seccomp = pod_ctx.seccomp_profile.as_ref().map(|s| s.type_.clone());
    if pod_ctx.run_as_user == Some(0) {
        found.push(format!("{what}: pod runAsUser 0"));
    }
    for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
        let ctx = c.security_context.clone().unwrap_or_default();
        let name = format!("{what}/{}", c.name);
        if ctx.privileged == Some(true) {
            found.push(format!("{name}: privileged"));
        }
        if ctx.allow_privilege_escalation != Some(false) {
            found.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if ctx.run_as_non_root.or(pod_ctx.run_as_non_root) != Some(true) {
            found.push(format!("{name}: runAsNonRoot is not true"));
        }
        if ctx.run_as_user == Some(0) {
            found.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = ctx
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.clone())
            .or_else(|| pod_seccomp.clone());
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            found.push(format!("{name}: seccompProfile {seccomp:?}"));
        }
        let caps = ctx.capabilities.unwrap_or_default();
        if !caps.drop.unwrap_or_default().iter().any(|d| d == "ALL") {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        if caps
            .add
            .unwrap_or_default()
            .iter()
            .any(|a| a != "NET_BIND_SERVICE")
        {
            found.push(format!("{name}: adds capabilities"));
        }
        if c.ports.iter().flatten().any(|p| p.host_port.is_some()) {
            found.push(format!("{name}: hostPort"));
        }
    }
    found
}

#[test]
fn every_pod_of_a_tenant_passes_the_restricted_pod_security_standard() {
    let spec = json!({"version": "1.36.3", "etcd": {"managed": {"replicas": 3}},
        "controlPlane": {"apiServer": {"replicas": 2}}, "backup": {}});
    let (t, c) = children(&spec);
    let mut pods: Vec<(String, k8s_openapi::api::core::v1::PodSpec)> = Vec::new();
    for s in &c.statefulsets {
        pods.push((s.name_any(), s.spec.clone().unwrap().template.spec.unwrap()));
    }
    for d in &c.deployments {
        pods.push((d.name_any(), d.spec.clone().unwrap().template.spec.unwrap()));
    }
    let backup = backup::job(
        &t,
        t.spec.backup.as_ref().unwrap(),
        &backup::JobInputs {
            job: "t-backup-1",
            snapshot: "t-1",
            operator_image: "example.org/hostplane-operator:v0",
        },
    )
    .unwrap();
    pods.push(("backup".into(), backup.spec.unwrap().template.spec.unwrap()));
    let inputs = backup::RestoreInputs {
        job: "t-restore-0-1",
        member: "t-etcd-0",
        snapshot: "t-1.db",
        claim: "t-etcd-backups",
        uid: "uid-1",
        stamp: "1",
        operator_image: "example.org/hostplane-operator:v0",
    };
    for stage in [backup::RestoreStage::Prepare, backup::RestoreStage::Swap] {
        let job = backup::restore_job(&t, stage, &inputs).unwrap();
        pods.push((
            format!("{stage:?}"),
            job.spec.unwrap().template.spec.unwrap(),
        ));
    }
    for d in gitops::agent_workloads(&t, gitops::DEFAULT_AGENT_IMAGE)
        .unwrap()
        .deployments
    {
        pods.push((d.name_any(), d.spec.unwrap().template.spec.unwrap()));
    }
    assert_eq!(
        pods.len(),
        1 + 3 + 1 + 2 + 2,
        "{:?}",
        pods.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let found: Vec<String> = pods
        .iter()
        .flat_map(|(what, pod)| restricted_violations(what, pod))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
    // The checker itself finds what it is for: a root etcd, a privileged container.
    let mut bad = pods[0].1.clone();
    bad.security_context = Some(serde_json::from_value(json!({"runAsUser": 0})).unwrap());
    bad.containers[0].security_context =
        Some(serde_json::from_value(json!({"privileged": true})).unwrap());
    assert_eq!(
        restricted_violations("bad", &bad).len(),
        6,
        "{:#?}",
        restricted_violations("bad", &bad)
    );
}

/// Whether `policies` let a pod labelled `from` reach a pod labelled `to` on TCP `port`, as a
/// NetworkPolicy implementation decides for ingress from pods of the same namespace.
fn ingress_allowed(
    policies: &[k8s_openapi::api::networking::v1::NetworkPolicy],
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
    port: i32,
) -> bool {
    let selects = |selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                   labels: &BTreeMap<String, String>| {
        assert!(selector.match_expressions.is_none());
        selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    let applying: Vec<_> = policies
        .iter()
        .map(|p| p.spec.as_ref().unwrap())
        .filter(|s| selects(&s.pod_selector.clone().unwrap_or_default(), to))
        .collect();
    if applying.is_empty() {
        return true;
    }
    applying.iter().any(|spec| {
        spec.ingress.iter().flatten().any(|rule| {
            let peer_ok = rule.from.as_ref().is_none_or(|peers| {
                peers.iter().any(|p| {
                    assert!(p.namespace_selector.is_none() && p.ip_block.is_none());
                    selects(p.pod_selector.as_ref().unwrap(), from)
                })
            });
            let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                ports.iter().any(|p| {
                    p.port
                        == Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port),
                        )
                })
            });
            peer_ok && port_ok
        })
    })
}

#[test]
fn only_the_tenants_api_server_and_backups_reach_its_etcd() {
    let (t, c) = children(&json!({"version": "1.36.3", "etcd": {"managed": {"replicas": 3}}}));
    // A second tenant "u" in the same namespace.
    let mut u_tcp = tcp(&json!({"version": "1.36.3"}));
    u_tcp.metadata.name = Some("u".into());
    let other = Tenant::new(&u_tcp, "cluster.local", None).unwrap();
    let policies = &c.network_policies;
    let names: Vec<String> = policies.iter().map(kube::ResourceExt::name_any).collect();
    assert_eq!(
        names,
        [
            "t-etcd",
            "t-apiserver",
            "t-controller-manager",
            "t-scheduler"
        ]
    );
    assert!(
        policies
            .iter()
            .all(|p| p.owner_references()[0].uid == "uid-1")
    );
    let etcd = t.labels(etcd::COMPONENT);
    let apiserver = t.labels(apiserver::COMPONENT);
    let scheduler = t.labels("kube-scheduler");
    let backup = t.labels(backup::COMPONENT);
    let anyone = BTreeMap::new();
    let (client, peer, metrics) = (etcd::CLIENT_PORT, etcd::PEER_PORT, etcd::METRICS_PORT);
    // The components' pods carry exactly these labels.
    let template_labels = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        t.metadata.as_ref().unwrap().labels.clone().unwrap()
    };
    assert_eq!(
        template_labels(&c.statefulsets[0].spec.as_ref().unwrap().template),
        etcd
    );
    for (name, labels) in [("t-apiserver", &apiserver), ("t-scheduler", &scheduler)] {
        let found = deployment(&c, name);
        assert_eq!(
            &template_labels(&found.spec.as_ref().unwrap().template),
            labels
        );
    }
    for (from, to, port, allowed) in [
        (&apiserver, &etcd, client, true),
        (&backup, &etcd, client, true),
        (&etcd, &etcd, peer, true),
        (&anyone, &etcd, metrics, true),
        (&other.labels(apiserver::COMPONENT), &etcd, client, false),
        (&other.labels(etcd::COMPONENT), &etcd, peer, false),
        (&scheduler, &etcd, client, false),
        (&apiserver, &etcd, peer, false),
        (&anyone, &etcd, client, false),
        (&anyone, &apiserver, apiserver::PORT, true),
        (&anyone, &apiserver, client, false),
        (&anyone, &scheduler, 10259, true),
        (&anyone, &scheduler, 10251, false),
    ] {
        assert_eq!(
            ingress_allowed(policies, from, to, port),
            allowed,
            "from {from:?} to {to:?} port {port}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GitOps

fn token() -> gitops::Token {
    gitops::Token {
        token: "tok.en.value".into(),
        expires_at: "2026-11-23T13:00:00Z".into(),
        renew_at: "2026-11-23T12:40:00Z".into(),
        service_account_uid: "sa-uid".into(),
    }
}

fn registration(agent: &str, namespace: Option<&str>) -> hostplane_api::v1alpha1::Registration {
    serde_json::from_value(
        json!({"name": "r", "agent": agent, "namespace": namespace, "role": "view"}),
    )
    .unwrap()
}

/// What registration `r` for `agent` (written to `namespace`) of `t` writes, for token().
fn objects(t: &Tenant, agent: &str, namespace: Option<&str>) -> gitops::RegistrationObjects {
    let server = t.endpoint_url();
    gitops::registration_objects(
        t,
        "uid-1",
        &registration(agent, namespace),
        &server,
        CA_PEM,
        &token(),
    )
}

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn the_agent_image_is_the_pinned_flux() {
    let pinned = VERSIONS_ENV
        .lines()
        .find_map(|l| l.strip_prefix("FLUX_VERSION="))
        .unwrap();
    let version = pinned.split_whitespace().next().unwrap();
    assert!(
        gitops::DEFAULT_AGENT_IMAGE.ends_with(&format!(":v{version}")),
        "{} is not Flux v{version} (e2e/versions.env)",
        gitops::DEFAULT_AGENT_IMAGE
    );
}

#[test]
fn the_agent_talks_to_its_tenant_only_and_sleeps_with_it() {
    let mut t = tenant(&json!({"version": "1.36.3"}));
    let w = gitops::agent_workloads(&t, "example.org/flux-agent:v1").unwrap();
    assert_eq!(w.deployments.len(), 2);
    for d in &w.deployments {
        let pod = d.spec.clone().unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            env["KUBECONFIG"],
            "/var/run/hostplane/agent/value",
            "{}",
            d.name_any()
        );
        assert!(
            pod.service_account_name.is_none()
                && pod.automount_service_account_token == Some(false)
        );
        let secret = pod
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.secret.clone())
            .unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("t-gitops-agent-token"));
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(1));
    }
    let source = &w.deployments[0];
    let pod = source.spec.clone().unwrap().template.spec.unwrap();
    let init = &pod.init_containers.unwrap()[0];
    assert!(
        init.command
            .as_ref()
            .unwrap()
            .join(" ")
            .starts_with("kubectl apply --server-side")
    );
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.contains(&"--storage-adv-addr=t-gitops-source.ns.svc.cluster.local.:9090".to_owned()),
        "{args:?}"
    );
    assert_eq!(w.service.metadata.name.as_deref(), Some("t-gitops-source"));
    // The credential: a token file re-read by the client, the tenant's CA, its in-seed URL.
    let secret = gitops::agent_secret(&t, &t.in_seed_url(), CA_PEM, &token());
    let value = String::from_utf8(secret.data.as_ref().unwrap()["value"].0.clone()).unwrap();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&value).unwrap();
    let user = kubeconfig.auth_infos[0].auth_info.clone().unwrap();
    assert_eq!(
        user.token_file.as_deref(),
        Some("/var/run/hostplane/agent/token")
    );
    assert!(user.token.is_none());
    let cluster = kubeconfig.clusters[0].cluster.clone().unwrap();
    assert_eq!(
        cluster.server.as_deref(),
        Some("https://t-apiserver.ns.svc.cluster.local:6443")
    );
    assert_eq!(
        secret.metadata.annotations.as_ref().unwrap()[gitops::RENEW_AT],
        "2026-11-23T12:40:00Z"
    );
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-1"
    );
    t.asleep = true;
    for d in gitops::agent_workloads(&t, "example.org/flux-agent:v1")
        .unwrap()
        .deployments
    {
        assert_eq!(d.spec.unwrap().replicas, Some(0));
    }
}

#[test]
fn flux_objects_follow_the_source_in_the_spec() {
    let agent = |source: serde_json::Value| -> hostplane_api::v1alpha1::AgentSpec {
        serde_json::from_value(json!({"source": source})).unwrap()
    };
    let git = agent(json!({"git": {"url": "http://git.example/r.git"}}));
    let source = gitops::tenant_source(&git);
    assert_eq!(source["kind"], "GitRepository");
    assert_eq!(source["spec"]["ref"], json!({"branch": "main"}));
    assert_eq!(source["spec"]["interval"], "1m");
    let tagged = agent(json!({"git": {"url": "http://g/r.git", "branch": "dev", "tag": "v1"}}));
    assert_eq!(
        gitops::tenant_source(&tagged)["spec"]["ref"],
        json!({"tag": "v1"})
    );
    let oci = agent(json!({"oci": {"url": "oci://r.example/addons", "tag": "v2"}}));
    let source = gitops::tenant_source(&oci);
    assert_eq!(source["kind"], "OCIRepository");
    assert_eq!(source["spec"]["ref"], json!({"tag": "v2"}));
    let k = gitops::tenant_kustomization(&oci);
    assert_eq!(
        k["spec"]["sourceRef"],
        json!({"kind": "OCIRepository", "name": "hostplane"})
    );
    assert_eq!(k["spec"]["path"], "./");
    assert_eq!(k["spec"]["prune"], true);
    assert_eq!(
        gitops::describe_source(&tagged),
        "git http://g/r.git tag v1"
    );
}

#[test]
fn registrations_write_what_each_agent_reads() {
    let t = tenant(&json!({"version": "1.36.3"}));
    let server = t.endpoint_url();
    // Argo CD, in its own namespace: its documented cluster Secret, not owned (other namespace)
    // but labelled with the TCP's uid for the sweep.
    let argo = objects(&t, "ArgoCD", Some("argocd"));
    let s = &argo.secret;
    assert_eq!(s.metadata.namespace.as_deref(), Some("argocd"));
    assert_eq!(s.metadata.name.as_deref(), Some("t-r"));
    assert!(s.metadata.owner_references.is_none());
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
    assert_eq!(labels[gitops::REGISTRATION_OF], "uid-1");
    let data = s.data.as_ref().unwrap();
    assert_eq!(data["server"].0, server.as_bytes());
    let config: serde_json::Value = serde_json::from_slice(&data["config"].0).unwrap();
    assert_eq!(config["bearerToken"], "tok.en.value");
    assert_eq!(config["tlsClientConfig"]["insecure"], false);
    let ca = STANDARD
        .decode(config["tlsClientConfig"]["caData"].as_str().unwrap())
        .unwrap();
    assert_eq!(ca, CA_PEM.as_bytes());
    // Flux / Cluster API, in the TCP's namespace: owned, the Cluster API contract.
    for agent in ["Flux", "ClusterAPI"] {
        let o = objects(&t, agent, None);
        assert_eq!(o.secret.metadata.name.as_deref(), Some("t-r-kubeconfig"));
        assert_eq!(o.secret.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
        assert_eq!(
            o.secret.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        let value = String::from_utf8(o.secret.data.as_ref().unwrap()["value"].0.clone()).unwrap();
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&value).unwrap();
        let user = kubeconfig.auth_infos[0].auth_info.clone().unwrap();
        assert!(user.token.is_some() && value.contains("token: tok.en.value"));
        assert!(o.sveltos_cluster.is_none());
    }
    // Sveltos: a SveltosCluster naming its kubeconfig Secret and key.
    let o = objects(&t, "Sveltos", Some("projectsveltos"));
    let cluster = o.sveltos_cluster.unwrap();
    assert_eq!(cluster["kind"], "SveltosCluster");
    assert_eq!(cluster["metadata"]["namespace"], "projectsveltos");
    assert_eq!(cluster["spec"]["kubeconfigName"], "t-r-sveltos-kubeconfig");
    assert_eq!(
        o.secret.metadata.name.as_deref(),
        Some("t-r-sveltos-kubeconfig")
    );
    assert!(o.secret.data.as_ref().unwrap().contains_key("kubeconfig"));
    // Every registration's Secret keeps its token under `token` too (read back to keep it).
    for agent in ["ArgoCD", "Flux", "ClusterAPI", "Sveltos"] {
        let o = objects(&t, agent, None);
        assert_eq!(
            o.secret.data.as_ref().unwrap()["token"].0,
            b"tok.en.value",
            "{agent}"
        );
    }
}

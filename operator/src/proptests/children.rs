//! `Tenant::new` and the builders: every spec the API server admits becomes a tenant (or, for a
//! service CIDR too small to hold a Service IP, an InvalidSpec error) whose objects are owned,
//! labelled, validly named and consistent with each other; a spec that breaks the rules (an object
//! stored before a rule existed) and any metadata.name give errors, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hostplane_api::v1alpha1::TenantControlPlane;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::strategies::{admit, config, ip, spec, spec_schema};
use super::{fixture_pki, t0};
use crate::build::backup::{self as backup_build, JobInputs};
use crate::build::node_bootstrap::{self, BootstrapToken};
use crate::build::{self, BuildError, Children, Endpoint, MANAGED_BY, TENANT_LABEL, Tenant};
use crate::pki::{self, Action, ExistingSecrets, PkiError, San};

const KEY: [u8; 32] = [7; 32];

thread_local! {
    static PKI: crate::pki::Pki = fixture_pki();
}

// ---------------------------------------------------------------------------------------------
// inputs
// ---------------------------------------------------------------------------------------------

/// A metadata.name every object the operator derives from can carry: a DNS-1035 label (Service
/// names) of at most 47 characters (`<tcp>-etcd` is a StatefulSet, whose name Kubernetes keeps to
/// 52 so that the pods' controller-revision-hash label fits in 63).
fn supported_name() -> impl Strategy<Value = String> {
    "[a-z]([-a-z0-9]{0,45}[a-z0-9])?"
}

/// Any metadata.name the API server takes for a TenantControlPlane: a DNS-1123 subdomain.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        supported_name(),
        "[0-9][-a-z0-9]{0,10}[a-z0-9]",
        "[a-z0-9]([-a-z0-9]{40,70}[a-z0-9])?",
        "[a-z0-9]{1,10}([.][a-z0-9]{1,10}){1,3}",
        (1usize..=4).prop_map(|n| vec!["a".repeat(62); n].join(".")),
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
}

fn uid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

/// The seed's DNS domain (the operator's setting).
fn seed_domain() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "cluster.local",
        "k8s.example.com",
        "a",
        "seed-1.internal",
    ])
    .prop_map(str::to_owned)
}

/// The endpoint the controller finds: none yet, or the Service's address (an IP or a load
/// balancer's host name) and port.
fn endpoint() -> impl Strategy<Value = Option<Endpoint>> {
    prop::option::of(
        (
            prop_oneof![
                ip(false),
                "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?([.][a-z0-9]{1,10}){0,3}"
            ],
            any::<u16>(),
        )
            .prop_map(|(host, port)| Endpoint { host, port }),
    )
}

fn tcp(name: &str, namespace: &str, uid: &str, spec: &Value) -> TenantControlPlane {
    serde_json::from_value(json!({
        "apiVersion": "hostplane.dev/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// what Kubernetes requires
// ---------------------------------------------------------------------------------------------

fn dns1123_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns1035_label(s: &str) -> bool {
    dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Kubernetes' IsDNS1123Subdomain: at most 253 characters in all, labels of any length.
fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))))
}

/// `(address, prefix)` of a CIDR the API server admitted.
fn network(cidr: &str) -> (IpAddr, u32) {
    let (addr, prefix) = cidr.split_once('/').unwrap();
    (addr.parse().unwrap(), prefix.parse().unwrap())
}

fn contains(cidr: &str, ip: IpAddr) -> bool {
    match (network(cidr), ip) {
        ((IpAddr::V4(net), prefix), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        ((IpAddr::V6(net), prefix), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Whether the CIDR holds a network address, the `kubernetes` Service IP and 9 more (the default
/// DNS Service IP is the 10th address).
fn holds_default_service_ips(cidr: &str) -> bool {
    match network(cidr) {
        (IpAddr::V4(_), prefix) => prefix <= 28,
        (IpAddr::V6(_), prefix) => prefix <= 124,
    }
}

/// Metadata of an object the operator owns in the seed.
fn check_owned(meta: &ObjectMeta, tenant: &Tenant) -> Result<(), TestCaseError> {
    let name = meta.name.as_deref().unwrap_or_default();
    prop_assert!(dns1123_subdomain(name), "name {:?}", name);
    prop_assert!(
        name.contains(&tenant.name),
        "{name} is not named after the tenant"
    );
    prop_assert_eq!(
        meta.namespace.as_deref(),
        Some(tenant.namespace.as_str()),
        "{}",
        name
    );
    prop_assert_eq!(
        meta.owner_references.as_deref(),
        Some(std::slice::from_ref(&tenant.owner)),
        "{}",
        name
    );
    let labels = meta.labels.clone().unwrap_or_default();
    prop_assert_eq!(labels.get(TENANT_LABEL), Some(&tenant.name), "{}", name);
    prop_assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some(MANAGED_BY)
    );
    check_labels(&labels)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    for (k, v) in labels {
        prop_assert!(label_value(v), "label {}={:?}", k, v);
    }
    Ok(())
}

fn subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A workload's pod template: labels (selected by its own selector), the config hash, and the
/// Secrets it mounts (all built).
fn check_template(
    what: &str,
    selector: Option<&BTreeMap<String, String>>,
    template: &PodTemplateSpec,
    secrets: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, TestCaseError> {
    let meta = template.metadata.clone().unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    check_labels(&labels)?;
    prop_assert!(
        selector.is_some_and(|s| subset(s, &labels)),
        "{}: selector {:?} does not select its pods {:?}",
        what,
        selector,
        labels
    );
    prop_assert!(
        meta.annotations
            .unwrap_or_default()
            .contains_key("hostplane.dev/config-hash"),
        "{} has no config hash",
        what
    );
    let spec = template.spec.clone().unwrap_or_default();
    for volume in spec.volumes.iter().flatten() {
        if let Some(secret) = volume.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            prop_assert!(
                secrets.contains(secret),
                "{} mounts Secret {} that is not built",
                what,
                secret
            );
        }
    }
    for container in &spec.containers {
        let image = container.image.as_deref().unwrap_or_default();
        prop_assert!(!image.is_empty(), "{} has no image", what);
    }
    Ok(labels)
}

fn deployment_parts(d: &Deployment) -> (Option<&BTreeMap<String, String>>, PodTemplateSpec, i32) {
    let spec = d.spec.as_ref();
    (
        spec.and_then(|s| s.selector.match_labels.as_ref()),
        spec.map(|s| s.template.clone()).unwrap_or_default(),
        spec.and_then(|s| s.replicas).unwrap_or(1),
    )
}

fn statefulset_parts(s: &StatefulSet) -> (Option<&BTreeMap<String, String>>, PodTemplateSpec, i32) {
    let spec = s.spec.as_ref();
    (
        spec.and_then(|s| s.selector.match_labels.as_ref()),
        spec.map(|s| s.template.clone()).unwrap_or_default(),
        spec.and_then(|s| s.replicas).unwrap_or(1),
    )
}

/// A PodDisruptionBudget for each workload that runs more than one pod, and a NetworkPolicy for
/// each workload: each selects the pods of exactly one workload.
fn check_budgets_and_policies(
    tenant: &Tenant,
    pdbs: &[PodDisruptionBudget],
    network_policies: &[NetworkPolicy],
    pods: &[BTreeMap<String, String>],
) -> Result<(), TestCaseError> {
    let cp = &tenant.spec.control_plane;
    let managed = tenant.spec.etcd.managed.clone().unwrap_or_default();
    let wanted_pdbs = [
        cp.api_server.replicas,
        cp.controller_manager.replicas,
        cp.scheduler.replicas,
        managed.replicas,
    ]
    .iter()
    .filter(|r| tenant.replicas(**r) > 1)
    .count();
    prop_assert_eq!(pdbs.len(), wanted_pdbs);
    for pdb in pdbs {
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        prop_assert_eq!(pods.iter().filter(|p| subset(&selector, p)).count(), 1);
    }
    // Each NetworkPolicy protects the pods of one workload.
    for policy in network_policies {
        let selector = policy
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        prop_assert_eq!(
            pods.iter().filter(|p| subset(&selector, p)).count(),
            1,
            "NetworkPolicy {} selects {:?}",
            policy.name_any(),
            selector
        );
    }
    Ok(())
}

/// Everything `build` returns, checked against the tenant.
fn check_children(tenant: &Tenant, children: &Children) -> Result<(), TestCaseError> {
    let Children {
        secrets,
        services,
        statefulsets,
        deployments,
        pdbs,
        network_policies,
    } = children;
    let secret_names: BTreeSet<String> = secrets.iter().map(kube::ResourceExt::name_any).collect();
    prop_assert_eq!(secret_names.len(), secrets.len(), "two Secrets of one name");
    for meta in children.metas() {
        check_owned(meta, tenant)?;
    }
    let mut pods: Vec<BTreeMap<String, String>> = Vec::new();
    let mut replicas = Vec::new();
    for d in deployments {
        let (selector, template, n) = deployment_parts(d);
        pods.push(check_template(
            &d.name_any(),
            selector,
            &template,
            &secret_names,
        )?);
        replicas.push(n);
    }
    let managed = tenant.spec.etcd.managed.clone().unwrap_or_default();
    prop_assert_eq!(statefulsets.len(), 1);
    for s in statefulsets {
        let name = s.name_any();
        // Kubernetes: the pods' controller-revision-hash label is `<name>-<10 characters>`, and
        // every pod `<name>-<ordinal>` is a host name.
        prop_assert!(name.len() <= 52, "StatefulSet name {name} is too long");
        let (selector, template, n) = statefulset_parts(s);
        pods.push(check_template(&name, selector, &template, &secret_names)?);
        prop_assert_eq!(n, tenant.replicas(managed.replicas));
        for ordinal in 0..managed.replicas {
            let pod = format!("{name}-{ordinal}");
            prop_assert!(dns1123_label(&pod), "pod {}", pod);
        }
    }
    let cp = &tenant.spec.control_plane;
    let mut wanted = vec![
        tenant.replicas(cp.api_server.replicas),
        tenant.replicas(cp.controller_manager.replicas),
        tenant.replicas(cp.scheduler.replicas),
    ];
    wanted.sort_unstable();
    replicas.sort_unstable();
    prop_assert_eq!(&replicas, &wanted, "Deployment replicas");
    for svc in services {
        let name = svc.name_any();
        prop_assert!(dns1035_label(&name), "Service name {:?}", name);
        let selector = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        prop_assert_eq!(
            pods.iter().filter(|p| subset(&selector, p)).count(),
            1,
            "Service {} selects {:?}",
            name,
            selector
        );
    }
    check_budgets_and_policies(tenant, pdbs, network_policies, &pods)?;
    let prefix = format!("{}/", tenant.registry.trim_end_matches('/'));
    for d in deployments {
        let (_, template, _) = deployment_parts(d);
        for c in template.spec.unwrap_or_default().containers {
            prop_assert!(c.image.unwrap_or_default().starts_with(&prefix));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// An admitted spec (as the API server stores it, defaults filled in) with a supported name:
    /// `Tenant::new` accepts it unless its service CIDR cannot hold the `kubernetes` Service IP
    /// or, with no dnsServiceIP given, the DNS Service IP (the 10th address); both IPs lie in the
    /// service CIDR; the PKI plan issues everything, or refuses with InvalidInput
    /// exactly when a certSAN or the cluster domain is no DNS name or IP a certificate can carry;
    /// and every object built is owned, labelled, validly named, consistent (selectors select
    /// their pods, mounted Secrets exist, replicas and PodDisruptionBudgets as asked) and the same
    /// when built again.
    #[test]
    fn an_admitted_spec_builds_owned_consistent_objects(
        spec in spec(false),
        name in supported_name(),
        namespace in namespace(),
        uid in uid(),
        seed in seed_domain(),
        endpoint in endpoint(),
        asleep in any::<bool>(),
    ) {
        let Some(stored) = admit(&spec) else {
            return Err(TestCaseError::reject("not admitted"));
        };
        let tcp = tcp(&name, &namespace, &uid, &stored);
        let net = &tcp.spec.network;
        let room = (matches!(network(&net.service_cidr), (IpAddr::V4(_), p) if p <= 30)
            || matches!(network(&net.service_cidr), (IpAddr::V6(_), p) if p <= 126))
            && (net.dns_service_ip.is_some() || holds_default_service_ips(&net.service_cidr));
        let mut tenant = match Tenant::new(&tcp, &seed, endpoint.clone()) {
            Ok(tenant) => tenant,
            Err(BuildError::Network { field: "serviceCIDR", .. }) if !room => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("admitted spec refused: {e}"))),
        };
        prop_assert!(room, "{} accepted", net.service_cidr);
        prop_assert_eq!(&tenant.owner.uid, &uid);
        prop_assert_eq!(&tenant.owner.name, &name);
        prop_assert!(contains(&net.service_cidr, tenant.kubernetes_service_ip));
        prop_assert!(
            contains(&net.service_cidr, tenant.dns_service_ip),
            "DNS Service IP {} outside {}", tenant.dns_service_ip, net.service_cidr
        );

        let usable = |s: &String| San::parse(s).is_ok();
        let domain_ok = matches!(San::parse(&net.cluster_domain), Ok(San::Dns(_)));
        let sans_ok = tcp.spec.control_plane.cert_sans.iter().all(usable) && domain_ok;
        match pki::plan(&tenant.pki_inputs(), &ExistingSecrets::new(), t0()) {
            Ok(plan) => {
                prop_assert!(sans_ok, "unusable SANs planned");
                prop_assert!(plan.actions().iter().all(|(_, a)| **a == Action::Issue));
            }
            Err(PkiError::InvalidInput(why)) => prop_assert!(!sans_ok, "{}", why),
            Err(e) => return Err(TestCaseError::fail(format!("PKI plan: {e}"))),
        }

        tenant.asleep = asleep;
        let children = PKI.with(|pki| build::build(&tenant, pki, &KEY))
            .map_err(|e| TestCaseError::fail(format!("build: {e}")))?;
        check_children(&tenant, &children)?;
        let again = PKI.with(|pki| build::build(&tenant, pki, &KEY)).unwrap();
        prop_assert_eq!(format!("{children:?}"), format!("{again:?}"), "not deterministic");

        // What else the controller builds from the same tenant.
        for member in build::etcd::member_names(&tenant) {
            let claim = build::etcd::member_claim(&tenant, &member)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_owned(&claim.metadata, &tenant)?;
        }
        if let Some(spec) = &tenant.spec.backup {
            let claim = backup_build::volume_claim(&tenant, spec)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_owned(&claim.metadata, &tenant)?;
            let job_name = format!("{}-backup", tenant.name);
            let inputs = JobInputs { job: &job_name, snapshot: &job_name, operator_image: "op:1" };
            let job = backup_build::job(&tenant, spec, &inputs)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_owned(&job.metadata, &tenant)?;
        }
        build::addons::coredns(&tenant).map_err(|e| TestCaseError::fail(e.to_string()))?;
        build::addons::kube_proxy(&tenant).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = BootstrapToken::from_chars(b"abcdef0123456789abcdef", t0()).unwrap();
        let join = PKI.with(|pki| node_bootstrap::join_secret(&tenant, pki, &token))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_owned(&join.metadata, &tenant)?;
        PKI.with(|pki| node_bootstrap::tenant_objects(&tenant, pki, &token))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    /// Any spec (rules broken: an object stored before a rule existed) with any metadata.name the
    /// API server takes: reading it, `Tenant::new`, the PKI plan, `build` and the schedules give
    /// values or errors, never a panic; a name that is no DNS label of at most 63 characters is
    /// refused by the PKI plan.
    #[test]
    fn any_stored_object_gives_values_or_errors(
        spec in spec(true),
        name in any_name(),
        namespace in namespace(),
        endpoint in endpoint(),
    ) {
        let stored = kube::core::cel::apply_defaults(spec_schema(), &spec);
        let object = json!({
            "apiVersion": "hostplane.dev/v1alpha1",
            "kind": "TenantControlPlane",
            "metadata": {"name": name, "namespace": namespace, "uid": "u"},
            "spec": stored,
        });
        // A value serde cannot read (an unknown enum value, a number out of range) is the
        // watcher's error.
        let Ok(tcp) = serde_json::from_value::<TenantControlPlane>(object) else {
            return Ok(());
        };
        let now = jiff::Timestamp::from_second(t0().unix_timestamp()).unwrap();
        let _ = crate::hibernation::decide(tcp.spec.hibernation.as_ref(), now);
        if let Some(backup) = &tcp.spec.backup {
            let _ = crate::backup::plan(backup, None, Some("x"), now, now);
        }
        let _ = tcp.spec.nodes.bootstrap_token_ttl_seconds();
        let Ok(tenant) = Tenant::new(&tcp, "cluster.local", endpoint) else {
            return Ok(());
        };
        let planned = pki::plan(&tenant.pki_inputs(), &ExistingSecrets::new(), t0());
        if !dns1123_label(&name) {
            prop_assert!(
                matches!(planned, Err(PkiError::InvalidInput(_))),
                "{:?}",
                planned.map(|_| ())
            );
        }
        let _ = PKI.with(|pki| build::build(&tenant, pki, &KEY));
        let _ = build::addons::coredns(&tenant);
        let _ = build::addons::kube_proxy(&tenant);
        if let Some(backup) = &tenant.spec.backup {
            let _ = backup_build::volume_claim(&tenant, backup);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// what the properties found, kept as plain cases
// ---------------------------------------------------------------------------------------------

fn tenant_of(spec: &Value) -> Result<Tenant, BuildError> {
    Tenant::new(&tcp("t", "ns", "u", spec), "cluster.local", None)
}

/// The API admits a /29 or /30 service CIDR (IPv6 /125, /126) without dnsServiceIP; the DNS
/// Service IP derived from it (the 10th address) lay outside it, so CoreDNS's Service could never
/// be made in the tenant. Now the spec is refused with what to do.
#[test]
fn a_service_cidr_without_room_for_the_dns_service_ip_is_refused() {
    for cidr in ["10.96.0.0/30", "10.96.0.0/29", "fd00::/126", "fd00::/125"] {
        let err =
            tenant_of(&json!({"version": "1.36.3", "network": {"serviceCIDR": cidr}})).unwrap_err();
        assert!(
            matches!(&err, BuildError::Network { field: "serviceCIDR", value, .. }
                if value == cidr),
            "{err}"
        );
        assert!(
            err.to_string().contains("spec.network.dnsServiceIP"),
            "{err}"
        );
    }
    let with_dns = json!({
        "version": "1.36.3",
        "network": {"serviceCIDR": "10.96.0.0/30", "dnsServiceIP": "10.96.0.2"},
    });
    assert_eq!(
        tenant_of(&with_dns).unwrap().dns_service_ip.to_string(),
        "10.96.0.2"
    );
    for (cidr, dns) in [("10.96.0.0/28", "10.96.0.10"), ("fd00::/124", "fd00::a")] {
        let spec = json!({"version": "1.36.3", "network": {"serviceCIDR": cidr}});
        assert_eq!(tenant_of(&spec).unwrap().dns_service_ip.to_string(), dns);
    }
}

/// An etcd replica count the API's rule refuses (an object stored past it) made the builders
/// allocate a member name, URL and flag per replica: 1965511092 of them. Now it is refused.
#[test]
fn etcd_replicas_the_rules_refuse_are_not_built() {
    for replicas in [1_965_511_092, 7, 2, 0, -1, i32::MIN] {
        let spec = json!({"version": "1.36.3", "etcd": {"managed": {"replicas": replicas}}});
        assert!(
            matches!(tenant_of(&spec), Err(BuildError::EtcdReplicas(r)) if r == replicas),
            "{replicas}"
        );
    }
    for replicas in [1, 3, 5] {
        let spec = json!({"version": "1.36.3", "etcd": {"managed": {"replicas": replicas}}});
        assert!(tenant_of(&spec).is_ok(), "{replicas}");
    }
}

//! The schema's defaults and every CEL rule, evaluated locally by kube's CEL (kube-cel) through
//! `TenantControlPlaneSpec::validate_cel(spec, old)`, which applies the schema defaults first, as
//! the API server does. OpenAPI bounds (minimum, maxItems, enum) are not evaluated locally; their
//! presence in the schema is asserted here, and the e2e checks the API server enforces them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResourceExt as _;
use kube::core::cel::{ErrorKind, apply_defaults};
use serde_json::{Value, json};

use super::*;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// `{version: "1.36.3"}` with `patch` merged in (objects merge recursively, `null` deletes).
fn spec(patch: &Value) -> Value {
    let mut spec = json!({"version": "1.36.3"});
    merge(&mut spec, patch);
    spec
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Every rule that fails, as `(field path, message)`. A rule the local evaluator cannot run (an
/// unsupported function, a compile error) fails the test instead of counting as a refusal.
fn failures(spec: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    match TenantControlPlaneSpec::validate_cel(spec, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                assert_eq!(
                    e.kind,
                    ErrorKind::ValidationFailure,
                    "rule `{}` could not be evaluated locally: {e}",
                    e.rule
                );
                (e.field_path.clone(), e.message.clone())
            })
            .collect(),
    }
}

#[track_caller]
fn assert_accepted(spec: &Value) {
    assert_eq!(failures(spec, None), [], "spec {spec} must be accepted");
}

#[track_caller]
fn assert_refused(spec: &Value, path: &str, message: &str) {
    assert_eq!(
        failures(spec, None),
        [(path.to_owned(), message.to_owned())],
        "spec {spec} must be refused by exactly this rule"
    );
}

#[track_caller]
fn assert_update_accepted(old: &Value, new: &Value) {
    assert_eq!(
        failures(new, Some(old)),
        [],
        "update {old} -> {new} must be accepted"
    );
}

#[track_caller]
fn assert_update_refused(old: &Value, new: &Value, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(
        failures(new, Some(old)),
        expected,
        "update {old} -> {new} must be refused by exactly these rules"
    );
}

fn crd_json() -> Value {
    serde_json::to_value(TenantControlPlane::crd()).unwrap()
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn root_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Calls `f(path, schema)` for every schema node under `schema`.
fn walk(path: &str, schema: &Value, f: &mut dyn FnMut(&str, &Value)) {
    f(path, schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            walk(&format!("{path}.{name}"), prop, f);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(&format!("{path}[]"), items, f);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk(&format!("{path}{{}}"), additional, f);
    }
}

// ---------------------------------------------------------------------------------------------
// defaults and serde
// ---------------------------------------------------------------------------------------------

fn default_spec() -> TenantControlPlaneSpec {
    TenantControlPlaneSpec {
        version: "1.36.3".into(),
        control_plane: ControlPlaneSpec {
            api_server: ComponentSpec {
                replicas: 1,
                resources: None,
                extra_args: BTreeMap::new(),
            },
            controller_manager: ComponentSpec::default(),
            scheduler: ComponentSpec::default(),
            service: ServiceSpec {
                type_: ServiceType::ClusterIP,
                port: 6443,
                node_port: None,
            },
            cert_sans: Vec::new(),
        },
        etcd: EtcdSpec {
            managed: Some(ManagedEtcd {
                replicas: 1,
                storage: EtcdStorage {
                    size: Quantity("1Gi".into()),
                    storage_class_name: None,
                },
                resources: None,
                restore_from: None,
            }),
        },
        network: NetworkSpec {
            service_cidr: "10.96.0.0/16".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: None,
            cluster_domain: "cluster.local".into(),
        },
        nodes: NodesSpec {
            bootstrap_token_ttl: "24h".into(),
        },
        addons: AddonsSpec::default(),
        profile: Profile::Standard,
        pki: PkiSpec::default(),
        hibernation: None,
        backup: None,
        gitops: None,
        registry: None,
    }
}

#[test]
fn minimal_spec_deserialises_with_defaults() {
    let parsed: TenantControlPlaneSpec = serde_json::from_value(spec(&json!({}))).unwrap();
    assert_eq!(parsed, default_spec());
    let from_yaml: TenantControlPlaneSpec = serde_yaml_ng::from_str("version: 1.36.3\n").unwrap();
    assert_eq!(from_yaml, default_spec());
}

/// The API server fills in the schema's `default`s (emulated by kube-cel's `apply_defaults`): a
/// minimal spec must come back as exactly the spec serde defaults to, so the operator and
/// `kubectl get -o yaml` agree.
#[test]
fn schema_defaults_match_serde_defaults() {
    let defaulted = apply_defaults(&spec_schema(), &spec(&json!({})));
    assert_eq!(defaulted, serde_json::to_value(default_spec()).unwrap());
}

/// A partly given object gets the rest of its defaults, at every depth.
#[test]
fn schema_defaults_fill_partial_objects() {
    let defaulted = apply_defaults(
        &spec_schema(),
        &spec(&json!({
            "controlPlane": {"apiServer": {"replicas": 3}, "service": {"type": "NodePort"}},
            "etcd": {"managed": {"replicas": 3}},
            "network": {"podCIDR": "10.32.0.0/16"},
        })),
    );
    let parsed: TenantControlPlaneSpec = serde_json::from_value(defaulted).unwrap();
    let mut expected = default_spec();
    expected.control_plane.api_server.replicas = 3;
    expected.control_plane.service.type_ = ServiceType::NodePort;
    if let Some(managed) = expected.etcd.managed.as_mut() {
        managed.replicas = 3;
    }
    expected.network.pod_cidr = "10.32.0.0/16".into();
    assert_eq!(parsed, expected);
}

fn full_gitops() -> crate::v1alpha1::GitOpsSpec {
    crate::v1alpha1::GitOpsSpec {
        agent: Some(crate::v1alpha1::AgentSpec {
            source: crate::v1alpha1::AgentSource {
                git: Some(crate::v1alpha1::GitSource {
                    url: "https://git.example.com/addons.git".into(),
                    branch: Some("main".into()),
                    tag: None,
                }),
                oci: None,
            },
            path: "./addons".into(),
            interval: "30s".into(),
            prune: true,
        }),
        registrations: vec![crate::v1alpha1::Registration {
            name: "argo".into(),
            agent: crate::v1alpha1::RegistrationAgent::ArgoCD,
            namespace: Some("argocd".into()),
            role: "view".into(),
            token_ttl: "90m".into(),
        }],
    }
}

fn full_spec() -> TenantControlPlaneSpec {
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("250m".into())),
            ("memory".to_owned(), Quantity("512Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("1Gi".into()),
        )])),
        ..ResourceRequirements::default()
    };
    TenantControlPlaneSpec {
        version: "1.35.4".into(),
        control_plane: ControlPlaneSpec {
            api_server: ComponentSpec {
                replicas: 3,
                resources: Some(resources.clone()),
                extra_args: BTreeMap::from([("audit-log-maxage".to_owned(), "7".to_owned())]),
            },
            controller_manager: ComponentSpec {
                replicas: 2,
                resources: Some(resources.clone()),
                extra_args: BTreeMap::from([("v".to_owned(), "2".to_owned())]),
            },
            scheduler: ComponentSpec {
                replicas: 2,
                resources: None,
                extra_args: BTreeMap::new(),
            },
            service: ServiceSpec {
                type_: ServiceType::NodePort,
                port: 443,
                node_port: Some(30443),
            },
            cert_sans: vec!["api.tenant-a.example.com".into(), "192.0.2.10".into()],
        },
        etcd: EtcdSpec {
            managed: Some(ManagedEtcd {
                replicas: 3,
                storage: EtcdStorage {
                    size: Quantity("10Gi".into()),
                    storage_class_name: Some("fast".into()),
                },
                resources: Some(resources),
                restore_from: Some(RestoreFrom {
                    tenant: "tenant-b".into(),
                    snapshot: "tenant-b-20261123-120000.db".into(),
                }),
            }),
        },
        network: NetworkSpec {
            service_cidr: "10.112.0.0/12".into(),
            pod_cidr: "10.0.0.0/12".into(),
            dns_service_ip: Some("10.112.0.53".into()),
            cluster_domain: "tenant-a.internal".into(),
        },
        nodes: NodesSpec {
            bootstrap_token_ttl: "90m".into(),
        },
        addons: AddonsSpec {
            core_dns: AddonSpec { enabled: true },
            kube_proxy: AddonSpec { enabled: false },
        },
        profile: Profile::Small,
        pki: PkiSpec {
            certificate_validity: "90m".into(),
            ca_validity: "48h".into(),
        },
        hibernation: Some(HibernationSpec {
            enabled: Some(false),
            schedules: vec![HibernationSchedule {
                start: Some("0 20 * * 1-5".into()),
                end: Some("0 7 * * 1-5".into()),
                location: Some("Europe/Berlin".into()),
            }],
        }),
        backup: Some(BackupSpec {
            schedule: Some("0 */6 * * *".into()),
            location: Some("UTC".into()),
            retain: 3,
            storage: EtcdStorage {
                size: Quantity("2Gi".into()),
                storage_class_name: None,
            },
            s3: Some(BackupS3 {
                endpoint: "https://s3.eu-central-1.amazonaws.com".into(),
                bucket: "tenant-backups".into(),
                region: "eu-central-1".into(),
                prefix: Some("prod/demo/".into()),
                credentials_secret_ref: SecretReference {
                    name: "backup-s3".into(),
                },
            }),
        }),
        gitops: Some(full_gitops()),
        registry: Some("registry.example.com/mirror".into()),
    }
}

#[test]
fn full_spec_round_trips_through_json_and_yaml() {
    let spec = full_spec();
    let json = serde_json::to_value(&spec).unwrap();
    // The JSON names users write (camelCase, and the Kubernetes spellings of the acronyms).
    for pointer in [
        "/controlPlane/apiServer/extraArgs",
        "/controlPlane/controllerManager",
        "/controlPlane/service/type",
        "/controlPlane/service/nodePort",
        "/controlPlane/certSANs",
        "/etcd/managed/storage/storageClassName",
        "/network/serviceCIDR",
        "/network/podCIDR",
        "/network/dnsServiceIP",
        "/network/clusterDomain",
        "/profile",
        "/hibernation/schedules/0/location",
        "/backup/storage/size",
    ] {
        assert!(
            json.pointer(pointer).is_some(),
            "{pointer} missing in {json}"
        );
    }
    assert_eq!(
        serde_json::from_value::<TenantControlPlaneSpec>(json.clone()).unwrap(),
        spec
    );
    let yaml = serde_yaml_ng::to_string(&spec).unwrap();
    assert_eq!(
        serde_yaml_ng::from_str::<TenantControlPlaneSpec>(&yaml).unwrap(),
        spec
    );
    // And the full spec is valid.
    assert_accepted(&json);
}

#[test]
fn status_round_trips() {
    let status: TenantControlPlaneStatus = serde_json::from_value(json!({
        "phase": "Ready",
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "",
            "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 2,
        }],
        "observedGeneration": 2,
        "endpoint": "https://tenant-a-apiserver.team-a.svc:6443",
        "version": "1.36.3",
        "kubeconfigSecretRef": {"name": "tenant-a-kubeconfig"},
    }))
    .unwrap();
    assert_eq!(status.phase, Some(Phase::Ready));
    assert_eq!(status.conditions[0].type_, "Ready");
    let again: TenantControlPlaneStatus =
        serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
    assert_eq!(again, status);
    assert_eq!(
        serde_json::to_value(TenantControlPlaneStatus::default()).unwrap(),
        json!({})
    );
}

// ---------------------------------------------------------------------------------------------
// version
// ---------------------------------------------------------------------------------------------

#[test]
fn version_accepts_supported_minors() {
    for version in ["1.35.0", "1.35.4", "1.36.3", "1.36.10", "1.36.1234"] {
        assert_accepted(&spec(&json!({"version": version})));
    }
}

#[test]
fn version_refuses_malformed_or_unsupported() {
    let message = version_format_message();
    assert_eq!(
        message,
        "version must look like 1.36.0 (1.<minor>.<patch>) and be a supported minor (1.35, 1.36)"
    );
    for version in [
        "1.37.0",
        "1.34.9",
        "v1.36.3",
        "1.36",
        "1.36.03",
        "2.36.1",
        "1.36.3-rc.1",
        "1.36.3 ",
        "",
        "1.360.1",
    ] {
        assert_refused(&spec(&json!({"version": version})), "version", &message);
    }
}

#[test]
fn version_upgrades_by_patch_or_one_minor() {
    for (old, new) in [
        ("1.35.4", "1.36.3"),
        ("1.35.4", "1.35.5"),
        ("1.36.2", "1.36.3"),
        ("1.36.3", "1.36.3"),
    ] {
        assert_update_accepted(
            &spec(&json!({"version": old})),
            &spec(&json!({"version": new})),
        );
    }
}

#[test]
fn version_refuses_downgrades() {
    for (old, new) in [
        ("1.36.3", "1.36.2"),
        ("1.36.3", "1.35.4"),
        ("1.36.0", "1.35.9"),
    ] {
        assert_update_refused(
            &spec(&json!({"version": old})),
            &spec(&json!({"version": new})),
            &[("version", MSG_VERSION_DOWNGRADE)],
        );
    }
}

#[test]
fn version_refuses_skipped_minors() {
    // 1.34 is not supported any more, but an object stored before it was dropped may still say
    // so; the upgrade from it must go through 1.35.
    assert_update_refused(
        &spec(&json!({"version": "1.34.2"})),
        &spec(&json!({"version": "1.36.3"})),
        &[("version", MSG_VERSION_SKIPPED_MINOR)],
    );
    // With the supported minors of today a skip also fails the format rule; both messages show.
    let format = version_format_message();
    assert_update_refused(
        &spec(&json!({"version": "1.35.4"})),
        &spec(&json!({"version": "1.37.0"})),
        &[
            ("version", format.as_str()),
            ("version", MSG_VERSION_SKIPPED_MINOR),
        ],
    );
}

/// A malformed version fails the format rule only: the transition rules stay quiet rather than
/// raising evaluation errors on `semver()`.
#[test]
fn version_transition_rules_ignore_malformed_versions() {
    let format = version_format_message();
    assert_update_refused(
        &spec(&json!({"version": "1.36.3"})),
        &spec(&json!({"version": "v1.35"})),
        &[("version", format.as_str())],
    );
}

// ---------------------------------------------------------------------------------------------
// controlPlane
// ---------------------------------------------------------------------------------------------

#[test]
fn service_node_port_only_with_type_node_port() {
    assert_accepted(&spec(
        &json!({"controlPlane": {"service": {"type": "NodePort", "nodePort": 30443}}}),
    ));
    assert_accepted(&spec(
        &json!({"controlPlane": {"service": {"type": "NodePort"}}}),
    ));
    assert_accepted(&spec(
        &json!({"controlPlane": {"service": {"type": "LoadBalancer"}}}),
    ));
    for service in [
        json!({"nodePort": 30443}),
        json!({"type": "ClusterIP", "nodePort": 30443}),
        json!({"type": "LoadBalancer", "nodePort": 30443}),
    ] {
        assert_refused(
            &spec(&json!({"controlPlane": {"service": service}})),
            "controlPlane.service.nodePort",
            MSG_SERVICE_NODE_PORT,
        );
    }
}

#[test]
fn restore_from_is_fixed_at_creation() {
    let from = json!({"tenant": "a", "snapshot": "a-20261123-120000.db"});
    let with = spec(&json!({"etcd": {"managed": {"restoreFrom": from}}}));
    let without = spec(&json!({"etcd": {"managed": {}}}));
    assert_accepted(&with);
    assert_update_accepted(&with, &with);
    let message = MSG_RESTORE_FROM_FIXED;
    let path = "etcd.managed";
    assert_update_refused(&without, &with, &[(path, message)]);
    assert_update_refused(&with, &without, &[(path, message)]);
    let other =
        spec(&json!({"etcd": {"managed": {"restoreFrom": {"tenant": "b", "snapshot": "x.db"}}}}));
    assert_update_refused(&with, &other, &[(path, message)]);
}

#[test]
fn hibernation_schedules_need_a_start_or_an_end() {
    assert_accepted(&spec(&json!({"hibernation": {"enabled": true}})));
    assert_accepted(&spec(
        &json!({"hibernation": {"schedules": [{"start": "0 20 * * *"}, {"end": "0 7 * * *"}]}}),
    ));
    assert_refused(
        &spec(&json!({"hibernation": {"schedules": [{"location": "UTC"}]}})),
        "hibernation.schedules[0]",
        "a hibernation schedule needs a start, an end or both",
    );
}

#[test]
fn an_s3_store_is_a_url_of_a_host_and_a_bucket_name() {
    let s3 = |endpoint: &str, bucket: &str, prefix: &str| {
        spec(
            &json!({"backup": {"s3": {"endpoint": endpoint, "bucket": bucket, "prefix": prefix,
            "credentialsSecretRef": {"name": "keys"}}}}),
        )
    };
    for endpoint in [
        "https://s3.eu-central-1.amazonaws.com",
        "http://minio.backups.svc:9000",
        "http://10.0.0.1:9000/",
    ] {
        assert_accepted(&s3(endpoint, "my-backups.1", "a/b/"));
    }
    for endpoint in [
        "s3.amazonaws.com",
        "ftp://host",
        "https://host/bucket",
        "https://user@host",
        "https://host?x=1",
    ] {
        assert_refused(
            &s3(endpoint, "b-1", ""),
            "backup.s3.endpoint",
            MSG_S3_ENDPOINT,
        );
    }
    for bucket in ["Upper", "-dash", "dot.", "under_score"] {
        assert_refused(
            &s3("http://h", bucket, ""),
            "backup.s3.bucket",
            MSG_S3_BUCKET,
        );
    }
    assert_refused(
        &s3("http://h", "bucket", "/abs"),
        "backup.s3.prefix",
        "prefix must not start with '/'",
    );
}

/// Bounds that are plain OpenAPI (the API server's own messages); kube-cel does not evaluate
/// OpenAPI keywords, so the schema is checked here and the e2e applies the bad values.
#[test]
fn control_plane_openapi_bounds() {
    let cp = &spec_schema()["properties"]["controlPlane"]["properties"];
    for component in ["apiServer", "controllerManager", "scheduler"] {
        let replicas = &cp[component]["properties"]["replicas"];
        assert_eq!(
            (
                &replicas["minimum"],
                &replicas["maximum"],
                &replicas["default"]
            ),
            (&json!(1.0), &json!(5.0), &json!(1)),
            "{component}.replicas"
        );
        assert_eq!(
            cp[component]["properties"]["extraArgs"]["default"],
            json!({})
        );
    }
    let service = &cp["service"]["properties"];
    assert_eq!(
        service["type"]["enum"],
        json!(["ClusterIP", "NodePort", "LoadBalancer"])
    );
    assert_eq!(service["type"]["default"], json!("ClusterIP"));
    let profile = &spec_schema()["properties"]["profile"];
    assert_eq!(profile["enum"], json!(["Standard", "Small"]));
    assert_eq!(profile["default"], json!("Standard"));
    assert_eq!(
        (&service["port"]["minimum"], &service["port"]["maximum"]),
        (&json!(1.0), &json!(65535.0))
    );
    assert_eq!(service["port"]["default"], json!(6443));
    assert_eq!(
        (
            &service["nodePort"]["minimum"],
            &service["nodePort"]["maximum"]
        ),
        (&json!(30000.0), &json!(32767.0))
    );
    assert_eq!(cp["certSANs"]["maxItems"], json!(32));
    assert_eq!(cp["certSANs"]["default"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

#[test]
fn etcd_replicas_must_be_odd() {
    for replicas in [1, 3, 5] {
        assert_accepted(&spec(&json!({"etcd": {"managed": {"replicas": replicas}}})));
    }
    for replicas in [0, 2, 4, 6, -1] {
        assert_refused(
            &spec(&json!({"etcd": {"managed": {"replicas": replicas}}})),
            "etcd.managed.replicas",
            MSG_ETCD_REPLICAS,
        );
    }
    assert_eq!(
        MSG_ETCD_REPLICAS,
        "etcd replicas must be odd (1, 3 or 5) to keep quorum"
    );
}

#[test]
fn etcd_storage_size_must_be_a_positive_quantity() {
    for size in [
        json!("1Gi"),
        json!("500M"),
        json!("10Gi"),
        json!(1_073_741_824),
    ] {
        assert_accepted(&spec(
            &json!({"etcd": {"managed": {"storage": {"size": size}}}}),
        ));
    }
    for size in [
        json!("0"),
        json!("-1Gi"),
        json!("banana"),
        json!(0),
        json!("1 Gi"),
    ] {
        assert_refused(
            &spec(&json!({"etcd": {"managed": {"storage": {"size": size}}}})),
            "etcd.managed.storage.size",
            MSG_ETCD_SIZE,
        );
    }
}

#[test]
fn etcd_needs_exactly_one_mode() {
    assert_accepted(&spec(&json!({"etcd": {"managed": {}}})));
    assert_refused(
        &spec(&json!({"etcd": {}})),
        "etcd",
        "etcd must set exactly one mode: managed",
    );
}

#[test]
fn etcd_mode_is_immutable() {
    let managed = spec(&json!({}));
    assert_update_accepted(
        &managed,
        &spec(&json!({"etcd": {"managed": {"replicas": 3}}})),
    );
    // With one mode today, leaving `managed` is the only switch there is; it also breaks
    // "exactly one".
    assert_update_refused(
        &managed,
        &spec(&json!({"etcd": {}})),
        &[
            ("etcd", "etcd must set exactly one mode: managed"),
            (
                "etcd",
                "etcd mode is immutable: switching between managed and dataStoreRef is not \
                 supported",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// network
// ---------------------------------------------------------------------------------------------

#[test]
fn network_accepts_disjoint_cidrs_and_a_dns_ip_inside() {
    assert_accepted(&spec(&json!({"network": {
        "serviceCIDR": "172.20.0.0/16",
        "podCIDR": "172.21.0.0/16",
        "dnsServiceIP": "172.20.0.10",
        "clusterDomain": "tenant-a.example.com",
    }})));
    assert_accepted(&spec(&json!({"network": {"dnsServiceIP": "10.96.0.53"}})));
    assert_accepted(&spec(&json!({"network": {
        "serviceCIDR": "fd00:10:96::/112",
        "podCIDR": "fd00:10:244::/56",
        "dnsServiceIP": "fd00:10:96::a",
    }})));
}

#[test]
fn network_cidrs_must_be_valid() {
    for (field, path, message) in [
        (
            "serviceCIDR",
            "network.serviceCIDR",
            "serviceCIDR must be a valid CIDR such as 10.96.0.0/16",
        ),
        (
            "podCIDR",
            "network.podCIDR",
            "podCIDR must be a valid CIDR such as 10.244.0.0/16",
        ),
    ] {
        for bad in [
            "10.96.0.0/33",
            "10.96.0.0",
            "not-a-cidr",
            "10.96.0.256/16",
            "",
        ] {
            assert_refused(&spec(&json!({"network": {field: bad}})), path, message);
        }
    }
}

#[test]
fn network_cidrs_must_have_no_host_bits() {
    assert_refused(
        &spec(&json!({"network": {"serviceCIDR": "10.96.0.1/16"}})),
        "network.serviceCIDR",
        "serviceCIDR must have no host bits set (e.g. 10.96.0.0/16, not 10.96.0.1/16)",
    );
    assert_refused(
        &spec(&json!({"network": {"podCIDR": "10.244.1.0/16"}})),
        "network.podCIDR",
        "podCIDR must have no host bits set (e.g. 10.244.0.0/16, not 10.244.0.1/16)",
    );
}

#[test]
fn network_cidrs_must_not_overlap() {
    for (service, pod) in [
        ("10.96.0.0/16", "10.96.128.0/17"), // pod inside service
        ("10.96.0.0/16", "10.0.0.0/8"),     // service inside pod
        ("10.244.0.0/16", "10.244.0.0/16"), // equal
        ("10.244.0.0/24", "10.244.0.0/16"),
    ] {
        assert_refused(
            &spec(&json!({"network": {"serviceCIDR": service, "podCIDR": pod}})),
            "network.podCIDR",
            MSG_NETWORK_CIDRS_OVERLAP,
        );
    }
    assert_accepted(&spec(
        &json!({"network": {"serviceCIDR": "10.96.0.0/16", "podCIDR": "10.97.0.0/16"}}),
    ));
}

#[test]
fn network_dns_service_ip_must_be_an_ip_inside_service_cidr() {
    assert_refused(
        &spec(&json!({"network": {"dnsServiceIP": "10.97.0.10"}})),
        "network.dnsServiceIP",
        MSG_NETWORK_DNS_OUTSIDE,
    );
    assert_refused(
        &spec(&json!({"network": {"serviceCIDR": "172.20.0.0/16", "dnsServiceIP": "10.96.0.10"}})),
        "network.dnsServiceIP",
        MSG_NETWORK_DNS_OUTSIDE,
    );
    for bad in ["10.96.0.300", "kube-dns", "10.96.0.10/32", ""] {
        assert_refused(
            &spec(&json!({"network": {"dnsServiceIP": bad}})),
            "network.dnsServiceIP",
            "dnsServiceIP must be a valid IP address such as 10.96.0.10",
        );
    }
}

#[test]
fn network_cluster_domain_must_be_a_dns1123_subdomain() {
    for good in ["cluster.local", "local", "tenant-a.example.com", "a1.b2"] {
        assert_accepted(&spec(&json!({"network": {"clusterDomain": good}})));
    }
    for bad in [
        "Cluster.local",
        "-cluster.local",
        "cluster-.local",
        "cluster..local",
        "cluster.local.",
        "cluster_local",
        "",
    ] {
        assert_refused(
            &spec(&json!({"network": {"clusterDomain": bad}})),
            "network.clusterDomain",
            MSG_CLUSTER_DOMAIN,
        );
    }
}

#[test]
fn network_fields_are_immutable() {
    let old = spec(&json!({}));
    for (field, value, message) in [
        ("serviceCIDR", "10.100.0.0/16", "serviceCIDR is immutable"),
        ("podCIDR", "10.245.0.0/16", "podCIDR is immutable"),
        (
            "clusterDomain",
            "tenant-a.internal",
            "clusterDomain is immutable",
        ),
    ] {
        let new = spec(&json!({"network": {field: value}}));
        // The same value is fine on create ...
        assert_accepted(&new);
        // ... but not as a change.
        let path = format!("network.{field}");
        assert_update_refused(&old, &new, &[(path.as_str(), message)]);
    }
    // Writing the defaulted values out explicitly is not a change.
    assert_update_accepted(
        &old,
        &spec(&json!({"network": {
            "serviceCIDR": "10.96.0.0/16", "podCIDR": "10.244.0.0/16", "clusterDomain": "cluster.local",
        }})),
    );
    // dnsServiceIP may be set later (it is only derived while unset).
    assert_update_accepted(
        &old,
        &spec(&json!({"network": {"dnsServiceIP": "10.96.0.10"}})),
    );
}

/// An update that changes nothing but mutable fields passes every rule, transition rules included.
#[test]
fn update_of_mutable_fields_passes_every_rule() {
    let old = serde_json::to_value(full_spec()).unwrap();
    let mut new = full_spec();
    new.version = "1.36.3".into();
    new.control_plane.api_server.replicas = 5;
    new.control_plane
        .cert_sans
        .push("api2.tenant-a.example.com".into());
    new.registry = None;
    assert_update_accepted(&old, &serde_json::to_value(new).unwrap());
}

// ---------------------------------------------------------------------------------------------
// the CRD as a whole
// ---------------------------------------------------------------------------------------------

#[test]
fn crd_names_scope_columns_and_subresources() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "tenantcontrolplanes.hostplane.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["tcp"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"], json!({"status": {}}));
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Version", ".spec.version"),
            ("Phase", ".status.phase"),
            ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
            ("Endpoint", ".status.endpoint"),
            ("Nodes", ".status.nodes.ready"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    assert_eq!(
        root_schema()["properties"]["spec"]["required"],
        json!(["version"])
    );
}

#[test]
fn status_conditions_are_a_list_map_keyed_by_type() {
    let status = &root_schema()["properties"]["status"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["conditions"]["x-kubernetes-list-map-keys"],
        json!(["type"])
    );
    assert_eq!(
        status["phase"]["enum"],
        json!([
            "Provisioning",
            "Ready",
            "Upgrading",
            "Rotating",
            "Hibernated",
            "Restoring",
            "Deleting",
            "Failed"
        ])
    );
}

/// Unknown fields are pruned/refused only where the schema does not preserve them.
#[test]
fn schema_preserves_no_unknown_fields() {
    let crd = serde_json::to_string(&TenantControlPlane::crd()).unwrap();
    assert!(!crd.contains("x-kubernetes-preserve-unknown-fields"));
    assert!(!crd.contains("x-kubernetes-embedded-resource"));
}

/// The descriptions are what `kubectl explain` shows: every field of ours has one.
#[test]
fn every_field_has_a_description() {
    let mut missing = Vec::new();
    for (name, schema) in [
        ("spec", spec_schema()),
        ("status", root_schema()["properties"]["status"].clone()),
    ] {
        walk(name, &schema, &mut |path, node| {
            let described = node
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            // Items and map values are described by their list/map.
            if !described && !path.ends_with("[]") && !path.ends_with("{}") {
                missing.push(path.to_owned());
            }
        });
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "fields without a description"
    );
}

/// Every CEL rule carries its own message, and every string a rule reads is bounded, which keeps
/// the API server's CEL cost estimate small.
#[test]
fn every_rule_has_a_message_and_bounded_input() {
    let mut rules = 0;
    walk("spec", &spec_schema(), &mut |path, node| {
        let Some(validations) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        else {
            return;
        };
        for rule in validations {
            rules += 1;
            assert!(
                rule["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{path}: rule {rule} has no message"
            );
        }
        if node["type"] == "string" {
            assert!(
                node["maxLength"].is_u64(),
                "{path} has rules but no maxLength"
            );
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                // An enum bounds a string as well as maxLength does.
                if prop["type"] == "string" && prop.get("enum").is_none() {
                    assert!(
                        prop["maxLength"].is_u64(),
                        "{path}.{name} is read by a rule of {path} but has no maxLength"
                    );
                }
            }
        }
    });
    assert_eq!(
        rules, 38,
        "a rule was added or lost; update the tests and the e2e"
    );
}

#[test]
fn version_pattern_follows_supported_minors() {
    assert_eq!(version_pattern(), "^1[.](35|36)[.](0|[1-9][0-9]{0,3})$");
}

// ---------------------------------------------------------------------------------------------
// nodes
// ---------------------------------------------------------------------------------------------

#[test]
fn bootstrap_token_ttl_accepts_hours_and_minutes_in_range() {
    for ttl in ["15m", "90m", "1h", "24h", "168h", "10080m"] {
        assert_accepted(&spec(&json!({"nodes": {"bootstrapTokenTTL": ttl}})));
        let nodes = NodesSpec {
            bootstrap_token_ttl: ttl.into(),
        };
        assert!(nodes.bootstrap_token_ttl_seconds().is_some(), "{ttl}");
    }
    let day = NodesSpec::default().bootstrap_token_ttl_seconds();
    assert_eq!(day, Some(86_400));
}

#[test]
fn bootstrap_token_ttl_refuses_other_forms_and_out_of_range() {
    for ttl in [
        "", "24", "1d", "1h30m", "0h", "014m", "-1h", "24H", "1.5h", "14m", "169h", "99999h",
    ] {
        assert_refused(
            &spec(&json!({"nodes": {"bootstrapTokenTTL": ttl}})),
            "nodes.bootstrapTokenTTL",
            "bootstrapTokenTTL must be whole hours or minutes such as 24h or 90m, from 15m to 168h",
        );
        let nodes = NodesSpec {
            bootstrap_token_ttl: ttl.into(),
        };
        assert_eq!(nodes.bootstrap_token_ttl_seconds(), None, "{ttl}");
    }
}

/// The one rule on the whole object bounds the name (the real API server evaluates it: the e2e
/// test `bad_names_are_refused_with_their_message`; kube's local evaluator runs spec rules only).
#[test]
fn the_root_rule_bounds_the_name() {
    let rules = root_schema()["x-kubernetes-validations"].clone();
    assert_eq!(
        rules,
        serde_json::json!([{"rule": super::NAME_RULE, "message": super::MSG_NAME}])
    );
    assert!(super::NAME_RULE.contains("size() <= 47"));
}

#[test]
fn pki_validity_defaults_to_a_year_and_ten_years() {
    let defaults = PkiSpec::default();
    assert_eq!(defaults.certificate_validity_seconds(), Some(8760 * 3600));
    assert_eq!(defaults.ca_validity_seconds(), Some(87_600 * 3600));
    assert_accepted(&spec(&json!({})));
    assert_accepted(&spec(
        &json!({"pki": {"certificateValidity": "10m", "caValidity": "1h"}}),
    ));
    let pki = PkiSpec {
        certificate_validity: "90m".into(),
        ca_validity: "175200h".into(),
    };
    assert_eq!(pki.certificate_validity_seconds(), Some(5400));
    assert_eq!(pki.ca_validity_seconds(), Some(175_200 * 3600));
}

#[test]
fn pki_validity_refuses_other_forms_out_of_range_and_a_ca_shorter_than_its_leaves() {
    let leaf = "certificateValidity must be whole minutes or hours such as 8760h or 90m, from 10m \
                to 87600h";
    for bad in ["9m", "0h", "010m", "87601h", "1d", "1h30m", "", "m", "8760"] {
        assert_refused(
            &spec(&json!({"pki": {"certificateValidity": bad, "caValidity": "175200h"}})),
            "pki.certificateValidity",
            leaf,
        );
        let pki = PkiSpec {
            certificate_validity: bad.into(),
            ..PkiSpec::default()
        };
        assert_eq!(pki.certificate_validity_seconds(), None, "{bad}");
    }
    let ca = "caValidity must be whole minutes or hours such as 87600h, from 1h to 175200h";
    for bad in ["59m", "175201h", "10y"] {
        assert_refused(
            &spec(&json!({"pki": {"caValidity": bad, "certificateValidity": "10m"}})),
            "pki.caValidity",
            ca,
        );
    }
    for (leaf, ca) in [("2h", "2h"), ("2h", "90m"), ("8760h", "8759h")] {
        assert_refused(
            &spec(&json!({"pki": {"certificateValidity": leaf, "caValidity": ca}})),
            "pki",
            "caValidity must be longer than certificateValidity: a certificate must not outlive \
             its CA",
        );
    }
}

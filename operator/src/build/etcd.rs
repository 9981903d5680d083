//! The tenant's etcd: a StatefulSet with mutual TLS on client and peer ports and a volume per
//! member, behind a headless Service that gives each member its DNS name.

use hostplane_api::v1alpha1::EtcdStorage;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use serde_json::json;

use super::pod::{
    CONFIG_HASH, SecretHashes, container_security, pod_security, probes, secret_volume, typed, with,
};
use super::profile::{self, Component};
use super::{BuildError, Tenant};
use crate::pki::{CA_CRT, Item, TLS_CRT, TLS_KEY};

pub const COMPONENT: &str = "etcd";
/// etcd's client (TLS, client certificates), peer (TLS) and metrics/health (plain HTTP) ports.
pub const CLIENT_PORT: i32 = 2379;
pub const PEER_PORT: i32 = 2380;
pub const METRICS_PORT: i32 = 2381;
/// Where the server and peer certificates are mounted (each folder: tls.crt, tls.key, ca.crt).
pub const SERVER_PKI: &str = "/etc/etcd/pki/server";
pub const PEER_PKI: &str = "/etc/etcd/pki/peer";

pub struct Etcd {
    pub service: Service,
    pub statefulset: StatefulSet,
}

/// `<tcp>-etcd`: the StatefulSet's and the headless Service's name.
pub fn name(tenant: &Tenant) -> String {
    format!("{}-etcd", tenant.name)
}

/// The members' client URLs, by their stable DNS names (covered by the server cert's wildcard).
pub fn client_urls(tenant: &Tenant) -> Vec<String> {
    member_names(tenant)
        .iter()
        .map(|m| format!("https://{m}.{}:2379", tenant.service_dns(&name(tenant))))
        .collect()
}

fn replicas(tenant: &Tenant) -> i32 {
    tenant.spec.etcd.managed.as_ref().map_or(1, |m| m.replicas)
}

/// `--initial-cluster`: every member by its peer URL.
pub fn initial_cluster(tenant: &Tenant) -> Vec<String> {
    member_names(tenant)
        .iter()
        .map(|m| format!("{m}={}", peer_url(tenant, m)))
        .collect()
}

/// A member's peer URL, by its stable DNS name.
pub fn peer_url(tenant: &Tenant, member: &str) -> String {
    format!(
        "https://{member}.{}:2380",
        tenant.service_dns(&name(tenant))
    )
}

/// `<tcp>-etcd-<i>`: the members (the StatefulSet's pods).
pub fn member_names(tenant: &Tenant) -> Vec<String> {
    (0..replicas(tenant))
        .map(|i| format!("{}-{i}", name(tenant)))
        .collect()
}

/// `trust_anchor`: what etcd must trust when it starts ([`Pki::trust_anchor_id`] of the etcd
/// CA).
///
/// [`Pki::trust_anchor_id`]: crate::pki::Pki::trust_anchor_id
pub fn build(
    tenant: &Tenant,
    hashes: &SecretHashes,
    trust_anchor: &[u8],
) -> Result<Etcd, BuildError> {
    let name = name(tenant);
    let domain = tenant.service_dns(&name);
    let initial_cluster = initial_cluster(tenant);
    let managed = tenant
        .spec
        .etcd
        .managed
        .clone()
        .ok_or(BuildError::EtcdMode)?;
    let server = Item::EtcdServer.secret_name(&tenant.name);
    let peer = Item::EtcdPeer.secret_name(&tenant.name);
    let (server_vol, server_mount) = secret_volume(
        "server-pki",
        &server,
        &[TLS_CRT, TLS_KEY, CA_CRT],
        SERVER_PKI,
    );
    let (peer_vol, peer_mount) =
        secret_volume("peer-pki", &peer, &[TLS_CRT, TLS_KEY, CA_CRT], PEER_PKI);
    let args = args(tenant, &domain, &initial_cluster);
    let tuning = profile::tuning(tenant.spec.profile, Component::Etcd);
    let probes = probes(&json!({"port": METRICS_PORT}), "/readyz", "/livez");
    let storage = claim_spec(&managed.storage);
    // etcd reads its serving and peer certificates again for every new connection, so a renewed
    // one (the kubelet updates the mounted Secret) needs no restart — with one member a restart
    // fails the API server's requests, and with three it stalls them for seconds. Its trust (the
    // CA bundle) is read once, at start: etcd restarts when the oldest CA it must trust changes
    // (a replaced CA, the old CA leaving at the end of a rotation), not during a rotation, whose
    // certificates carry the new CA signed by the old one.
    let hash = hashes.over_with(&[], trust_anchor);
    let mut statefulset: StatefulSet = typed(
        "etcd StatefulSet",
        json!({
            "spec": {
                "serviceName": name,
                "replicas": tenant.replicas(managed.replicas),
                "podManagementPolicy": "Parallel",
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "selector": {"matchLabels": tenant.selector(COMPONENT)},
                "template": {
                    "metadata": {"labels": tenant.labels(COMPONENT), "annotations": {CONFIG_HASH: hash}},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "containers": [with(json!({
                            "name": "etcd",
                            "image": tenant.image(&format!("etcd:{}", super::etcd_image_tag())),
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["etcd"],
                            "args": args,
                            "env": tuning.env(vec![json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})]),
                            "ports": [
                                {"name": "client", "containerPort": CLIENT_PORT},
                                {"name": "peer", "containerPort": PEER_PORT},
                                {"name": "metrics", "containerPort": METRICS_PORT},
                            ],
                            "resources": tuning.resources(managed.resources.as_ref()),
                            "securityContext": container_security(),
                            "volumeMounts": [server_mount, peer_mount, {"name": "data", "mountPath": "/var/lib/etcd"}],
                        }), probes)],
                        "volumes": [server_vol, peer_vol],
                    },
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": tenant.labels(COMPONENT)}, "spec": storage}],
            },
        }),
    )?;
    statefulset.metadata = tenant.meta(&name, COMPONENT);
    let mut service: Service = typed(
        "etcd Service",
        json!({
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": tenant.selector(COMPONENT),
                "ports": [
                    {"name": "client", "port": CLIENT_PORT, "targetPort": CLIENT_PORT},
                    {"name": "peer", "port": PEER_PORT, "targetPort": PEER_PORT},
                ],
            },
        }),
    )?;
    service.metadata = tenant.meta(&name, COMPONENT);
    Ok(Etcd {
        service,
        statefulset,
    })
}

/// A ReadWriteOnce claim of `storage` (etcd members' volumes, the backup volume).
pub fn claim_spec(storage: &EtcdStorage) -> serde_json::Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    });
    if let Some(class) = &storage.storage_class_name {
        spec["storageClassName"] = json!(class);
    }
    spec
}

/// `data-<tcp>-etcd-<i>`: a member's volume as the StatefulSet would make it, made beforehand
/// when the member is restored before it first starts (`restoreFrom`). Owned by the
/// TenantControlPlane.
pub fn member_claim(tenant: &Tenant, member: &str) -> Result<PersistentVolumeClaim, BuildError> {
    let managed = tenant
        .spec
        .etcd
        .managed
        .as_ref()
        .ok_or(BuildError::EtcdMode)?;
    let mut claim: PersistentVolumeClaim = typed(
        "etcd PersistentVolumeClaim",
        json!({"spec": claim_spec(&managed.storage)}),
    )?;
    claim.metadata = tenant.meta(&format!("data-{member}"), COMPONENT);
    Ok(claim)
}

/// etcd's flags: mutual TLS for clients and peers, every member named by its DNS name; the
/// profile's over them.
fn args(tenant: &Tenant, domain: &str, initial_cluster: &[String]) -> Vec<String> {
    let defaults = vec![
        ("name", "$(POD_NAME)".to_owned()),
        ("data-dir", "/var/lib/etcd/data".to_owned()),
        ("listen-client-urls", "https://0.0.0.0:2379".to_owned()),
        (
            "advertise-client-urls",
            format!("https://$(POD_NAME).{domain}:2379"),
        ),
        ("listen-peer-urls", "https://0.0.0.0:2380".to_owned()),
        (
            "initial-advertise-peer-urls",
            format!("https://$(POD_NAME).{domain}:2380"),
        ),
        ("initial-cluster", initial_cluster.join(",")),
        ("initial-cluster-state", "new".to_owned()),
        ("initial-cluster-token", tenant.name.clone()),
        ("client-cert-auth", "true".to_owned()),
        ("trusted-ca-file", format!("{SERVER_PKI}/{CA_CRT}")),
        ("cert-file", format!("{SERVER_PKI}/{TLS_CRT}")),
        ("key-file", format!("{SERVER_PKI}/{TLS_KEY}")),
        ("peer-client-cert-auth", "true".to_owned()),
        ("peer-trusted-ca-file", format!("{PEER_PKI}/{CA_CRT}")),
        ("peer-cert-file", format!("{PEER_PKI}/{TLS_CRT}")),
        ("peer-key-file", format!("{PEER_PKI}/{TLS_KEY}")),
        ("listen-metrics-urls", "http://0.0.0.0:2381".to_owned()),
        // Compact often, so an idle member stays small.
        ("auto-compaction-mode", "periodic".to_owned()),
        ("auto-compaction-retention", "5m".to_owned()),
        ("snapshot-count", "10000".to_owned()),
        // Progress notifications keep the API server's watch caches current when nothing of a
        // kind changes, so its clients resume their watches after it restarts instead of being
        // told "too old resource version" again and again (as kubeadm sets it).
        ("watch-progress-notify-interval", "5s".to_owned()),
    ];
    profile::tuning(tenant.spec.profile, Component::Etcd)
        .flags(defaults)
        .into_iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect()
}

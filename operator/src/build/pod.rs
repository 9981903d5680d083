//! What every control-plane pod shares: hardened security settings, Secret volumes, the config
//! hash that rolls a pod when a Secret it mounts changes, and PodDisruptionBudgets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt as _;
use ring::digest::{SHA256, digest};
use serde_json::json;

use super::{BuildError, Tenant};

/// Annotation on a pod template: a hash of the Secrets the pod mounts.
pub const CONFIG_HASH: &str = "hostplane.dev/config-hash";

/// The sha256 of each Secret's data, by Secret name.
pub struct SecretHashes(BTreeMap<String, String>);

impl SecretHashes {
    pub fn of(secrets: &[Secret]) -> Self {
        Self(
            secrets
                .iter()
                .map(|s| {
                    let mut bytes = Vec::new();
                    // Bookkeeping beside key material is mounted by no pod (the state of a
                    // service-account key rotation): writing it rolls nothing.
                    let mounted = s
                        .data
                        .iter()
                        .flatten()
                        .filter(|(k, _)| !k.starts_with(crate::pki::BOOKKEEPING_PREFIX));
                    for (k, v) in mounted {
                        bytes.extend_from_slice(k.as_bytes());
                        bytes.push(0);
                        bytes.extend_from_slice(&v.0);
                        bytes.push(0);
                    }
                    (s.name_any(), hex(digest(&SHA256, &bytes).as_ref()))
                })
                .collect(),
        )
    }

    /// One hash over the named Secrets; an unknown name hashes as empty.
    pub fn over(&self, names: &[String]) -> String {
        self.over_with(names, &[])
    }

    /// One hash over the named Secrets and `extra`.
    pub fn over_with(&self, names: &[String], extra: &[u8]) -> String {
        let mut joined = String::new();
        if !extra.is_empty() {
            joined.push_str(&hex(extra));
            joined.push('\n');
        }
        for n in names {
            joined.push_str(n);
            joined.push('=');
            joined.push_str(self.0.get(n).map_or("", String::as_str));
            joined.push('\n');
        }
        hex(&digest(&SHA256, joined.as_bytes()).as_ref()[..8])
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A read-only Secret volume `name` with only the given keys (a CA's key never lands where only
/// its certificate is needed), and its mount at `path`.
pub fn secret_volume(
    volume: &str,
    secret: &str,
    keys: &[&str],
    path: &str,
) -> (Volume, VolumeMount) {
    let v = Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        mode: None,
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            optional: None,
        }),
        ..Volume::default()
    };
    let m = VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (v, m)
}

/// The container's probes, as JSON to merge into it: a startup probe every second (up to five
/// minutes) so a component counts as started as soon as it is — the kubelet then runs the
/// readiness probe at once — and readiness and liveness every 5 s after that.
pub fn probes(get: &serde_json::Value, ready: &str, live: &str) -> serde_json::Value {
    let probe = |path: &str, period: i32, threshold: i32| {
        let mut get = get.clone();
        get["path"] = json!(path);
        json!({"httpGet": get, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": threshold})
    };
    json!({
        "startupProbe": probe(live, 1, 300),
        "readinessProbe": probe(ready, 5, 3),
        "livenessProbe": probe(live, 5, 8),
    })
}

/// Merges the keys of `extra` (an object) into `container` (an object).
pub fn with(mut container: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(c), serde_json::Value::Object(e)) = (container.as_object_mut(), extra) {
        c.extend(e);
    }
    container
}

/// The user and group every pod of a tenant runs as in the seed (distroless's `nonroot`).
pub const NONROOT: i64 = 65532;

/// The pod-level security context of every pod of a tenant in the seed, as the `restricted` Pod
/// Security Standard asks: a non-root user, RuntimeDefault seccomp. Volumes are made writable for
/// that user by fsGroup where the volume plugin supports it (CSI, emptyDir); a host-path volume
/// must be writable by it already (kind's local-path provisioner makes its directories 0777; the
/// local seed does the same: docs/local-seed.md).
pub fn pod_security() -> serde_json::Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": NONROOT,
        "runAsGroup": NONROOT,
        "fsGroup": NONROOT,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The container-level security context: read-only root, no privilege escalation, no capability.
pub fn container_security() -> serde_json::Value {
    json!({
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// `--key=value` flags: the defaults, overridden and extended by the spec's `extraArgs`, sorted.
pub fn flags(defaults: &[(&str, String)], extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut all: BTreeMap<String, String> = defaults
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for (k, v) in extra {
        all.insert(k.trim_start_matches('-').to_owned(), v.clone());
    }
    all.into_iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// A PodDisruptionBudget for a Deployment with more than one replica.
pub fn pdb(tenant: &Tenant, d: &Deployment) -> Option<PodDisruptionBudget> {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let component = d.labels().get("app.kubernetes.io/component")?.clone();
    (replicas > 1).then(|| pdb_for(tenant, &d.name_any(), &component))
}

/// A PodDisruptionBudget allowing one of `component`'s pods down at a time.
pub fn pdb_for(tenant: &Tenant, name: &str, component: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: tenant.meta(name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(tenant.selector(component)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// A k8s object from JSON written in this module tree; a mistake there is a build error.
pub fn typed<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|e| BuildError::Render(what, e.to_string()))
}

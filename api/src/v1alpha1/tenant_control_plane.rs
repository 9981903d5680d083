//! `TenantControlPlane`: one hosted Kubernetes control plane running in the seed cluster.
//!
//! Every rule a user can break is in the schema: OpenAPI bounds (`minimum`, `maxItems`, `enum`,
//! ...) and CEL rules (`x-kubernetes-validations`), each with its own message, so `kubectl apply`
//! refuses a bad spec before the operator sees it. Every CEL rule here is written for both
//! evaluators: the real kube-apiserver (v1.33+ for `semver`, v1.30+ for `isCIDR`/`cidr`/`ip`; the
//! CRD was applied to v1.36.3, within its cost budget) and kube's local one (kube-cel, which the
//! unit tests drive through `validate_cel`). The two libraries differ in places (see
//! `ETCD_SIZE_POSITIVE`), so a new rule needs a run against a real API server as well.
//!
//! Defaults live in the schema (`default`, from the `#[serde(default)]`s), so the API server fills
//! them in and `kubectl get -o yaml` shows the effective spec; the same defaults apply when the
//! operator deserialises a spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// Kubernetes minors a TenantControlPlane may run (`1.<minor>.<patch>`); the local seed builds
/// 1.35.4 and 1.36.3 (e2e/versions.env). The version rule and its message are generated from this
/// list, so adding a minor here is the whole change on the API side.
pub const SUPPORTED_MINORS: [u32; 2] = [35, 36];

/// Annotation that stops all reconciliation of a TenantControlPlane while it is `"true"`: the
/// operator changes none of its objects (the `Paused` condition says so) until it is removed.
pub const PAUSED_ANNOTATION: &str = "hostplane.dev/paused";

/// Annotation a TenantControlPlane must carry, set to `"true"`, before it can be deleted (and
/// before the namespace holding it can be): the ValidatingAdmissionPolicies in manifests/ refuse
/// the deletion otherwise.
pub const CONFIRM_DELETION_ANNOTATION: &str = "hostplane.dev/confirm-deletion";

/// Annotation that asks for an etcd snapshot now: each new value (any string, e.g. a date) is one
/// request; `status.backup.lastRequest` shows the last one served.
pub const BACKUP_NOW_ANNOTATION: &str = "hostplane.dev/backup-now";

/// Annotation that restores the tenant's etcd in place from a snapshot on its backup volume:
/// `<snapshot>.db`, optionally followed by `#<anything>` to restore the same snapshot again. The
/// control plane is stopped, each etcd member's data replaced (the old data kept aside) and the
/// control plane started; `status.backup.restore` shows each step.
pub const RESTORE_ANNOTATION: &str = "hostplane.dev/restore";

/// Annotation that accepts new roots of trust in place of lost or damaged ones: a comma-separated
/// list of the tenant's root Secrets (`<tcp>-ca`, `<tcp>-front-proxy-ca`, `<tcp>-etcd-ca`,
/// `<tcp>-sa`). Only a named root that is missing or unusable is replaced (an Event
/// `RootReplaced` says so), and everything it signed is re-issued: kubeconfigs and certificates
/// handed out before stop working. Without it a lost root stops the tenant (`RootsUnavailable`).
pub const ACCEPT_NEW_ROOTS_ANNOTATION: &str = "hostplane.dev/accept-new-roots";

/// Annotation that starts a graceful rotation of the service-account signing key, named by its
/// value (letters, digits, `.`, `_`, `-`; up to 63): a value not rotated for before starts one
/// once no other is under way. `status.serviceAccountKey.rotation` shows its phase
/// (docs/service-account-keys.md).
pub const ROTATE_SA_KEY_ANNOTATION: &str = "hostplane.dev/rotate-service-account-key";

/// Annotation, with the id of the rotation under way: its old key is no longer trusted now, not
/// once the longest token lifetime has passed (tokens it signed that are still used fail).
pub const COMPLETE_SA_KEY_ROTATION_ANNOTATION: &str =
    "hostplane.dev/complete-service-account-key-rotation";

/// Annotation that starts a staged rotation of the tenant's three CAs (cluster, etcd,
/// front-proxy), named by its value (letters, digits, `.`, `_`, `-`; up to 63): a value not
/// rotated for before starts one once no other is under way. `status.caRotation` shows its phase
/// (docs/ca-rotation.md).
pub const ROTATE_CA_ANNOTATION: &str = "hostplane.dev/rotate-ca";

/// Annotation, with the id of the CA rotation under way: the old CAs leave every trust bundle
/// now, not once every certificate they signed has expired (certificates they signed that are
/// still used, such as a kubelet's client certificate not yet renewed, are refused).
pub const COMPLETE_CA_ROTATION_ANNOTATION: &str = "hostplane.dev/complete-ca-rotation";

/// The name is part of the names of the tenant's Services (DNS-1035 labels) and of its etcd
/// StatefulSet, whose pods' names must stay within 63 characters with the revision hash the
/// StatefulSet controller adds: `<name>-etcd` at most 52, so the name at most 47.
const NAME_RULE: &str =
    "self.metadata.name.size() <= 47 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
const MSG_NAME: &str = "metadata.name must be at most 47 characters of lowercase letters, digits and \
     '-', starting with a letter and ending with a letter or digit: it names the tenant's Services \
     and etcd pods";

/// The image registry used when `spec.registry` is unset.
pub const DEFAULT_REGISTRY: &str = "registry.k8s.io";
/// `spec.network.serviceCIDR` when unset.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";
/// `spec.network.podCIDR` when unset.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
/// `spec.network.clusterDomain` when unset.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// `spec.controlPlane.service.port` when unset.
pub const DEFAULT_API_SERVER_PORT: i32 = 6443;
/// `spec.etcd.managed.storage.size` when unset.
pub const DEFAULT_ETCD_STORAGE_SIZE: &str = "1Gi";

/// The etcd modes, the keys of `spec.etcd` of which exactly one is set. `dataStoreRef` (a shared
/// etcd) joins this list together with its field; the "exactly one of" and "mode is immutable"
/// rules are generated from it.
const ETCD_MODES: [&str; 1] = ["managed"];

// ---------------------------------------------------------------------------------------------
// TenantControlPlane
// ---------------------------------------------------------------------------------------------

/// The desired state of a hosted control plane. Only `version` is required; the API server fills
/// in every other field from the schema defaults.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hostplane.dev",
    version = "v1alpha1",
    kind = "TenantControlPlane",
    doc = "A hosted Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, \
           kube-scheduler) that runs as workloads in this namespace of the seed cluster.",
    namespaced,
    shortname = "tcp",
    status = "TenantControlPlaneStatus",
    derive = "PartialEq",
    // The JSON form: clippy's duplicated_attributes misreads repeated `type_ = "string"` in the
    // list form as duplicates.
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodes.ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NAME_RULE).message(MSG_NAME)
)]
#[cfg_attr(test, x_kube(cel))]
#[serde(rename_all = "camelCase")]
pub struct TenantControlPlaneSpec {
    /// Kubernetes version of the control plane, `1.<minor>.<patch>` (e.g. 1.36.3). Upgrades go one
    /// minor at a time; downgrades are refused.
    #[schemars(length(max = 16))]
    #[x_kube(validation = version_format_rule())]
    #[x_kube(validation = Rule::new(VERSION_NO_DOWNGRADE).message(MSG_VERSION_DOWNGRADE))]
    #[x_kube(validation = Rule::new(VERSION_NO_SKIPPED_MINOR).message(MSG_VERSION_SKIPPED_MINOR))]
    pub version: String,

    /// The control plane components and how the tenant's API server is exposed.
    #[serde(default)]
    pub control_plane: ControlPlaneSpec,

    /// Where the tenant's etcd data lives. Exactly one mode is set; the mode cannot be changed
    /// after creation.
    #[serde(default)]
    pub etcd: EtcdSpec,

    /// The tenant cluster's networks and DNS domain.
    #[serde(default)]
    pub network: NetworkSpec,

    /// How worker nodes join the tenant (the bootstrap token of the `<tcp>-join` Secret).
    #[serde(default)]
    pub nodes: NodesSpec,

    /// The addons the operator runs inside the tenant.
    #[serde(default)]
    pub addons: AddonsSpec,

    /// How the control plane is sized and tuned: `Standard` (upstream defaults) or `Small` (many
    /// small or mostly idle tenants on one seed: smaller requests, a Go heap that grows less, an
    /// etcd that keeps fewer entries in memory). Changing it rolls the control plane.
    #[serde(default)]
    pub profile: Profile,

    /// Hibernation: the control plane scaled to zero and etcd stopped, its volume kept, now or on
    /// schedules. Unset: always awake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernation: Option<HibernationSpec>,

    /// Snapshots of the tenant's etcd on a volume in this namespace, on a schedule and on demand
    /// (annotation `hostplane.dev/backup-now`). Unset: no backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// GitOps: a hosted Flux agent applying a source into the tenant, and scoped, expiring
    /// credentials for central agents (Flux, Cluster API, Argo CD, Sveltos). Unset: neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<super::GitOpsSpec>,

    /// Lifetimes of the certificates the operator issues. Leaves (serving, client, kubeconfig
    /// certificates) are re-issued when two-thirds of their life has passed, and the components
    /// using them are rolled one pod at a time.
    #[serde(default)]
    pub pki: PkiSpec,

    /// Registry the control plane images are pulled from (images keep their upstream names, e.g.
    /// `<registry>/kube-apiserver:v1.36.3`). Unset means registry.k8s.io.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub registry: Option<String>,
}

/// Certificate lifetimes, whole minutes or hours (`8760h`, `90m`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(PKI_CA_OUTLIVES_LEAVES).message(MSG_PKI_CA_OUTLIVES_LEAVES))]
pub struct PkiSpec {
    /// Lifetime of each leaf certificate and kubeconfig the operator issues, from 10m to 87600h
    /// (default 8760h, one year). Shorter lifetimes mean more frequent (rolling) renewals.
    #[serde(default = "default_certificate_validity")]
    #[schemars(length(max = 7))]
    #[x_kube(validation = Rule::new(CERTIFICATE_VALIDITY_RULE).message(MSG_CERTIFICATE_VALIDITY))]
    pub certificate_validity: String,

    /// Lifetime of a new CA, from 1h to 175200h (default 87600h, ten years); longer than
    /// `certificateValidity`. A CA is never renewed silently: it is reported when due.
    #[serde(default = "default_ca_validity", rename = "caValidity")]
    #[schemars(length(max = 7))]
    #[x_kube(validation = Rule::new(CA_VALIDITY_RULE).message(MSG_CA_VALIDITY))]
    pub ca_validity: String,
}

/// Default `spec.pki.certificateValidity`.
pub const DEFAULT_CERTIFICATE_VALIDITY: &str = "8760h";
/// Default `spec.pki.caValidity`.
pub const DEFAULT_CA_VALIDITY: &str = "87600h";

fn default_certificate_validity() -> String {
    DEFAULT_CERTIFICATE_VALIDITY.to_owned()
}

fn default_ca_validity() -> String {
    DEFAULT_CA_VALIDITY.to_owned()
}

impl Default for PkiSpec {
    fn default() -> Self {
        Self {
            certificate_validity: default_certificate_validity(),
            ca_validity: default_ca_validity(),
        }
    }
}

impl PkiSpec {
    /// The leaf lifetime in seconds, when it is what the rule accepts.
    #[must_use]
    pub fn certificate_validity_seconds(&self) -> Option<i64> {
        minutes_or_hours(&self.certificate_validity).filter(|s| (600..=87_600 * 3600).contains(s))
    }

    /// The CA lifetime in seconds, when it is what the rule accepts.
    #[must_use]
    pub fn ca_validity_seconds(&self) -> Option<i64> {
        minutes_or_hours(&self.ca_validity).filter(|s| (3600..=175_200 * 3600).contains(s))
    }
}

/// `<1-6 digits, no leading zero>m|h` in seconds.
fn minutes_or_hours(value: &str) -> Option<i64> {
    let (number, factor) = if let Some(n) = value.strip_suffix('m') {
        (n, 60)
    } else {
        (value.strip_suffix('h')?, 3600)
    };
    let well_formed = (1..=6).contains(&number.len())
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| number.parse::<i64>().ok().map(|n| n * factor))?
}

const CERTIFICATE_VALIDITY_RULE: &str = "self.matches('^[1-9][0-9]{0,5}[mh]$') && \
     duration(self) >= duration('10m') && duration(self) <= duration('87600h')";
const MSG_CERTIFICATE_VALIDITY: &str =
    "certificateValidity must be whole minutes or hours such as 8760h or 90m, from 10m to 87600h";
const CA_VALIDITY_RULE: &str = "self.matches('^[1-9][0-9]{0,5}[mh]$') && \
     duration(self) >= duration('1h') && duration(self) <= duration('175200h')";
const MSG_CA_VALIDITY: &str =
    "caValidity must be whole minutes or hours such as 87600h, from 1h to 175200h";
const PKI_CA_OUTLIVES_LEAVES: &str = "!self.certificateValidity.matches('^[1-9][0-9]{0,5}[mh]$') || \
     !self.caValidity.matches('^[1-9][0-9]{0,5}[mh]$') || \
     duration(self.caValidity) > duration(self.certificateValidity)";
const MSG_PKI_CA_OUTLIVES_LEAVES: &str =
    "caValidity must be longer than certificateValidity: a certificate must not outlive its CA";

/// How a TenantControlPlane's components are sized and tuned (docs/tenant-control-plane.md lists
/// every setting of each). `resources` and `extraArgs` set in the spec win over the profile's.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Profile {
    /// Upstream defaults (kubeadm's flags), requests sized for a cluster with nodes and workloads.
    #[default]
    Standard,
    /// For many small or mostly idle tenants on one seed: smaller CPU and memory requests, Go's
    /// garbage collector run earlier (GOGC), etcd keeping fewer Raft entries in memory.
    Small,
}

/// Hibernation: the API server, controller-manager and scheduler scaled to zero and etcd stopped,
/// its volume kept (phase `Hibernated`, Ready False with reason `Hibernated`); waking starts them
/// again with the data intact. `enabled` wins over the schedules when set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HibernationSpec {
    /// `true`: hibernate now; `false`: stay awake whatever the schedules say; unset: the schedules
    /// decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// When to sleep and wake. The tenant sleeps while the latest `start` or `end` of all
    /// schedules that has passed is a `start`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub schedules: Vec<HibernationSchedule>,
}

/// A hibernation schedule: cron expressions (`minute hour day-of-month month day-of-week`, e.g.
/// `0 20 * * 1-5`) read in a time zone. The operator checks the expressions and the zone and
/// reports a bad one in the Ready condition (reason `InvalidSpec`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.start) || has(self.end)")
    .message("a hibernation schedule needs a start, an end or both"))]
#[serde(rename_all = "camelCase")]
pub struct HibernationSchedule {
    /// When the tenant goes to sleep (cron expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub start: Option<String>,

    /// When the tenant wakes up (cron expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub end: Option<String>,

    /// IANA time zone the expressions are read in, e.g. `Europe/Berlin`. Unset: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub location: Option<String>,
}

/// Snapshots of the tenant's etcd: each is taken by a Job in this namespace (`etcdctl snapshot
/// save` against the tenant's etcd), checked (etcd's SHA-256 trailer), and kept on the volume
/// (PersistentVolumeClaim `<tcp>-etcd-backups`) with a metadata file naming the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to take a snapshot: a cron expression (`minute hour day-of-month month
    /// day-of-week`, e.g. `0 */6 * * *`) read in `location`. Unset: only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub schedule: Option<String>,

    /// IANA time zone of `schedule`, e.g. `Europe/Berlin`. Unset: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub location: Option<String>,

    /// How many snapshots are kept on the volume; the oldest go first.
    #[serde(default = "default_backup_retain")]
    #[schemars(range(min = 1, max = 1000))]
    pub retain: i32,

    /// The volume holding the snapshots (one for the tenant, ReadWriteOnce).
    #[serde(default)]
    pub storage: EtcdStorage,

    /// An S3-compatible bucket every snapshot is also copied to (with its metadata file), once
    /// it is checked and kept on the volume. Unset: the volume only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<BackupS3>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            schedule: None,
            location: None,
            retain: default_backup_retain(),
            storage: EtcdStorage::default(),
            s3: None,
        }
    }
}

fn default_backup_retain() -> i32 {
    7
}

/// Where snapshots are copied to: `<endpoint>/<bucket>/<prefix><snapshot>.db` and `.json`
/// (path-style addressing, AWS Signature V4). The store's own lifecycle rules decide how long
/// they stay there; `retain` counts the volume only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupS3 {
    /// The store's URL, scheme and host (and port) only: `https://s3.eu-central-1.amazonaws.com`,
    /// `http://minio.backups.svc:9000`. An `https` store's certificate is checked against the
    /// CA bundle in the operator's image.
    #[schemars(length(min = 8, max = 512))]
    #[x_kube(validation = Rule::new(S3_ENDPOINT_RULE).message(MSG_S3_ENDPOINT))]
    pub endpoint: String,

    /// The bucket (it must exist).
    #[schemars(length(min = 3, max = 63))]
    #[x_kube(validation = Rule::new(S3_BUCKET_RULE).message(MSG_S3_BUCKET))]
    pub bucket: String,

    /// The region requests are signed for. Unset: `us-east-1` (what MinIO and most
    /// S3-compatible stores take).
    #[serde(default = "default_s3_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,

    /// What object keys start with. Unset: `<namespace>/<tcp name>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('/')").message("prefix must not start with '/'"))]
    pub prefix: Option<String>,

    /// A Secret in this namespace with the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub credentials_secret_ref: SecretReference,
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

const S3_ENDPOINT_RULE: &str = "self.matches('^https?://[^/?#@ ]+/?$')";
const MSG_S3_ENDPOINT: &str = "endpoint must be http:// or https:// and a host (and port) only, \
                               e.g. https://s3.eu-central-1.amazonaws.com; the bucket is its own field";
const S3_BUCKET_RULE: &str = "self.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$')";
const MSG_S3_BUCKET: &str = "bucket must be 3-63 lower-case letters, digits, '.' and '-', \
                             starting and ending with a letter or digit";

// The version rules. A rule's `self` is the version string; `oldSelf` the stored one on update.
// The transition rules guard with `isSemver` so that a malformed version fails only the format
// rule (with its message) instead of making `semver()` raise an evaluation error.

const VERSION_NO_DOWNGRADE: &str =
    "!isSemver(self) || !isSemver(oldSelf) || !semver(self).isLessThan(semver(oldSelf))";
const MSG_VERSION_DOWNGRADE: &str = "version must not decrease: downgrades (to a lower minor, or \
                                     to a lower patch of the same minor) are not supported";
const VERSION_NO_SKIPPED_MINOR: &str = "!isSemver(self) || !isSemver(oldSelf) || \
                                        semver(self).minor() <= semver(oldSelf).minor() + 1";
const MSG_VERSION_SKIPPED_MINOR: &str = "version must not skip a minor: upgrade one minor at a \
                                         time (e.g. 1.35.x to 1.36.x)";

/// `1.<supported minor>.<patch>`, patch without leading zeros. `[.]` rather than `\.` keeps the
/// pattern free of escapes in both the CEL string literal and the YAML.
fn version_pattern() -> String {
    let minors: Vec<String> = SUPPORTED_MINORS.iter().map(u32::to_string).collect();
    format!("^1[.]({})[.](0|[1-9][0-9]{{0,3}})$", minors.join("|"))
}

fn version_format_message() -> String {
    let minors: Vec<String> = SUPPORTED_MINORS.iter().map(|m| format!("1.{m}")).collect();
    let newest = SUPPORTED_MINORS.iter().max().copied().unwrap_or_default();
    format!(
        "version must look like 1.{newest}.0 (1.<minor>.<patch>) and be a supported minor ({})",
        minors.join(", ")
    )
}

fn version_format_rule() -> Rule {
    Rule::new(format!("self.matches('{}')", version_pattern()))
        .message(Message::Message(version_format_message()))
}

// ---------------------------------------------------------------------------------------------
// controlPlane
// ---------------------------------------------------------------------------------------------

/// The control plane components and how the tenant's API server is exposed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    /// kube-apiserver.
    #[serde(default)]
    pub api_server: ComponentSpec,

    /// kube-controller-manager.
    #[serde(default)]
    pub controller_manager: ComponentSpec,

    /// kube-scheduler.
    #[serde(default)]
    pub scheduler: ComponentSpec,

    /// The Service in front of the tenant's kube-apiserver.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Extra subject alternative names (DNS names or IP addresses) for the kube-apiserver serving
    /// certificate, beside the ones the operator adds itself (Service names, endpoint).
    #[serde(default, rename = "certSANs")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub cert_sans: Vec<String>,
}

/// One control plane component (a Deployment).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Number of replicas, 1 to 5.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the component's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra command-line flags, `flag-name: value` without the leading `--`. They override the
    /// operator's flags of the same name (a flag the component refuses shows in its condition as
    /// CrashLoopBackOff).
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            resources: None,
            extra_args: BTreeMap::new(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

/// How the tenant's kube-apiserver is exposed in the seed cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(SERVICE_NODE_PORT_ONLY_FOR_NODE_PORT)
    .message(MSG_SERVICE_NODE_PORT)
    .field_path(".nodePort")
    .reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type: ClusterIP (reachable inside the seed only), NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Port of the Service (the kube-apiserver's own port is fixed).
    #[serde(default = "default_api_server_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Node port (30000-32767) for type NodePort; chosen by the seed when unset. Only allowed
    /// with type NodePort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

const SERVICE_NODE_PORT_ONLY_FOR_NODE_PORT: &str = "self.type == 'NodePort' || !has(self.nodePort)";
const MSG_SERVICE_NODE_PORT: &str = "nodePort is only allowed when type is NodePort";

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_api_server_port(),
            node_port: None,
        }
    }
}

fn default_api_server_port() -> i32 {
    DEFAULT_API_SERVER_PORT
}

/// Kubernetes Service type of the API server Service.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ServiceType {
    /// Reachable inside the seed cluster only.
    #[default]
    ClusterIP,
    /// Reachable on a port of every seed node.
    NodePort,
    /// Reachable through the seed's load balancer.
    LoadBalancer,
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

/// Where the tenant's etcd data lives: exactly one mode. Today the only mode is `managed` (an etcd
/// StatefulSet per tenant); a shared etcd (`dataStoreRef`) is the next. The mode is fixed at
/// creation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = etcd_exactly_one_mode_rule())]
#[x_kube(validation = etcd_mode_immutable_rule())]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// An etcd cluster of its own, run by the operator next to the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedEtcd>,
}

impl Default for EtcdSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedEtcd::default()),
        }
    }
}

/// `[has(self.managed), ...].exists_one(m, m)`: the "exactly one of" idiom, so a new mode is one
/// more element. The default (`etcd` unset) is `{managed: {}}`, so a minimal spec passes.
fn etcd_exactly_one_mode_rule() -> Rule {
    let present: Vec<String> = ETCD_MODES
        .iter()
        .map(|m| format!("has(self.{m})"))
        .collect();
    Rule::new(format!("[{}].exists_one(m, m)", present.join(", "))).message(Message::Message(
        format!(
            "etcd must set exactly one mode: {}",
            ETCD_MODES.join(" or ")
        ),
    ))
}

/// `has(self.managed) == has(oldSelf.managed) && ...`: the mode chosen at creation stays.
fn etcd_mode_immutable_rule() -> Rule {
    let same: Vec<String> = ETCD_MODES
        .iter()
        .map(|m| format!("has(self.{m}) == has(oldSelf.{m})"))
        .collect();
    Rule::new(same.join(" && ")).message(
        "etcd mode is immutable: switching between managed and dataStoreRef is not supported",
    )
}

/// An etcd cluster run by the operator for this tenant only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(RESTORE_FROM_FIXED).message(MSG_RESTORE_FROM_FIXED))]
#[serde(rename_all = "camelCase")]
pub struct ManagedEtcd {
    /// Number of etcd members: 1, 3 or 5 (an odd number keeps quorum).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self in [1, 3, 5]").message(MSG_ETCD_REPLICAS))]
    pub replicas: i32,

    /// The persistent volume of each member.
    #[serde(default)]
    pub storage: EtcdStorage,

    /// CPU and memory requests and limits of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Start this tenant's etcd from a snapshot of another TenantControlPlane in this namespace
    /// (its backup volume), instead of empty. Read once, at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFrom>,
}

const RESTORE_FROM_FIXED: &str = "has(self.restoreFrom) == has(oldSelf.restoreFrom) && \
                                  (!has(self.restoreFrom) || self.restoreFrom == oldSelf.restoreFrom)";
const MSG_RESTORE_FROM_FIXED: &str =
    "etcd.managed.restoreFrom is read once, at creation: it cannot be added, changed or removed";

/// A snapshot to start from: a file on another TenantControlPlane's backup volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    /// The TenantControlPlane in this namespace whose backup volume holds the snapshot; its
    /// encryption key (`<tenant>-encryption-key`) becomes this tenant's, since the snapshot's
    /// Secrets are encrypted with it.
    #[schemars(length(min = 1, max = 63))]
    pub tenant: String,

    /// The snapshot's file name on that volume, e.g. `demo-20261123-120000.db`.
    #[schemars(length(min = 1, max = 253))]
    pub snapshot: String,
}

const MSG_ETCD_REPLICAS: &str = "etcd replicas must be odd (1, 3 or 5) to keep quorum";

impl Default for ManagedEtcd {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            storage: EtcdStorage::default(),
            resources: None,
            restore_from: None,
        }
    }
}

/// The persistent volume of each etcd member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdStorage {
    /// Size of the volume, a positive Kubernetes quantity such as 1Gi.
    #[serde(default = "default_etcd_storage_size")]
    // kube marks optional int-or-string properties nullable; a null size would then be kept
    // instead of defaulted, so say explicitly that it is not.
    #[schemars(extend("nullable" = false))]
    #[x_kube(validation = Rule::new(ETCD_SIZE_POSITIVE).message(MSG_ETCD_SIZE))]
    pub size: Quantity,

    /// StorageClass of the volume; unset means the seed's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// `size` is int-or-string (a bare number of bytes, or a quantity string): `string(self)` reads
/// both; `isQuantity` first, so that a malformed size fails this rule rather than `quantity()`.
/// Not `.sign()`: kube-apiserver declares `sign` as a global function only (`sign(q)`), despite
/// its docs, and kube-cel as a member only; `isGreaterThan` is a member on both.
const ETCD_SIZE_POSITIVE: &str =
    "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))";
const MSG_ETCD_SIZE: &str = "etcd storage size must be a positive quantity such as 1Gi";

impl Default for EtcdStorage {
    fn default() -> Self {
        Self {
            size: default_etcd_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_etcd_storage_size() -> Quantity {
    Quantity(DEFAULT_ETCD_STORAGE_SIZE.to_owned())
}

// ---------------------------------------------------------------------------------------------
// network
// ---------------------------------------------------------------------------------------------

/// The tenant cluster's networks and DNS domain. serviceCIDR, podCIDR and clusterDomain are fixed
/// at creation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(NETWORK_CIDRS_DISJOINT)
    .message(MSG_NETWORK_CIDRS_OVERLAP)
    .field_path(".podCIDR"))]
#[x_kube(validation = Rule::new(NETWORK_DNS_IN_SERVICE_CIDR)
    .message(MSG_NETWORK_DNS_OUTSIDE)
    .field_path(".dnsServiceIP"))]
pub struct NetworkSpec {
    /// CIDR the tenant's Service ClusterIPs come from, e.g. 10.96.0.0/16 (no host bits set).
    /// Immutable.
    #[serde(default = "default_service_cidr", rename = "serviceCIDR")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message(
        "serviceCIDR must be a valid CIDR such as 10.96.0.0/16"
    ))]
    #[x_kube(validation = Rule::new(CIDR_CANONICAL).message(
        "serviceCIDR must have no host bits set (e.g. 10.96.0.0/16, not 10.96.0.1/16)"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serviceCIDR is immutable"))]
    pub service_cidr: String,

    /// CIDR the tenant's Pod IPs come from, e.g. 10.244.0.0/16 (no host bits set); must not
    /// overlap serviceCIDR. Immutable.
    #[serde(default = "default_pod_cidr", rename = "podCIDR")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message(
        "podCIDR must be a valid CIDR such as 10.244.0.0/16"
    ))]
    #[x_kube(validation = Rule::new(CIDR_CANONICAL).message(
        "podCIDR must have no host bits set (e.g. 10.244.0.0/16, not 10.244.0.1/16)"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("podCIDR is immutable"))]
    pub pod_cidr: String,

    /// ClusterIP of the tenant's DNS Service; must lie inside serviceCIDR. Unset means the 10th
    /// address of serviceCIDR (10.96.0.10 for 10.96.0.0/16).
    #[serde(
        default,
        rename = "dnsServiceIP",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message(
        "dnsServiceIP must be a valid IP address such as 10.96.0.10"
    ))]
    pub dns_service_ip: Option<String>,

    /// DNS domain of the tenant cluster (a DNS-1123 subdomain). Immutable.
    #[serde(default = "default_cluster_domain", rename = "clusterDomain")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(CLUSTER_DOMAIN_DNS1123).message(MSG_CLUSTER_DOMAIN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterDomain is immutable"))]
    pub cluster_domain: String,
}

/// A CIDR with host bits set (10.96.0.1/16) parses, but is ambiguous; require the network form.
/// Guarded so that a non-CIDR fails only the `isCIDR` rule.
const CIDR_CANONICAL: &str = "!isCIDR(self) || cidr(self) == cidr(self).masked()";

/// Two CIDR blocks overlap exactly when one contains the other.
const NETWORK_CIDRS_DISJOINT: &str = "!isCIDR(self.serviceCIDR) || !isCIDR(self.podCIDR) || \
     !(cidr(self.serviceCIDR).containsCIDR(cidr(self.podCIDR)) || \
     cidr(self.podCIDR).containsCIDR(cidr(self.serviceCIDR)))";
const MSG_NETWORK_CIDRS_OVERLAP: &str = "podCIDR and serviceCIDR must not overlap";

const NETWORK_DNS_IN_SERVICE_CIDR: &str = "!has(self.dnsServiceIP) || !isIP(self.dnsServiceIP) || \
     !isCIDR(self.serviceCIDR) || cidr(self.serviceCIDR).containsIP(ip(self.dnsServiceIP))";
const MSG_NETWORK_DNS_OUTSIDE: &str = "dnsServiceIP must be an address inside serviceCIDR";

/// RFC 1123 subdomain (the Kubernetes `IsDNS1123Subdomain` pattern; length bounded by maxLength).
const CLUSTER_DOMAIN_DNS1123: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
const MSG_CLUSTER_DOMAIN: &str = "clusterDomain must be a DNS-1123 subdomain: lowercase letters, \
                                  digits, '-' and '.', starting and ending with a letter or digit";

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            service_cidr: default_service_cidr(),
            pod_cidr: default_pod_cidr(),
            dns_service_ip: None,
            cluster_domain: default_cluster_domain(),
        }
    }
}

fn default_service_cidr() -> String {
    DEFAULT_SERVICE_CIDR.to_owned()
}

fn default_pod_cidr() -> String {
    DEFAULT_POD_CIDR.to_owned()
}

fn default_cluster_domain() -> String {
    DEFAULT_CLUSTER_DOMAIN.to_owned()
}

// ---------------------------------------------------------------------------------------------
// nodes
// ---------------------------------------------------------------------------------------------

/// `spec.nodes.bootstrapTokenTTL` when unset.
pub const DEFAULT_BOOTSTRAP_TOKEN_TTL: &str = "24h";

/// How worker nodes join the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodesSpec {
    /// Lifetime of each bootstrap token, in whole hours or minutes (`24h`, `90m`), from 15m to
    /// 168h. A new token is minted when a third of the lifetime is left; the old one stays valid
    /// until it expires.
    #[serde(default = "default_bootstrap_token_ttl", rename = "bootstrapTokenTTL")]
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new(TOKEN_TTL_FORMAT).message(MSG_TOKEN_TTL))]
    #[x_kube(validation = Rule::new(TOKEN_TTL_RANGE).message(MSG_TOKEN_TTL))]
    pub bootstrap_token_ttl: String,
}

const TOKEN_TTL_FORMAT: &str = "self.matches('^[1-9][0-9]{0,4}[hm]$')";
/// Whole minutes of a TTL that passed the format rule, computed without `duration()` so the rule
/// means the same in every CEL evaluator.
const TOKEN_TTL_RANGE: &str = "!self.matches('^[1-9][0-9]{0,4}[hm]$') ||      (self.endsWith('h') ? int(self.substring(0, size(self) - 1)) * 60 :      int(self.substring(0, size(self) - 1))) <= 10080 &&      (self.endsWith('h') ? int(self.substring(0, size(self) - 1)) * 60 :      int(self.substring(0, size(self) - 1))) >= 15";
const MSG_TOKEN_TTL: &str =
    "bootstrapTokenTTL must be whole hours or minutes such as 24h or 90m, from 15m to 168h";

impl NodesSpec {
    /// The bootstrap token lifetime in seconds, when `bootstrapTokenTTL` is valid: exactly the
    /// values the CEL rules accept (`[1-9][0-9]{0,4}` then `h` or `m`, from 15m to 168h), and no
    /// panic on any other string (an object stored before the rules, or written past them).
    pub fn bootstrap_token_ttl_seconds(&self) -> Option<u64> {
        let ttl = self.bootstrap_token_ttl.as_str();
        let (number, unit) = match ttl.strip_suffix('h') {
            Some(number) => (number, 3600),
            None => (ttl.strip_suffix('m')?, 60),
        };
        let well_formed = (1..=5).contains(&number.len())
            && !number.starts_with('0')
            && number.bytes().all(|b| b.is_ascii_digit());
        let seconds = number.parse::<u64>().ok().filter(|_| well_formed)? * unit;
        (15 * 60..=168 * 3600).contains(&seconds).then_some(seconds)
    }
}

impl Default for NodesSpec {
    fn default() -> Self {
        Self {
            bootstrap_token_ttl: default_bootstrap_token_ttl(),
        }
    }
}

fn default_bootstrap_token_ttl() -> String {
    DEFAULT_BOOTSTRAP_TOKEN_TTL.to_owned()
}

// ---------------------------------------------------------------------------------------------
// addons
// ---------------------------------------------------------------------------------------------

/// The addons the operator keeps inside the tenant. Switching one off removes it from the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AddonsSpec {
    /// CoreDNS: Deployment `kube-system/coredns` and Service `kube-dns` on the DNS service IP,
    /// resolving the cluster domain and forwarding the rest to the node's resolver.
    #[serde(default, rename = "coreDNS")]
    pub core_dns: AddonSpec,

    /// kube-proxy: DaemonSet `kube-system/kube-proxy` (iptables mode) on every node.
    #[serde(default)]
    pub kube_proxy: AddonSpec,
}

/// One addon.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AddonSpec {
    /// Whether the operator runs it (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for AddonSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

/// The observed state of a hosted control plane, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantControlPlaneStatus {
    /// Coarse lifecycle phase (see Phase); automation reads the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Current state of each aspect (PKIReady, EtcdReady, APIServerReady, ControllersReady,
    /// Ready, ...), one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// URL of the tenant's kube-apiserver, e.g. `https://<tcp>-apiserver.<namespace>.svc:6443`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Kubernetes version the control plane runs now (spec.version once an upgrade completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Secret in this namespace holding an admin kubeconfig of the tenant (key `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretReference>,

    /// The tenant's worker nodes, as its API server lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeCounts>,

    /// Backups: the last good snapshot and what was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,

    /// GitOps: the hosted agent's delivery and each registration's credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<super::GitOpsStatus>,

    /// The certificates the operator issued: which expires first, and the next renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,

    /// The service-account keys: which signs, which are trusted, and the last rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key: Option<ServiceAccountKeyStatus>,

    /// The last CA rotation requested with `hostplane.dev/rotate-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<CaRotationStatus>,
}

/// Where a rotation of the tenant's CAs is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationStatus {
    /// The annotation's value that started it.
    pub id: String,
    /// `Preparing` (new CAs are trusted beside the old ones; the control plane rolls),
    /// `Rotating` (the new CAs sign: every certificate and kubeconfig is re-issued; the old CAs
    /// are still trusted, so old kubeconfigs still work), `Completing` (the old CAs left every
    /// trust bundle; the control plane rolls and refuses what they signed), `Completed`.
    pub phase: String,
    /// While `Rotating`: when the old CAs leave the trust bundles (RFC 3339), once every
    /// certificate they signed (a kubelet's client certificate included) has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_ca_trusted_until: Option<String>,
}

/// The service-account keys of the tenant, by the `kid` in the header of the tokens they sign.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountKeyStatus {
    /// The key that signs new tokens.
    pub signing_key_id: String,
    /// Every key whose tokens the API servers accept (the signing one first).
    pub accepted_key_ids: Vec<String>,
    /// The last rotation requested with `hostplane.dev/rotate-service-account-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<KeyRotationStatus>,
}

/// Where a key rotation is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationStatus {
    /// The annotation's value that started it.
    pub id: String,
    /// `Preparing` (the new key is trusted; API servers rolling), `Rotating` (the new key signs;
    /// the old one is still trusted), `Completing` (the old key is no longer trusted; API servers
    /// rolling), `Completed`.
    pub phase: String,
    /// While `Rotating`: when the old key is no longer trusted (RFC 3339), once no token it
    /// signed can still be valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_key_trusted_until: Option<String>,
}

/// When the tenant's certificates expire and are renewed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// The earliest `notAfter` of every certificate the operator issued (CAs included), RFC 3339.
    pub earliest_expiry: String,
    /// The Secret holding that certificate.
    pub earliest_expiry_secret: String,
    /// When the next leaf certificate is re-issued, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<String>,
}

/// What the backups have done.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The PersistentVolumeClaim in this namespace that holds the snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_name: Option<String>,

    /// The newest snapshot that was taken and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<Snapshot>,

    /// The scheduled time (RFC 3339) of the last scheduled backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled: Option<String>,

    /// The value of `hostplane.dev/backup-now` last served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,

    /// The last in-place restore (annotation `hostplane.dev/restore`) and where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// An in-place restore of the tenant's etcd from a snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The annotation's value this restore serves (`restoreFrom` for a tenant created from a
    /// snapshot).
    pub request: String,
    /// The TenantControlPlane whose backup volume holds the snapshot, when not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The snapshot restored (file name on the backup volume).
    pub snapshot: String,
    /// When this attempt began (`YYYYMMDD-HHMMSS`, UTC): its Jobs are named after it, so a value
    /// used before is a new restore, not the old Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// Stopping (the control plane scaled to zero), Restoring (a Job per etcd member writes the
    /// snapshot beside its data), Swapping (once all have: a Job per member puts it in place),
    /// Starting, then Succeeded or Failed.
    pub step: RestoreStep,
    /// What happened last, in words; for Failed, why and what to do.
    #[serde(default)]
    pub message: String,
}

/// The steps of an in-place restore.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum RestoreStep {
    /// The control plane and etcd are being scaled to zero.
    #[default]
    Stopping,
    /// A Job per etcd member checks the snapshot and writes it beside the member's data.
    Restoring,
    /// Every member's restored data is there: a Job per member puts it in place of the old.
    Swapping,
    /// The control plane is starting on the restored data.
    Starting,
    /// Done: the tenant is Ready on the restored data.
    Succeeded,
    /// Refused or failed; the tenant runs on the data it had (see the message).
    Failed,
}

/// One snapshot on the backup volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// File name on the volume, e.g. `demo-20261123-120000.db`.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// SHA-256 of the snapshot (hex), as etcd appended it and the backup Job checked it.
    pub sha256: String,
    /// Where it was copied to (`s3://<bucket>/<key>`), with `spec.backup.s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_to: Option<String>,
}

/// How many nodes the tenant has.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeCounts {
    /// Nodes registered.
    pub registered: u32,
    /// Nodes whose Ready condition is True.
    pub ready: u32,
}

/// Coarse lifecycle phase, for humans; automation reads the conditions. Provisioning: being
/// created. Ready: serving, every component ready. Upgrading: rolling to a new spec.version.
/// Rotating: replacing certificates or credentials. Hibernated: scaled to zero, etcd data kept.
/// Restoring: etcd being restored from a snapshot. Deleting: being deleted. Failed: stopped on an
/// error retrying cannot fix (see the conditions).
// The CRD shows this comment for `status.phase`: kube folds the variants into an `enum`, which
// drops per-variant docs, so the variants are described above.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being created: PKI, etcd and the control plane are coming up.
    Provisioning,
    /// Serving: every component is ready.
    Ready,
    /// Rolling to a new spec.version.
    Upgrading,
    /// Replacing certificates or credentials.
    Rotating,
    /// Scaled to zero to save resources; etcd data is kept.
    Hibernated,
    /// Its etcd is being restored from a snapshot (status.backup.restore).
    Restoring,
    /// Being deleted.
    Deleting,
    /// Stopped on an error the operator cannot fix by retrying; see the conditions.
    Failed,
}

/// A reference to a Secret in the TenantControlPlane's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretReference {
    /// Name of the Secret.
    pub name: String,
}

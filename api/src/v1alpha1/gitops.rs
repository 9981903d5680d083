//! `spec.gitops`: hand the tenant to GitOps. A hosted Flux agent (pull model) beside the control
//! plane, and registrations that give a central agent (Flux, Cluster API, Argo CD, Sveltos) a
//! credential scoped to one role inside the tenant and expiring.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// `spec.gitops.registrations[].tokenTTL` when unset.
pub const DEFAULT_TOKEN_TTL: &str = "1h";
/// `spec.gitops.agent.interval` when unset.
pub const DEFAULT_AGENT_INTERVAL: &str = "1m";

/// GitOps delivery into the tenant.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitOpsSpec {
    /// A Flux agent (source-controller and kustomize-controller) run for this tenant in this
    /// namespace of the seed, applying one source into the tenant. Unset: no agent (removing it
    /// removes the agent; what it applied stays in the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,

    /// Credentials for central agents: each a token of a ServiceAccount inside the tenant bound to
    /// one ClusterRole, minted with a bounded lifetime and rotated at two-thirds of it, written
    /// where the agent reads it. Removing one deletes its ServiceAccount, which revokes its tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub registrations: Vec<Registration>,
}

/// The hosted agent: what it applies and how often it looks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Where the manifests come from: a Git repository or an OCI artifact.
    pub source: AgentSource,

    /// Folder in the source holding the manifests (or a kustomization.yaml), e.g. `./addons`.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("!self.contains('..')").message("gitops.agent.path must not contain '..'"))]
    pub path: String,

    /// How often the source is fetched and applied: whole seconds, minutes or hours (`30s`,
    /// `1m`, `1h`), from 10s.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new(INTERVAL_FORMAT).message(MSG_INTERVAL))]
    pub interval: String,

    /// Delete from the tenant what was applied before and is no longer in the source.
    #[serde(default = "default_true")]
    pub prune: bool,
}

const INTERVAL_FORMAT: &str = "self.matches('^[1-9][0-9]{0,3}[smh]$') && (!self.endsWith('s') || int(self.substring(0, size(self) - 1)) >= 10)";
const MSG_INTERVAL: &str =
    "gitops.agent.interval must be whole seconds, minutes or hours such as 30s, 1m or 1h, from 10s";

fn default_path() -> String {
    "./".to_owned()
}

fn default_interval() -> String {
    DEFAULT_AGENT_INTERVAL.to_owned()
}

fn default_true() -> bool {
    true
}

/// Exactly one of `git` and `oci`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.git) != has(self.oci)")
    .message("gitops.agent.source must set exactly one of git and oci"))]
#[serde(rename_all = "camelCase")]
pub struct AgentSource {
    /// A Git repository over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,

    /// An OCI artifact (as `flux push artifact` writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
}

/// A Git repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// `http://` or `https://` URL of the repository.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^ ]+$')")
        .message("gitops.agent.source.git.url must be an http:// or https:// URL"))]
    pub url: String,

    /// Branch to follow (default `main`), unless `tag` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,

    /// Tag to check out; wins over `branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
}

/// An OCI artifact.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciSource {
    /// `oci://` URL of the repository, e.g. `oci://registry.example.com/addons`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^oci://[^ ]+$')")
        .message("gitops.agent.source.oci.url must be an oci:// URL"))]
    pub url: String,

    /// Tag of the artifact.
    #[serde(default = "default_oci_tag")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,

    /// Plain HTTP to the registry (a local test registry only).
    #[serde(default)]
    pub insecure: bool,
}

fn default_oci_tag() -> String {
    "latest".to_owned()
}

/// One central agent's credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Name of the registration (a DNS label): the tenant ServiceAccount
    /// `hostplane-registrations/<name>` and the names written in the seed derive from it.
    #[schemars(length(min = 1, max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("a registration name must be lowercase letters, digits and '-', starting with a letter"))]
    pub name: String,

    /// The agent, which decides what is written: Flux and ClusterAPI a kubeconfig Secret
    /// `<tcp>-<name>-kubeconfig` (type `cluster.x-k8s.io/secret`, key `value`); ArgoCD a cluster
    /// Secret (label `argocd.argoproj.io/secret-type: cluster`); Sveltos a `SveltosCluster` and
    /// its kubeconfig Secret (when that CRD is installed in the seed).
    pub agent: RegistrationAgent,

    /// Seed namespace the credential is written to (Argo CD's namespace, say). Unset: this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a registration namespace must be a namespace name (a DNS label)"))]
    pub namespace: Option<String>,

    /// The ClusterRole inside the tenant the agent gets, bound cluster-wide. Required:
    /// `cluster-admin` only when asked for by name.
    #[schemars(length(min = 1, max = 253))]
    pub role: String,

    /// Lifetime of each token, whole minutes or hours from 10m to 24h (`1h`, `90m`). A new token
    /// is minted when two-thirds of it have passed; the old one stays valid until it expires.
    #[serde(default = "default_token_ttl", rename = "tokenTTL")]
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new(TOKEN_TTL_FORMAT).message(MSG_TOKEN_TTL))]
    pub token_ttl: String,
}

const TOKEN_TTL_FORMAT: &str = "self.matches('^[1-9][0-9]{0,3}[mh]$') && \
     (self.endsWith('h') ? int(self.substring(0, size(self) - 1)) * 60 : int(self.substring(0, size(self) - 1))) >= 10 && \
     (self.endsWith('h') ? int(self.substring(0, size(self) - 1)) * 60 : int(self.substring(0, size(self) - 1))) <= 1440";
const MSG_TOKEN_TTL: &str =
    "tokenTTL must be whole minutes or hours such as 1h or 90m, from 10m to 24h";

fn default_token_ttl() -> String {
    DEFAULT_TOKEN_TTL.to_owned()
}

impl Registration {
    /// The token lifetime in seconds, when `tokenTTL` is what the rule accepts.
    #[must_use]
    pub fn token_ttl_seconds(&self) -> Option<i64> {
        duration_seconds(&self.token_ttl, &[('m', 60), ('h', 3600)])
            .filter(|s| (600..=86_400).contains(s))
    }
}

impl AgentSpec {
    /// The interval in seconds, when `interval` is what the rule accepts.
    #[must_use]
    pub fn interval_seconds(&self) -> Option<i64> {
        duration_seconds(&self.interval, &[('s', 1), ('m', 60), ('h', 3600)]).filter(|s| *s >= 10)
    }
}

/// `<1-4 digits, no leading zero><unit>` in seconds, for the units given.
fn duration_seconds(value: &str, units: &[(char, i64)]) -> Option<i64> {
    let unit = value.chars().last()?;
    let (_, factor) = units.iter().find(|(u, _)| *u == unit)?;
    let number = value.strip_suffix(unit)?;
    let well_formed = (1..=4).contains(&number.len())
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| number.parse::<i64>().ok().map(|n| n * factor))?
}

/// The central agents a registration can be for.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrationAgent {
    /// A Flux Kustomization or HelmRelease in the seed (`spec.kubeConfig.secretRef`).
    Flux,
    /// Cluster API's kubeconfig Secret contract.
    ClusterAPI,
    /// An Argo CD cluster Secret.
    ArgoCD,
    /// A Sveltos `SveltosCluster`.
    Sveltos,
}

/// What GitOps looks like now.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitOpsStatus {
    /// The hosted agent, when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,

    /// Each registration: where its credential is and until when it is valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<RegistrationStatus>,
}

/// The hosted agent's delivery.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The source, as `git <url> <ref>` or `oci <url>:<tag>`.
    pub source: String,
    /// The revision last applied into the tenant (Flux's `lastAppliedRevision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
}

/// One registration as written.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// The registration's name.
    pub name: String,
    /// The agent it is for.
    pub agent: String,
    /// `<namespace>/<name>` of what the agent reads (Secret, or SveltosCluster).
    pub written: String,
    /// The ServiceAccount inside the tenant (`<namespace>/<name>`): deleting it revokes every
    /// token at once.
    pub service_account: String,
    /// When the current token expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it will be replaced (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(ttl: &str) -> Registration {
        Registration {
            name: "argo".into(),
            agent: RegistrationAgent::ArgoCD,
            namespace: None,
            role: "view".into(),
            token_ttl: ttl.into(),
        }
    }

    #[test]
    fn token_lifetimes_are_read_as_the_rule_accepts_them() {
        assert_eq!(registration("1h").token_ttl_seconds(), Some(3600));
        assert_eq!(registration("90m").token_ttl_seconds(), Some(5400));
        assert_eq!(registration("10m").token_ttl_seconds(), Some(600));
        assert_eq!(registration("24h").token_ttl_seconds(), Some(86_400));
        for bad in ["9m", "25h", "0h", "01h", "1d", "", "h", "1é", "99999m"] {
            assert_eq!(registration(bad).token_ttl_seconds(), None, "{bad}");
        }
    }

    /// The messages of the rules a spec with `gitops` breaks, as kube's CEL evaluator finds them.
    fn refusals(gitops: &serde_json::Value) -> Vec<String> {
        let spec = serde_json::json!({"version": "1.36.3", "gitops": gitops});
        match crate::v1alpha1::TenantControlPlaneSpec::validate_cel(&spec, None) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
        }
    }

    #[test]
    fn the_gitops_rules_refuse_what_they_name_and_accept_the_rest() {
        let git = |url: &str| serde_json::json!({"agent": {"source": {"git": {"url": url}}}});
        assert!(refusals(&git("https://g.example/r.git")).is_empty());
        assert!(refusals(&git("http://10.0.0.1:8418/git/r.git")).is_empty());
        assert_eq!(
            refusals(&git("git@g.example:r.git")),
            ["gitops.agent.source.git.url must be an http:// or https:// URL"]
        );
        let both = serde_json::json!({"agent": {"source": {
            "git": {"url": "https://g/r.git"}, "oci": {"url": "oci://r/a"}}}});
        assert_eq!(
            refusals(&both),
            ["gitops.agent.source must set exactly one of git and oci"]
        );
        let oci = |url: &str, interval: &str, path: &str| serde_json::json!({"agent": {"source": {"oci": {"url": url}}, "interval": interval, "path": path}});
        assert!(refusals(&oci("oci://r.example/a", "10s", "./x")).is_empty());
        assert_eq!(
            refusals(&oci("https://r.example/a", "1m", "./")),
            ["gitops.agent.source.oci.url must be an oci:// URL"]
        );
        for interval in ["9s", "0m", "1d", "90"] {
            assert_eq!(
                refusals(&oci("oci://r/a", interval, "./")),
                [MSG_INTERVAL],
                "{interval}"
            );
        }
        assert_eq!(
            refusals(&oci("oci://r/a", "1m", "../other")),
            ["gitops.agent.path must not contain '..'"]
        );
        let registration = |name: &str, ttl: &str| {
            serde_json::json!({"registrations": [
                {"name": name, "agent": "ArgoCD", "role": "view", "tokenTTL": ttl}]})
        };
        assert!(refusals(&registration("argo", "10m")).is_empty());
        assert!(refusals(&registration("argo-2", "24h")).is_empty());
        for ttl in ["9m", "25h", "1441m", "0h", "1d"] {
            assert_eq!(
                refusals(&registration("argo", ttl)),
                [MSG_TOKEN_TTL],
                "{ttl}"
            );
        }
        assert_eq!(refusals(&registration("Argo", "1h")).len(), 1);
    }

    #[test]
    fn intervals_are_read_as_the_rule_accepts_them() {
        let agent = |interval: &str| AgentSpec {
            source: AgentSource {
                git: None,
                oci: None,
            },
            path: "./".into(),
            interval: interval.into(),
            prune: true,
        };
        assert_eq!(agent("10s").interval_seconds(), Some(10));
        assert_eq!(agent("1m").interval_seconds(), Some(60));
        assert_eq!(agent("2h").interval_seconds(), Some(7200));
        for bad in ["9s", "0m", "1d", "m", "1.5m"] {
            assert_eq!(agent(bad).interval_seconds(), None, "{bad}");
        }
    }
}

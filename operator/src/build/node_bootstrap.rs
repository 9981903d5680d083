//! What a tenant needs so that a worker joins with nothing but a bootstrap token, the objects
//! `kubeadm init` would create (its `bootstrap-token` and `upload-config` phases): the token
//! Secret, `kube-public/cluster-info` and its anonymous read, the RBAC that lets bootstrappers
//! create node CSRs (which kube-controller-manager then approves: node client certificates and
//! their renewals, nothing else) and read nodes, and the `kubeadm-config` and `kubelet-config`
//! ConfigMaps `kubeadm join` reads. All of it is applied *inside the tenant*. In the seed, the
//! `<tcp>-join` Secret hands the token to users and automation.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::pod::typed;
use super::{BuildError, MANAGED_BY, Tenant};
use crate::pki::{CaItem, CertKeyPair, Item, Pki};

/// The group kubeadm's default node token authenticates as (besides `system:bootstrappers`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// `<tcp>-join`: the seed Secret with the token, the bootstrap kubeconfig and the join command.
pub const JOIN_SUFFIX: &str = "join";
/// Keys of the join Secret.
pub const JOIN_TOKEN: &str = "token";
pub const JOIN_EXPIRATION: &str = "expiration";
pub const JOIN_KUBECONFIG: &str = "bootstrap-kubeconfig";
pub const JOIN_CA_CERT_HASH: &str = "ca-cert-hash";
pub const JOIN_COMMAND: &str = "join-command";
pub const JOIN_CA: &str = "ca.crt";

const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`) and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    secret: String,
    pub expiration: OffsetDateTime,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret half is a credential: never in a log line.
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl BootstrapToken {
    /// A token from 22 characters drawn uniformly from `[a-z0-9]` by the caller (the randomness
    /// stays at the edge); `None` if any is outside that alphabet.
    pub fn from_chars(chars: &[u8; 22], expiration: OffsetDateTime) -> Option<Self> {
        if !chars.iter().all(|c| TOKEN_ALPHABET.contains(c)) {
            return None;
        }
        let text = String::from_utf8(chars.to_vec()).ok()?;
        let (id, secret) = text.split_at(6);
        Some(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
            expiration,
        })
    }

    /// The characters a token is drawn from.
    pub const fn alphabet() -> &'static [u8] {
        TOKEN_ALPHABET
    }

    /// `<id>.<secret>`, as `kubeadm join --token` and a kubeconfig's `token` take it.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// Whether a new token is due at `now`: a third of `ttl_seconds` or less is left.
    pub fn rotation_due(&self, now: OffsetDateTime, ttl_seconds: u64) -> bool {
        let left = (self.expiration - now).whole_seconds();
        let third = i64::try_from(ttl_seconds / 3).unwrap_or(i64::MAX);
        left <= third
    }

    /// When a new token becomes due (see [`Self::rotation_due`]).
    pub fn rotation_at(&self, ttl_seconds: u64) -> OffsetDateTime {
        let third = i64::try_from(ttl_seconds / 3).unwrap_or(i64::MAX);
        self.expiration - time::Duration::seconds(third)
    }

    /// The token a join Secret holds, if it holds a well-formed one.
    pub fn from_join_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        let token = text(JOIN_TOKEN)?;
        let expiration = OffsetDateTime::parse(&text(JOIN_EXPIRATION)?, &Rfc3339).ok()?;
        let (id, secret) = token.split_once('.')?;
        let chars: [u8; 22] = [id.as_bytes(), secret.as_bytes()]
            .concat()
            .try_into()
            .ok()?;
        (id.len() == 6).then_some(())?;
        Self::from_chars(&chars, expiration)
    }

    fn expiration_rfc3339(&self) -> Result<String, BuildError> {
        self.expiration
            .format(&Rfc3339)
            .map_err(|e| BuildError::Render("bootstrap token expiration", e.to_string()))
    }
}

/// The objects applied inside the tenant, by kind.
#[derive(Debug, Default)]
pub struct TenantObjects {
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

fn ca(pki: &Pki) -> Result<&CertKeyPair, BuildError> {
    pki.cert(Item::Ca)
        .ok_or_else(|| BuildError::Render("node bootstrap", "the PKI has no cluster CA".into()))
}

fn meta(name: &str, namespace: Option<&str>) -> serde_json::Value {
    let mut meta = json!({"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

/// A kubeconfig whose only cluster is the tenant at its endpoint; `user` is the `user:` body.
/// `ca_pem`: the cluster CA's trust bundle (both CAs during a rotation).
fn kubeconfig(tenant: &Tenant, ca_pem: &str, user: Option<&serde_json::Value>) -> String {
    let cluster = json!({
        "server": tenant.endpoint_url(),
        "certificate-authority-data": STANDARD.encode(ca_pem),
    });
    let config = match user {
        // cluster-info is kubeadm's shape: one unnamed cluster, no users or contexts.
        None => json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "", "cluster": cluster}],
            "contexts": [], "users": [], "current-context": "", "preferences": {},
        }),
        Some(user) => json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": tenant.name, "cluster": cluster}],
            "users": [{"name": "tls-bootstrap-token-user", "user": user}],
            "contexts": [{"name": "tls-bootstrap", "context": {"cluster": tenant.name, "user": "tls-bootstrap-token-user"}}],
            "current-context": "tls-bootstrap", "preferences": {},
        }),
    };
    // JSON is YAML; one line keeps the signed cluster-info content short and stable.
    config.to_string()
}

fn cluster_role_binding(name: &str, role: &str, subject: (&str, &str)) -> serde_json::Value {
    json!({
        "metadata": meta(name, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject.0, "name": subject.1}],
    })
}

/// A Role allowing `get` of one ConfigMap, bound to `subjects` (kind, name).
fn configmap_reader(
    namespace: &str,
    name: &str,
    configmap: &str,
    subjects: &[(&str, &str)],
) -> Result<(Role, RoleBinding), BuildError> {
    let role = typed(
        "Role",
        json!({
            "metadata": meta(name, Some(namespace)),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [configmap], "verbs": ["get"]}],
        }),
    )?;
    let subjects: Vec<serde_json::Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}))
        .collect();
    let binding = typed(
        "RoleBinding",
        json!({
            "metadata": meta(name, Some(namespace)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subjects,
        }),
    )?;
    Ok((role, binding))
}

/// kubeadm's ClusterConfiguration for this tenant, as `kubeadm join` reads it.
fn cluster_configuration(tenant: &Tenant) -> String {
    let net = &tenant.spec.network;
    let endpoint = tenant.endpoint.as_ref().map_or_else(String::new, |e| {
        format!("{}:{}", super::url_host(&e.host), e.port)
    });
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: {}\nkubernetesVersion: v{}\ncontrolPlaneEndpoint: \"{endpoint}\"\ncertificatesDir: /etc/kubernetes/pki\nimageRepository: {}\nencryptionAlgorithm: ECDSA-P256\nnetworking:\n  dnsDomain: {}\n  serviceSubnet: {}\n  podSubnet: {}\n",
        tenant.name,
        tenant.version,
        tenant.registry,
        net.cluster_domain,
        net.service_cidr,
        net.pod_cidr,
    )
}

/// The KubeletConfiguration every node of the tenant gets (kubeadm's `kubelet-config`).
fn kubelet_configuration(tenant: &Tenant) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous: {{enabled: false}}\n  webhook: {{enabled: true}}\n  x509: {{clientCAFile: /etc/kubernetes/pki/ca.crt}}\nauthorization: {{mode: Webhook}}\ncgroupDriver: systemd\nclusterDNS: [\"{}\"]\nclusterDomain: {}\nrotateCertificates: true\nstaticPodPath: /etc/kubernetes/manifests\n",
        tenant.dns_service_ip, tenant.spec.network.cluster_domain,
    )
}

/// Everything applied inside the tenant for node bootstrap with `token`.
pub fn tenant_objects(
    tenant: &Tenant,
    pki: &Pki,
    token: &BootstrapToken,
) -> Result<TenantObjects, BuildError> {
    let bundle = pki.trust_bundle_pem(CaItem::Cluster);
    let mut token_secret: Secret = typed(
        "bootstrap token Secret",
        json!({
            "metadata": meta(&format!("bootstrap-token-{}", token.id), Some("kube-system")),
            "type": "bootstrap.kubernetes.io/token",
        }),
    )?;
    let data: BTreeMap<String, ByteString> = [
        ("token-id", token.id.clone()),
        ("token-secret", token.secret.clone()),
        ("expiration", token.expiration_rfc3339()?),
        ("usage-bootstrap-authentication", "true".to_owned()),
        ("usage-bootstrap-signing", "true".to_owned()),
        ("auth-extra-groups", BOOTSTRAPPERS_GROUP.to_owned()),
        (
            "description",
            format!("hostplane: joins nodes to {}", tenant.name),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    token_secret.data = Some(data);

    let config_map = |name: &str, ns: &str, key: &str, value: String| {
        typed::<ConfigMap>(
            "ConfigMap",
            json!({"metadata": meta(name, Some(ns)), "data": {key: value}}),
        )
    };
    let config_maps = vec![
        config_map(
            "cluster-info",
            "kube-public",
            "kubeconfig",
            kubeconfig(tenant, &bundle, None),
        )?,
        config_map(
            "kubeadm-config",
            "kube-system",
            "ClusterConfiguration",
            cluster_configuration(tenant),
        )?,
        config_map(
            "kubelet-config",
            "kube-system",
            "kubelet",
            kubelet_configuration(tenant),
        )?,
    ];

    let (roles, role_bindings, cluster_roles, cluster_role_bindings) = rbac()?;
    Ok(TenantObjects {
        secrets: vec![token_secret],
        config_maps,
        cluster_roles,
        cluster_role_bindings,
        roles,
        role_bindings,
    })
}

type Rbac = (
    Vec<Role>,
    Vec<RoleBinding>,
    Vec<ClusterRole>,
    Vec<ClusterRoleBinding>,
);

/// Who may do what for node bootstrap, as kubeadm grants it.
fn rbac() -> Result<Rbac, BuildError> {
    let bootstrappers = ("Group", BOOTSTRAPPERS_GROUP);
    let nodes = ("Group", "system:nodes");
    let (cluster_info_role, cluster_info_binding) = configmap_reader(
        "kube-public",
        "kubeadm:bootstrap-signer-clusterinfo",
        "cluster-info",
        &[("User", "system:anonymous")],
    )?;
    let (kubeadm_role, kubeadm_binding) = configmap_reader(
        "kube-system",
        "kubeadm:nodes-kubeadm-config",
        "kubeadm-config",
        &[bootstrappers, nodes],
    )?;
    let (kubelet_role, kubelet_binding) = configmap_reader(
        "kube-system",
        "kubeadm:kubelet-config",
        "kubelet-config",
        &[bootstrappers, nodes],
    )?;
    let get_nodes: ClusterRole = typed(
        "ClusterRole",
        json!({
            "metadata": meta("kubeadm:get-nodes", None),
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
        }),
    )?;
    let bindings = [
        // Bootstrappers may create CSRs ...
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            bootstrappers,
        ),
        // ... which kube-controller-manager approves for node client certificates ...
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            bootstrappers,
        ),
        // ... and for a node renewing its own client certificate.
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            nodes,
        ),
        ("kubeadm:get-nodes", "kubeadm:get-nodes", bootstrappers),
    ];
    let cluster_role_bindings = bindings
        .iter()
        .map(|(name, role, subject)| {
            typed(
                "ClusterRoleBinding",
                cluster_role_binding(name, role, *subject),
            )
        })
        .collect::<Result<Vec<ClusterRoleBinding>, _>>()?;
    Ok((
        vec![cluster_info_role, kubeadm_role, kubelet_role],
        vec![cluster_info_binding, kubeadm_binding, kubelet_binding],
        vec![get_nodes],
        cluster_role_bindings,
    ))
}

/// `<tcp>-join` in the seed: the token, its expiration, a bootstrap kubeconfig, the CA, the CA's
/// public key pin and the `kubeadm join` command line.
pub fn join_secret(
    tenant: &Tenant,
    pki: &Pki,
    token: &BootstrapToken,
) -> Result<Secret, BuildError> {
    let bundle = pki.trust_bundle_pem(CaItem::Cluster);
    let pin = ca(pki)?
        .public_key_pin()
        .map_err(|e| BuildError::Render("CA public key pin", e))?;
    let endpoint = tenant.endpoint.as_ref().map_or_else(String::new, |e| {
        format!("{}:{}", super::url_host(&e.host), e.port)
    });
    let command = format!(
        "kubeadm join {endpoint} --token {} --discovery-token-ca-cert-hash {pin}",
        token.token()
    );
    let user = json!({"token": token.token()});
    let mut secret = super::owned_secret(tenant, &format!("{}-{JOIN_SUFFIX}", tenant.name));
    secret.type_ = Some("Opaque".to_owned());
    let data: BTreeMap<String, ByteString> = [
        (JOIN_TOKEN, token.token()),
        (JOIN_EXPIRATION, token.expiration_rfc3339()?),
        (JOIN_KUBECONFIG, kubeconfig(tenant, &bundle, Some(&user))),
        (JOIN_CA, bundle),
        (JOIN_CA_CERT_HASH, pin),
        (JOIN_COMMAND, command),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    secret.data = Some(data);
    Ok(secret)
}

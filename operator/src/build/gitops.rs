//! GitOps, as pure functions: the hosted Flux agent's seed workloads, the Flux objects applied
//! inside the tenant, the kubeconfigs of ServiceAccount tokens, and what each registration writes
//! in the seed for its central agent.
//!
//! Every credential here is a token of a ServiceAccount inside one tenant (TokenRequest, bounded
//! lifetime), so it is worth nothing at any other tenant and dies with its ServiceAccount.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hostplane_api::v1alpha1::{AgentSpec, Registration, RegistrationAgent};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::kubeconfig::{CAPI_CLUSTER_LABEL, CAPI_SECRET_TYPE, KUBECONFIG_KEY};
use super::pod::{container_security, pod_security, typed};
use super::{BuildError, Tenant};

/// The image holding Flux's source-controller and kustomize-controller, kubectl and Flux's CRDs
/// (built from their Go modules by e2e/seed/build-binaries and build-images), when the operator
/// is not told another (`HOSTPLANE_GITOPS_AGENT_IMAGE`).
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/hostplane/flux-agent:v1.7.3";
/// Where the agent image keeps Flux's CRDs.
const CRDS_DIR: &str = "/crds";

/// Inside the tenant: the agent's namespace (Flux's own), ServiceAccount, and the name of its
/// source and Kustomization.
pub const AGENT_NAMESPACE: &str = "flux-system";
pub const AGENT_SERVICE_ACCOUNT: &str = "hostplane-agent";
pub const AGENT_OBJECT: &str = "hostplane";
/// Inside the tenant: the namespace of the registrations' ServiceAccounts.
pub const REGISTRATIONS_NAMESPACE: &str = "hostplane-registrations";

/// The components (pod labels) of the agent's two Deployments.
pub const SOURCE_COMPONENT: &str = "gitops-source";
pub const KUSTOMIZE_COMPONENT: &str = "gitops-kustomize";
/// source-controller's artifact server port, and both controllers' health port.
const ARTIFACT_PORT: i32 = 9090;
const HEALTH_PORT: i32 = 9440;
/// Where the agent's pods mount its credential Secret.
const CREDENTIAL_DIR: &str = "/var/run/hostplane/agent";

/// Keys of a token Secret: the token, the tenant's CA, and the kubeconfig (`value`).
pub const TOKEN_KEY: &str = "token";
pub const CA_KEY: &str = "ca.crt";

/// Annotations on a Secret holding a token: when it expires and when a new one is minted, and the
/// uid of the ServiceAccount it belongs to (a recreated ServiceAccount needs a new token).
pub const EXPIRES_AT: &str = "hostplane.dev/token-expires-at";
pub const RENEW_AT: &str = "hostplane.dev/token-renew-at";
pub const SERVICE_ACCOUNT_UID: &str = "hostplane.dev/service-account-uid";
/// Labels on what a registration writes: the uid of its TenantControlPlane (what is written in
/// another namespace cannot be owned by it) and the registration's name.
pub const REGISTRATION_OF: &str = "hostplane.dev/registration-of";
pub const REGISTRATION: &str = "hostplane.dev/registration";
/// Annotation naming the TenantControlPlane (`<namespace>/<name>`) a registration belongs to.
pub const REGISTRATION_TCP: &str = "hostplane.dev/tenant-control-plane";

/// `<tcp>-gitops-source`, `<tcp>-gitops-kustomize`.
pub fn agent_name(tenant: &Tenant, component: &str) -> String {
    format!("{}-{component}", tenant.name)
}

/// The Secret holding the agent's token and kubeconfig: `<tcp>-gitops-agent-token`.
pub fn agent_secret_name(tenant: &Tenant) -> String {
    format!("{}-gitops-agent-token", tenant.name)
}

/// The hosted agent's workloads in the seed.
#[derive(Clone, Debug)]
pub struct AgentWorkloads {
    pub deployments: Vec<Deployment>,
    pub service: Service,
    pub network_policy: NetworkPolicy,
}

/// The environment of every agent container: its kubeconfig (the tenant's), Flux's namespace.
fn agent_env() -> serde_json::Value {
    json!([
        {"name": "KUBECONFIG", "value": format!("{CREDENTIAL_DIR}/{KUBECONFIG_KEY}")},
        {"name": "RUNTIME_NAMESPACE", "value": AGENT_NAMESPACE},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TUF_ROOT", "value": "/tmp/.sigstore"},
    ])
}

/// The init container that applies Flux's CRDs (from the image) into the tenant.
fn crds_init(image: &str) -> serde_json::Value {
    json!({
        "name": "flux-crds",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kubectl", "apply", "--server-side", "--force-conflicts",
                    "--field-manager=hostplane", "-f", CRDS_DIR],
        "env": agent_env(),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "credential", "mountPath": CREDENTIAL_DIR, "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    })
}

/// One of the agent's Deployments: `binary` of the image with `args`, the credential Secret and
/// an emptyDir `/tmp` mounted, more emptyDirs in `scratch` (name, path), `ports` (name, port).
fn agent_deployment(
    tenant: &Tenant,
    image: &str,
    component: &str,
    binary: &str,
    args: &[String],
    scratch: &[(&str, &str)],
    ports: &[(&str, i32)],
) -> Result<Deployment, BuildError> {
    let mut mounts = vec![
        json!({"name": "credential", "mountPath": CREDENTIAL_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "credential", "secret": {"secretName": agent_secret_name(tenant), "defaultMode": 0o440}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    for (name, path) in scratch {
        mounts.push(json!({"name": name, "mountPath": path}));
        volumes.push(json!({"name": name, "emptyDir": {}}));
    }
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": HEALTH_PORT}, "periodSeconds": 10});
    let ports: Vec<_> = ports
        .iter()
        .map(|(name, port)| json!({"name": name, "containerPort": port}))
        .collect();
    let mut d: Deployment = typed(
        "GitOps agent Deployment",
        json!({
            "spec": {
                "replicas": tenant.replicas(1),
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": tenant.selector(component)},
                "template": {
                    "metadata": {"labels": tenant.labels(component)},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        // Both apply the CRDs (idempotent): the one that starts first would
                        // otherwise stop on kinds its cache cannot find.
                        "initContainers": [crds_init(image)],
                        "containers": [{
                            "name": binary,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": [binary],
                            "args": args,
                            "env": agent_env(),
                            "ports": ports,
                            "readinessProbe": probe("/readyz"),
                            "livenessProbe": probe("/healthz"),
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "64Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": container_security(),
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
        }),
    )?;
    d.metadata = tenant.meta(&agent_name(tenant, component), component);
    Ok(d)
}

/// source-controller and kustomize-controller (each first applies Flux's CRDs into the tenant,
/// from its image), each talking only to this tenant's API server with the agent's token; a
/// Service for source-controller's artifacts, which only kustomize-controller may reach.
pub fn agent_workloads(tenant: &Tenant, image: &str) -> Result<AgentWorkloads, BuildError> {
    let source = agent_name(tenant, SOURCE_COMPONENT);
    let common = [
        "--watch-all-namespaces=true".to_owned(),
        "--enable-leader-election=false".to_owned(),
        "--log-encoding=json".to_owned(),
        format!("--health-addr=:{HEALTH_PORT}"),
        "--metrics-addr=:8080".to_owned(),
        "--events-addr=".to_owned(),
    ];
    let mut source_args = common.to_vec();
    source_args.extend([
        "--storage-path=/data".to_owned(),
        format!("--storage-addr=:{ARTIFACT_PORT}"),
        format!(
            "--storage-adv-addr={}.{}.svc.{}.:{ARTIFACT_PORT}",
            source, tenant.namespace, tenant.seed_domain
        ),
    ]);
    let mut kustomize_args = common.to_vec();
    kustomize_args.push("--no-remote-bases=true".to_owned());
    let mut service: Service = typed(
        "GitOps artifact Service",
        json!({"spec": {
            "selector": tenant.selector(SOURCE_COMPONENT),
            "ports": [{"name": "http", "port": ARTIFACT_PORT, "targetPort": ARTIFACT_PORT}],
        }}),
    )?;
    service.metadata = tenant.meta(&source, SOURCE_COMPONENT);
    let mut network_policy: NetworkPolicy = typed(
        "GitOps artifact NetworkPolicy",
        json!({"spec": {
            "podSelector": {"matchLabels": tenant.selector(SOURCE_COMPONENT)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": tenant.selector(KUSTOMIZE_COMPONENT)}}],
                 "ports": [{"protocol": "TCP", "port": ARTIFACT_PORT}]},
                {"ports": [{"protocol": "TCP", "port": HEALTH_PORT}]},
            ],
        }}),
    )?;
    network_policy.metadata = tenant.meta(&source, SOURCE_COMPONENT);
    Ok(AgentWorkloads {
        deployments: vec![
            agent_deployment(
                tenant,
                image,
                SOURCE_COMPONENT,
                "source-controller",
                &source_args,
                &[("data", "/data")],
                &[("healthz", HEALTH_PORT), ("http", ARTIFACT_PORT)],
            )?,
            agent_deployment(
                tenant,
                image,
                KUSTOMIZE_COMPONENT,
                "kustomize-controller",
                &kustomize_args,
                &[],
                &[("healthz", HEALTH_PORT)],
            )?,
        ],
        service,
        network_policy,
    })
}

/// How a token kubeconfig carries its token: inline (for a central agent), or as a file next to
/// it that the client re-reads (the hosted agent's, so a rotated token is picked up without a
/// restart).
pub enum TokenIn<'a> {
    Inline(&'a str),
    File(&'a str),
}

/// A kubeconfig for a ServiceAccount token at `server`, trusting `ca_pem`.
pub fn token_kubeconfig(cluster: &str, server: &str, ca_pem: &str, token: &TokenIn<'_>) -> String {
    let user = match token {
        TokenIn::Inline(t) => format!("token: {t}"),
        TokenIn::File(path) => format!("tokenFile: {path}"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {cluster}\n  user:\n    {user}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {cluster}\ncurrent-context: {cluster}\n",
        STANDARD.encode(ca_pem.as_bytes())
    )
}

/// A minted token and what it is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub renew_at: String,
    pub service_account_uid: String,
}

impl Token {
    fn annotate(&self, secret: &mut Secret) {
        let annotations = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(EXPIRES_AT.to_owned(), self.expires_at.clone());
        annotations.insert(RENEW_AT.to_owned(), self.renew_at.clone());
        annotations.insert(
            SERVICE_ACCOUNT_UID.to_owned(),
            self.service_account_uid.clone(),
        );
    }
}

/// When a token minted at `issued` (Unix seconds) for `ttl` seconds is replaced: two-thirds of
/// its life.
pub fn renew_at(issued: i64, ttl: i64) -> i64 {
    issued + ttl * 2 / 3
}

/// The hosted agent's credential Secret: token, CA, and a kubeconfig reading the token file.
pub fn agent_secret(tenant: &Tenant, server: &str, ca_pem: &str, token: &Token) -> Secret {
    let mut secret = super::owned_secret(tenant, &agent_secret_name(tenant));
    let kubeconfig = token_kubeconfig(
        &tenant.name,
        server,
        ca_pem,
        &TokenIn::File(&format!("{CREDENTIAL_DIR}/{TOKEN_KEY}")),
    );
    secret.data = Some(
        [
            (TOKEN_KEY, token.token.clone()),
            (CA_KEY, ca_pem.to_owned()),
            (KUBECONFIG_KEY, kubeconfig),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect(),
    );
    token.annotate(&mut secret);
    secret
}

/// Flux's source inside the tenant, as JSON for a dynamic apply: a GitRepository or an
/// OCIRepository `flux-system/hostplane`.
pub fn tenant_source(agent: &AgentSpec) -> serde_json::Value {
    let meta = json!({"name": AGENT_OBJECT, "namespace": AGENT_NAMESPACE,
                      "labels": {"app.kubernetes.io/managed-by": super::MANAGED_BY}});
    let interval = agent.interval.clone();
    if let Some(git) = &agent.source.git {
        let reference = match (&git.tag, &git.branch) {
            (Some(tag), _) => json!({"tag": tag}),
            (None, Some(branch)) => json!({"branch": branch}),
            (None, None) => json!({"branch": "main"}),
        };
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": meta,
            "spec": {"url": git.url, "ref": reference, "interval": interval, "timeout": "60s"},
        })
    } else {
        let oci = agent
            .source
            .oci
            .clone()
            .unwrap_or_else(|| hostplane_api::v1alpha1::OciSource {
                url: String::new(),
                tag: "latest".to_owned(),
                insecure: false,
            });
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository", "metadata": meta,
            "spec": {"url": oci.url, "ref": {"tag": oci.tag}, "interval": interval,
                     "insecure": oci.insecure, "timeout": "60s"},
        })
    }
}

/// The source's kind, as `tenant_source` writes it.
pub fn source_kind(agent: &AgentSpec) -> &'static str {
    if agent.source.git.is_some() {
        "GitRepository"
    } else {
        "OCIRepository"
    }
}

/// Flux's Kustomization `flux-system/hostplane` inside the tenant, applying `path` of the source.
pub fn tenant_kustomization(agent: &AgentSpec) -> serde_json::Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": AGENT_OBJECT, "namespace": AGENT_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": super::MANAGED_BY}},
        "spec": {
            "sourceRef": {"kind": source_kind(agent), "name": AGENT_OBJECT},
            "path": agent.path,
            "interval": agent.interval,
            "retryInterval": "20s",
            "timeout": "2m",
            "prune": agent.prune,
        },
    })
}

/// The source as status shows it: `git <url> <ref>` or `oci <url>:<tag>`.
pub fn describe_source(agent: &AgentSpec) -> String {
    match (&agent.source.git, &agent.source.oci) {
        (Some(git), _) => {
            let reference = git
                .tag
                .as_ref()
                .map(|t| format!("tag {t}"))
                .or_else(|| git.branch.as_ref().map(|b| format!("branch {b}")))
                .unwrap_or_else(|| "branch main".to_owned());
            format!("git {} {reference}", git.url)
        }
        (None, Some(oci)) => format!("oci {}:{}", oci.url, oci.tag),
        (None, None) => "none".to_owned(),
    }
}

/// The ClusterRoleBinding giving a registration's ServiceAccount its role in the tenant.
pub fn registration_binding_name(registration: &str) -> String {
    format!("hostplane-registration:{registration}")
}

/// Where a registration writes in the seed: its namespace there.
pub fn registration_namespace<'a>(tenant: &'a Tenant, registration: &'a Registration) -> &'a str {
    registration
        .namespace
        .as_deref()
        .unwrap_or(&tenant.namespace)
}

/// The name of what a registration writes: `<tcp>-<name>-kubeconfig` (Flux, Cluster API),
/// `<tcp>-<name>` (Argo CD cluster Secret; SveltosCluster, whose kubeconfig Secret is
/// `<tcp>-<name>-sveltos-kubeconfig`).
pub fn registration_object_name(tenant: &Tenant, registration: &Registration) -> String {
    match registration.agent {
        RegistrationAgent::Flux | RegistrationAgent::ClusterAPI => {
            format!("{}-{}-kubeconfig", tenant.name, registration.name)
        }
        RegistrationAgent::ArgoCD | RegistrationAgent::Sveltos => {
            format!("{}-{}", tenant.name, registration.name)
        }
    }
}

/// The Secret a registration writes: `<tcp>-<name>-kubeconfig` (Flux, Cluster API), `<tcp>-<name>`
/// (Argo CD), `<tcp>-<name>-sveltos-kubeconfig` (Sveltos, beside its SveltosCluster `<tcp>-<name>`).
pub fn registration_secret_name(tenant: &Tenant, registration: &Registration) -> String {
    let name = registration_object_name(tenant, registration);
    match registration.agent {
        RegistrationAgent::Sveltos => format!("{name}-sveltos-kubeconfig"),
        _ => name,
    }
}

/// What a registration writes in the seed.
#[derive(Clone, Debug)]
pub struct RegistrationObjects {
    pub secret: Secret,
    /// A `SveltosCluster` (JSON, for a dynamic apply), for Sveltos.
    pub sveltos_cluster: Option<serde_json::Value>,
}

/// The registration's Secret (and SveltosCluster) for `token`, reaching the tenant at `server`.
/// In the TCP's own namespace they are owned by it; elsewhere they carry the `REGISTRATION_OF`
/// label, by which the operator removes them once the TCP is gone.
pub fn registration_objects(
    tenant: &Tenant,
    tcp_uid: &str,
    registration: &Registration,
    server: &str,
    ca_pem: &str,
    token: &Token,
) -> RegistrationObjects {
    let namespace = registration_namespace(tenant, registration).to_owned();
    let name = registration_object_name(tenant, registration);
    let mut labels = tenant.labels("gitops-registration");
    labels.insert(REGISTRATION_OF.to_owned(), tcp_uid.to_owned());
    labels.insert(REGISTRATION.to_owned(), registration.name.clone());
    let owners = (namespace == tenant.namespace).then(|| vec![tenant.owner.clone()]);
    let meta = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = labels.clone();
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                REGISTRATION_TCP.to_owned(),
                format!("{}/{}", tenant.namespace, tenant.name),
            )])),
            owner_references: owners.clone(),
            ..Default::default()
        }
    };
    let kubeconfig =
        || token_kubeconfig(&tenant.name, server, ca_pem, &TokenIn::Inline(&token.token));
    let data = |pairs: Vec<(&str, String)>| {
        Some(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        )
    };
    let (mut secret, sveltos_cluster) = match registration.agent {
        RegistrationAgent::Flux | RegistrationAgent::ClusterAPI => {
            let secret = Secret {
                metadata: meta(&name, &[(CAPI_CLUSTER_LABEL, &tenant.name)]),
                type_: Some(CAPI_SECRET_TYPE.to_owned()),
                data: data(vec![(KUBECONFIG_KEY, kubeconfig())]),
                ..Secret::default()
            };
            (secret, None)
        }
        RegistrationAgent::ArgoCD => {
            let config = json!({
                "bearerToken": token.token,
                "tlsClientConfig": {"insecure": false, "caData": STANDARD.encode(ca_pem.as_bytes())},
            });
            let secret = Secret {
                metadata: meta(&name, &[("argocd.argoproj.io/secret-type", "cluster")]),
                type_: Some("Opaque".to_owned()),
                data: data(vec![
                    ("name", format!("{}-{}", tenant.namespace, tenant.name)),
                    ("server", server.to_owned()),
                    ("config", config.to_string()),
                ]),
                ..Secret::default()
            };
            (secret, None)
        }
        RegistrationAgent::Sveltos => {
            let secret_name = registration_secret_name(tenant, registration);
            let secret = Secret {
                metadata: meta(&secret_name, &[]),
                type_: Some("Opaque".to_owned()),
                data: data(vec![("kubeconfig", kubeconfig())]),
                ..Secret::default()
            };
            let cluster = json!({
                "apiVersion": "lib.projectsveltos.io/v1beta1", "kind": "SveltosCluster",
                "metadata": meta(&name, &[]),
                "spec": {"kubeconfigName": secret_name, "kubeconfigKeyName": "kubeconfig"},
            });
            (secret, Some(cluster))
        }
    };
    // The token also under its own key, so a pass reads it back without parsing what the agent
    // reads (and keeps it until it is due).
    if let Some(data) = secret.data.as_mut() {
        data.insert(
            TOKEN_KEY.to_owned(),
            ByteString(token.token.clone().into_bytes()),
        );
    }
    token.annotate(&mut secret);
    RegistrationObjects {
        secret,
        sveltos_cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_a_token_life() {
        assert_eq!(renew_at(1_000, 3_600), 3_400);
        assert_eq!(renew_at(0, 600), 400);
    }
}

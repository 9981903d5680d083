//! GitOps at the edge: the hosted Flux agent (its ServiceAccount and token inside the tenant, its
//! workloads in the seed, Flux's source and Kustomization inside the tenant, and the
//! `AddonsDelivered` condition read back from Flux), and the registrations of central agents
//! (a ServiceAccount bound to one ClusterRole inside the tenant, a token minted with TokenRequest
//! and rotated at two-thirds of its life, written where the agent reads it).

use std::collections::{BTreeMap, BTreeSet};

use hostplane_api::v1alpha1::{
    AgentSpec, AgentStatus, GitOpsStatus, Registration, RegistrationAgent, RegistrationStatus,
    TenantControlPlane,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::warn;

use super::apply::{self, FIELD_MANAGER};
use super::error::Error;
use super::tenant_api::{apply_cluster, apply_namespaced, delete_cluster, delete_namespaced};
use crate::build::gitops::{
    self as build, AGENT_NAMESPACE, AGENT_OBJECT, AGENT_SERVICE_ACCOUNT, EXPIRES_AT, REGISTRATION,
    REGISTRATION_OF, REGISTRATIONS_NAMESPACE, RENEW_AT, SERVICE_ACCOUNT_UID, Token,
};
use crate::build::{MANAGED_BY, Tenant};
use crate::status::Observed;

/// Condition type present while `spec.gitops.agent` is set: Flux's Kustomization's readiness.
pub const ADDONS_DELIVERED: &str = "AddonsDelivered";
/// Condition type present while `spec.gitops.registrations` is not empty: every credential written.
pub const REGISTRATIONS_READY: &str = "RegistrationsReady";
/// The hosted agent's token lifetime (seconds); it is renewed at two-thirds.
const AGENT_TOKEN_TTL: i64 = 3600;
/// How often a tenant with an agent is looked at again to follow Flux's delivery: soon while it is
/// not delivered (a first delivery, a fix on its way), less often once it is. Each look is a whole
/// pass over the tenant (~15 calls, most of them applies that change nothing): at 1000 tenants
/// with agents, ~250 calls per second at the 60 s period; a pass that only reads Flux's state
/// would be the next step.
const DELIVERY_POLL_SECONDS: i64 = 60;
const UNDELIVERED_POLL_SECONDS: i64 = 10;

/// What the GitOps pass found.
pub struct GitOpsState {
    /// `AddonsDelivered` (with an agent), `RegistrationsReady` (with registrations).
    pub conditions: Vec<Observed>,
    pub status: Option<GitOpsStatus>,
    /// When a token is due for renewal, or Flux's state is to be read again.
    pub due: Option<OffsetDateTime>,
}

/// Everything the pass needs besides the two clients.
pub struct Inputs<'a> {
    pub tcp: &'a TenantControlPlane,
    pub tenant: &'a Tenant,
    pub ca_pem: &'a str,
    pub agent_image: &'a str,
}

/// The GitOps pass. It never fails the tenant's pass: what goes wrong here is reported in
/// `AddonsDelivered` (the agent) or `RegistrationsReady` (the registrations), with the status of
/// that part kept as it was, and looked at again soon.
pub async fn ensure(seed: &Client, inside: &Client, inputs: &Inputs<'_>) -> GitOpsState {
    let spec = inputs.tcp.spec.gitops.clone().unwrap_or_default();
    let old = inputs.tcp.status.as_ref().and_then(|s| s.gitops.as_ref());
    let now = OffsetDateTime::now_utc();
    let soon = now + time::Duration::seconds(UNDELIVERED_POLL_SECONDS);
    let mut due: Vec<OffsetDateTime> = Vec::new();
    let mut conditions = Vec::new();
    let mut status = GitOpsStatus::default();
    match &spec.agent {
        Some(agent) => match agent_pass(seed, inside, inputs, agent).await {
            Ok((condition, agent_status, renew)) => {
                status.agent = Some(agent_status);
                due.push(renew);
                let poll = if condition.status {
                    DELIVERY_POLL_SECONDS
                } else {
                    UNDELIVERED_POLL_SECONDS
                };
                due.push(now + time::Duration::seconds(poll));
                conditions.push(condition);
            }
            Err(e) => {
                warn!(error = %e, "the GitOps agent pass failed");
                // Recorded even when it never worked, so that removing it later cleans up.
                status.agent = Some(AgentStatus {
                    source: build::describe_source(agent),
                    last_applied_revision: old
                        .and_then(|o| o.agent.as_ref())
                        .and_then(|a| a.last_applied_revision.clone()),
                });
                due.push(soon);
                conditions.push(Observed::new(
                    ADDONS_DELIVERED,
                    false,
                    e.reason(),
                    e.to_string(),
                ));
            }
        },
        None => {
            if old.is_some_and(|o| o.agent.is_some())
                && let Err(e) = remove_agent(seed, inside, inputs.tenant).await
            {
                warn!(error = %e, "removing the GitOps agent failed; retrying");
                status.agent = old.and_then(|o| o.agent.clone());
                due.push(soon);
            }
        }
    }
    let had_registrations = old.is_some_and(|o| !o.registrations.is_empty());
    if !spec.registrations.is_empty() || had_registrations {
        let pass = registrations(seed, inside, inputs, &spec.registrations).await;
        due.extend(pass.renew);
        if pass.failed {
            due.push(soon);
        }
        if let Some(condition) = pass.condition {
            conditions.push(condition);
        }
        status.registrations = pass.entries;
    }
    let empty = status.agent.is_none() && status.registrations.is_empty();
    GitOpsState {
        conditions,
        status: (!empty).then_some(status),
        due: due.into_iter().min(),
    }
}

/// What the registrations pass left.
struct RegistrationsPass {
    /// One per registration in the spec, written or not (`written` says).
    entries: Vec<RegistrationStatus>,
    /// When each written token is due.
    renew: Vec<OffsetDateTime>,
    /// `RegistrationsReady`, while the spec has registrations.
    condition: Option<Observed>,
    /// Something failed: look again soon.
    failed: bool,
}

/// Every registration in the spec, each on its own (one that fails stops no other), then what
/// registrations no longer in it left behind.
async fn registrations(
    seed: &Client,
    inside: &Client,
    inputs: &Inputs<'_>,
    wanted: &[Registration],
) -> RegistrationsPass {
    let mut pass = RegistrationsPass {
        entries: Vec::new(),
        renew: Vec::new(),
        condition: None,
        failed: false,
    };
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for registration in wanted {
        let (reason, why) = match register(seed, inside, inputs, registration).await {
            Ok(Ok((entry, at))) => {
                pass.entries.push(entry);
                pass.renew.push(at);
                continue;
            }
            Ok(Err(refusal)) => (refusal.reason, refusal.message),
            Err(e) => (e.reason(), e.to_string()),
        };
        warn!(registration = %registration.name, reason, "a GitOps registration was not written");
        pass.entries.push(RegistrationStatus {
            name: registration.name.clone(),
            agent: format!("{:?}", registration.agent),
            written: format!("nothing: {why}"),
            service_account: format!("{REGISTRATIONS_NAMESPACE}/{}", registration.name),
            expires_at: None,
            renew_at: None,
        });
        problems.push((reason, format!("registration {}: {why}", registration.name)));
    }
    if let Err(e) = remove_stale_registrations(seed, inside, inputs, wanted).await {
        warn!(error = %e, "removing GitOps registrations no longer in the spec failed");
        problems.push((
            e.reason(),
            format!("removing registrations no longer in the spec: {e}"),
        ));
    }
    pass.failed = !problems.is_empty();
    pass.condition = if let Some((reason, _)) = problems.first() {
        let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
        Some(Observed::new(
            REGISTRATIONS_READY,
            false,
            reason,
            messages.join("; "),
        ))
    } else {
        (!pass.entries.is_empty()).then(|| registrations_ready(&pass.entries))
    };
    pass
}

/// `RegistrationsReady` after a pass that wrote every registration.
fn registrations_ready(entries: &[RegistrationStatus]) -> Observed {
    let first = entries.iter().filter_map(|e| e.expires_at.as_deref()).min();
    Observed::new(
        REGISTRATIONS_READY,
        true,
        "Issued",
        format!(
            "{} registration(s) written; the first token expires at {}, each is renewed at \
             two-thirds of its life (status.gitops.registrations)",
            entries.len(),
            first.unwrap_or("?")
        ),
    )
}

fn seed_error(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |e| Error::Conflict(format!("{what}: {e}"))
}

fn tenant_error(what: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |e| Error::Tenant(format!("{what}: {e}"))
}

/// A namespace, a ServiceAccount in it and a ClusterRoleBinding of it to `role`, inside the
/// tenant; returns the ServiceAccount's uid.
async fn service_account(
    inside: &Client,
    namespace: &str,
    name: &str,
    binding: &str,
    role: &str,
) -> Result<String, Error> {
    let labels = json!({"app.kubernetes.io/managed-by": MANAGED_BY});
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels},
    }))
    .map_err(|e| Error::Tenant(e.to_string()))?;
    apply_cluster(inside, &ns).await?;
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }))
    .map_err(|e| Error::Tenant(e.to_string()))?;
    let sa = apply_namespaced(inside, &sa).await?;
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": binding, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }))
    .map_err(|e| Error::Tenant(e.to_string()))?;
    // The role of a binding cannot change: a changed role replaces the binding.
    let bindings = Api::<ClusterRoleBinding>::all(inside.clone());
    if let Some(current) = bindings
        .get_opt(binding)
        .await
        .map_err(tenant_error("reading a ClusterRoleBinding"))?
        && current.role_ref.name != role
    {
        delete_cluster::<ClusterRoleBinding>(inside, binding).await?;
    }
    apply_cluster(inside, &crb).await?;
    sa.uid()
        .ok_or_else(|| Error::Tenant(format!("ServiceAccount {namespace}/{name} has no uid")))
}

/// The token in `current` when it is still good: not due for renewal, and of the ServiceAccount
/// that exists now (a deleted and recreated ServiceAccount revoked it).
fn current_token(current: Option<&Secret>, sa_uid: &str, now: OffsetDateTime) -> Option<Token> {
    let secret = current?;
    let annotations = secret.metadata.annotations.as_ref()?;
    let renew_at = OffsetDateTime::parse(annotations.get(RENEW_AT)?, &Rfc3339).ok()?;
    let token = token_of(secret);
    (renew_at > now && annotations.get(SERVICE_ACCOUNT_UID).map(String::as_str) == Some(sa_uid))
        .then(|| {
            Some(Token {
                token: token?,
                expires_at: annotations.get(EXPIRES_AT)?.clone(),
                renew_at: annotations.get(RENEW_AT)?.clone(),
                service_account_uid: sa_uid.to_owned(),
            })
        })
        .flatten()
}

async fn seed_secret(seed: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
    Api::<Secret>::namespaced(seed.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::kube("get", "Secret", name))
}

/// The token a Secret carries (key `token`: the agent's, and every registration's beside what
/// its agent reads).
fn token_of(secret: &Secret) -> Option<String> {
    let token = secret.data.as_ref()?.get(build::TOKEN_KEY)?;
    Some(String::from_utf8_lossy(&token.0).into_owned())
}

/// A new token of `namespace/name` inside the tenant, valid for `ttl` seconds.
async fn mint(
    inside: &Client,
    namespace: &str,
    name: &str,
    sa_uid: &str,
    ttl: i64,
) -> Result<Token, Error> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![]),
            expiration_seconds: Some(ttl),
            bound_object_ref: None,
        }),
        ..TokenRequest::default()
    };
    let issued = OffsetDateTime::now_utc();
    let answer = Api::<ServiceAccount>::namespaced(inside.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(tenant_error("requesting a ServiceAccount token"))?;
    let status = answer
        .status
        .ok_or_else(|| Error::Tenant(format!("no token came back for {namespace}/{name}")))?;
    let expires = status
        .expiration_timestamp
        .and_then(|t| OffsetDateTime::parse(&t.0.to_string(), &Rfc3339).ok())
        .unwrap_or(issued + time::Duration::seconds(ttl));
    let token = status
        .token
        .ok_or_else(|| Error::Tenant(format!("an empty token came back for {namespace}/{name}")))?;
    let lifetime = (expires - issued).whole_seconds().max(1);
    let renew =
        OffsetDateTime::from_unix_timestamp(build::renew_at(issued.unix_timestamp(), lifetime))
            .unwrap_or(issued);
    let rfc = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    Ok(Token {
        token,
        expires_at: rfc(expires),
        renew_at: rfc(renew),
        service_account_uid: sa_uid.to_owned(),
    })
}

fn renew_time(token: &Token) -> OffsetDateTime {
    OffsetDateTime::parse(&token.renew_at, &Rfc3339).unwrap_or_else(|_| OffsetDateTime::now_utc())
}

async fn agent_pass(
    seed: &Client,
    inside: &Client,
    inputs: &Inputs<'_>,
    agent: &AgentSpec,
) -> Result<(Observed, AgentStatus, OffsetDateTime), Error> {
    let tenant = inputs.tenant;
    let sa_uid = service_account(
        inside,
        AGENT_NAMESPACE,
        AGENT_SERVICE_ACCOUNT,
        "hostplane:gitops-agent",
        "cluster-admin",
    )
    .await?;
    let current = seed_secret(seed, &tenant.namespace, &build::agent_secret_name(tenant)).await?;
    let token = if let Some(t) = current_token(current.as_ref(), &sa_uid, OffsetDateTime::now_utc())
    {
        t
    } else {
        mint(
            inside,
            AGENT_NAMESPACE,
            AGENT_SERVICE_ACCOUNT,
            &sa_uid,
            AGENT_TOKEN_TTL,
        )
        .await?
    };
    // Rebuilt every pass (a changed CA or endpoint, a hand-edited Secret), written when it differs.
    let secret = build::agent_secret(tenant, &tenant.in_seed_url(), inputs.ca_pem, &token);
    apply_secret_if_changed(seed, &secret, current.as_ref()).await?;
    let workloads = build::agent_workloads(tenant, inputs.agent_image)?;
    apply::apply(seed, &workloads.service).await?;
    apply::apply(seed, &workloads.network_policy).await?;
    for d in &workloads.deployments {
        apply::apply(seed, d).await?;
    }
    let source = build::tenant_source(agent);
    let condition = match apply_flux(inside, &source).await {
        Ok(()) => {
            match apply_flux(inside, &build::tenant_kustomization(agent)).await {
                Ok(()) => {
                    // Only after a switch between git and oci (status still names the old one).
                    let before = inputs
                        .tcp
                        .status
                        .as_ref()
                        .and_then(|s| s.gitops.as_ref()?.agent.as_ref())
                        .map(|a| a.source.split(' ').next().unwrap_or_default().to_owned());
                    let now = build::describe_source(agent);
                    if before.is_some_and(|b| !now.starts_with(&format!("{b} "))) {
                        remove_other_source(inside, agent).await?;
                    }
                }
                Err(FluxApply::NotInstalled) => {
                    return Err(Error::Tenant(
                        "Flux's Kustomization CRD is missing in the tenant".into(),
                    ));
                }
                Err(FluxApply::Failed(e)) => return Err(e),
            }
            delivery(inside, agent).await?
        }
        Err(FluxApply::NotInstalled) => (
            Observed::new(
                ADDONS_DELIVERED,
                false,
                "AgentStarting",
                format!(
                    "the agent ({}) is installing Flux's CRDs in the tenant",
                    build::agent_name(tenant, build::SOURCE_COMPONENT)
                ),
            ),
            None,
        ),
        Err(FluxApply::Failed(e)) => return Err(e),
    };
    let (condition, revision) = condition;
    Ok((
        condition,
        AgentStatus {
            source: build::describe_source(agent),
            last_applied_revision: revision,
        },
        renew_time(&token),
    ))
}

enum FluxApply {
    /// Flux's CRDs are not in the tenant yet.
    NotInstalled,
    Failed(Error),
}

fn api_for(inside: &Client, object: &serde_json::Value) -> Option<(Api<DynamicObject>, String)> {
    let (group, version) = object["apiVersion"].as_str()?.split_once('/')?;
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str()?);
    let resource = ApiResource::from_gvk(&gvk);
    let namespace = object["metadata"]["namespace"].as_str()?;
    let name = object["metadata"]["name"].as_str()?.to_owned();
    Some((
        Api::namespaced_with(inside.clone(), namespace, &resource),
        name,
    ))
}

/// Server-side apply of an object of a CRD (JSON) through `client`: `Ok(false)` when the CRD is
/// not installed there.
async fn apply_dynamic(client: &Client, object: &serde_json::Value) -> Result<bool, kube::Error> {
    let Some((api, name)) = api_for(client, object) else {
        return Ok(true); // built in this module with kind, namespace and name: never happens
    };
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Server-side apply of a Flux object inside the tenant.
async fn apply_flux(inside: &Client, object: &serde_json::Value) -> Result<(), FluxApply> {
    match apply_dynamic(inside, object).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(FluxApply::NotInstalled),
        Err(e) => Err(FluxApply::Failed(Error::Tenant(format!(
            "applying Flux's {}: {e}",
            object["kind"].as_str().unwrap_or_default()
        )))),
    }
}

/// The source of the other kind (a GitRepository after a switch to OCI, or the reverse) goes, once
/// the Kustomization points at the new one.
async fn remove_other_source(inside: &Client, agent: &AgentSpec) -> Result<(), Error> {
    let other = if build::source_kind(agent) == "GitRepository" {
        "OCIRepository"
    } else {
        "GitRepository"
    };
    let stub = json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": other,
                      "metadata": {"name": AGENT_OBJECT, "namespace": AGENT_NAMESPACE}});
    let Some((api, name)) = api_for(inside, &stub) else {
        return Ok(());
    };
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Tenant(format!(
            "deleting Flux's {other} {name}: {e}"
        ))),
    }
}

/// `AddonsDelivered` from Flux's objects inside the tenant: the Kustomization's Ready condition,
/// or the source's when the source is what fails.
async fn delivery(inside: &Client, agent: &AgentSpec) -> Result<(Observed, Option<String>), Error> {
    let read = |object: serde_json::Value| async move {
        let (api, name) = api_for(inside, &object)
            .ok_or_else(|| Error::Conflict("a Flux object without kind or name".into()))?;
        api.get_opt(&name)
            .await
            .map_err(|e| Error::Tenant(format!("reading Flux's {name}: {e}")))
    };
    let kustomization = read(build::tenant_kustomization(agent)).await?;
    let source = read(build::tenant_source(agent)).await?;
    let ready = |o: &Option<DynamicObject>| {
        o.as_ref().and_then(|o| {
            o.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    (
                        c["status"] == "True",
                        c["reason"].as_str().unwrap_or_default().to_owned(),
                        c["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        })
    };
    let revision = kustomization
        .as_ref()
        .and_then(|k| k.data["status"]["lastAppliedRevision"].as_str())
        .map(str::to_owned);
    let kind = build::source_kind(agent);
    let condition = match (ready(&source), ready(&kustomization)) {
        (Some((false, reason, message)), _) => Observed::new(
            ADDONS_DELIVERED,
            false,
            "SourceNotReady",
            format!("{kind} {AGENT_NAMESPACE}/{AGENT_OBJECT}: {reason}: {message}"),
        ),
        (_, Some((true, _, message))) => {
            Observed::new(ADDONS_DELIVERED, true, "Delivered", message)
        }
        (_, Some((false, reason, message))) => Observed::new(
            ADDONS_DELIVERED,
            false,
            if reason.is_empty() {
                "NotDelivered"
            } else {
                reason.as_str()
            },
            format!("Kustomization {AGENT_NAMESPACE}/{AGENT_OBJECT}: {message}"),
        ),
        (_, None) => Observed::new(
            ADDONS_DELIVERED,
            false,
            "Progressing",
            "Flux has not reported on the Kustomization yet",
        ),
    };
    Ok((condition, revision))
}

/// The agent switched off: its workloads and credential go from the seed, its ServiceAccount and
/// binding from the tenant (revoking its tokens). What it applied stays in the tenant.
async fn remove_agent(seed: &Client, inside: &Client, tenant: &Tenant) -> Result<(), Error> {
    let ns = &tenant.namespace;
    for component in [build::SOURCE_COMPONENT, build::KUSTOMIZE_COMPONENT] {
        delete_seed::<Deployment>(seed, ns, &build::agent_name(tenant, component)).await?;
    }
    let source = build::agent_name(tenant, build::SOURCE_COMPONENT);
    delete_seed::<Service>(seed, ns, &source).await?;
    delete_seed::<NetworkPolicy>(seed, ns, &source).await?;
    delete_seed::<Secret>(seed, ns, &build::agent_secret_name(tenant)).await?;
    delete_cluster::<ClusterRoleBinding>(inside, "hostplane:gitops-agent").await?;
    delete_namespaced::<ServiceAccount>(inside, AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT).await
}

async fn delete_seed<K>(seed: &Client, ns: &str, name: &str) -> Result<(), Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    match Api::<K>::namespaced(seed.clone(), ns)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete", K::kind(&()), name)(e)),
    }
}

/// Why a registration is not written, when that is nothing retrying fixes.
struct Refusal {
    reason: &'static str,
    message: String,
}

/// Whether `current` (an object at the name a registration writes) is that registration's: it
/// carries the TCP's uid and the registration's name. Anything else is never overwritten.
fn ours(current: &ObjectMeta, tcp_uid: &str, registration: &str) -> bool {
    let labels = current.labels.as_ref();
    labels
        .and_then(|l| l.get(REGISTRATION_OF))
        .map(String::as_str)
        == Some(tcp_uid)
        && labels.and_then(|l| l.get(REGISTRATION)).map(String::as_str) == Some(registration)
}

fn name_taken(kind: &str, namespace: &str, name: &str) -> Refusal {
    Refusal {
        reason: "NameTaken",
        message: format!(
            "{kind} {namespace}/{name} exists and is not this registration's: it is left alone; \
             rename the registration (or write it to another namespace)"
        ),
    }
}

/// One registration: its ServiceAccount and binding inside the tenant, a token (renewed when
/// due), and what its agent reads in the seed. Refused, writing nothing, when a name it would
/// write is someone else's, or Sveltos is not installed.
async fn register(
    seed: &Client,
    inside: &Client,
    inputs: &Inputs<'_>,
    registration: &Registration,
) -> Result<Result<(RegistrationStatus, OffsetDateTime), Refusal>, Error> {
    let tenant = inputs.tenant;
    let tcp_uid = uid(inputs.tcp);
    let Some(ttl) = registration.token_ttl_seconds() else {
        return Ok(Err(Refusal {
            reason: "InvalidSpec",
            message: format!("tokenTTL {:?} must be 10m to 24h", registration.token_ttl),
        }));
    };
    let namespace = build::registration_namespace(tenant, registration);
    let secret_name = build::registration_secret_name(tenant, registration);
    let current = seed_secret(seed, namespace, &secret_name).await?;
    if let Some(c) = &current
        && !ours(&c.metadata, &tcp_uid, &registration.name)
    {
        return Ok(Err(name_taken("Secret", namespace, &secret_name)));
    }
    let cluster_name = build::registration_object_name(tenant, registration);
    if registration.agent == RegistrationAgent::Sveltos {
        let clusters = sveltos_clusters(seed, Some(namespace));
        // A list answers 404 only when the resource itself is unknown (a get's 404 cannot tell
        // that from a missing object): no SveltosCluster CRD in the seed.
        match clusters
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Ok(Err(Refusal {
                    reason: "SveltosNotInstalled",
                    message: "the SveltosCluster CRD (lib.projectsveltos.io) is not installed in \
                              the seed: install Sveltos, or remove this registration"
                        .to_owned(),
                }));
            }
            Err(e) => return Err(seed_error("listing SveltosClusters")(e)),
        }
        if let Some(c) = clusters
            .get_metadata_opt(&cluster_name)
            .await
            .map_err(seed_error("reading a SveltosCluster"))?
            && !ours(&c.metadata, &tcp_uid, &registration.name)
        {
            return Ok(Err(name_taken("SveltosCluster", namespace, &cluster_name)));
        }
    }
    let sa_uid = service_account(
        inside,
        REGISTRATIONS_NAMESPACE,
        &registration.name,
        &build::registration_binding_name(&registration.name),
        &registration.role,
    )
    .await?;
    // A token is kept until it is due; a changed tokenTTL applies from the next one.
    let token = if let Some(t) = current_token(current.as_ref(), &sa_uid, OffsetDateTime::now_utc())
    {
        t
    } else {
        mint(
            inside,
            REGISTRATIONS_NAMESPACE,
            &registration.name,
            &sa_uid,
            ttl,
        )
        .await?
    };
    let objects = build::registration_objects(
        tenant,
        &tcp_uid,
        registration,
        &tenant.endpoint_url(),
        inputs.ca_pem,
        &token,
    );
    apply_secret_if_changed(seed, &objects.secret, current.as_ref()).await?;
    let written = if let Some(cluster) = &objects.sveltos_cluster {
        apply_dynamic(seed, cluster)
            .await
            .map_err(seed_error("applying a SveltosCluster"))?;
        format!("{namespace}/{cluster_name} (SveltosCluster) and Secret {namespace}/{secret_name}")
    } else {
        format!("{namespace}/{secret_name}")
    };
    Ok(Ok((
        RegistrationStatus {
            name: registration.name.clone(),
            agent: format!("{:?}", registration.agent),
            written,
            service_account: format!("{REGISTRATIONS_NAMESPACE}/{}", registration.name),
            expires_at: Some(token.expires_at.clone()),
            renew_at: Some(token.renew_at.clone()),
        },
        renew_time(&token),
    )))
}

/// SveltosClusters in `namespace` (all namespaces when None).
fn sveltos_clusters(seed: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "lib.projectsveltos.io",
        "v1beta1",
        "SveltosCluster",
    ));
    match namespace {
        Some(ns) => Api::namespaced_with(seed.clone(), ns, &resource),
        None => Api::all_with(seed.clone(), &resource),
    }
}

fn uid(tcp: &TenantControlPlane) -> String {
    tcp.metadata.uid.clone().unwrap_or_default()
}

async fn apply_secret_if_changed(
    seed: &Client,
    secret: &Secret,
    current: Option<&Secret>,
) -> Result<(), Error> {
    if current.is_some_and(|c| apply::already_applied(secret, c)) {
        return Ok(());
    }
    apply::apply(seed, secret).await?;
    Ok(())
}

/// What registrations no longer in the spec left: their Secrets and SveltosClusters in the seed
/// (found by the TCP's uid label, in any namespace), their ServiceAccounts and bindings inside the
/// tenant (deleting the ServiceAccount revokes its tokens at once).
async fn remove_stale_registrations(
    seed: &Client,
    inside: &Client,
    inputs: &Inputs<'_>,
    wanted: &[Registration],
) -> Result<(), Error> {
    let tenant = inputs.tenant;
    let selector = format!("{REGISTRATION_OF}={}", uid(inputs.tcp));
    let secrets = Api::<Secret>::all(seed.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "Secret", &selector))?;
    // Exactly what each registration in the spec writes now; anything else of this TCP's goes
    // (a registration removed, or one whose agent or namespace changed).
    let secrets_kept: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|r| {
            let ns = build::registration_namespace(tenant, r).to_owned();
            (ns, build::registration_secret_name(tenant, r))
        })
        .collect();
    let clusters_kept: BTreeSet<(String, String)> = wanted
        .iter()
        .filter(|r| r.agent == RegistrationAgent::Sveltos)
        .map(|r| {
            let ns = build::registration_namespace(tenant, r).to_owned();
            (ns, build::registration_object_name(tenant, r))
        })
        .collect();
    for s in secrets.items {
        let at = (s.namespace().unwrap_or_default(), s.name_any());
        if !secrets_kept.contains(&at) {
            delete_seed::<Secret>(seed, &at.0, &at.1).await?;
        }
    }
    match sveltos_clusters(seed, None)
        .list_metadata(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => {
            for c in list.items {
                let at = (c.namespace().unwrap_or_default(), c.name_any());
                if !clusters_kept.contains(&at) {
                    delete_sveltos_cluster(seed, &at.0, &at.1).await?;
                }
            }
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(seed_error("listing SveltosClusters")(e)),
    }
    let keep: BTreeSet<&str> = wanted.iter().map(|r| r.name.as_str()).collect();
    let accounts = Api::<ServiceAccount>::namespaced(inside.clone(), REGISTRATIONS_NAMESPACE)
        .list_metadata(
            &ListParams::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}")),
        )
        .await
        .map_err(tenant_error("listing the registrations' ServiceAccounts"))?;
    for sa in accounts.items {
        let name = sa.name_any();
        if !keep.contains(name.as_str()) {
            delete_namespaced::<ServiceAccount>(inside, REGISTRATIONS_NAMESPACE, &name).await?;
            delete_cluster::<ClusterRoleBinding>(inside, &build::registration_binding_name(&name))
                .await?;
        }
    }
    Ok(())
}

/// The hosted agent of a hibernating tenant: its Deployments at zero (nothing to talk to).
pub async fn sleep(seed: &Client, tenant: &Tenant, image: &str) -> Result<(), Error> {
    for d in build::agent_workloads(tenant, image)?.deployments {
        apply::apply(seed, &d).await?;
    }
    Ok(())
}

async fn delete_sveltos_cluster(seed: &Client, ns: &str, name: &str) -> Result<(), Error> {
    match sveltos_clusters(seed, Some(ns))
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(seed_error("deleting a SveltosCluster")(e)),
    }
}

/// Removes what registrations wrote outside their TenantControlPlane's namespace (which no
/// ownerReference can reach) once that TenantControlPlane is gone: Secrets and SveltosClusters
/// labelled with the uid of a TCP that no longer exists. Three list calls, whatever the number of
/// tenants. Returns how many objects were removed.
pub async fn sweep(seed: &Client) -> Result<usize, Error> {
    // The uids of the TCPs that exist, listed before the objects: a TCP created in between
    // cannot have written anything yet that the lists below would see.
    let alive: BTreeSet<String> = Api::<TenantControlPlane>::all(seed.clone())
        .list_metadata(&ListParams::default())
        .await
        .map_err(Error::kube("list", "TenantControlPlane", "*"))?
        .items
        .into_iter()
        .filter_map(|t| t.metadata.uid)
        .collect();
    let orphan = |labels: &BTreeMap<String, String>| {
        labels
            .get(REGISTRATION_OF)
            .is_some_and(|uid| !alive.contains(uid))
    };
    let mut removed = 0;
    let secrets = Api::<Secret>::all(seed.clone())
        .list_metadata(&ListParams::default().labels(REGISTRATION_OF))
        .await
        .map_err(Error::kube("list", "Secret", REGISTRATION_OF))?;
    for s in secrets.items.iter().filter(|s| orphan(s.labels())) {
        delete_seed::<Secret>(seed, &s.namespace().unwrap_or_default(), &s.name_any()).await?;
        removed += 1;
    }
    match sveltos_clusters(seed, None)
        .list_metadata(&ListParams::default().labels(REGISTRATION_OF))
        .await
    {
        Ok(list) => {
            for c in list.items.iter().filter(|c| orphan(c.labels())) {
                delete_sveltos_cluster(seed, &c.namespace().unwrap_or_default(), &c.name_any())
                    .await?;
                removed += 1;
            }
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(seed_error("listing SveltosClusters")(e)),
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(renew_at: &str, sa_uid: &str) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "s", "annotations": {
                RENEW_AT: renew_at, EXPIRES_AT: "2026-11-23T13:00:00Z", SERVICE_ACCOUNT_UID: sa_uid,
            }},
            "data": {"token": "dG9r"},
        }))
        .unwrap()
    }

    fn at(t: &str) -> OffsetDateTime {
        OffsetDateTime::parse(t, &Rfc3339).unwrap()
    }

    #[test]
    fn only_objects_labelled_with_the_tcp_and_registration_are_a_registrations() {
        let meta = |labels: serde_json::Value| -> ObjectMeta {
            serde_json::from_value(json!({"name": "x", "labels": labels})).unwrap()
        };
        assert!(ours(
            &meta(json!({REGISTRATION_OF: "u1", REGISTRATION: "argo"})),
            "u1",
            "argo"
        ));
        // The tenant's own Secrets, another TCP's, another registration's, nobody's.
        assert!(!ours(
            &meta(json!({"hostplane.dev/tenant": "t"})),
            "u1",
            "argo"
        ));
        assert!(!ours(
            &meta(json!({REGISTRATION_OF: "u2", REGISTRATION: "argo"})),
            "u1",
            "argo"
        ));
        assert!(!ours(
            &meta(json!({REGISTRATION_OF: "u1", REGISTRATION: "other"})),
            "u1",
            "argo"
        ));
        assert!(!ours(&ObjectMeta::default(), "u1", "argo"));
    }

    #[test]
    fn a_token_is_kept_until_its_renewal_time_and_only_for_the_same_service_account() {
        let s = secret("2026-11-23T12:40:00Z", "uid-a");
        let kept = current_token(Some(&s), "uid-a", at("2026-11-23T12:39:59Z")).unwrap();
        assert_eq!(kept.token, "tok");
        assert_eq!(kept.renew_at, "2026-11-23T12:40:00Z");
        // Due: two-thirds of its life have passed.
        assert!(current_token(Some(&s), "uid-a", at("2026-11-23T12:40:00Z")).is_none());
        // The ServiceAccount was deleted and made again: its old tokens are dead.
        assert!(current_token(Some(&s), "uid-b", at("2026-11-23T12:00:00Z")).is_none());
        // Nothing usable: none yet, or a Secret without the annotations.
        assert!(current_token(None, "uid-a", at("2026-11-23T12:00:00Z")).is_none());
        let mut bare = s.clone();
        bare.metadata.annotations = None;
        assert!(current_token(Some(&bare), "uid-a", at("2026-11-23T12:00:00Z")).is_none());
    }
}

//! Upgrades at the edge: whether one may start (the tenant's kubelets and the skew policy), which
//! version each part is built with this pass, and what the status says (see `crate::upgrade`).

use hostplane_api::v1alpha1::TenantControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use super::{Error, Observation, super_admin_kubeconfig, tenant_api};
use crate::build::{self, Tenant};
use crate::rollout;
use crate::status::Observed;
use crate::upgrade::{
    NODES_UNKNOWN, Seen, VERSION_CURRENT, VERSION_SKEW, minor_patch, skew_message, skew_violations,
    state,
};

/// What a pass knows of the version before it builds anything.
pub struct Pass {
    /// `status.version` before this pass.
    running: Option<String>,
    /// Why an upgrade from `running` waits, as (reason, message).
    held: Option<(&'static str, String)>,
}

/// The version this pass builds the control plane with: `spec.version` unless an upgrade from
/// the running version must wait; then the control plane (and its addons) keep it. A tenant
/// asleep keeps it too: its upgrade starts (with the check of its nodes) once it is awake.
pub async fn hold(
    client: &Client,
    tcp: &TenantControlPlane,
    tenant: &mut Tenant,
    probe_url: &str,
) -> Result<Pass, Error> {
    let running = tcp.status.as_ref().and_then(|s| s.version.clone());
    let held = if tenant.asleep {
        None
    } else {
        hold_if_skewed(client, tenant, running.as_deref(), probe_url).await?
    };
    if let Some(running) = running.as_ref().filter(|_| held.is_some() || tenant.asleep) {
        tenant.version.clone_from(running);
        tenant.addons_version.clone_from(running);
    }
    Ok(Pass { running, held })
}

impl Pass {
    /// The control plane is built with another version than it runs: an upgrade is under way,
    /// and the controllers wait for the API server's rollout (otherwise, for a renewal, one
    /// available API server is enough for them).
    pub fn upgrading(&self, tenant: &Tenant) -> bool {
        self.running.as_ref().is_some_and(|r| *r != tenant.version)
    }
}

/// Whether the API server's and the controllers' rollouts are over; until they are, the addons
/// keep the running version (they follow the control plane, never lead it).
pub fn follow(
    tenant: &mut Tenant,
    workloads: &super::Workloads,
    children: &build::Children,
    pass: &Pass,
) -> bool {
    let rolled_out = workloads
        .apiserver
        .as_ref()
        .is_some_and(rollout::rolled_out)
        && workloads.controllers.len() + 1 == children.deployments.len()
        && workloads.controllers.iter().all(rollout::rolled_out);
    if !rolled_out && let Some(running) = &pass.running {
        tenant.addons_version.clone_from(running);
    }
    rolled_out
}

/// `status.version`, the phase's Upgrading and the VersionCurrent condition after a pass.
pub fn record(
    observation: &mut Observation,
    tcp: &TenantControlPlane,
    pass: &Pass,
    rolled_out: bool,
) {
    let version = state(Seen {
        wanted: &tcp.spec.version,
        running: pass.running.as_deref(),
        held: pass
            .held
            .as_ref()
            .map(|(reason, why)| (*reason, why.as_str())),
        rolled_out,
        ready: observation.ready,
    });
    if let Some((status, reason, message)) = &version.condition {
        observation.conditions.push(Observed::new(
            VERSION_CURRENT,
            *status,
            reason,
            message.clone(),
        ));
    }
    // Nothing in the seed announces a node leaving the tenant: look again in a minute.
    if pass.held.is_some() && observation.next == super::Next::Resync {
        observation.next = super::Next::NodesSettling;
    }
    observation.version = Some(version);
}

/// Why an upgrade (`status.version` to `spec.version`) must wait before it starts, as (reason,
/// message): a kubelet the new version would break the skew policy with, or nodes that cannot
/// be listed to tell. Once the API server runs the new version the upgrade is under way and is
/// never held (nor rolled back).
async fn hold_if_skewed(
    client: &Client,
    tenant: &Tenant,
    running: Option<&str>,
    probe_url: &str,
) -> Result<Option<(&'static str, String)>, Error> {
    let target = &tenant.spec.version;
    let Some(running) = running.filter(|r| r != target) else {
        return Ok(None);
    };
    // A patch release keeps the window of kubelets it supports: nothing to check (and a broken
    // tenant whose nodes cannot be listed can still take the fix).
    if minor_patch(running).map(|v| v.0) == minor_patch(target).map(|v| v.0) {
        return Ok(None);
    }
    // Started: the API server's template no longer runs the running version (whatever the
    // target or registry since). From then on nothing holds nor rolls it back.
    let name = build::apiserver::name(tenant);
    // A list by name: the operator may list Deployments, not get them.
    let apiserver = Api::<Deployment>::namespaced(client.clone(), &tenant.namespace)
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(Error::kube("list", "Deployment", &name))?;
    let running_tag = format!(":v{running}");
    let started = apiserver.items.iter().any(|d| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| {
                p.containers.iter().any(|c| {
                    c.image
                        .as_deref()
                        .is_some_and(|i| !i.ends_with(&running_tag))
                })
            })
    });
    if started {
        return Ok(None);
    }
    Ok(match kubelets(client, tenant, probe_url).await {
        Err(why) => Some((
            NODES_UNKNOWN,
            format!(
                "the upgrade from {running} to {target} waits: the tenant's nodes could not be \
                 listed to check the version-skew policy ({why}); it starts once they can be"
            ),
        )),
        Ok(kubelets) => {
            let violations = skew_violations(target, &kubelets);
            (!violations.is_empty())
                .then(|| (VERSION_SKEW, skew_message(running, target, &violations)))
        }
    })
}

/// Every node of the tenant with its kubelet's version.
async fn kubelets(
    client: &Client,
    tenant: &Tenant,
    probe_url: &str,
) -> Result<Vec<(String, String)>, String> {
    let kubeconfig = super_admin_kubeconfig(client, tenant)
        .await
        .map_err(|e| e.to_string())?;
    let tenant_client = tenant_api::client(&kubeconfig, probe_url)
        .await
        .map_err(|e| e.to_string())?;
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(tenant_client)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(nodes
        .items
        .iter()
        .map(|n| {
            let version = n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default();
            (n.name_any(), version)
        })
        .collect())
}

//! Addons at the edge: applies CoreDNS and kube-proxy inside the tenant (or deletes one switched
//! off), and reads back whether they run and how many nodes the tenant has.

use hostplane_api::v1alpha1::NodeCounts;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use super::error::Error;
use super::tenant_api::{apply_cluster, apply_namespaced, delete_cluster, delete_namespaced};
use crate::build::addons::{self, Addon, NAMESPACE};
use crate::build::{Tenant, node_bootstrap};
use crate::status::{ADDONS_READY, Observed};

/// What the addons pass found.
pub struct AddonsState {
    pub condition: Observed,
    pub nodes: NodeCounts,
}

pub async fn ensure(client: &Client, tenant: &Tenant) -> Result<AddonsState, Error> {
    // What pods inside reach the API server by (the `kubernetes` Service), before any addon.
    if let Some((endpoints, slice)) = addons::kubernetes_endpoints(tenant)? {
        apply_namespaced::<Endpoints>(client, &endpoints).await?;
        apply_namespaced::<EndpointSlice>(client, &slice).await?;
    }
    let nodes = count_nodes(client).await?;
    let wanted = [
        (
            tenant.spec.addons.core_dns.enabled,
            addons::coredns(tenant)?,
        ),
        (
            tenant.spec.addons.kube_proxy.enabled,
            addons::kube_proxy(tenant)?,
        ),
    ];
    let mut enabled = 0;
    let mut not_running = Vec::new();
    for (on, addon) in &wanted {
        if *on {
            enabled += 1;
            not_running.extend(apply(client, addon).await?);
        } else {
            remove(client, addon).await?;
        }
    }
    let condition = if enabled == 0 {
        Observed::new(
            ADDONS_READY,
            true,
            "Disabled",
            "every addon is switched off",
        )
    } else if nodes.ready == 0 {
        Observed::new(
            ADDONS_READY,
            false,
            "NoReadyNode",
            format!(
                "applied; they run once a node is Ready (join one with the Secret {}-{})",
                tenant.name,
                node_bootstrap::JOIN_SUFFIX
            ),
        )
    } else if not_running.is_empty() {
        Observed::new(ADDONS_READY, true, "Running", "every enabled addon runs")
    } else {
        Observed::new(ADDONS_READY, false, "NotRunning", not_running.join("; "))
    };
    Ok(AddonsState { condition, nodes })
}

async fn count_nodes(client: &Client) -> Result<NodeCounts, Error> {
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Tenant(format!("listing the tenant's nodes: {e}")))?;
    let ready = list
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    Ok(NodeCounts {
        registered: u32::try_from(list.items.len()).unwrap_or(u32::MAX),
        ready: u32::try_from(ready).unwrap_or(u32::MAX),
    })
}

/// Applies every object of `addon`; returns what of it does not run yet.
async fn apply(client: &Client, addon: &Addon) -> Result<Vec<String>, Error> {
    for o in &addon.service_accounts {
        apply_namespaced::<ServiceAccount>(client, o).await?;
    }
    for o in &addon.cluster_roles {
        apply_cluster::<ClusterRole>(client, o).await?;
    }
    for o in &addon.cluster_role_bindings {
        apply_cluster::<ClusterRoleBinding>(client, o).await?;
    }
    for o in &addon.config_maps {
        apply_namespaced::<ConfigMap>(client, o).await?;
    }
    for o in &addon.services {
        apply_namespaced::<Service>(client, o).await?;
    }
    let mut not_running = Vec::new();
    for o in &addon.deployments {
        let d = apply_namespaced::<Deployment>(client, o).await?;
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if available < 1 {
            not_running.push(format!("{}: none available", d.name_any()));
        }
    }
    for o in &addon.daemon_sets {
        let ds = apply_namespaced::<DaemonSet>(client, o).await?;
        let (ready, want) = ds
            .status
            .as_ref()
            .map_or((0, 0), |s| (s.number_ready, s.desired_number_scheduled));
        if ready < want {
            not_running.push(format!("{}: {ready}/{want} nodes ready", ds.name_any()));
        }
    }
    Ok(not_running)
}

/// Deletes every object of `addon` (those gone already are fine).
async fn remove(client: &Client, addon: &Addon) -> Result<(), Error> {
    for o in &addon.daemon_sets {
        delete_namespaced::<DaemonSet>(client, NAMESPACE, &o.name_any()).await?;
    }
    for o in &addon.deployments {
        delete_namespaced::<Deployment>(client, NAMESPACE, &o.name_any()).await?;
    }
    for o in &addon.services {
        delete_namespaced::<Service>(client, NAMESPACE, &o.name_any()).await?;
    }
    for o in &addon.config_maps {
        delete_namespaced::<ConfigMap>(client, NAMESPACE, &o.name_any()).await?;
    }
    for o in &addon.cluster_role_bindings {
        delete_cluster::<ClusterRoleBinding>(client, &o.name_any()).await?;
    }
    for o in &addon.cluster_roles {
        delete_cluster::<ClusterRole>(client, &o.name_any()).await?;
    }
    for o in &addon.service_accounts {
        delete_namespaced::<ServiceAccount>(client, NAMESPACE, &o.name_any()).await?;
    }
    Ok(())
}

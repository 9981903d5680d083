//! NetworkPolicies for a tenant's pods in the seed, one per component, ingress only:
//! - etcd: its client port only from this tenant's API server and backup Jobs, its peer port only
//!   from its own members; the metrics and health port (plain HTTP, no data) from anywhere, for
//!   the kubelet's probes and monitoring;
//! - the API server: its port only (the tenant's endpoint: users, nodes and the operator come
//!   from anywhere);
//! - controller-manager and scheduler: their health ports only (nothing else talks to them).
//!
//! Egress stays open (DNS, the tenant's kubelets, webhooks). Only a CNI plugin that implements
//! NetworkPolicy enforces them; etcd's client-certificate check holds without one
//! (docs/reliability.md).

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::pod::typed;
use super::{BuildError, Tenant, apiserver, backup, controllers, etcd};

/// The tenant's NetworkPolicies, named after the component they protect.
pub fn policies(tenant: &Tenant) -> Result<Vec<NetworkPolicy>, BuildError> {
    let from =
        |component: &str| json!({"podSelector": {"matchLabels": tenant.selector(component)}});
    let port = |port: i32| json!({"protocol": "TCP", "port": port});
    let mut policies = vec![
        policy(
            tenant,
            &etcd::name(tenant),
            etcd::COMPONENT,
            &json!([
                {
                    "from": [from(apiserver::COMPONENT), from(backup::COMPONENT)],
                    "ports": [port(etcd::CLIENT_PORT)],
                },
                {"from": [from(etcd::COMPONENT)], "ports": [port(etcd::PEER_PORT)]},
                {"ports": [port(etcd::METRICS_PORT)]},
            ]),
        )?,
        policy(
            tenant,
            &apiserver::name(tenant),
            apiserver::COMPONENT,
            &json!([{"ports": [port(apiserver::PORT)]}]),
        )?,
    ];
    for (component, health) in controllers::HEALTH_PORTS {
        policies.push(policy(
            tenant,
            &controllers::name(tenant, component),
            component,
            &json!([{"ports": [port(health)]}]),
        )?);
    }
    Ok(policies)
}

fn policy(
    tenant: &Tenant,
    name: &str,
    component: &str,
    ingress: &serde_json::Value,
) -> Result<NetworkPolicy, BuildError> {
    let mut policy: NetworkPolicy = typed(
        "NetworkPolicy",
        json!({
            "spec": {
                "podSelector": {"matchLabels": tenant.selector(component)},
                "policyTypes": ["Ingress"],
                "ingress": ingress,
            },
        }),
    )?;
    policy.metadata = tenant.meta(name, component);
    Ok(policy)
}

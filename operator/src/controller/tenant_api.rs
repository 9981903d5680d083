//! Talking to the tenant's own API server, as the super-admin only the operator holds: its
//! `/readyz`, and the few objects a fresh tenant needs before its admin kubeconfig works.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::apply::FIELD_MANAGER;
use super::error::Error;
use crate::pki::CLUSTER_ADMINS_GROUP;

/// A client for the tenant at `url` (the apiserver Service's ClusterIP, so the operator reaches it
/// from inside the seed and from a seed host alike), with the super-admin kubeconfig's
/// credentials and CA.
pub async fn client(kubeconfig_yaml: &str, url: &str) -> Result<Client, Error> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml)
        .map_err(|e| Error::Tenant(format!("the super-admin kubeconfig does not parse: {e}")))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Tenant(format!("the super-admin kubeconfig is unusable: {e}")))?;
    config.cluster_url = url
        .parse()
        .map_err(|e| Error::Tenant(format!("endpoint {url}: {e}")))?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(10));
    Client::try_from(config).map_err(|e| Error::Tenant(format!("client for {url}: {e}")))
}

/// Whether the tenant answers `/readyz` with "ok". The reason when it does not.
pub async fn ready(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("/readyz answered {:?}", body.trim())),
        Err(e) => Err(format!("/readyz: {e}")),
    }
}

/// What every tenant needs inside before users can use it: the admin kubeconfig's group bound to
/// cluster-admin (as kubeadm >= 1.29 does; the user is not in system:masters). Idempotent.
pub async fn bootstrap(client: &Client) -> Result<(), Error> {
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ADMINS_GROUP, "labels": {"app.kubernetes.io/managed-by": "hostplane"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": CLUSTER_ADMINS_GROUP}],
    }))
    .map_err(|e| Error::Tenant(e.to_string()))?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            CLUSTER_ADMINS_GROUP,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&binding),
        )
        .await
        .map_err(|e| {
            Error::Tenant(format!(
                "applying ClusterRoleBinding {CLUSTER_ADMINS_GROUP}: {e}"
            ))
        })?;
    Ok(())
}

//! Talking to the tenant's own API server, as the super-admin only the operator holds: its
//! `/readyz`, and the few objects a fresh tenant needs before its admin kubeconfig works.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use kube::{Client, Config};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apply::apply_via;
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
///
/// An API server that answers "not ready" is asked once more: during a rolling update the
/// Service may still send one request to an API server that is shutting down (its `/readyz`
/// fails while it serves for `--shutdown-delay-duration`), which says nothing of the tenant. One
/// that does not answer at all is not asked again.
pub async fn ready(client: &Client) -> Result<(), String> {
    match readyz(client).await {
        Ok(()) => Ok(()),
        Err((answered, _)) if answered => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            readyz(client).await.map_err(|(_, why)| why)
        }
        Err((_, why)) => Err(why),
    }
}

/// `/readyz` once; an error says whether the API server answered.
async fn readyz(client: &Client) -> Result<(), (bool, String)> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| (false, e.to_string()))?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err((true, format!("/readyz answered {:?}", body.trim()))),
        Err(e @ kube::Error::Api(_)) => Err((true, format!("/readyz: {e}"))),
        Err(e) => Err((false, format!("/readyz: {e}"))),
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
    apply_cluster(client, &binding).await
}

fn tenant_error<K: Resource<DynamicType = ()>>(name: &str) -> impl FnOnce(kube::Error) -> Error {
    let what = format!("applying {} {name} in the tenant", K::kind(&()));
    move |e| Error::Tenant(format!("{what}: {e}"))
}

/// Server-side apply of a namespaced object inside the tenant; returns it as applied. (The
/// seed's apply, with the failure named as the tenant's.)
pub async fn apply_namespaced<K>(client: &Client, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    super::apply::apply(client, obj)
        .await
        .map_err(|e| Error::Tenant(format!("in the tenant: {e}")))
}

/// Server-side apply of a cluster-scoped object inside the tenant.
pub async fn apply_cluster<K>(client: &Client, obj: &K) -> Result<(), Error>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    apply_via(&Api::<K>::all(client.clone()), obj)
        .await
        .map_err(tenant_error::<K>(&obj.name_any()))?;
    Ok(())
}

/// Deletes a namespaced object inside the tenant; one that is gone already is fine.
pub async fn delete_namespaced<K>(client: &Client, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    match Api::<K>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Tenant(format!(
            "deleting {} {ns}/{name} in the tenant: {e}",
            K::kind(&())
        ))),
    }
}

/// Deletes a cluster-scoped object inside the tenant; one that is gone already is fine.
pub async fn delete_cluster<K>(client: &Client, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    match Api::<K>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Tenant(format!(
            "deleting {} {name} in the tenant: {e}",
            K::kind(&())
        ))),
    }
}

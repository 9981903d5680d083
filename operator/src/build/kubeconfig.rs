//! Kubeconfigs with embedded credentials, as Secrets: one per control-plane component, the
//! operator's super-admin, and the user's `<tcp>-kubeconfig` in the Cluster API format.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::Tenant;
use crate::pki::{CaItem, Item, Pki};

/// The data key of every kubeconfig Secret (the Cluster API contract uses `value`).
pub const KUBECONFIG_KEY: &str = "value";
pub const CONTROLLER_MANAGER: &str = "controller-manager-kubeconfig";
pub const SCHEDULER: &str = "scheduler-kubeconfig";
pub const SUPER_ADMIN_SECRET_SUFFIX: &str = "super-admin-kubeconfig";
/// The user's kubeconfig: `<tcp>-kubeconfig`.
pub const USER: &str = "kubeconfig";
/// Cluster API's kubeconfig Secret type and cluster label.
pub const CAPI_SECRET_TYPE: &str = "cluster.x-k8s.io/secret";
pub const CAPI_CLUSTER_LABEL: &str = "cluster.x-k8s.io/cluster-name";

pub fn secret_name(tenant: &Tenant, suffix: &str) -> String {
    format!("{}-{suffix}", tenant.name)
}

/// A kubeconfig for `user` (a client certificate of the PKI) at `server`.
pub fn render(cluster: &str, server: &str, pki: &Pki, user: Item) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let ca = pki.trust_bundle_pem(CaItem::Cluster);
    let (cert, key) = pki
        .cert(user)
        .map(|c| (pki.chain_pem(c, CaItem::Cluster), c.key().to_pkcs8_pem()))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {cluster}-{user_name}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {cluster}-{user_name}\ncurrent-context: {cluster}\n",
        b64(&ca),
        b64(&cert),
        b64(&key),
        user_name = user.secret_suffix().trim_end_matches("-client"),
    )
}

fn kubeconfig_secret(tenant: &Tenant, suffix: &str, server: &str, pki: &Pki, user: Item) -> Secret {
    let mut secret = super::owned_secret(tenant, &secret_name(tenant, suffix));
    let value = render(&tenant.name, server, pki, user);
    secret.data = Some([(KUBECONFIG_KEY.to_owned(), ByteString(value.into_bytes()))].into());
    secret
}

/// Every kubeconfig Secret of the tenant.
pub fn secrets(tenant: &Tenant, pki: &Pki) -> Vec<Secret> {
    let in_seed = tenant.in_seed_url();
    let mut user = kubeconfig_secret(tenant, USER, &tenant.endpoint_url(), pki, Item::AdminClient);
    user.type_ = Some(CAPI_SECRET_TYPE.to_owned());
    if let Some(labels) = user.metadata.labels.as_mut() {
        labels.insert(CAPI_CLUSTER_LABEL.to_owned(), tenant.name.clone());
    }
    vec![
        kubeconfig_secret(
            tenant,
            CONTROLLER_MANAGER,
            &in_seed,
            pki,
            Item::ControllerManagerClient,
        ),
        kubeconfig_secret(tenant, SCHEDULER, &in_seed, pki, Item::SchedulerClient),
        kubeconfig_secret(
            tenant,
            SUPER_ADMIN_SECRET_SUFFIX,
            &in_seed,
            pki,
            Item::SuperAdminClient,
        ),
        user,
    ]
}

//! Writes to the seed: server-side apply under one field manager, and create-only for what must
//! never be overwritten (a CA, the encryption key): a conflict there fails and retries instead of
//! minting a second one.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::Secret;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "hostplane";

fn api_for<K>(client: &Client, obj: &K) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(
        client.clone(),
        obj.meta().namespace.as_deref().unwrap_or_default(),
    )
}

/// Server-side apply of the whole object. The API server skips the write when nothing changed,
/// so an unchanged object keeps its resourceVersion.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    apply_via(&api_for(client, obj), obj)
        .await
        .map_err(Error::kube("apply", K::kind(&()), obj.name_any()))
}

/// The server-side apply itself, through `api` (namespaced or cluster-wide, seed or tenant).
pub async fn apply_via<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// Whether `current` (as listed from the seed) already is what applying `desired` would make of
/// it: the same type and data, every desired label and annotation, every desired owner. Such a
/// Secret needs no apply: at 1000 tenants the no-op applies of unchanged Secrets were most of the
/// seed's requests (e2e/bench/scale). Any drift (data edited by hand, a label removed) makes this
/// false and the apply heals it.
pub fn already_applied(desired: &Secret, current: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let data = |s: &Secret| -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in s.string_data.iter().flatten() {
            out.insert(k.clone(), v.clone().into_bytes());
        }
        out
    };
    let owners = |s: &Secret| -> Vec<(String, Option<bool>)> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| (o.uid.clone(), o.controller))
            .collect()
    };
    let have_owners = owners(current);
    desired.type_.as_deref().unwrap_or("Opaque") == current.type_.as_deref().unwrap_or("Opaque")
        && data(desired) == data(current)
        && subset(&desired.metadata.labels, &current.metadata.labels)
        && subset(&desired.metadata.annotations, &current.metadata.annotations)
        && owners(desired).iter().all(|o| have_owners.contains(o))
        && current.metadata.deletion_timestamp.is_none()
}

/// Creates `obj` unless an object of that name exists; never updates. Returns whether it created.
pub async fn create_if_absent<K>(client: &Client, obj: &K) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.name_any();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api_for(client, obj).create(&params, obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(Error::kube("create", K::kind(&()), name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::already_applied;

    fn secret(value: &[u8]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("t1-ca".into());
        s.metadata.labels = Some([("hostplane.dev/tenant".to_owned(), "t1".to_owned())].into());
        s.metadata.owner_references = Some(vec![OwnerReference {
            uid: "u1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        s.type_ = Some("kubernetes.io/tls".into());
        s.data = Some([("tls.crt".to_owned(), ByteString(value.to_vec()))].into());
        s
    }

    #[test]
    fn an_identical_secret_needs_no_apply_and_any_drift_does() {
        let desired = secret(b"cert");
        let mut listed = secret(b"cert");
        // What the API server adds is no drift.
        listed.metadata.resource_version = Some("42".into());
        listed
            .metadata
            .labels
            .get_or_insert_default()
            .insert("someone.else/label".into(), "x".into());
        assert!(already_applied(&desired, &listed));

        assert!(!already_applied(&desired, &secret(b"edited by hand")));
        let mut no_label = listed.clone();
        no_label.metadata.labels = None;
        assert!(!already_applied(&desired, &no_label));
        let mut other_owner = listed.clone();
        other_owner.metadata.owner_references = None;
        assert!(!already_applied(&desired, &other_owner));
        let mut other_type = listed.clone();
        other_type.type_ = Some("Opaque".into());
        assert!(!already_applied(&desired, &other_type));
        let mut extra_key = listed.clone();
        extra_key
            .data
            .get_or_insert_default()
            .insert("tls.key".into(), ByteString(b"k".to_vec()));
        assert!(!already_applied(&desired, &extra_key));
        let mut annotated = desired.clone();
        annotated.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        assert!(!already_applied(&annotated, &listed));
        let mut deleting = listed;
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!already_applied(&desired, &deleting));
    }
}

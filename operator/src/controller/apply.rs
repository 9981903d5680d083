//! Writes to the seed: server-side apply under one field manager, and create-only for what must
//! never be overwritten (a CA, the encryption key): a conflict there fails and retries instead of
//! minting a second one.

use std::fmt::Debug;

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

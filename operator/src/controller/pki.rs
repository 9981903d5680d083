//! The PKI at the edge: read this tenant's PKI Secrets, let the pure `pki::plan` decide, write
//! what changed. Roots (CAs, the service-account key) are created, never overwritten.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use super::apply::{apply, create_if_absent};
use super::error::Error;
use crate::build::{self, Tenant};
use crate::pki::{self, ExistingSecrets, Item, Pki, PkiError, PkiInputs};

/// The outcome of one pass over the PKI.
pub struct PkiState {
    pub pki: Pki,
    /// Items written in this pass (issued or re-issued), for the condition message.
    pub written: Vec<Item>,
    /// Whether any PKI Secret existed before this pass: a control plane that was provisioned once.
    pub existed: bool,
    /// Every Secret of this tenant as listed before this pass wrote (PKI, kubeconfigs, the
    /// encryption configuration), and the PKI Secrets as this pass wrote them, by name: what an
    /// apply of the children may find already in place (and skip).
    pub listed: BTreeMap<String, Secret>,
}

/// Reads the Secrets this tenant owns (by label and ownerReference: another tenant's
/// `<x>-etcd-ca` can share a prefix with ours): the PKI's, and all of them by name.
pub async fn existing(
    client: &Client,
    tenant: &Tenant,
) -> Result<(ExistingSecrets, BTreeMap<String, Secret>), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace);
    let selector = format!("{}={}", build::TENANT_LABEL, tenant.name);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "Secret", &selector))?;
    let mut out = ExistingSecrets::new();
    let mut listed = BTreeMap::new();
    for secret in list.items {
        let owned = secret
            .owner_references()
            .iter()
            .any(|o| o.uid == tenant.owner.uid);
        if !owned {
            continue;
        }
        listed.insert(secret.name_any(), secret.clone());
        let Some(item) = Item::from_secret_name(&tenant.name, &secret.name_any()) else {
            continue;
        };
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        out.insert(item, data);
    }
    Ok((out, listed))
}

/// Plans, issues what is missing or due, and writes it, roots first.
pub async fn ensure(
    client: &Client,
    tenant: &Tenant,
    inputs: &PkiInputs,
) -> Result<PkiState, Error> {
    let (existing, mut listed) = existing(client, tenant).await?;
    let now = time::OffsetDateTime::now_utc();
    let plan = match pki::plan(inputs, &existing, now) {
        Ok(plan) => plan,
        Err(PkiError::RootsUnavailable(problems)) => {
            let what: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Error::RootsUnavailable(what.join("; ")));
        }
        Err(e) => return Err(e.into()),
    };
    let pki = pki::execute(plan, now)?;
    let written = pki.changed_secrets(&existing);
    for item in &written {
        let secret = build::pki_secrets::secret(tenant, &pki, *item);
        if item.is_root() && !existing.contains_key(item) {
            // Create, never overwrite: if another writer got there first, retry and read theirs.
            if !create_if_absent(client, &secret).await? {
                return Err(Error::Conflict(format!(
                    "Secret {} appeared while this reconcile created it; retrying",
                    secret.name_any()
                )));
            }
            listed.insert(secret.name_any(), secret);
        } else {
            let current = apply(client, &secret).await?;
            listed.insert(current.name_any(), current);
        }
    }
    Ok(PkiState {
        pki,
        written,
        existed: !existing.is_empty(),
        listed,
    })
}

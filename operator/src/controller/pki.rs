//! The PKI at the edge: read this tenant's PKI Secrets, let the pure `pki::plan` decide, write
//! what changed. Roots (CAs, the service-account key) are created, never overwritten.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use super::apply::{apply, create_if_absent};
use super::error::Error;
use crate::build::{self, Tenant};
use crate::pki::{self, ExistingSecrets, Item, Pki, PkiError, PkiInputs};
use hostplane_api::v1alpha1::ACCEPT_NEW_ROOTS_ANNOTATION;

/// What to do about a lost root, first.
pub const RESTORE_HINT: &str = "Restore the Secret from a backup of this namespace (same name and \
     data), then change this TenantControlPlane (e.g. `kubectl annotate`) so it is reconciled \
     again.";

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
    /// CAs due for renewal (never replaced silently): reported by PKIReady.
    pub ca_due: Vec<crate::pki::CaRenewal>,
    /// Roots replaced in this pass, as `hostplane.dev/accept-new-roots` accepted.
    pub replaced: Vec<Item>,
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

/// The roots the annotation `hostplane.dev/accept-new-roots` (a comma-separated list of Secret
/// names) accepts replacing; a name that is not a root of this tenant is an error (an invalid
/// spec).
pub fn accepted_roots(
    tenant: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<BTreeSet<Item>, String> {
    let Some(value) = annotations.get(ACCEPT_NEW_ROOTS_ANNOTATION) else {
        return Ok(BTreeSet::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Item::from_secret_name(tenant, name)
                .filter(|item| item.is_root())
                .ok_or_else(|| {
                    let roots: Vec<String> = Item::ALL
                        .iter()
                        .filter(|i| i.is_root())
                        .map(|i| i.secret_name(tenant))
                        .collect();
                    format!(
                        "{ACCEPT_NEW_ROOTS_ANNOTATION} names {name:?}, which is not a root of \
                         trust of this tenant; its roots are {}",
                        roots.join(", ")
                    )
                })
        })
        .collect()
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
            let secrets: Vec<&str> = problems.iter().map(|p| p.secret.as_str()).collect();
            return Err(Error::RootsUnavailable(format!(
                "{}. {RESTORE_HINT} Or accept a new one, which invalidates every certificate, \
                 kubeconfig and token it signed: `kubectl annotate tcp/{} \
                 {ACCEPT_NEW_ROOTS_ANNOTATION}={}`",
                what.join("; "),
                tenant.name,
                secrets.join(",")
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let ca_due = plan.ca_renewals().to_vec();
    let replaced = plan
        .actions()
        .into_iter()
        .filter(|(_, action)| {
            matches!(
                action,
                pki::Action::Reissue(pki::ReissueReason::ReplacementAccepted(_))
            )
        })
        .map(|(item, _)| item)
        .collect();
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
        ca_due,
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ACCEPT_NEW_ROOTS_ANNOTATION.to_owned(), value.to_owned())])
    }

    #[test]
    fn the_annotation_accepts_only_roots_of_this_tenant() {
        assert!(accepted_roots("t", &BTreeMap::new()).unwrap().is_empty());
        assert_eq!(
            accepted_roots("t", &annotated(" t-ca, t-sa ,,")).unwrap(),
            BTreeSet::from([Item::Ca, Item::ServiceAccount])
        );
        for wrong in ["t-apiserver-cert", "u-ca", "t-ca,t-encryption-key", "ca"] {
            let err = accepted_roots("t", &annotated(wrong)).unwrap_err();
            assert!(
                err.ends_with("its roots are t-ca, t-front-proxy-ca, t-etcd-ca, t-sa"),
                "{err}"
            );
        }
    }
}

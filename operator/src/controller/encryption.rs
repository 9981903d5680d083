//! The key that encrypts the tenant's Secrets at rest in its etcd. Generated once, kept in a seed
//! Secret that is created and never overwritten: losing it makes every Secret in the tenant's etcd
//! unreadable, so a missing key on a tenant that was provisioned before is an error, not a new key.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use ring::rand::{SecureRandom as _, SystemRandom};

use super::apply::create_if_absent;
use super::error::Error;
use crate::build::{self, Tenant};

/// Data key of the Secret `<tcp>-encryption-key`.
const KEY: &str = "key";

/// The tenant's 32-byte key, created on first provisioning: new, or `copy_from`'s (the tenant
/// whose snapshot this one starts from, whose Secrets in it are encrypted with that key).
pub async fn ensure_key(
    client: &Client,
    tenant: &Tenant,
    provisioned_before: bool,
    copy_from: Option<&str>,
) -> Result<[u8; 32], Error> {
    let name = format!("{}-encryption-key", tenant.name);
    let api: Api<Secret> = Api::namespaced(client.clone(), &tenant.namespace);
    if let Some(secret) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube("get", "Secret", &name))?
    {
        let stored = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .map(|b| b.0.as_slice());
        return stored.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
            Error::RootsUnavailable(format!(
                "Secret {name} does not hold a 32-byte `{KEY}`: the tenant's Secrets in etcd cannot be read without it. {}", super::pki::RESTORE_HINT
            ))
        });
    }
    if provisioned_before {
        return Err(Error::RootsUnavailable(format!(
            "Secret {name} (the key that encrypts the tenant's Secrets in etcd) is gone: no new key can read them. {}",
            super::pki::RESTORE_HINT
        )));
    }
    let mut key = [0u8; 32];
    if let Some(source) = copy_from {
        let source_name = format!("{source}-encryption-key");
        let copied = api
            .get_opt(&source_name)
            .await
            .map_err(Error::kube("get", "Secret", &source_name))?
            .and_then(|s| s.data)
            .and_then(|d| {
                d.get(KEY)
                    .and_then(|b| <[u8; 32]>::try_from(b.0.as_slice()).ok())
            });
        key = copied.ok_or_else(|| {
            Error::InvalidSpec(format!(
                "etcd.managed.restoreFrom: Secret {source_name} (the key the snapshot's Secrets \
                 are encrypted with) is missing or not a 32-byte `{KEY}`; restore it first"
            ))
        })?;
    } else {
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| Error::Conflict("the system random generator failed".to_owned()))?;
    }
    let mut secret = build::owned_secret(tenant, &name);
    secret.data = Some([(KEY.to_owned(), ByteString(key.to_vec()))].into());
    if !create_if_absent(client, &secret).await? {
        return Err(Error::Conflict(format!(
            "Secret {name} appeared while this reconcile created it; retrying"
        )));
    }
    Ok(key)
}

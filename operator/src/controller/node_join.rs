//! Node bootstrap at the edge: keeps a bootstrap token in the seed's `<tcp>-join` Secret (minting
//! a new one when a third of its life is left), and applies the token and kubeadm's bootstrap
//! objects inside the tenant (re-created if someone deletes them).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::Api;
use ring::rand::{SecureRandom as _, SystemRandom};
use time::OffsetDateTime;

use super::apply::apply;
use super::error::Error;
use super::tenant_api::{apply_cluster, apply_namespaced};
use crate::build::Tenant;
use crate::build::node_bootstrap::{self, BootstrapToken, JOIN_SUFFIX, TenantObjects};
use crate::pki::Pki;

/// Ensures the join Secret and the tenant's bootstrap objects; returns when the token is next
/// due for rotation, so the caller checks again by then.
pub async fn ensure(
    seed: &Client,
    tenant_client: &Client,
    tenant: &Tenant,
    pki: &Pki,
) -> Result<OffsetDateTime, Error> {
    let ttl = tenant
        .spec
        .nodes
        .bootstrap_token_ttl_seconds()
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "spec.nodes.bootstrapTokenTTL {:?} is not a duration from 15m to 168h",
                tenant.spec.nodes.bootstrap_token_ttl
            ))
        })?;
    let now = OffsetDateTime::now_utc();
    let name = format!("{}-{JOIN_SUFFIX}", tenant.name);
    let current = Api::<Secret>::namespaced(seed.clone(), &tenant.namespace)
        .get_opt(&name)
        .await
        .map_err(Error::kube("get", "Secret", &name))?
        .and_then(|s| BootstrapToken::from_join_secret(&s));
    let token = match current {
        Some(token) if !token.rotation_due(now, ttl) => token,
        _ => new_token(now + time::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX)))
            .map_err(|e| Error::Tenant(e.to_owned()))?,
    };
    // Seed first: the token is kept before the tenant accepts it, so it is never lost.
    apply(seed, &node_bootstrap::join_secret(tenant, pki, &token)?).await?;
    apply_in_tenant(
        tenant_client,
        node_bootstrap::tenant_objects(tenant, pki, &token)?,
    )
    .await?;
    Ok(token.rotation_at(ttl))
}

/// A new token from the system's CSPRNG, each character uniform over `[a-z0-9]`.
fn new_token(expiration: OffsetDateTime) -> Result<BootstrapToken, &'static str> {
    let alphabet = BootstrapToken::alphabet();
    let len = u8::try_from(alphabet.len()).unwrap_or(u8::MAX);
    // The largest multiple of the alphabet's size below 256: bytes above it would bias.
    let limit = u8::MAX - u8::MAX % len;
    let rng = SystemRandom::new();
    let mut chars = [0u8; 22];
    let mut filled = 0;
    let mut buf = [0u8; 64];
    while filled < chars.len() {
        rng.fill(&mut buf)
            .map_err(|_| "the system random source failed")?;
        for b in buf.iter().filter(|b| **b < limit) {
            if let Some(slot) = chars.get_mut(filled) {
                *slot = alphabet[usize::from(*b % len)];
                filled += 1;
            }
        }
    }
    BootstrapToken::from_chars(&chars, expiration)
        .ok_or("a generated bootstrap token was malformed")
}

async fn apply_in_tenant(client: &Client, objects: TenantObjects) -> Result<(), Error> {
    let TenantObjects {
        secrets,
        config_maps,
        cluster_roles,
        cluster_role_bindings,
        roles,
        role_bindings,
    } = objects;
    for o in &cluster_roles {
        apply_cluster::<ClusterRole>(client, o).await?;
    }
    for o in &cluster_role_bindings {
        apply_cluster::<ClusterRoleBinding>(client, o).await?;
    }
    for o in &roles {
        apply_namespaced::<Role>(client, o).await?;
    }
    for o in &role_bindings {
        apply_namespaced::<RoleBinding>(client, o).await?;
    }
    for o in &config_maps {
        apply_namespaced::<ConfigMap>(client, o).await?;
    }
    for o in &secrets {
        apply_namespaced::<Secret>(client, o).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_well_formed_and_differ() {
        let exp = OffsetDateTime::now_utc();
        let tokens: Vec<String> = (0..50).map(|_| new_token(exp).unwrap().token()).collect();
        for t in &tokens {
            let (id, secret) = t.split_once('.').unwrap();
            assert_eq!((id.len(), secret.len()), (6, 16), "{t}");
            assert!(
                t.bytes()
                    .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
        let distinct: std::collections::BTreeSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        // Every character of the alphabet turns up over 50 × 22 draws (uniform: each is
        // missing with probability ~1e-13).
        let seen: std::collections::BTreeSet<u8> = tokens.iter().flat_map(|t| t.bytes()).collect();
        assert_eq!(seen.len(), 37, "36 characters and the dot");
    }
}

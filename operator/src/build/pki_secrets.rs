//! The PKI as Secrets: one per item, typed, labelled and owned.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::Tenant;
use crate::pki::{Item, Pki};

/// The Secret of one PKI item.
pub fn secret(tenant: &Tenant, pki: &Pki, item: Item) -> Secret {
    Secret {
        metadata: tenant.meta(&item.secret_name(&tenant.name), "pki"),
        type_: Some(item.secret_type().to_owned()),
        data: Some(
            pki.secret_data(item)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Secret::default()
    }
}

//! The PKI as Secret data (`BTreeMap<String, Vec<u8>>` per item), both ways.

use std::collections::BTreeMap;
use std::fmt;

use super::ca_rotation::{self, CROSS_CRT, NEXT_CRT};
use super::error::PkiError;
use super::inspect::{CertInfo, inspect, pem_to_der};
use super::issue::{CertKeyPair, Pki};
use super::item::{ByCa, Item, ItemKind};
use super::key::PrivateKey;
use super::pem_blocks;
use super::sa_keys::{
    NEXT_KEY, RETIRE_AFTER, ROTATION_ID, SaRotation, VERIFY_PUB, parse_rfc3339, public_keys_pem,
    rfc3339,
};

/// The data of one Secret, as in `Secret.data` (decoded bytes).
pub type SecretData = BTreeMap<String, Vec<u8>>;
/// The PKI Secrets that exist, by item (absent items have no Secret).
pub type ExistingSecrets = BTreeMap<Item, SecretData>;

/// Certificate (PEM) of a TLS Secret.
pub const TLS_CRT: &str = "tls.crt";
/// Private key (PKCS#8 PEM) of a TLS Secret.
pub const TLS_KEY: &str = "tls.key";
/// The issuing CA's certificate (PEM); in a CA Secret, the CA itself.
pub const CA_CRT: &str = "ca.crt";
/// Service-account signing key (PKCS#8 PEM).
pub const SA_KEY: &str = "sa.key";
/// Service-account public key (PKIX PEM), for `--service-account-key-file`.
pub const SA_PUB: &str = "sa.pub";
/// Secret type of every certificate Secret.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// Secret type of the service-account key Secret.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";

/// Why stored certificate data cannot be kept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadError {
    Unparsable(String),
    KeyMismatch,
    KeyNotP256,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unparsable(reason) => f.write_str(reason),
            LoadError::KeyMismatch => f.write_str("its private key does not match its certificate"),
            LoadError::KeyNotP256 => f.write_str("its key is not ECDSA P-256"),
        }
    }
}

fn field<'a>(data: &'a SecretData, key: &str) -> Result<&'a [u8], LoadError> {
    data.get(key)
        .map(Vec::as_slice)
        .ok_or_else(|| LoadError::Unparsable(format!("it has no `{key}`")))
}

/// Reads `tls.crt`/`tls.key` of a certificate item. `ca.crt` is not read: what signed a leaf is
/// checked against the CA's own Secret.
pub(crate) fn load_cert(
    item: Item,
    data: &SecretData,
) -> Result<(CertKeyPair, CertInfo), LoadError> {
    let der = pem_to_der(field(data, TLS_CRT)?)
        .map_err(|reason| LoadError::Unparsable(format!("`{TLS_CRT}`: {reason}")))?;
    let info =
        inspect(&der).map_err(|reason| LoadError::Unparsable(format!("`{TLS_CRT}`: {reason}")))?;
    if !info.key_is_p256 {
        return Err(LoadError::KeyNotP256);
    }
    let key = PrivateKey::from_pem(field(data, TLS_KEY)?)
        .map_err(|reason| LoadError::Unparsable(format!("`{TLS_KEY}`: {reason}")))?;
    if key.public_key_raw() != info.public_key_raw.as_slice() {
        return Err(LoadError::KeyMismatch);
    }
    let cert = CertKeyPair {
        item,
        der,
        key,
        not_before: info.not_before,
        not_after: info.not_after,
    };
    Ok((cert, info))
}

/// Reads `sa.key` (`sa.pub` is derived from it, so it is not read) strictly, and a rotation's
/// state beside it leniently: what cannot be read of it is left out (a `next.key` that is not a
/// key was never signing; keys in `verify.pub` that are not keys trusted nothing).
pub(crate) fn load_service_account(
    data: &SecretData,
) -> Result<(PrivateKey, SaRotation), LoadError> {
    let signer = PrivateKey::from_pem(field(data, SA_KEY)?)
        .map_err(|reason| LoadError::Unparsable(format!("`{SA_KEY}`: {reason}")))?;
    // A `next.key` that is the signer already (a Secret restored from the middle of a switch
    // by another tool) is no rotation to go on with.
    let next = data
        .get(NEXT_KEY)
        .and_then(|pem| PrivateKey::from_pem(pem).ok())
        .filter(|next| next.public_key_spki_der() != signer.public_key_spki_der());
    let current = [
        Some(signer.public_key_spki_der()),
        next.as_ref().map(PrivateKey::public_key_spki_der),
    ];
    let previous = data
        .get(VERIFY_PUB)
        .map(|pem| pem_blocks::parse(pem, pem_blocks::PUBLIC_KEY))
        .unwrap_or_default()
        .into_iter()
        .filter(|der| !current.iter().flatten().any(|k| k == der))
        .collect();
    let rotation = SaRotation {
        next,
        previous,
        id: rotation_id(data),
        retire_after: data.get(RETIRE_AFTER).and_then(|t| parse_rfc3339(t)),
    };
    Ok((signer, rotation))
}

/// The name of the last rotation started, as `<tcp>-sa` stores it.
pub(crate) fn rotation_id(data: &SecretData) -> Option<String> {
    data.get(ROTATION_ID)
        .and_then(|id| String::from_utf8(id.clone()).ok())
}

fn entry(key: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (key.to_owned(), value.into())
}

impl Pki {
    /// The data of `item`'s Secret: `tls.crt` (with the chain to a CA before the issuer, after a
    /// CA rotation), `tls.key` and `ca.crt` (the issuer's trust bundle), with a CA's rotation
    /// state beside it; or `sa.key`, `sa.pub` and a rotation's state for
    /// [`Item::ServiceAccount`].
    #[must_use]
    pub fn secret_data(&self, item: Item) -> SecretData {
        let tls = |chain: String, cert: &CertKeyPair, ca| {
            SecretData::from([
                entry(TLS_CRT, chain),
                entry(TLS_KEY, cert.key().to_pkcs8_pem()),
                entry(CA_CRT, self.trust_bundle_pem(ca)),
            ])
        };
        match item.kind() {
            ItemKind::Ca(ca) => {
                let signer = self.cas.get(ca);
                let mut data = tls(signer.cert_pem(), signer, ca);
                let rotation = self.ca_rotations.get(ca);
                if let Some(next) = &rotation.next {
                    data.extend([
                        entry(NEXT_CRT, next.cert_pem()),
                        entry(NEXT_KEY, next.key().to_pkcs8_pem()),
                    ]);
                }
                if let Some(cross) = &rotation.cross {
                    data.extend([entry(
                        CROSS_CRT,
                        pem_blocks::encode(pem_blocks::CERTIFICATE, cross),
                    )]);
                }
                if let Some(id) = &rotation.id {
                    data.extend([entry(ROTATION_ID, id.as_str())]);
                }
                if let Some(t) = rotation.retire_after {
                    data.extend([entry(RETIRE_AFTER, rfc3339(t))]);
                }
                data
            }
            ItemKind::ServiceAccountKey => {
                let rotation = &self.sa_rotation;
                let mut data = SecretData::from([
                    entry(SA_KEY, self.service_account.to_pkcs8_pem()),
                    entry(SA_PUB, self.service_account.public_key_pem()),
                    entry(
                        VERIFY_PUB,
                        public_keys_pem(self.sa_verification_keys().iter().map(Vec::as_slice)),
                    ),
                ]);
                if let Some(next) = &rotation.next {
                    data.extend([entry(NEXT_KEY, next.to_pkcs8_pem())]);
                }
                if let Some(id) = &rotation.id {
                    data.extend([entry(ROTATION_ID, id.as_str())]);
                }
                if let Some(t) = rotation.retire_after {
                    data.extend([entry(RETIRE_AFTER, rfc3339(t))]);
                }
                data
            }
            ItemKind::Leaf { issuer } => match self.leaves.get(&item) {
                Some(cert) => tls(self.chain_pem(cert, issuer), cert, issuer),
                None => SecretData::new(),
            },
        }
    }

    /// The data of every Secret, by item.
    #[must_use]
    pub fn to_secret_data(&self) -> ExistingSecrets {
        Item::ALL
            .into_iter()
            .map(|item| (item, self.secret_data(item)))
            .collect()
    }

    /// The items whose Secret is absent from `existing` or differs in a key this module writes
    /// (other keys are left alone), roots first: the Secrets to write after [`execute`].
    ///
    /// [`execute`]: super::execute
    #[must_use]
    pub fn changed_secrets(&self, existing: &ExistingSecrets) -> Vec<Item> {
        Item::ALL
            .into_iter()
            .filter(|item| {
                let stored = existing.get(item);
                self.secret_data(*item)
                    .iter()
                    .any(|(key, value)| stored.and_then(|data| data.get(key)) != Some(value))
            })
            .collect()
    }

    /// Reads a complete PKI from Secret data, strictly: every item must be present and usable.
    /// This checks the data only (keys match certificates); whether the PKI is still what the
    /// inputs ask for is [`plan`](super::plan)'s question.
    pub fn from_secret_data(secrets: &ExistingSecrets) -> Result<Pki, PkiError> {
        let data = |item: Item| {
            secrets.get(&item).ok_or_else(|| PkiError::SecretData {
                item,
                reason: format!("there is no `{}` Secret", item.secret_suffix()),
            })
        };
        let load = |item: Item| {
            load_cert(item, data(item)?)
                .map(|(cert, _)| cert)
                .map_err(|err| PkiError::SecretData {
                    item,
                    reason: err.to_string(),
                })
        };
        let cas = ByCa::try_new(|ca| load(ca.item()))?;
        let ca_rotations = ByCa::try_new(|ca| {
            data(ca.item()).map(|d| ca_rotation::load(ca.item(), d, cas.get(ca)))
        })?;
        let (service_account, sa_rotation) = load_service_account(data(Item::ServiceAccount)?)
            .map_err(|err| PkiError::SecretData {
                item: Item::ServiceAccount,
                reason: err.to_string(),
            })?;
        let leaves = Item::ALL
            .into_iter()
            .filter(|item| matches!(item.kind(), ItemKind::Leaf { .. }))
            .map(|item| Ok((item, load(item)?)))
            .collect::<Result<_, PkiError>>()?;
        Ok(Pki {
            cas,
            service_account,
            sa_rotation,
            ca_rotations,
            leaves,
        })
    }
}

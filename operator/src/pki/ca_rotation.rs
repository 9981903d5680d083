//! Staged rotation of the three CAs (the steps are `rotation`'s), as pure functions. Everything a
//! rotation needs is kept in each CA's Secret beside the signing CA (`tls.crt`, `tls.key`), so an
//! operator that stops half-way resumes where it was:
//!
//! - `ca.crt` — the trust bundle every component reads: the signing CA, a rotation's next CA
//!   (Preparing) and the CA that signed before (Rotating);
//! - `next.crt`, `next.key` — the CA that will sign (Preparing);
//! - `cross.crt` — the new CA's certificate signed by the old CA's key: certificate chains of the
//!   leaves the new CA signs carry it, so a client that only trusts the old CA (a kubelet's
//!   kubeconfig and client-CA file, which the operator cannot rewrite; a pod that read
//!   `kube-root-ca.crt` before) still verifies them;
//! - `rotation.id`, `rotation.retire-after` — bookkeeping, mounted by no pod.

use super::inspect::{inspect, pem_to_der};
use super::issue::CertKeyPair;
use super::item::Item;
use super::key::PrivateKey;
use super::pem_blocks;
use super::profile::Usage;
use super::rotation::Rotation;
use super::sa_keys::{NEXT_KEY, RETIRE_AFTER, ROTATION_ID, parse_rfc3339};
use super::secrets::{CA_CRT, SecretData};

/// The CA a rotation will sign with, while it is only trusted (PEM).
pub const NEXT_CRT: &str = "next.crt";
/// The signing CA's certificate signed by the key of the CA before it (PEM).
pub const CROSS_CRT: &str = "cross.crt";

/// The rotation state beside one signing CA: `previous` holds certificate DER.
#[derive(Debug, Default)]
pub struct CaRotation {
    pub(crate) staged: Rotation<CertKeyPair>,
    /// DER of a certificate with the subject and key of the signer (or, while Preparing, of
    /// `next`), signed by the CA before it.
    pub(crate) cross: Option<Vec<u8>>,
}

impl std::ops::Deref for CaRotation {
    type Target = Rotation<CertKeyPair>;

    fn deref(&self) -> &Self::Target {
        &self.staged
    }
}

impl std::ops::DerefMut for CaRotation {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.staged
    }
}

impl CaRotation {
    /// A rotation that only keeps the name of the last one (for a CA issued now).
    pub(crate) fn named(id: Option<String>) -> Self {
        Self {
            staged: Rotation {
                id,
                ..Rotation::default()
            },
            cross: None,
        }
    }
}

/// Reads a rotation's state beside the signing CA `signer`, leniently: what cannot be read of it
/// is left out (a `next.crt` that is not a CA with its key was never signing; certificates in
/// `ca.crt` that are not certificates trusted nothing).
pub(crate) fn load(item: Item, data: &SecretData, signer: &CertKeyPair) -> CaRotation {
    let next = next_ca(item, data).filter(|next| next.der != signer.der);
    let previous = data
        .get(CA_CRT)
        .map(|pem| pem_blocks::parse(pem, pem_blocks::CERTIFICATE))
        .unwrap_or_default()
        .into_iter()
        .filter(|der| *der != signer.der && next.as_ref().is_none_or(|n| n.der != *der))
        .collect();
    let cross = data
        .get(CROSS_CRT)
        .and_then(|pem| pem_to_der(pem).ok())
        .filter(|der| inspect(der).is_ok());
    CaRotation {
        staged: Rotation {
            next,
            previous,
            id: data
                .get(ROTATION_ID)
                .and_then(|id| String::from_utf8(id.clone()).ok()),
            retire_after: data.get(RETIRE_AFTER).and_then(|t| parse_rfc3339(t)),
        },
        cross,
    }
}

fn next_ca(item: Item, data: &SecretData) -> Option<CertKeyPair> {
    let der = pem_to_der(data.get(NEXT_CRT)?).ok()?;
    let info = inspect(&der).ok()?;
    let key = PrivateKey::from_pem(data.get(NEXT_KEY)?).ok()?;
    (info.usage == Some(Usage::Ca) && key.public_key_raw() == info.public_key_raw.as_slice())
        .then_some(CertKeyPair {
            item,
            der,
            key,
            not_before: info.not_before,
            not_after: info.not_after,
        })
}

//! Graceful rotation of the service-account signing key (the steps are `rotation`'s), as pure
//! functions. Everything a rotation needs is kept in the `<tcp>-sa` Secret beside the signer (`sa.key`), so an operator that stops
//! half-way resumes where it was:
//!
//! 1. *Preparing* — a new key (`next.key`) is trusted beside the signer (`verify.pub`, the
//!    API servers' `--service-account-key-file`); the API servers roll.
//! 2. *Rotating* — once every API server trusts it, the new key signs (`sa.key`); the old one is
//!    still trusted (`verify.pub`). Once no API server signs with it any more (the switch's
//!    rollout is over), `rotation.retire-after` is set: then plus the longest token lifetime
//!    (`--service-account-max-token-expiration`), so no token it signed is still valid. It is
//!    retired then, or when the user confirms earlier.
//! 3. *Completing* — the old key leaves `verify.pub`; the API servers roll and refuse its tokens.

use std::fmt::Write as _;

use base64::Engine as _;
use time::OffsetDateTime;

use super::pem_blocks::{self, PUBLIC_KEY};
use super::rotation::Rotation;

use super::key::PrivateKey;

/// Every public key the API servers accept tokens of (PEM "PUBLIC KEY" blocks): the signer's,
/// a rotation's next key, and the keys that signed before, until they are retired.
pub const VERIFY_PUB: &str = "verify.pub";
/// The key a rotation will sign with, while it is only trusted (PKCS#8 PEM).
pub const NEXT_KEY: &str = "next.key";
/// The prefix of the keys that keep a rotation's state, which no pod mounts.
pub const BOOKKEEPING_PREFIX: &str = "rotation.";
/// The id of the last rotation started (the annotation's value).
pub const ROTATION_ID: &str = "rotation.id";
/// When the keys that signed before may leave `verify.pub` (RFC 3339).
pub const RETIRE_AFTER: &str = "rotation.retire-after";

/// The rotation state beside the signing key: `previous` holds SubjectPublicKeyInfo DER.
pub type SaRotation = Rotation<PrivateKey>;

/// The `kid` the API server puts in the header of the tokens a key signs: the unpadded URL-safe
/// base64 of the SHA-256 of its SubjectPublicKeyInfo DER.
#[must_use]
pub fn key_id(spki_der: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, spki_der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref())
}

/// PEM "PUBLIC KEY" blocks of `keys` (SubjectPublicKeyInfo DER), LF line endings.
pub(crate) fn public_keys_pem<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> String {
    keys.into_iter().fold(String::new(), |mut out, der| {
        let _ = write!(out, "{}", pem_blocks::encode(PUBLIC_KEY, der));
        out
    })
}

/// A time as RFC 3339 (UTC), as the Secret stores it.
#[must_use]
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A time from its RFC 3339 form, if it is one.
pub(crate) fn parse_rfc3339(bytes: &[u8]) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(bytes).ok()?;
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
}

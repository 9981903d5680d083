//! Graceful rotation of the service-account signing key, as pure functions. Everything a rotation
//! needs is kept in the `<tcp>-sa` Secret beside the signer (`sa.key`), so an operator that stops
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
use time::{Duration, OffsetDateTime};

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

/// The rotation state beside the signing key.
#[derive(Debug, Default)]
pub struct SaRotation {
    /// The key that will sign, trusted already (phase Preparing).
    pub(crate) next: Option<PrivateKey>,
    /// SubjectPublicKeyInfo DER of keys that signed before the signer, still trusted (phase
    /// Rotating).
    pub(crate) previous: Vec<Vec<u8>>,
    /// The last rotation started.
    pub(crate) id: Option<String>,
    /// When `previous` may go.
    pub(crate) retire_after: Option<OffsetDateTime>,
}

/// Where a rotation is, as the Secret tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaPhase {
    /// One key signs and is the only one trusted.
    Settled,
    /// A new key is trusted, not yet signing.
    Preparing,
    /// The new key signs; the old one is still trusted.
    Rotating,
}

/// What the user asked, by annotation.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaRequest<'a> {
    /// `hostplane.dev/rotate-service-account-key`: a rotation with this id.
    pub rotate: Option<&'a str>,
    /// `hostplane.dev/complete-service-account-key-rotation`: retire the old key of the rotation
    /// with this id now, not at `retire_after`.
    pub complete: Option<&'a str>,
}

/// One step of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaChange {
    /// A new key, trusted only (Settled → Preparing).
    Start(String),
    /// The new key signs; the old one stays trusted (Preparing → Rotating).
    Switch,
    /// No API server signs with the old key any more: it is retired after this time (a
    /// bookkeeping step inside Rotating; no pod mounts `rotation.retire-after`).
    Schedule(OffsetDateTime),
    /// The old key is no longer trusted (Rotating → Settled).
    Retire,
}

impl SaRotation {
    /// The phase the stored state is in.
    #[must_use]
    pub fn phase(&self) -> SaPhase {
        if self.next.is_some() {
            SaPhase::Preparing
        } else if self.previous.is_empty() {
            SaPhase::Settled
        } else {
            SaPhase::Rotating
        }
    }

    /// The last rotation started, if any.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// When the old key leaves, while Rotating (None: only when the user confirms).
    #[must_use]
    pub const fn retire_after(&self) -> Option<OffsetDateTime> {
        self.retire_after
    }
}

/// The next step, if one is due. `settled_at`: when every API server runs with the Secret as
/// stored now and the pods of before have stopped (their rollout is over and their grace period
/// passed), if it is known. `max_token`: the longest lifetime of a token the API servers issue.
#[must_use]
pub fn decide(
    rotation: &SaRotation,
    request: SaRequest<'_>,
    settled_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    max_token: Duration,
) -> Option<SaChange> {
    let current = settled_at.is_some_and(|t| now >= t);
    match rotation.phase() {
        SaPhase::Settled => request
            .rotate
            .filter(|id| !id.is_empty() && rotation.id.as_deref() != Some(*id))
            .map(|id| SaChange::Start(id.to_owned())),
        // Until every API server trusts the new key, a token it signed could be refused.
        SaPhase::Preparing => current.then_some(SaChange::Switch),
        // Until no API server signs with the old key, neither its last token's expiry is known
        // nor may it go.
        SaPhase::Rotating if !current => None,
        SaPhase::Rotating => match (rotation.retire_after, settled_at) {
            (None, Some(settled)) => Some(SaChange::Schedule(settled + max_token)),
            (retire_after, _) => {
                let confirmed = request.complete.is_some() && request.complete == rotation.id();
                let due = retire_after.is_some_and(|t| now >= t);
                (confirmed || due).then_some(SaChange::Retire)
            }
        },
    }
}

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
        let block = pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        let _ = write!(out, "{block}");
        out
    })
}

/// The DER of every "PUBLIC KEY" block in `text` (other blocks and garbage are skipped).
pub(crate) fn parse_public_keys(text: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "PUBLIC KEY")
        .map(pem::Pem::into_contents)
        .collect()
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

//! What a plan says about each item, and why.

use std::fmt;

use time::OffsetDateTime;

use super::error::RootDefect;
use super::item::Item;
use super::profile::San;
use super::secrets::LoadError;

/// What happens to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stored and still right: kept as it is.
    Keep,
    /// Not stored (first creation, or a lost leaf): issued.
    Issue,
    /// Stored but no longer right: replaced by a new key and certificate.
    Reissue(ReissueReason),
}

/// Why a stored item is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReissueReason {
    /// The SANs the inputs ask for differ from the certificate's.
    SansChanged {
        /// Wanted but not in the certificate.
        added: Vec<San>,
        /// In the certificate but no longer wanted.
        removed: Vec<San>,
    },
    /// The subject (CN/O) differs from this item's profile.
    SubjectChanged,
    /// The key usage profile (serverAuth/clientAuth/CA) differs from this item's profile.
    UsageChanged,
    /// The certificate is due for renewal (or expired).
    InRenewalWindow {
        /// When it became due.
        renew_at: OffsetDateTime,
        /// When it expires.
        not_after: OffsetDateTime,
    },
    /// The certificate is not signed by the CA now stored in the CA Secret.
    NotSignedByCurrentCa,
    /// The Secret's data cannot be read (missing key, not PEM, not a certificate).
    Unparsable(String),
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// The key is not ECDSA P-256.
    KeyNotP256,
    /// Its CA is being replaced (with the user's consent), so everything it signed is too.
    IssuerReplaced,
    /// A root the user explicitly accepted to replace; the old one had this defect.
    ReplacementAccepted(RootDefect),
}

impl fmt::Display for ReissueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReissueReason::SansChanged { added, removed } => {
                let list = |sans: &[San]| {
                    sans.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                write!(
                    f,
                    "SANs changed (added: [{}], removed: [{}])",
                    list(added),
                    list(removed)
                )
            }
            ReissueReason::SubjectChanged => f.write_str("subject differs from the profile"),
            ReissueReason::UsageChanged => f.write_str("key usage differs from the profile"),
            ReissueReason::InRenewalWindow {
                renew_at,
                not_after,
            } => {
                write!(f, "due for renewal since {renew_at} (expires {not_after})")
            }
            ReissueReason::NotSignedByCurrentCa => f.write_str("not signed by the current CA"),
            ReissueReason::Unparsable(reason) => write!(f, "unparsable: {reason}"),
            ReissueReason::KeyMismatch => f.write_str("private key does not match the certificate"),
            ReissueReason::KeyNotP256 => f.write_str("key is not ECDSA P-256"),
            ReissueReason::IssuerReplaced => f.write_str("its CA is replaced"),
            ReissueReason::ReplacementAccepted(defect) => match defect {
                RootDefect::Missing { .. } => f.write_str("missing; a new one was accepted"),
                RootDefect::Unusable(reason) => {
                    write!(f, "unusable ({reason}); a new one was accepted")
                }
            },
        }
    }
}

impl From<LoadError> for ReissueReason {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Unparsable(reason) => ReissueReason::Unparsable(reason),
            LoadError::KeyMismatch => ReissueReason::KeyMismatch,
            LoadError::KeyNotP256 => ReissueReason::KeyNotP256,
        }
    }
}

/// A CA that is due for renewal. It is kept (staged CA rotation is not automatic); this is for
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRenewal {
    /// The CA.
    pub item: Item,
    /// When it became due.
    pub renew_at: OffsetDateTime,
    /// When it expires.
    pub not_after: OffsetDateTime,
    /// Whether it has expired already.
    pub expired: bool,
}

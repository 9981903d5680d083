//! Errors of the tenant PKI.

use std::fmt;

use super::item::Item;

/// Why the PKI could not be planned or issued.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The inputs are not usable (a name, a SAN, a validity).
    #[error("invalid PKI input: {0}")]
    InvalidInput(String),

    /// A CA or the service-account key would have to be replaced, and the user has not accepted
    /// that. Nothing was generated.
    #[error(
        "the tenant PKI needs a root of trust that is not usable: {}. Hostplane never replaces a \
         CA or the service-account key on its own: restore the Secret from backup, or explicitly \
         accept a new one (every certificate, kubeconfig and token it signed then stops working)",
        RootProblems(.0)
    )]
    RootsUnavailable(Vec<RootProblem>),

    /// Key generation failed (the system random source).
    #[error("generating the private key of the {} failed", .item.description())]
    KeyGeneration {
        /// The item whose key was being generated.
        item: Item,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },

    /// Building or signing a certificate failed.
    #[error("issuing the {} failed: {reason}", .item.description())]
    Issue {
        /// The item being issued.
        item: Item,
        /// What went wrong.
        reason: String,
    },

    /// Secret data could not be read as this item (strict loading, [`Pki::from_secret_data`]).
    ///
    /// [`Pki::from_secret_data`]: super::Pki::from_secret_data
    #[error("the Secret data of the {} is not usable: {reason}", .item.description())]
    SecretData {
        /// The item whose data was read.
        item: Item,
        /// What is wrong with it.
        reason: String,
    },
}

/// One root of trust that cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootProblem {
    /// The CA or [`Item::ServiceAccount`].
    pub item: Item,
    /// The name of its Secret.
    pub secret: String,
    /// What is wrong.
    pub defect: RootDefect,
}

/// What is wrong with a root of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootDefect {
    /// Its Secret is absent while these other Secrets of the PKI exist.
    Missing {
        /// The names of the PKI Secrets that exist.
        present: Vec<String>,
    },
    /// Its Secret is present but cannot be used (unparsable, key does not match the certificate,
    /// not a CA, not ECDSA P-256).
    Unusable(String),
}

impl fmt::Display for RootProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            item,
            secret,
            defect,
        } = self;
        let what = item.description();
        match defect {
            RootDefect::Missing { present } => write!(
                f,
                "the {what} Secret `{secret}` is missing while {} other Secret(s) of this PKI \
                 exist ({})",
                present.len(),
                present.join(", ")
            ),
            RootDefect::Unusable(reason) => {
                write!(f, "the {what} Secret `{secret}` is not usable: {reason}")
            }
        }
    }
}

struct RootProblems<'a>(&'a [RootProblem]);

impl fmt::Display for RootProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

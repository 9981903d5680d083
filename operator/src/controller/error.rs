//! The controller's errors. Each has a category: the reason of the Warning Event and of the
//! Ready condition it leads to, so a user sees one word for what went wrong and a message for
//! what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("the spec cannot be used: {0}")]
    InvalidSpec(String),

    /// The message says what is lost and what the user can do.
    #[error(
        "a root of trust of this control plane is missing or unusable and will not be replaced \
         silently: {0}"
    )]
    RootsUnavailable(String),

    #[error("PKI: {0}")]
    Pki(#[from] crate::pki::PkiError),

    #[error("building the desired objects: {0}")]
    Build(#[from] crate::build::BuildError),

    #[error("{action} {kind} {name}: {source}")]
    Kube {
        action: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("the tenant API server: {0}")]
    Tenant(String),

    #[error("{0}")]
    Conflict(String),
}

impl Error {
    /// The category, used as the Event and condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::RootsUnavailable(_) => "RootsUnavailable",
            Error::Pki(_) => "PKIError",
            Error::Build(_) => "BuildError",
            Error::Kube { .. } => "SeedAPIError",
            Error::Tenant(_) => "TenantAPIError",
            Error::Conflict(_) => "Conflict",
        }
    }

    /// Errors that no retry can fix: the object waits for a change instead of hot-looping.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::RootsUnavailable(_))
    }

    /// `map_err` adapter for a failed call to the seed's API server.
    pub fn kube(
        action: &'static str,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let (kind, name) = (kind.into(), name.into());
        move |source| Error::Kube {
            action,
            kind,
            name,
            source,
        }
    }
}

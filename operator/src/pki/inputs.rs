//! What the PKI is made from: names, addresses, validity and the user's consent to new roots.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use time::{Duration, OffsetDateTime};

use super::error::PkiError;
use super::item::Item;
use super::profile::San;

/// Everything the tenant PKI depends on. A change here shows up in [`plan`](super::plan) as a
/// re-issue of exactly the certificates it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiInputs {
    /// The TenantControlPlane's name (`<tcp>` in Secret and Service names).
    pub tcp_name: String,
    /// The seed namespace the control plane runs in.
    pub namespace: String,
    /// The seed cluster's DNS domain (for `<svc>.<ns>.svc.<domain>`), usually `cluster.local`.
    pub seed_cluster_domain: String,
    /// The tenant cluster's DNS domain (`spec.network.clusterDomain`).
    pub tenant_cluster_domain: String,
    /// The tenant's `kubernetes` Service IP: the first address of `spec.network.serviceCIDR`
    /// (see [`kubernetes_service_ip`]).
    pub kubernetes_service_ip: IpAddr,
    /// The host (IP or DNS name) of the tenant's public endpoint, once known.
    pub endpoint_host: Option<String>,
    /// `spec.controlPlane.certSANs`: IPs or DNS names.
    pub extra_sans: Vec<String>,
    /// Lifetimes and renewal window.
    pub validity: Validity,
    /// Roots (CAs, [`Item::ServiceAccount`]) the user explicitly accepted to be replaced if they
    /// are missing or unusable. Anything else in this set is ignored. Replacing a CA re-issues
    /// everything it signed.
    pub accept_new_roots: BTreeSet<Item>,
}

impl PkiInputs {
    /// Inputs with the defaults: `cluster.local` for both domains, no endpoint yet, no extra SANs,
    /// default [`Validity`], no new roots accepted.
    #[must_use]
    pub fn new(
        tcp_name: impl Into<String>,
        namespace: impl Into<String>,
        kubernetes_service_ip: IpAddr,
    ) -> Self {
        Self {
            tcp_name: tcp_name.into(),
            namespace: namespace.into(),
            seed_cluster_domain: "cluster.local".to_owned(),
            tenant_cluster_domain: "cluster.local".to_owned(),
            kubernetes_service_ip,
            endpoint_host: None,
            extra_sans: Vec::new(),
            validity: Validity::default(),
            accept_new_roots: BTreeSet::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), PkiError> {
        for (what, value) in [("tcp_name", &self.tcp_name), ("namespace", &self.namespace)] {
            let label_ok = !value.is_empty()
                && value.len() <= 63
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !label_ok {
                return Err(PkiError::InvalidInput(format!(
                    "{what} `{value}` is not a DNS label (lowercase letters, digits, '-', at most 63)"
                )));
            }
        }
        for (what, domain) in [
            ("seed_cluster_domain", &self.seed_cluster_domain),
            ("tenant_cluster_domain", &self.tenant_cluster_domain),
        ] {
            match San::parse(domain) {
                Ok(San::Dns(_)) if !domain.contains('*') => {}
                _ => {
                    return Err(PkiError::InvalidInput(format!(
                        "{what} `{domain}` is not a DNS name"
                    )));
                }
            }
        }
        self.validity.validate()
    }
}

/// The shortest leaf lifetime: ten minutes (`spec.pki.certificateValidity`'s minimum), so a
/// test sees renewals in minutes; a CA lives at least an hour.
pub const MIN_LEAF_VALIDITY: Duration = Duration::minutes(10);

/// Certificate lifetimes and when to renew them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Lifetime of a new CA (default 10 years).
    pub ca: Duration,
    /// Lifetime of a new leaf certificate (default 1 year).
    pub leaf: Duration,
    /// When a certificate is due for renewal. Leaves are re-issued then; a CA is only reported.
    pub renewal: RenewalWindow,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            ca: Duration::days(3650),
            leaf: Duration::days(365),
            renewal: RenewalWindow::default(),
        }
    }
}

impl Validity {
    fn validate(&self) -> Result<(), PkiError> {
        for (what, lifetime, minimum) in [
            ("CA", self.ca, Duration::HOUR),
            ("leaf", self.leaf, MIN_LEAF_VALIDITY),
        ] {
            if lifetime < minimum {
                return Err(PkiError::InvalidInput(format!(
                    "{what} validity {lifetime} is shorter than {minimum}"
                )));
            }
            // A certificate issued now must not already be due, or every reconcile would re-issue it.
            let now = OffsetDateTime::UNIX_EPOCH;
            if self.renewal.renew_at(now - super::BACKDATE, now + lifetime) <= now {
                return Err(PkiError::InvalidInput(format!(
                    "renewal window {:?} covers the whole {what} validity {lifetime}",
                    self.renewal
                )));
            }
        }
        match self.renewal {
            RenewalWindow::AfterElapsed {
                numerator,
                denominator,
            } if numerator == 0 || denominator == 0 || numerator > denominator => {
                Err(PkiError::InvalidInput(format!(
                    "renewal fraction {numerator}/{denominator} is not in (0, 1]"
                )))
            }
            RenewalWindow::BeforeExpiry(before) if before <= Duration::ZERO => Err(
                PkiError::InvalidInput(format!("renewal window {before} is not positive")),
            ),
            _ => Ok(()),
        }
    }
}

/// When a certificate becomes due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalWindow {
    /// Once `numerator/denominator` of its lifetime has elapsed (default 2/3, as cert-manager).
    AfterElapsed {
        /// Numerator of the elapsed fraction.
        numerator: u32,
        /// Denominator of the elapsed fraction.
        denominator: u32,
    },
    /// Once less than this remains before `notAfter`.
    BeforeExpiry(Duration),
}

impl Default for RenewalWindow {
    fn default() -> Self {
        RenewalWindow::AfterElapsed {
            numerator: 2,
            denominator: 3,
        }
    }
}

impl RenewalWindow {
    /// The instant a certificate valid from `not_before` to `not_after` becomes due.
    #[must_use]
    pub fn renew_at(self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
        match self {
            RenewalWindow::AfterElapsed {
                numerator,
                denominator,
            } => {
                let lifetime = i128::from((not_after - not_before).whole_seconds());
                let elapsed = lifetime * i128::from(numerator) / i128::from(denominator.max(1));
                let elapsed = i64::try_from(elapsed).unwrap_or(i64::MAX);
                not_before.saturating_add(Duration::seconds(elapsed))
            }
            RenewalWindow::BeforeExpiry(before) => not_after.saturating_sub(before),
        }
    }
}

/// The tenant's `kubernetes` Service IP for a service CIDR such as `10.96.0.0/16`: its first
/// address after the network address (`10.96.0.1`), as kube-apiserver and kubeadm choose it.
pub fn kubernetes_service_ip(service_cidr: &str) -> Result<IpAddr, PkiError> {
    let invalid =
        |why: &str| PkiError::InvalidInput(format!("service CIDR `{service_cidr}` {why}"));
    let (addr, prefix) = service_cidr
        .split_once('/')
        .ok_or_else(|| invalid("has no /prefix"))?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid("has no valid address"))?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid("has no valid prefix"))?;
    match addr {
        IpAddr::V4(v4) if prefix <= 30 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            Ok(IpAddr::V4(Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        IpAddr::V6(v6) if prefix <= 126 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            Ok(IpAddr::V6(Ipv6Addr::from((u128::from(v6) & mask) + 1)))
        }
        _ => Err(invalid("is too small to hold a Service IP")),
    }
}

//! Carrying out a plan: the only place that generates keys and signs certificates.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::ca_rotation::CaRotation;
use super::error::PkiError;
use super::inputs::PkiInputs;
use super::inputs::RenewalWindow;
use super::inspect::{inspect, is_signed_by, key_ids};
use super::item::{ByCa, CaItem, Item, ItemKind};
use super::key::PrivateKey;
use super::pem_blocks::{self, CERTIFICATE};
use super::plan::{CertStep, Plan, SaStep};
use super::profile::{CertSpec, San, Usage, cert_spec};
use super::rotation::RotationStep;
use super::sa_keys::{SaRotation, key_id};

/// A certificate with its private key. `Debug` shows the item and validity, never the key.
pub struct CertKeyPair {
    pub(crate) item: Item,
    pub(crate) der: Vec<u8>,
    pub(crate) key: PrivateKey,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl CertKeyPair {
    /// Which item this is.
    #[must_use]
    pub const fn item(&self) -> Item {
        self.item
    }

    /// The certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM (LF line endings).
    #[must_use]
    pub fn cert_pem(&self) -> String {
        pem_blocks::encode(CERTIFICATE, &self.der)
    }

    /// The public key pin kubeadm uses for discovery (`--discovery-token-ca-cert-hash`):
    /// `sha256:` and the hex SHA-256 of the certificate's DER SubjectPublicKeyInfo.
    pub fn public_key_pin(&self) -> Result<String, String> {
        let spki = super::inspect::spki_der(&self.der)?;
        let hash = ring::digest::digest(&ring::digest::SHA256, &spki);
        let hex = hash.as_ref().iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        });
        Ok(format!("sha256:{hex}"))
    }

    /// The private key.
    #[must_use]
    pub const fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Start of validity.
    #[must_use]
    pub const fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    #[must_use]
    pub const fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

impl fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("item", &self.item)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A complete tenant PKI: three CAs, the service-account key and every leaf.
#[derive(Debug)]
pub struct Pki {
    pub(crate) cas: ByCa<CertKeyPair>,
    pub(crate) service_account: PrivateKey,
    /// A rotation of the service-account key under way, or the record of the last one.
    pub(crate) sa_rotation: SaRotation,
    /// A rotation of each CA under way, or the record of the last one.
    pub(crate) ca_rotations: ByCa<CaRotation>,
    /// Every leaf item (built from [`Item::ALL`], so none is missing).
    pub(crate) leaves: BTreeMap<Item, CertKeyPair>,
}

impl Pki {
    /// The certificate of `item`; `None` for [`Item::ServiceAccount`], which has none.
    #[must_use]
    pub fn cert(&self, item: Item) -> Option<&CertKeyPair> {
        match item.kind() {
            ItemKind::Ca(ca) => Some(self.cas.get(ca)),
            ItemKind::ServiceAccountKey => None,
            ItemKind::Leaf { .. } => self.leaves.get(&item),
        }
    }

    /// The CA that signed `item` (a CA is its own); `None` for [`Item::ServiceAccount`].
    #[must_use]
    pub const fn issuer_of(&self, item: Item) -> Option<&CertKeyPair> {
        match item.kind() {
            ItemKind::Ca(ca) | ItemKind::Leaf { issuer: ca } => Some(self.cas.get(ca)),
            ItemKind::ServiceAccountKey => None,
        }
    }

    /// The service-account signing key.
    #[must_use]
    pub const fn service_account_key(&self) -> &PrivateKey {
        &self.service_account
    }

    /// The rotation state of the service-account key.
    #[must_use]
    pub const fn sa_rotation(&self) -> &SaRotation {
        &self.sa_rotation
    }

    /// The public keys (SubjectPublicKeyInfo DER) the API servers accept tokens of: the signer's
    /// first, then a rotation's next key, then the keys that signed before.
    #[must_use]
    pub fn sa_verification_keys(&self) -> Vec<Vec<u8>> {
        let mut keys = vec![self.service_account.public_key_spki_der()];
        keys.extend(
            self.sa_rotation
                .next
                .as_ref()
                .map(PrivateKey::public_key_spki_der),
        );
        for old in &self.sa_rotation.previous {
            if !keys.contains(old) {
                keys.push(old.clone());
            }
        }
        keys
    }

    /// The `kid` of the signing key, and of every key the API servers accept (signer first).
    #[must_use]
    pub fn sa_key_ids(&self) -> (String, Vec<String>) {
        let accepted: Vec<String> = self
            .sa_verification_keys()
            .iter()
            .map(|k| key_id(k))
            .collect();
        (
            key_id(&self.service_account.public_key_spki_der()),
            accepted,
        )
    }

    /// Carries out one step of a service-account key rotation (`Start` generates the new key).
    pub fn rotate_service_account(&mut self, change: &RotationStep) -> Result<(), PkiError> {
        self.sa_rotation.take_step(
            change,
            &mut self.service_account,
            |_| generate_sa_key(),
            |old| old.public_key_spki_der(),
        )
    }

    /// The rotation state of `ca`.
    #[must_use]
    pub const fn ca_rotation(&self, ca: CaItem) -> &CaRotation {
        self.ca_rotations.get(ca)
    }

    /// The CAs whose certificates the components accept (PEM): the signer first, then a
    /// rotation's next CA, then the CA that signed before, until it is retired.
    #[must_use]
    pub fn trust_bundle_pem(&self, ca: CaItem) -> String {
        let signer = self.cas.get(ca);
        let rotation = self.ca_rotations.get(ca);
        let mut ders: Vec<&[u8]> = vec![&signer.der];
        ders.extend(rotation.next.as_ref().map(|n| n.der.as_slice()));
        for old in &rotation.previous {
            if !ders.contains(&old.as_slice()) {
                ders.push(old);
            }
        }
        ders.into_iter()
            .map(|der| pem_blocks::encode(CERTIFICATE, der))
            .collect()
    }

    /// The DER of every CA in [`trust_bundle_pem`](Self::trust_bundle_pem).
    #[must_use]
    pub fn trust_bundle(&self, ca: CaItem) -> Vec<Vec<u8>> {
        pem_blocks::parse(self.trust_bundle_pem(ca).as_bytes(), CERTIFICATE)
    }

    /// `cert` (signed by `issuer`) as PEM, followed by the issuer's certificate signed by the CA
    /// before it when a rotation left one: a client that trusts only the CA before verifies it.
    #[must_use]
    pub fn chain_pem(&self, cert: &CertKeyPair, issuer: CaItem) -> String {
        let signer = self.cas.get(issuer);
        let cross = self
            .ca_rotations
            .get(issuer)
            .cross
            .as_ref()
            .filter(|cross| {
                inspect(cross).is_ok_and(|info| {
                    info.public_key_raw.as_slice() == signer.key.public_key_raw()
                        && is_signed_by(&cert.der, &signer.der)
                })
            });
        let mut chain = cert.cert_pem();
        if let Some(cross) = cross {
            chain.push_str(&pem_blocks::encode(CERTIFICATE, cross));
        }
        chain
    }

    /// What a process that reads `ca`'s trust bundle only when it starts (etcd, which never
    /// reloads it) must be restarted for: the key id of the oldest CA a rotation still trusts
    /// (the CA before the signer, while Rotating), else of the signer. It does not change within
    /// a rotation — every certificate the new CA signs carries the cross certificate, which the
    /// old CA verifies — and changes when the old CA leaves the bundle (Completing: after that
    /// restart only the new CA is trusted) or a CA is replaced.
    #[must_use]
    pub fn trust_anchor_id(&self, ca: CaItem) -> Vec<u8> {
        let oldest = self
            .ca_rotations
            .get(ca)
            .previous
            .first()
            .unwrap_or(&self.cas.get(ca).der);
        key_ids(oldest).0.unwrap_or_else(|| oldest.clone())
    }

    /// Carries out one step of a rotation of `ca`. `Start` generates the new CA (valid for the
    /// CA validity of `inputs`) and its certificate signed by the current CA's key.
    pub fn rotate_ca(
        &mut self,
        ca: CaItem,
        step: &RotationStep,
        inputs: &PkiInputs,
        now: OffsetDateTime,
    ) -> Result<(), PkiError> {
        let item = ca.item();
        let spec = &cert_spec(item, inputs)?
            .ok_or_else(|| PkiError::InvalidInput(format!("{item} has no certificate")))?;
        let validity = inputs.validity.ca;
        let rotation = self.ca_rotations.get_mut(ca);
        let mut cross = None;
        rotation.staged.take_step(
            step,
            self.cas.get_mut(ca),
            |signer| {
                let RotationStep::Start(id) = step else {
                    return Err(PkiError::InvalidInput("only a start makes a CA".to_owned()));
                };
                // A subject of its own: a certificate of the new CA signed by the old one whose
                // subject were its issuer's would look self-signed to some TLS stacks (OpenSSL).
                let name = rotated_common_name(spec.common_name, id);
                let next = issue_named(item, spec, &name, None, now, now + validity)?;
                // The cross certificate: the new CA's subject and key, signed by the old CA,
                // valid no longer than either.
                let not_after = next.not_after.min(signer.not_after);
                let der = params(spec, &name, now - super::BACKDATE, not_after)
                    .and_then(|mut params| {
                        params.use_authority_key_identifier_extension = true;
                        let by = Issuer::from_ca_cert_der(
                            &signer.der.as_slice().into(),
                            signer.key.key_pair(),
                        )?;
                        params.signed_by(next.key.key_pair(), &by)
                    })
                    .map_err(|err| PkiError::Issue {
                        item,
                        reason: format!("cross-signing the new CA: {err}"),
                    })?
                    .der()
                    .to_vec();
                cross = Some(der);
                Ok(next)
            },
            |old| old.der,
        )?;
        if cross.is_some() {
            rotation.cross = cross;
        }
        Ok(())
    }

    /// Which certificate expires first (CAs included), and when the next leaf falls due for
    /// renewal under `renewal` (CAs are only reported when due, never renewed: not counted).
    #[must_use]
    pub fn expiry(&self, renewal: RenewalWindow) -> Expiry {
        let certs = || Item::ALL.iter().filter_map(|item| self.cert(*item));
        let first = certs().min_by_key(|c| c.not_after);
        Expiry {
            earliest: first.map(|c| (c.item, c.not_after)),
            next_renewal: certs()
                .filter(|c| !c.item.is_root())
                .map(|c| renewal.renew_at(c.not_before, c.not_after))
                .min(),
        }
    }
}

/// When a PKI's certificates expire and fall due (see [`Pki::expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The certificate that expires first, and when.
    pub earliest: Option<(Item, OffsetDateTime)>,
    /// When the first leaf falls due for renewal.
    pub next_renewal: Option<OffsetDateTime>,
}

/// Carries out `plan`: keeps what it keeps, generates a key and a certificate for everything it
/// issues or re-issues (new certificates valid from `now - BACKDATE`). The only function of this
/// module that generates keys.
pub fn execute(plan: Plan, now: OffsetDateTime) -> Result<Pki, PkiError> {
    let now = now - Duration::nanoseconds(i64::from(now.nanosecond()));
    let Plan {
        cas,
        service_account,
        leaves,
        validity,
        ca_renewals: _,
        ca_rotations,
    } = plan;
    let cas = cas.into_map(|ca, planned| match planned.step {
        CertStep::Keep(cert) => Ok(cert),
        CertStep::Issue(spec) => issue(ca.item(), &spec, None, now, now + validity.ca),
    })?;
    let (service_account, sa_rotation) = match service_account.step {
        SaStep::Keep(key, rotation) => (key, rotation),
        // A replaced key keeps the name of the last rotation: the annotation asking for it
        // is not taken as a new request.
        SaStep::Generate(id) => (
            generate_sa_key()?,
            SaRotation {
                id,
                ..SaRotation::default()
            },
        ),
    };
    let leaves = leaves
        .into_iter()
        .map(|(item, (issuer, planned))| {
            let cert = match planned.step {
                CertStep::Keep(cert) => cert,
                CertStep::Issue(spec) => {
                    let ca = cas.get(issuer);
                    // Never past its CA: a chain is only as valid as its shortest link.
                    let not_after = (now + validity.leaf).min(ca.not_after);
                    issue(item, &spec, Some(ca), now, not_after)?
                }
            };
            Ok((item, cert))
        })
        .collect::<Result<_, PkiError>>()?;
    Ok(Pki {
        cas,
        service_account,
        sa_rotation,
        ca_rotations,
        leaves,
    })
}

fn generate_sa_key() -> Result<PrivateKey, PkiError> {
    PrivateKey::generate().map_err(|source| PkiError::KeyGeneration {
        item: Item::ServiceAccount,
        source,
    })
}

/// The common name of a CA a rotation named `id` brings: the profile's and the rotation's name,
/// at most 64 characters (X.509's limit).
fn rotated_common_name(base: &str, id: &str) -> String {
    let mut name = format!("{base} {id}");
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// Generates a key and a certificate for `spec`: self-signed when `issuer` is `None`.
fn issue(
    item: Item,
    spec: &CertSpec,
    issuer: Option<&CertKeyPair>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertKeyPair, PkiError> {
    issue_named(item, spec, spec.common_name, issuer, now, not_after)
}

/// [`issue`] with the common name `common_name` instead of the profile's.
fn issue_named(
    item: Item,
    spec: &CertSpec,
    common_name: &str,
    issuer: Option<&CertKeyPair>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertKeyPair, PkiError> {
    let failed = |reason: String| PkiError::Issue { item, reason };
    let not_before = now - super::BACKDATE;
    let params =
        params(spec, common_name, not_before, not_after).map_err(|err| failed(err.to_string()))?;
    let key = PrivateKey::generate().map_err(|source| PkiError::KeyGeneration { item, source })?;
    let der = match issuer {
        None => params.self_signed(key.key_pair()),
        Some(ca) => Issuer::from_ca_cert_der(&ca.der.as_slice().into(), ca.key.key_pair())
            .and_then(|issuer| params.signed_by(key.key_pair(), &issuer)),
    }
    .map_err(|err| failed(err.to_string()))?
    .der()
    .to_vec();
    // A leaf whose issuer name is not byte-for-byte its CA's subject would fail chain building,
    // and `plan` would re-issue it on every reconcile: refuse it here instead.
    if let Some(ca) = issuer {
        let (leaf_info, ca_info) = (
            inspect(&der).map_err(&failed)?,
            inspect(&ca.der).map_err(&failed)?,
        );
        if leaf_info.issuer_raw != ca_info.subject_raw {
            return Err(failed(
                "the CA's subject name cannot be reproduced as the issuer name".to_owned(),
            ));
        }
    }
    Ok(CertKeyPair {
        item,
        der,
        key,
        not_before,
        not_after,
    })
}

fn params(
    spec: &CertSpec,
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = not_after;
    let mut subject = DistinguishedName::new();
    if let Some(org) = spec.organization {
        subject.push(DnType::OrganizationName, org);
    }
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => Ok(SanType::DnsName(name.as_str().try_into()?)),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    let (server, client) = match spec.usage {
        Usage::Ca => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
            return Ok(params);
        }
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerAndClient => (true, true),
    };
    // kubeadm's leaf profile: basicConstraints CA:false, digitalSignature + keyEncipherment.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    Ok(params)
}

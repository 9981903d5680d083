//! Reading certificates back: what a stored certificate says, and who signed it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::profile::{San, Usage};

/// What a stored certificate says, as far as planning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) common_name: Option<String>,
    pub(crate) organizations: Vec<String>,
    pub(crate) sans: BTreeSet<San>,
    /// `None` when the extensions fit no [`Usage`] (e.g. a leaf without EKU).
    pub(crate) usage: Option<Usage>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// The raw public key (EC point), to compare with a private key.
    pub(crate) public_key_raw: Vec<u8>,
    pub(crate) key_is_p256: bool,
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub(crate) fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|err| format!("no PEM certificate ({err})"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "the PEM block is `{}`, not `CERTIFICATE`",
            block.label
        ));
    }
    Ok(block.contents)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".to_owned()),
        Err(err) => Err(format!("not an X.509 certificate ({err})")),
    }
}

/// The DER SubjectPublicKeyInfo of a DER certificate.
pub(crate) fn spki_der(der: &[u8]) -> Result<Vec<u8>, String> {
    Ok(parse(der)?.tbs_certificate.subject_pki.raw.to_vec())
}

/// The subject key identifier of a DER certificate, and its authority key identifier (the
/// subject key identifier of the CA that signed it), where it has them.
pub(crate) fn key_ids(der: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use x509_parser::extensions::ParsedExtension;
    let Ok(cert) = parse(der) else {
        return (None, None);
    };
    let (mut ski, mut aki) = (None, None);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = id.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// Reads the facts of a DER certificate.
pub(crate) fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let cert = parse(der)?;
    let bad_ext = |err| format!("malformed extension ({err})");
    let is_ca = cert
        .basic_constraints()
        .map_err(bad_ext)?
        .is_some_and(|bc| bc.value.ca);
    let eku = cert.extended_key_usage().map_err(bad_ext)?;
    let (server, client) = eku.map_or((false, false), |eku| {
        (eku.value.server_auth, eku.value.client_auth)
    });
    let usage = match (is_ca, server, client) {
        (true, _, _) => Some(Usage::Ca),
        (false, true, true) => Some(Usage::ServerAndClient),
        (false, true, false) => Some(Usage::Server),
        (false, false, true) => Some(Usage::Client),
        (false, false, false) => None,
    };
    let mut sans = BTreeSet::new();
    if let Some(ext) = cert.subject_alternative_name().map_err(bad_ext)? {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.insert(San::Dns(dns.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    sans.insert(San::Ip(ip.ok_or("malformed IP address SAN")?));
                }
                _ => {}
            }
        }
    }
    let strings = |attrs: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        attrs
            .filter_map(|attr| attr.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let spki = cert.public_key();
    Ok(CertInfo {
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        common_name: strings(&mut cert.subject().iter_common_name())
            .into_iter()
            .next(),
        organizations: strings(&mut cert.subject().iter_organization()),
        sans,
        usage,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        public_key_raw: spki.subject_public_key.data.to_vec(),
        key_is_p256: is_p256(spki),
    })
}

fn is_p256(spki: &SubjectPublicKeyInfo<'_>) -> bool {
    spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|params| params.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256)
}

/// Whether `cert_der` names `ca_der`'s subject as its issuer and carries a valid signature by
/// `ca_der`'s key.
pub(crate) fn is_signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok(cert), Ok(ca)) = (parse(cert_der), parse(ca_der)) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

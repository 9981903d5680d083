//! PEM blocks as the PKI Secrets hold them: certificates and service-account public keys.

/// The tag of a certificate's block.
pub(crate) const CERTIFICATE: &str = "CERTIFICATE";
/// The tag of a SubjectPublicKeyInfo's block.
pub(crate) const PUBLIC_KEY: &str = "PUBLIC KEY";

/// DER of every `tag` block in `text` (other blocks and garbage are skipped).
pub(crate) fn parse(text: &[u8], tag: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == tag)
        .map(pem::Pem::into_contents)
        .collect()
}

/// One `tag` block of `der`, LF line endings.
pub(crate) fn encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

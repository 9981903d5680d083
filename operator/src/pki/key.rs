//! The private-key wrapper: ECDSA P-256 only, never printed.

use std::fmt;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};

/// A private key (with its public half). ECDSA P-256 is the only algorithm this module generates
/// or accepts. `Debug` prints `<redacted>`; there is no `Display`.
pub struct PrivateKey(Box<KeyPair>);

impl PrivateKey {
    /// A fresh ECDSA P-256 key.
    pub(crate) fn generate() -> Result<Self, rcgen::Error> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map(|key| Self(Box::new(key)))
    }

    /// Reads a PKCS#8 PEM ("PRIVATE KEY") ECDSA P-256 key; the error says what is wrong with it
    /// (never the key itself).
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "the key is not PEM text".to_owned())?;
        let key = KeyPair::from_pem(text)
            .map_err(|err| format!("the key is not a PKCS#8 PEM private key ({err})"))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err("the key is not an ECDSA P-256 key".to_owned());
        }
        Ok(Self(Box::new(key)))
    }

    /// Whether this is an ECDSA P-256 key (always true for keys made or read here).
    #[must_use]
    pub fn is_ecdsa_p256(&self) -> bool {
        self.0.algorithm() == &PKCS_ECDSA_P256_SHA256
    }

    /// The private key as PKCS#8 PEM ("PRIVATE KEY"). This is the secret itself: it goes into a
    /// Secret or a kubeconfig, never into a log.
    #[must_use]
    pub fn to_pkcs8_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The public key as SubjectPublicKeyInfo PEM ("PUBLIC KEY").
    #[must_use]
    pub fn public_key_pem(&self) -> String {
        self.0.public_key_pem()
    }

    /// The public key as SubjectPublicKeyInfo DER.
    #[must_use]
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }

    /// The raw public key (the uncompressed EC point), as it appears in a certificate.
    #[must_use]
    pub fn public_key_raw(&self) -> &[u8] {
        self.0.der_bytes()
    }

    pub(crate) const fn key_pair(&self) -> &KeyPair {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

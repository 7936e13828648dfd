//! Public keys a policy trusts: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) files of the kinds
//! cosign signs with (ECDSA P-256 and P-384, RSA, Ed25519).

use std::path::{Path, PathBuf};

use sealift_oci::Digest;
use sigstore_verify::crypto::{KeyAlgorithm, SigningScheme, VerificationKey};
use sigstore_verify::types::DerPublicKey;

use crate::error::PolicyError;
use crate::read_capped;

/// A PEM public key is a few hundred bytes (RSA 8192: under 2 KiB); anything over this is
/// not one.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// A trusted public key.
#[derive(Clone, Debug)]
pub struct PublicKey {
    der: DerPublicKey,
    scheme: SigningScheme,
    fingerprint: Digest,
    path: PathBuf,
}

impl PublicKey {
    /// Read and parse a PEM public key file.
    pub fn from_file(path: &Path) -> Result<PublicKey, PolicyError> {
        let bytes = read_capped(path, MAX_KEY_FILE, "PEM public key")?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::BadKey {
            path: path.to_path_buf(),
            reason: "not text".into(),
        })?;
        PublicKey::from_pem(&text, path)
    }

    /// Parse PEM text; `path` names it in errors and verdicts.
    pub fn from_pem(pem: &str, path: &Path) -> Result<PublicKey, PolicyError> {
        let bad = |reason: String| PolicyError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let der = DerPublicKey::from_pem(pem).map_err(|e| bad(e.to_string()))?;
        // The scheme follows the key: ECDSA with the curve's hash, RSA PKCS#1 v1.5 with
        // SHA-256, pure Ed25519: what cosign uses for each.
        let key = VerificationKey::from_spki(&der).map_err(|e| bad(e.to_string()))?;
        let scheme = key.scheme();
        match scheme.key_algorithm() {
            KeyAlgorithm::EcdsaP256
            | KeyAlgorithm::EcdsaP384
            | KeyAlgorithm::Rsa
            | KeyAlgorithm::Ed25519 => {}
            other => return Err(bad(format!("{other:?} keys are not accepted"))),
        }
        let fingerprint = Digest::sha256(der.as_bytes());
        Ok(PublicKey {
            der,
            scheme,
            fingerprint,
            path: path.to_path_buf(),
        })
    }

    /// sha256 of the key's DER SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER
    /// | sha256sum` prints).
    pub fn fingerprint(&self) -> &Digest {
        &self.fingerprint
    }

    /// `ecdsa-p256`, `ecdsa-p384`, `rsa` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        match self.scheme.key_algorithm() {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            _ => "rsa",
        }
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn der(&self) -> &DerPublicKey {
        &self.der
    }

    /// The key for one check (`VerificationKey` is neither `Clone` nor `Debug`; parsing the
    /// SPKI again costs microseconds).
    pub(crate) fn verification_key(&self) -> Option<VerificationKey> {
        VerificationKey::from_spki_with_scheme(&self.der, self.scheme).ok()
    }
}

//! What a policy concluded about an admitted image, as recorded in the store.

use serde::{Deserialize, Serialize};

/// How the admitting signature was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureKind {
    /// cosign's simple-signing payload under a `sha256-<hex>.sig` tag (or a referrer
    /// carrying the same layer), signed with a key.
    CosignKey,
    /// A Sigstore bundle signed with a key.
    BundleKey,
    /// A Sigstore bundle signed keylessly (Fulcio certificate, Rekor entry).
    BundleKeyless,
}

impl std::fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureKind::CosignKey => "cosign-key",
            SignatureKind::BundleKey => "bundle-key",
            SignatureKind::BundleKeyless => "bundle-keyless",
        })
    }
}

/// Who signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Signer {
    /// A trusted key.
    Key {
        /// sha256 of its DER SubjectPublicKeyInfo.
        fingerprint: String,
        /// `ecdsa-p256`, `ecdsa-p384`, `rsa`, `ed25519`.
        algorithm: String,
        /// The key file it was read from.
        file: String,
    },
    /// A keyless identity, from the Fulcio certificate.
    Identity {
        /// The certificate's SAN (email or URI).
        identity: String,
        /// The OIDC issuer.
        issuer: String,
    },
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Key {
                fingerprint,
                algorithm,
                file,
            } => write!(f, "key {fingerprint} ({algorithm}, {file})"),
            Signer::Identity { identity, issuer } => write!(f, "{identity} (issuer {issuer})"),
        }
    }
}

/// An image admitted by a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The image's digest (the one signed).
    pub image: String,
    /// How the admitting signature was made.
    pub kind: SignatureKind,
    /// Who signed.
    pub signer: Signer,
    /// Where the signature was found (`sha256-<hex>.sig` tag or the referrer's digest).
    pub signature: String,
    /// When it was signed, in unix seconds, where a verified time says so (the transparency
    /// log's integrated time); key signatures carry none.
    #[serde(default)]
    pub signed_at: Option<i64>,
    /// When the check was made, in unix seconds.
    pub checked_at: i64,
}

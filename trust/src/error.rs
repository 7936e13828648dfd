//! Why a policy could not be built, and why an image was refused.

use std::path::PathBuf;

use sealift_oci::Digest;

/// A policy that cannot be built: a key, identity or trusted root that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file named by the policy cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file named by the policy is larger than such a file can be.
    #[error("{path} is larger than {limit} bytes: not a {what}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// The cap.
        limit: u64,
    },
    /// A public key file that is not a PEM `PUBLIC KEY` of a supported kind.
    #[error("{path}: not a usable public key (PEM \"PUBLIC KEY\": ECDSA P-256/P-384, RSA or Ed25519): {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A trusted root that does not parse or cannot be used.
    #[error("{path}: not a usable Sigstore trusted root: {reason}")]
    BadTrustedRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Keyless verification needs an identity, an issuer and a trusted root together.
    #[error("keyless verification needs --verify-identity, --verify-issuer and --trusted-root together (missing: {missing})")]
    IncompleteKeyless {
        /// What was not given.
        missing: String,
    },
    /// A policy with neither keys nor a keyless identity admits nothing.
    #[error("a signature policy needs at least one key or a keyless identity")]
    Empty,
}

/// Why one signature does not admit the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A cosign simple-signing signature that none of the policy's keys verifies.
    #[error("signature does not verify with any of the {keys} key(s)")]
    NoKeyVerifies {
        /// How many keys were tried.
        keys: usize,
    },
    /// The signed payload names another image.
    #[error("signed payload names {signed}, not this image")]
    PayloadDigestMismatch {
        /// The digest in the payload (or the bundle's artifact digest).
        signed: String,
    },
    /// A keyless signature by someone the policy does not name.
    #[error("signed by {found}, the policy wants {expected}")]
    IdentityMismatch {
        /// What the policy asks for.
        expected: String,
        /// What the certificate says.
        found: String,
    },
    /// The signing certificate was not valid when the signature was logged.
    #[error("certificate expired at the signing time: {0}")]
    CertificateExpired(String),
    /// The signing certificate does not chain to the trusted root's Fulcio.
    #[error("certificate does not chain to the trusted root: {0}")]
    UntrustedChain(String),
    /// The transparency-log entry is missing, or its inclusion proof, checkpoint or
    /// promise does not verify against the trusted root's logs.
    #[error("transparency log: {0}")]
    Inclusion(String),
    /// A keyless bundle, but the policy has no keyless identity (or a key bundle and no
    /// keys).
    #[error("{0}")]
    NotCovered(String),
    /// A keyless signature that does not verify with its certificate's key.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    /// The signature or bundle is malformed or cannot be checked.
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// An image refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No signature of a kind the policy reads was found for the image.
    #[error(
        "image {image} has no signature (no sha256-<hex>.sig tag, no Sigstore bundle referrer)"
    )]
    NoSignature {
        /// The image's digest.
        image: Digest,
    },
    /// Signatures were found and none admits the image.
    #[error("image {image} refused: {}", list(reasons))]
    Refused {
        /// The image's digest.
        image: Digest,
        /// One reason per signature found, with where it was found.
        reasons: Vec<(String, Refusal)>,
    },
}

fn list(reasons: &[(String, Refusal)]) -> String {
    reasons
        .iter()
        .map(|(at, r)| format!("{at}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl TrustError {
    /// The refusals, one per signature found (empty for `NoSignature`).
    pub fn refusals(&self) -> impl Iterator<Item = &Refusal> {
        let v: &[(String, Refusal)] = match self {
            TrustError::NoSignature { .. } => &[],
            TrustError::Refused { reasons, .. } => reasons,
        };
        v.iter().map(|(_, r)| r)
    }
}

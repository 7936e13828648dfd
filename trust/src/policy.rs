//! The policy: which keys and which keyless identity admit an image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::Verifier;

use crate::error::PolicyError;
use crate::key::PublicKey;
use crate::read_capped;

/// Sigstore's public-good trusted root is about 10 KiB; a private one with a few rotated
/// keys stays far below this.
pub const MAX_TRUSTED_ROOT: u64 = 4 * 1024 * 1024;

/// What the user wrote (flags or a sync job's `[job.verify]`), before any file is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// PEM public keys; a signature by any one admits the image.
    pub keys: Vec<PathBuf>,
    /// The keyless signer's identity (the certificate's email or URI SAN), exactly.
    pub identity: Option<String>,
    /// The keyless signer's OIDC issuer, exactly.
    pub issuer: Option<String>,
    /// A Sigstore `trusted_root.json`: Fulcio's certificates, Rekor's and the CT log's keys.
    pub trusted_root: Option<PathBuf>,
}

impl PolicySpec {
    /// Whether anything is asked (no keys and no identity: no policy at all).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.identity.is_none()
            && self.issuer.is_none()
            && self.trusted_root.is_none()
    }
}

/// The keyless half of a policy.
pub(crate) struct Keyless {
    pub(crate) identity: String,
    pub(crate) issuer: String,
    pub(crate) verifier: Verifier,
}

/// A checked policy: keys parsed, the trusted root read and its keys and certificates
/// prepared. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Policy {
    pub(crate) keys: Arc<Vec<PublicKey>>,
    pub(crate) keyless: Option<Arc<Keyless>>,
    /// Verifies key-signed bundles: against the trusted root's logs when one was given,
    /// else against an empty root, the key being the whole trust (see `check`).
    pub(crate) key_verifier: Arc<Verifier>,
    /// Whether key-signed bundles' log entries are checked (a trusted root was given).
    pub(crate) key_tlog: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("keys", &self.keys)
            .field(
                "keyless",
                &self.keyless.as_ref().map(|k| (&k.identity, &k.issuer)),
            )
            .finish()
    }
}

/// A trusted root that trusts nothing: what key-signed bundles are checked against.
const EMPTY_ROOT: &str = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;

impl Policy {
    /// Read and check everything the spec names.
    pub fn from_spec(spec: &PolicySpec) -> Result<Policy, PolicyError> {
        if spec.is_empty() {
            return Err(PolicyError::Empty);
        }
        let keys: Vec<PublicKey> = spec
            .keys
            .iter()
            .map(|p| PublicKey::from_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        let root = spec.trusted_root.as_deref().map(read_root).transpose()?;
        let keyless = match (&spec.identity, &spec.issuer, &root) {
            (None, None, _) => None,
            (Some(identity), Some(issuer), Some((path, root))) => {
                if root.certificate_authorities.is_empty() {
                    return Err(PolicyError::BadTrustedRoot {
                        path: path.clone(),
                        reason: "it names no certificate authority (Fulcio), which keyless \
                                 verification needs"
                            .into(),
                    });
                }
                Some(Arc::new(Keyless {
                    identity: identity.clone(),
                    issuer: issuer.clone(),
                    verifier: verifier(path, root)?,
                }))
            }
            (identity, issuer, root) => {
                let mut missing = Vec::new();
                if identity.is_none() {
                    missing.push("--verify-identity");
                }
                if issuer.is_none() {
                    missing.push("--verify-issuer");
                }
                if root.is_none() {
                    missing.push("--trusted-root");
                }
                return Err(PolicyError::IncompleteKeyless {
                    missing: missing.join(", "),
                });
            }
        };
        if keys.is_empty() && keyless.is_none() {
            // A trusted root alone admits nothing: it says whose logs to believe, not whose
            // signatures.
            return Err(PolicyError::Empty);
        }
        // Key-signed bundles: with a trusted root their transparency-log entry is checked
        // against its logs; without one the key is the whole trust.
        let key_verifier = match &root {
            Some((path, root)) => Some(Arc::new(verifier(path, root)?)),
            None => None,
        };
        let empty =
            TrustedRoot::from_json(EMPTY_ROOT).map_err(|e| PolicyError::BadTrustedRoot {
                path: PathBuf::from("(built-in empty root)"),
                reason: e.to_string(),
            })?;
        let key_verifier = match key_verifier {
            Some(v) => (v, true),
            None => (
                Arc::new(verifier(Path::new("(built-in empty root)"), &empty)?),
                false,
            ),
        };
        Ok(Policy {
            keys: Arc::new(keys),
            keyless,
            key_verifier: key_verifier.0,
            key_tlog: key_verifier.1,
        })
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// `(identity, issuer)` of the keyless half, if any.
    pub fn keyless_identity(&self) -> Option<(&str, &str)> {
        self.keyless
            .as_ref()
            .map(|k| (k.identity.as_str(), k.issuer.as_str()))
    }
}

fn read_root(path: &Path) -> Result<(PathBuf, TrustedRoot), PolicyError> {
    let bytes = read_capped(path, MAX_TRUSTED_ROOT, "Sigstore trusted root")?;
    let bad = |reason: String| PolicyError::BadTrustedRoot {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 JSON".into()))?;
    let root = TrustedRoot::from_json(text).map_err(|e| bad(e.to_string()))?;
    if root.tlogs.is_empty() {
        return Err(bad("it names no transparency log (Rekor)".into()));
    }
    Ok((path.to_path_buf(), root))
}

fn verifier(path: &Path, root: &TrustedRoot) -> Result<Verifier, PolicyError> {
    Verifier::new(root).map_err(|e| PolicyError::BadTrustedRoot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

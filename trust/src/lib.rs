//! sealift-trust: which images to let in. A [`Policy`] (trusted public keys, and/or a
//! keyless identity and issuer with a Sigstore trusted root) checks the signatures found
//! for an image and gives a typed [`Verdict`] (who signed, which key or identity, when) or
//! a [`TrustError`] naming the image and, per signature, why it does not admit it.
//!
//! Two kinds of signature are read, both offline (nothing is fetched while checking):
//! cosign's simple-signing payloads (legacy `sha256-<hex>.sig` tags: the payload layer,
//! its base64 signature in the `dev.cosignproject.cosign/signature` annotation, the
//! payload's `critical.image.docker-manifest-digest` equal to the image's digest) and
//! Sigstore bundles attached as OCI 1.1 referrers (message signatures over the manifest
//! bytes, or DSSE in-toto statements whose subject is the image digest). The cryptography
//! and the Sigstore formats are `sigstore-verify`'s (ARCHITECTURE.md, "Design reasons").
//! This crate only parses and decides; finding and fetching the signatures is the copy
//! engine's (`sealift-copy`).
//!
//! ```
//! use sealift_trust::{found, PolicySpec, Policy};
//! // A policy names at least a key or a keyless identity.
//! assert!(Policy::from_spec(&PolicySpec::default()).is_err());
//! assert!(found::is_bundle_type("application/vnd.dev.sigstore.bundle.v0.3+json"));
//! assert!(found::is_bundle_type("application/vnd.dev.sigstore.bundle+json;version=0.2"));
//! ```

use std::io::Read;
use std::path::Path;

mod check;
pub mod error;
pub mod found;
pub mod key;
pub mod policy;
pub mod verdict;

pub use error::{PolicyError, Refusal, TrustError};
pub use found::{Form, Found, SignatureLayer};
pub use key::PublicKey;
pub use policy::{Policy, PolicySpec};
pub use verdict::{SignatureKind, Signer, Verdict};

/// The store's `state` namespace where verdicts are kept, keyed by the image digest
/// (`sha256:<hex>`).
pub const STATE_NAMESPACE: &str = "trust.verdict";

/// Read a file the policy names, refusing one larger than `limit` before reading it.
fn read_capped(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, PolicyError> {
    let read_err = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > limit {
        return Err(PolicyError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit,
        });
    }
    Ok(buf)
}

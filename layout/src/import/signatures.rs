//! The signature policy at import: each image of a bundle is checked again, at the site,
//! against the signatures the bundle itself carries, before it is tagged.
//!
//! Where a bundle carries them (`export --referrers` writes both): cosign's legacy
//! signature manifests as index.json entries named `REPO:sha256-<hex>.sig` (the tag cosign
//! pushes them under), and Sigstore bundles (or cosign signatures) attached as OCI 1.1
//! referrers: entries whose manifest's `subject` is the image. Everything is read from the
//! store, where the import has just committed it (blobs checked against their digests on
//! the way in), so directories, tarballs, split and delta bundles are checked alike.

use std::collections::HashMap;

use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::{Descriptor, Digest};
use sealift_store::Store;
use sealift_trust::found::{
    cosign_tag, cosign_tag_subject, is_signature_artifact, signature_layers, MAX_SIGNATURE_LAYER,
};
use sealift_trust::{Found, Policy, Refusal, TrustError, Verdict};

use crate::error::LayoutError;

/// The tag part of a ref name (`repo:tag` or a bare `tag`), when it has one.
fn tag_of(ref_name: &str) -> &str {
    match ref_name.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') => t,
        _ => ref_name,
    }
}

/// Whether a ref name is one of cosign's signature, attestation or SBOM tags
/// (`sha256-<hex>.sig|.att|.sbom`): those are the signatures, not images to check.
/// Returns the digest of the image they belong to.
pub(super) fn cosign_subject(ref_name: &str) -> Option<Digest> {
    cosign_tag_subject(tag_of(ref_name))
}

/// Verdicts (or refusals) of a bundle's images, each digest checked once.
pub(super) struct Admission<'a> {
    store: &'a Store,
    policy: &'a Policy,
    /// The bundle's index.json entries, where its signatures are looked for.
    entries: &'a [Descriptor],
    /// Each entry's subject (`None`: none, or not a manifest), read once.
    subjects: Option<Vec<Option<String>>>,
    done: HashMap<Digest, Result<Verdict, TrustError>>,
}

impl<'a> Admission<'a> {
    pub(super) fn new(store: &'a Store, policy: &'a Policy, entries: &'a [Descriptor]) -> Self {
        Admission {
            store,
            policy,
            entries,
            subjects: None,
            done: HashMap::new(),
        }
    }

    /// Check `image` (committed to the store) against the policy with the signatures the
    /// bundle carries for it. `Ok(Err(_))` is a refusal; `Err` a store that cannot be read.
    pub(super) fn check(
        &mut self,
        image: &Descriptor,
    ) -> Result<Result<Verdict, TrustError>, LayoutError> {
        if let Some(r) = self.done.get(&image.digest) {
            return Ok(r.clone());
        }
        let manifest = self
            .store
            .read_small(&image.digest, MAX_MANIFEST_SIZE as u64)?;
        let mut too_large = Vec::new();
        let found = self.find(&image.digest, &mut too_large)?;
        let outcome = match self.policy.check(&image.digest, &manifest, &found) {
            Ok(v) => Ok(v),
            // A signature too large to read is a refusal of that signature, reported with
            // the others.
            Err(_) if found.is_empty() && !too_large.is_empty() => Err(TrustError::Refused {
                image: image.digest.clone(),
                reasons: too_large,
            }),
            Err(TrustError::Refused { image, mut reasons }) => {
                reasons.extend(too_large);
                Err(TrustError::Refused { image, reasons })
            }
            Err(e) => Err(e),
        };
        self.done.insert(image.digest.clone(), outcome.clone());
        Ok(outcome)
    }

    /// The signature layers the bundle carries for `image`, with their bytes.
    fn find(
        &mut self,
        image: &Digest,
        too_large: &mut Vec<(String, Refusal)>,
    ) -> Result<Vec<Found>, LayoutError> {
        let mut found = Vec::new();
        let tag = cosign_tag(image);
        let mut seen = Vec::new();
        for e in self.entries {
            let Some(name) = e.ref_name() else { continue };
            if tag_of(name) == tag && !seen.contains(&e.digest) {
                seen.push(e.digest.clone());
                self.layers(&e.digest, &tag, &mut found, too_large)?;
            }
        }
        let subject = image.to_string();
        for (i, e) in self.entries.iter().enumerate() {
            if self.subjects()?[i].as_deref() != Some(subject.as_str()) || seen.contains(&e.digest)
            {
                continue;
            }
            let artifact = self.store.record(&e.digest)?.and_then(|r| r.artifact_type);
            if is_signature_artifact(artifact.as_deref().or(e.artifact_type.as_deref())) {
                seen.push(e.digest.clone());
                let at = format!("referrer {}", e.digest);
                self.layers(&e.digest, &at, &mut found, too_large)?;
            }
        }
        Ok(found)
    }

    fn subjects(&mut self) -> Result<&[Option<String>], LayoutError> {
        if self.subjects.is_none() {
            let mut out = Vec::with_capacity(self.entries.len());
            for e in self.entries {
                out.push(self.store.record(&e.digest)?.and_then(|r| r.subject));
            }
            self.subjects = Some(out);
        }
        Ok(self.subjects.as_deref().unwrap_or_default())
    }

    fn layers(
        &self,
        manifest: &Digest,
        at: &str,
        found: &mut Vec<Found>,
        too_large: &mut Vec<(String, Refusal)>,
    ) -> Result<(), LayoutError> {
        let bytes = self.store.read_small(manifest, MAX_MANIFEST_SIZE as u64)?;
        for layer in signature_layers(&bytes) {
            let d = &layer.descriptor;
            // Refused by the descriptor's size before any read (read_small refuses a stored
            // blob over the cap as well).
            if d.size > MAX_SIGNATURE_LAYER {
                too_large.push((
                    at.to_string(),
                    Refusal::Malformed(format!(
                        "signature layer {} is {} bytes; at most {MAX_SIGNATURE_LAYER} are read",
                        d.digest, d.size
                    )),
                ));
                continue;
            }
            let bytes = self.store.read_small(&d.digest, MAX_SIGNATURE_LAYER)?;
            found.push(Found {
                at: at.to_string(),
                layer,
                bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_name_their_image() {
        let hex = "a".repeat(64);
        let d: Digest = format!("sha256:{hex}").parse().unwrap();
        for name in [
            format!("apps/web:sha256-{hex}.sig"),
            format!("reg.local:5000/apps/web:sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
        ] {
            assert_eq!(cosign_subject(&name), Some(d.clone()), "{name}");
        }
        for name in ["apps/web:1", "apps/web:sha256-abc.sig", "sig", "a:b.sig"] {
            assert_eq!(cosign_subject(name), None, "{name}");
        }
    }
}

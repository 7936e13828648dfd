//! The signature policy at the source: find an image's signatures where cosign and
//! Sigstore put them, fetch them (bounded), and let `sealift-trust` decide.
//!
//! Where: cosign's legacy `sha256-<hex>.sig` tag in the same repository (through
//! [`Source::tags`] and [`Source::resolve_tag`]), and OCI 1.1 referrers whose
//! `artifactType` is a Sigstore bundle or a cosign signature (through
//! [`Source::referrers`], which falls back to the `sha256-<hex>` referrers tag on
//! registries without the API). Which digest: the root the user referenced, index or
//! manifest, as cosign signs it (`cosign sign IMAGE` signs the digest IMAGE resolves to; a
//! multi-platform image is signed on its index). The children of a signed index are
//! covered by the index's digest, which names them.

use sealift_oci::Descriptor;
use sealift_trust::found::{
    cosign_tag, is_signature_artifact, signature_layers, MAX_SIGNATURE_LAYER,
};
use sealift_trust::{Found, Policy, Verdict};

use crate::transport::{read_capped, Root, Source, TransportError};

/// Check `root` (resolved from `src`) against `policy`: its verdict, or
/// [`TransportError::Refused`] naming the image and every signature's reason.
pub async fn admit(
    src: &dyn Source,
    root: &Root,
    policy: &Policy,
) -> Result<Verdict, TransportError> {
    let found = find(src, &root.descriptor).await?;
    policy
        .check(&root.descriptor.digest, &root.bytes, &found)
        .map_err(|refusal| TransportError::Refused {
            source_ref: src.describe(),
            refusal,
        })
}

/// Every signature layer the source holds for `image`, with its bytes.
pub async fn find(src: &dyn Source, image: &Descriptor) -> Result<Vec<Found>, TransportError> {
    let mut found = Vec::new();
    let tag = cosign_tag(&image.digest);
    if src.tags().await?.contains(&tag) {
        let sig = src
            .resolve_tag(&tag)
            .await
            .map_err(|e| e.during(format!("reading cosign tag {tag}")))?;
        fetch_layers(src, &sig.bytes, &tag, &mut found).await?;
    }
    let referrers = src
        .referrers(image)
        .await
        .map_err(|e| e.during(format!("listing referrers of {}", image.digest)))?;
    for r in referrers
        .iter()
        .filter(|r| is_signature_artifact(r.artifact_type.as_deref()))
    {
        let bytes = src.manifest(r).await?;
        fetch_layers(src, &bytes, &format!("referrer {}", r.digest), &mut found).await?;
    }
    Ok(found)
}

async fn fetch_layers(
    src: &dyn Source,
    manifest: &[u8],
    at: &str,
    found: &mut Vec<Found>,
) -> Result<(), TransportError> {
    for layer in signature_layers(manifest) {
        let d = &layer.descriptor;
        if d.size > MAX_SIGNATURE_LAYER {
            return Err(TransportError::TooLarge(format!(
                "signature layer {} in {at} ({} bytes; at most {MAX_SIGNATURE_LAYER})",
                d.digest, d.size
            )));
        }
        let what = format!("signature layer {} in {at}", d.digest);
        let stream = src.blob(d).await.map_err(|e| e.during(what.clone()))?;
        // The source's stream fails on a size or digest mismatch; the cap bounds memory.
        let bytes = read_capped(stream, &what).await?;
        found.push(Found {
            at: at.to_string(),
            layer,
            bytes,
        });
    }
    Ok(())
}

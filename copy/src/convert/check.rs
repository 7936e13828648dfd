//! What a converted manifest must satisfy before the tag moves, checked again after the
//! blobs and manifests are written: the conversion's own proof, independent of how the
//! manifests were built.

use sealift_oci::{Descriptor, Digest, ManifestView};

use crate::transport::TransportError;

/// How a written layer relates to the source one, for [`Checks::verify`].
#[derive(Clone, Debug)]
pub(crate) enum LayerOutcome {
    /// Same bytes as the source layer (passed through or left as it was).
    Same(Digest),
    /// Re-encoded: its digest and the DiffID computed while encoding.
    Reencoded { digest: Digest, diff_id: Digest },
}

/// What a converted manifest must satisfy before the tag moves.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub(crate) desc: Descriptor,
    pub(crate) bytes: Vec<u8>,
    pub(crate) config: Digest,
    pub(crate) diff_ids: Vec<Digest>,
    pub(crate) layers: Vec<LayerOutcome>,
}

/// Every check of a conversion.
#[derive(Clone, Debug, Default)]
pub(crate) struct Checks(pub(crate) Vec<Check>);

impl Checks {
    /// Re-check every converted manifest: its bytes hash to its digest, its config is the
    /// source's, it has one layer per DiffID of the config, and each re-encoded layer's
    /// computed DiffID equals the config's, in order (passed-through layers are the source's
    /// bytes).
    pub(crate) fn verify(&self) -> Result<(), TransportError> {
        for c in &self.0 {
            let actual = Digest::of(c.desc.digest.algorithm(), &c.bytes);
            if actual != c.desc.digest || c.bytes.len() as u64 != c.desc.size {
                return Err(TransportError::Store(sealift_store::Error::DigestMismatch {
                    expected: c.desc.digest.clone(),
                    actual,
                })
                .during(format!("verifying converted manifest {}", c.desc.digest)));
            }
            let view =
                ManifestView::parse(&c.bytes, Some(&c.desc.media_type)).map_err(|source| {
                    TransportError::Manifest {
                        digest: c.desc.digest.clone(),
                        source,
                    }
                })?;
            let config = view.config.as_ref().map(|d| &d.digest);
            if config != Some(&c.config) {
                return Err(TransportError::Unsupported(format!(
                    "converted manifest {} does not name the source config {}",
                    c.desc.digest, c.config
                )));
            }
            if view.layers.len() != c.diff_ids.len() || view.layers.len() != c.layers.len() {
                return Err(TransportError::Unsupported(format!(
                    "converted manifest {} has {} layers but its config {} lists {} DiffIDs",
                    c.desc.digest,
                    view.layers.len(),
                    c.config,
                    c.diff_ids.len()
                )));
            }
            for (i, ((layer, outcome), expected)) in view
                .layers
                .iter()
                .zip(&c.layers)
                .zip(&c.diff_ids)
                .enumerate()
            {
                let ok = match outcome {
                    LayerOutcome::Same(d) => &layer.digest == d,
                    LayerOutcome::Reencoded { digest, diff_id } => {
                        &layer.digest == digest && diff_id == expected
                    }
                };
                if !ok {
                    return Err(TransportError::Unsupported(format!(
                        "converted manifest {}: layer {i} ({}) does not match DiffID {expected} \
                         of config {}",
                        c.desc.digest, layer.digest, c.config
                    )));
                }
            }
        }
        Ok(())
    }
}

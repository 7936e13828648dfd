//! Explicit conversion during a copy: recompression of layers (gzip, zstd, none) and
//! Docker schema2 ↔ OCI media types.
//!
//! Conversion changes digests, so it only happens on request ([`Convert`] in
//! [`crate::copy::CopyOptions`]). It keeps the uncompressed content identical and proves it:
//!
//! - every layer that changes compression is streamed from the source through its decoder;
//!   the uncompressed bytes are hashed (its DiffID) while they are recompressed into a
//!   temporary file, whose bytes are hashed too (the new digest and size). Memory does not
//!   grow with the layer: the sync codecs run on tokio's blocking pool over a
//!   [`SyncIoBridge`] of the source stream;
//! - each computed DiffID must equal the config's `rootfs.diff_ids[i]`, or the copy fails
//!   naming the layer (the source is inconsistent);
//! - layers already in the target compression are passed through (same digest; only the
//!   media type changes with the format), non-distributable and foreign layers are left as
//!   they are, and the config bytes are never touched (a format change only renames the
//!   config descriptor's media type: the JSON is the same for Docker and OCI);
//! - manifests and indexes that change are re-serialised with serde_json (key order kept,
//!   unknown fields and annotations carried); those that do not change keep their exact
//!   bytes. OCI artifacts and buildx attestation manifests are not images and are copied
//!   unchanged; an index's attestation entries get the new digest of the manifest they
//!   describe in `vnd.docker.reference.digest` (or are dropped, with a warning, when the
//!   index becomes a Docker manifest list, which cannot carry them);
//! - before the tag moves, the copy runs the returned [`Checks`](check::Checks): every
//!   converted manifest against its config, one DiffID per layer, in order, each equal to
//!   the one computed.
//!
//! Conversion is a step of its own: [`convert`] reads the plan the graph walk made and
//! returns a new [`Plan`] (rewritten manifests, the blobs they name, re-encoded layers as
//! local files deleted when the plan is dropped), which the copy executes like any other.
//! The source blobs of re-encoded layers are not transferred. The steps, one file each:
//! [`format`] (media-type mapping), [`decide`] (what becomes of each layer, from configs),
//! [`encode`] (running the re-encodings), [`rewrite`] (the new manifests), [`check`].

mod check;
mod decide;
mod encode;
mod format;
mod rewrite;

use std::collections::HashSet;

use sealift_oci::manifest::ManifestKind;
use sealift_oci::media_type as mt;
use sealift_oci::ManifestView;

pub use format::{Convert, Format};

use crate::plan::{parse, Plan};
use crate::transport::{Source, TransportError};

/// A conversion's output: the plan to execute instead of the walked one, and what to check
/// once it is written, before the tag moves.
pub(crate) struct Converted {
    /// Converted manifests (and those kept), their blobs, re-encoded layers as local files,
    /// and old → new digests in `converted`.
    pub(crate) plan: Plan,
    /// What every converted image manifest must satisfy.
    pub(crate) checks: check::Checks,
}

/// Convert every image manifest of the walked plan (children of indexes included): decide
/// from configs, re-encode layers into temporary files, rewrite manifests, and list the
/// blobs of the manifests as written. `walked` is only read.
pub(crate) async fn convert(
    src: &dyn Source,
    walked: &Plan,
    conv: &Convert,
    include_nondistributable: bool,
) -> Result<Converted, TransportError> {
    conv.validate()?;
    let views: Vec<ManifestView> = walked
        .manifests
        .iter()
        .map(|n| parse(&n.desc, &n.bytes))
        .collect::<Result<_, _>>()?;
    // 1. Decide, per image and layer, reading only configs.
    let decisions = decide::decide(src, walked, &views, conv).await?;
    // 2. Re-encode each distinct (layer, compression) once, in parallel.
    let (local, encoded) = encode::encode_all(src, &decisions.jobs).await?;
    // 3. New manifests, children first, then indexes over them.
    let rewritten =
        rewrite::rewrite_manifests(&walked.manifests, &views, &decisions.images, &encoded, conv)?;
    // 4. The blobs to copy: those of the manifests as written.
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for node in &rewritten.manifests {
        let view = parse(&node.desc, &node.bytes)?;
        if view.kind != ManifestKind::Image {
            continue;
        }
        for d in view.config.iter().chain(view.layers.iter()) {
            if mt::is_non_distributable(&d.media_type) && !include_nondistributable {
                continue;
            }
            if seen.insert(d.digest.clone()) {
                blobs.push(d.clone());
            }
        }
    }
    Ok(Converted {
        plan: Plan {
            manifests: rewritten.manifests,
            blobs,
            platforms: walked.platforms.clone(),
            filtered: walked.filtered,
            local,
            converted: rewritten.converted,
        },
        checks: rewritten.checks,
    })
}

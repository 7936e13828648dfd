//! Planning a conversion, before any layer is read: per image manifest, what becomes of
//! each layer (kept, renamed, re-encoded), from the manifest and its config only; and the
//! distinct re-encodings to run.

use std::collections::{HashMap, HashSet};

use sealift_oci::config::{ConfigError, ImageConfig};
use sealift_oci::manifest::ManifestKind;
use sealift_oci::media_type::{self as mt, Compression};
use sealift_oci::{Descriptor, Digest, ManifestView};

use super::format::{Convert, Format};
use crate::plan::Plan;
use crate::transport::{read_capped, Source, TransportError};

/// What a conversion will do, decided from manifests and configs.
pub(crate) struct Decisions {
    /// Each distinct (source layer, target compression) to re-encode, once.
    pub(crate) jobs: HashMap<JobKey, Job>,
    /// Per image manifest to convert (by its index in the walked plan), its decisions.
    pub(crate) images: HashMap<usize, ImageWork>,
}

/// Decide, per image and layer, reading only configs. Artifacts and buildx attestation
/// manifests are not images: they are left out (copied unchanged).
pub(crate) async fn decide(
    src: &dyn Source,
    walked: &Plan,
    views: &[ManifestView],
    conv: &Convert,
) -> Result<Decisions, TransportError> {
    // buildx attestation manifests are not images, whatever their config says.
    let attestations: HashSet<Digest> = views
        .iter()
        .filter(|v| v.kind == ManifestKind::Index)
        .flat_map(|v| v.manifests.iter())
        .filter(|d| d.attests().is_some())
        .map(|d| d.digest.clone())
        .collect();
    let mut jobs: HashMap<JobKey, Job> = HashMap::new();
    let mut images: HashMap<usize, ImageWork> = HashMap::new();
    for (i, (node, view)) in walked.manifests.iter().zip(views).enumerate() {
        if view.kind != ManifestKind::Image {
            continue;
        }
        if attestations.contains(&node.desc.digest) || !is_image(view) {
            tracing::debug!(
                "{} is not an image manifest (artifact or attestation): copied unchanged",
                node.desc.digest
            );
            continue;
        }
        let w = plan_image(src, &node.desc, view, conv, &mut jobs).await?;
        images.insert(i, w);
    }
    Ok(Decisions { jobs, images })
}

/// One re-encoding to do: a source layer into a target compression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct JobKey {
    pub(crate) source: Digest,
    pub(crate) to: &'static str,
}

/// A source layer and how to re-encode it.
pub(crate) struct Job {
    pub(crate) desc: Descriptor,
    pub(crate) from: Compression,
    pub(crate) to: Compression,
}

/// What happens to one layer of an image manifest.
#[derive(Clone, Debug)]
pub(crate) enum LayerPlan {
    /// Non-distributable / foreign: the descriptor as it is.
    Keep,
    /// Same bytes; the media type may be renamed for the format.
    Same { media_type: &'static str },
    /// Re-encoded into another compression.
    Reencode {
        key: JobKey,
        media_type: &'static str,
    },
}

/// The per-image decisions, before any layer is read.
pub(crate) struct ImageWork {
    pub(crate) format: Format,
    pub(crate) config: Descriptor,
    pub(crate) diff_ids: Vec<Digest>,
    pub(crate) layers: Vec<LayerPlan>,
}

/// An image manifest (as opposed to an artifact): no artifactType, an image config, and
/// only layer media types sealift can decompress.
fn is_image(view: &ManifestView) -> bool {
    view.kind == ManifestKind::Image
        && view.artifact_type.is_none()
        && view
            .config
            .as_ref()
            .is_some_and(|c| c.media_type == mt::OCI_CONFIG || c.media_type == mt::DOCKER_CONFIG)
        && view
            .layers
            .iter()
            .all(|l| mt::layer_compression(&l.media_type).is_some())
}

pub(crate) fn inconsistent(msg: String) -> TransportError {
    TransportError::Unsupported(msg)
}

/// `rootfs.diff_ids` of a config, strictly: a conversion must refuse what it cannot check.
fn diff_ids(config: &Descriptor, bytes: &[u8]) -> Result<Vec<Digest>, TransportError> {
    let why = |e: ConfigError| {
        inconsistent(match e {
            ConfigError::Json(e) => format!(
                "config {} is not JSON ({e}); cannot check DiffIDs",
                config.digest
            ),
            ConfigError::NoDiffIds => format!(
                "config {} has no rootfs.diff_ids; cannot convert its layers",
                config.digest
            ),
            e => format!("config {}: {e}", config.digest),
        })
    };
    ImageConfig::parse(bytes)
        .map_err(why)?
        .diff_ids()
        .map_err(why)
}

async fn read_config(src: &dyn Source, config: &Descriptor) -> Result<Vec<u8>, TransportError> {
    let what = format!("reading config {}", config.digest);
    let body = src.blob(config).await.map_err(|e| e.during(what.clone()))?;
    read_capped(body, &what).await
}

async fn plan_image(
    src: &dyn Source,
    desc: &Descriptor,
    view: &ManifestView,
    conv: &Convert,
    jobs: &mut HashMap<JobKey, Job>,
) -> Result<ImageWork, TransportError> {
    let config = view
        .config
        .clone()
        .ok_or_else(|| inconsistent(format!("manifest {} has no config", desc.digest)))?;
    let config_bytes = read_config(src, &config).await?;
    let diff_ids = diff_ids(&config, &config_bytes)?;
    if diff_ids.len() != view.layers.len() {
        return Err(inconsistent(format!(
            "manifest {} has {} layers but its config {} lists {} DiffIDs; the source is \
             inconsistent, refusing to convert it",
            desc.digest,
            view.layers.len(),
            config.digest,
            diff_ids.len()
        )));
    }
    let format = conv.format.unwrap_or(Format::of(&view.media_type));
    let mut layers = Vec::with_capacity(view.layers.len());
    for (i, layer) in view.layers.iter().enumerate() {
        if mt::is_non_distributable(&layer.media_type) {
            layers.push(LayerPlan::Keep);
            continue;
        }
        let from = mt::layer_compression(&layer.media_type).ok_or_else(|| {
            inconsistent(format!(
                "layer {i} ({}) of {}: media type {} is not a layer",
                layer.digest, desc.digest, layer.media_type
            ))
        })?;
        let to = match (conv.compression, format) {
            (Some(Compression::Zstd), Format::Docker) => {
                return Err(TransportError::Unsupported(format!(
                    "--dest-compress zstd: {} is a Docker schema2 manifest, which has no zstd \
                     layer media type (add --format oci)",
                    desc.digest
                )))
            }
            (Some(c), _) => c,
            // Docker has no zstd type: converting to Docker recompresses zstd layers to gzip.
            (None, Format::Docker) if from == Compression::Zstd => Compression::Gzip,
            (None, _) => from,
        };
        let media_type = format.layer(to).ok_or_else(|| {
            TransportError::Unsupported(format!("no {format} layer media type for {to:?}"))
        })?;
        if to == from {
            layers.push(LayerPlan::Same { media_type });
        } else {
            let key = JobKey {
                source: layer.digest.clone(),
                to: to.name(),
            };
            jobs.entry(key.clone()).or_insert_with(|| Job {
                desc: layer.clone(),
                from,
                to,
            });
            layers.push(LayerPlan::Reencode { key, media_type });
        }
    }
    Ok(ImageWork {
        format,
        config,
        diff_ids,
        layers,
    })
}

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
//! - before the tag moves, `Conversion::verify` re-checks every converted manifest against
//!   its config: one DiffID per layer, in order, each equal to the one computed.
//!
//! The converted blobs join the copy plan like any other blob; they are read from the
//! temporary files, which are deleted when the copy ends. The source blobs of re-encoded
//! layers are not transferred.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use sealift_oci::compression::{recompress, Compression, Recompressed};
use sealift_oci::config::{ConfigError, ImageConfig};
use sealift_oci::manifest::ManifestKind;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView};
use serde_json::{Map, Value};
use tokio_util::io::SyncIoBridge;

use crate::copy::Plan;
use crate::transport::{read_capped, Source, TransportError};

/// The manifest format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Format {
    /// OCI image manifest, index and config media types.
    Oci,
    /// Docker schema2 manifest, manifest list and container config media types.
    Docker,
}

impl Format {
    /// The format a manifest media type belongs to (anything but Docker schema2 is OCI).
    pub fn of(media_type: &str) -> Format {
        match media_type {
            mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST | mt::DOCKER_CONFIG => Format::Docker,
            _ => Format::Oci,
        }
    }

    /// Image manifest media type.
    pub fn manifest(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_MANIFEST,
            Format::Docker => mt::DOCKER_MANIFEST,
        }
    }

    /// Index / manifest list media type.
    pub fn index(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_INDEX,
            Format::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }

    /// Image config media type.
    pub fn config(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_CONFIG,
            Format::Docker => mt::DOCKER_CONFIG,
        }
    }

    /// Layer media type for a compression; `None` for Docker and zstd (Docker has none).
    pub fn layer(self, compression: Compression) -> Option<&'static str> {
        Some(match (self, compression) {
            (Format::Oci, Compression::None) => mt::OCI_LAYER_TAR,
            (Format::Oci, Compression::Gzip) => mt::OCI_LAYER_GZIP,
            (Format::Oci, Compression::Zstd) => mt::OCI_LAYER_ZSTD,
            (Format::Docker, Compression::None) => mt::DOCKER_LAYER_TAR,
            (Format::Docker, Compression::Gzip) => mt::DOCKER_LAYER_GZIP,
            (Format::Docker, Compression::Zstd) => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
        })
    }
}

/// What to convert images to during a copy. `None` fields keep what the source has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Convert {
    /// Layer compression to write (`--dest-compress`).
    pub compression: Option<Compression>,
    /// Manifest format to write (`--format`).
    pub format: Option<Format>,
}

impl Convert {
    /// Refuse combinations no manifest format can express.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.format == Some(Format::Docker) && self.compression == Some(Compression::Zstd) {
            return Err(TransportError::Unsupported(
                "--format docker cannot be combined with --dest-compress zstd: Docker schema2 \
                 has no zstd layer media type (use --format oci, or --dest-compress gzip)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether this asks for nothing.
    pub fn is_noop(&self) -> bool {
        self.compression.is_none() && self.format.is_none()
    }
}

/// One re-encoding to do: a source layer into a target compression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct JobKey {
    source: Digest,
    to: &'static str,
}

struct Job {
    desc: Descriptor,
    from: Compression,
    to: Compression,
}

/// A re-encoded layer in a temporary file.
#[derive(Clone, Debug)]
struct Encoded {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    path: PathBuf,
}

/// What happens to one layer of an image manifest.
#[derive(Clone, Debug)]
enum LayerPlan {
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

/// How a written layer relates to the source one, for [`Conversion::verify`].
#[derive(Clone, Debug)]
enum LayerOutcome {
    /// Same bytes as the source layer (passed through or left as it was).
    Same(Digest),
    /// Re-encoded: its digest and the DiffID computed while encoding.
    Reencoded { digest: Digest, diff_id: Digest },
}

/// What a converted manifest must satisfy before the tag moves.
#[derive(Clone, Debug)]
struct Check {
    desc: Descriptor,
    bytes: Vec<u8>,
    config: Digest,
    diff_ids: Vec<Digest>,
    layers: Vec<LayerOutcome>,
}

/// The result of converting a copy plan: the temporary files of re-encoded layers (removed
/// on drop), old → new manifest digests, and what to verify.
pub(crate) struct Conversion {
    _dir: Option<tempfile::TempDir>,
    files: HashMap<Digest, PathBuf>,
    /// `(source digest, written digest)` of every manifest and index that changed, children
    /// first.
    pub(crate) converted: Vec<(Digest, Digest)>,
    checks: Vec<Check>,
}

impl Conversion {
    /// The temporary file holding a re-encoded blob, when `digest` is one.
    pub(crate) fn local_file(&self, digest: &Digest) -> Option<&Path> {
        self.files.get(digest).map(PathBuf::as_path)
    }

    /// Whether `digest` is a manifest this conversion wrote (its referrers at the source
    /// name the old digest).
    pub(crate) fn is_new(&self, digest: &Digest) -> bool {
        self.converted.iter().any(|(_, n)| n == digest)
    }

    /// Re-check every converted manifest: its bytes hash to its digest, its config is the
    /// source's, it has one layer per DiffID of the config, and each re-encoded layer's
    /// computed DiffID equals the config's, in order (passed-through layers are the source's
    /// bytes).
    pub(crate) fn verify(&self) -> Result<(), TransportError> {
        for c in &self.checks {
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

fn parse(desc: &Descriptor, bytes: &[u8]) -> Result<ManifestView, TransportError> {
    ManifestView::parse(bytes, Some(&desc.media_type)).map_err(|source| TransportError::Manifest {
        digest: desc.digest.clone(),
        source,
    })
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

fn inconsistent(msg: String) -> TransportError {
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

/// Set a descriptor object's mediaType, digest and size in place (keys keep their places).
fn set_descriptor(v: &mut Value, media_type: &str, digest: &Digest, size: u64) {
    if let Value::Object(m) = v {
        m.insert("mediaType".into(), media_type.into());
        m.insert("digest".into(), digest.to_string().into());
        m.insert("size".into(), size.into());
    }
}

/// Annotations that describe the compressed bytes of a layer and are wrong once it is
/// re-encoded (eStargz and zstd:chunked tables of contents).
fn describes_compressed_bytes(key: &str) -> bool {
    key.starts_with("containerd.io/snapshot/stargz/")
        || key.contains("zstd-chunked")
        || key.contains("estargz")
}

/// A re-encoded layer's descriptor: the source's, with new mediaType/digest/size, without
/// `urls` (they serve the old bytes) and annotations about the old compressed bytes.
fn reencoded_layer(v: &Value, media_type: &str, digest: &Digest, size: u64) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        match k.as_str() {
            "urls" => {}
            "annotations" => {
                if let Value::Object(a) = val {
                    let kept: Map<String, Value> = a
                        .iter()
                        .filter(|(k, _)| !describes_compressed_bytes(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k.clone(), Value::Object(kept));
                    }
                } else {
                    out.insert(k.clone(), val.clone());
                }
            }
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    let mut out = Value::Object(out);
    set_descriptor(&mut out, media_type, digest, size);
    out
}

/// Re-serialise a manifest or index object with the top-level keys in the usual order:
/// schemaVersion, mediaType, artifactType, `body` (config+layers, or manifests), subject,
/// annotations, then any unknown fields in their original order.
fn reserialise(
    orig: &Map<String, Value>,
    media_type: &str,
    body: Vec<(&str, Value)>,
) -> Result<Vec<u8>, TransportError> {
    let mut out = Map::new();
    out.insert(
        "schemaVersion".into(),
        orig.get("schemaVersion").cloned().unwrap_or(2.into()),
    );
    out.insert("mediaType".into(), media_type.into());
    if let Some(a) = orig.get("artifactType") {
        out.insert("artifactType".into(), a.clone());
    }
    let body_keys: Vec<&str> = body.iter().map(|(k, _)| *k).collect();
    for (k, v) in body {
        out.insert(k.into(), v);
    }
    for k in ["subject", "annotations"] {
        if let Some(v) = orig.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for (k, v) in orig {
        let known = matches!(
            k.as_str(),
            "schemaVersion" | "mediaType" | "artifactType" | "subject" | "annotations"
        ) || body_keys.contains(&k.as_str());
        if !known {
            out.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| TransportError::Unsupported(format!("serialising a converted manifest: {e}")))
}

fn object(bytes: &[u8], digest: &Digest) -> Result<Map<String, Value>, TransportError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TransportError::Unsupported(format!(
            "manifest {digest} is not a JSON object"
        ))),
    }
}

/// The per-image decisions, before any layer is read.
struct ImageWork {
    format: Format,
    config: Descriptor,
    diff_ids: Vec<Digest>,
    layers: Vec<LayerPlan>,
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

async fn encode(src: &dyn Source, job: &Job, path: PathBuf) -> Result<Encoded, TransportError> {
    let what = format!(
        "converting layer {} ({} to {})",
        job.desc.digest,
        job.from.name(),
        job.to.name()
    );
    let body = src
        .blob(&job.desc)
        .await
        .map_err(|e| e.during(format!("reading layer {}", job.desc.digest)))?;
    let (from, to, p) = (job.from, job.to, path.clone());
    let result = tokio::task::spawn_blocking(move || -> io::Result<Recompressed> {
        let reader = SyncIoBridge::new(body);
        let file = std::fs::File::create(&p)?;
        let (r, out) = recompress(reader, from, to, BufWriter::with_capacity(1 << 20, file))?;
        out.into_inner().map_err(|e| e.into_error())?;
        Ok(r)
    })
    .await?
    .map_err(|source| TransportError::Io {
        what: what.clone(),
        source,
    })?;
    tracing::debug!(
        "{what}: {} -> {} ({} bytes)",
        job.desc.digest,
        result.digest,
        result.size
    );
    Ok(Encoded {
        digest: result.digest,
        size: result.size,
        diff_id: result.diff_id,
        path,
    })
}

/// How many layers to re-encode at once: codecs are CPU-bound, sources may be slow.
fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// Convert every image manifest of `plan` (children of indexes included), rewriting its
/// manifests and blob list in place. Re-encoded layers are written to temporary files kept
/// by the [`Conversion`] stored in `plan.conversion`, which also lists old → new digests
/// and what [`Conversion::verify`] checks.
pub(crate) async fn apply(
    src: &dyn Source,
    plan: &mut Plan,
    conv: &Convert,
    include_nondistributable: bool,
) -> Result<(), TransportError> {
    conv.validate()?;
    let views: Vec<ManifestView> = plan
        .manifests
        .iter()
        .map(|n| parse(&n.desc, &n.bytes))
        .collect::<Result<_, _>>()?;
    let in_plan: HashSet<Digest> = plan
        .manifests
        .iter()
        .map(|n| n.desc.digest.clone())
        .collect();
    // buildx attestation manifests are not images, whatever their config says.
    let attestations: HashSet<Digest> = views
        .iter()
        .filter(|v| v.kind == ManifestKind::Index)
        .flat_map(|v| v.manifests.iter())
        .filter(|d| d.attests().is_some())
        .map(|d| d.digest.clone())
        .collect();

    // 1. Decide, per image and layer, reading only configs.
    let mut jobs: HashMap<JobKey, Job> = HashMap::new();
    let mut work: HashMap<usize, ImageWork> = HashMap::new();
    for (i, (node, view)) in plan.manifests.iter().zip(&views).enumerate() {
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
        work.insert(i, w);
    }

    // 2. Re-encode each distinct (layer, compression) once, in parallel.
    let dir = if jobs.is_empty() {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("sealift-convert-")
                .tempdir()
                .map_err(|source| TransportError::Io {
                    what: format!(
                        "creating a temporary directory in {}",
                        std::env::temp_dir().display()
                    ),
                    source,
                })?,
        )
    };
    let mut encoded: HashMap<JobKey, Encoded> = HashMap::new();
    if let Some(dir) = &dir {
        let base = dir.path().to_path_buf();
        encoded = stream::iter(jobs.iter().enumerate())
            .map(|(n, (key, job))| {
                let path = base.join(format!("layer-{n}"));
                async move { Ok::<_, TransportError>((key.clone(), encode(src, job, path).await?)) }
            })
            .buffer_unordered(parallelism())
            .try_collect()
            .await?;
    }

    // 3. New manifests, children first (the plan's order), then indexes over them.
    let mut renamed: HashMap<Digest, Descriptor> = HashMap::new();
    let mut converted = Vec::new();
    let mut checks = Vec::new();
    let mut dropped: HashSet<Digest> = HashSet::new();
    for (i, view) in views.iter().enumerate() {
        let old = plan.manifests[i].desc.clone();
        let bytes = &plan.manifests[i].bytes;
        let (media_type, new_bytes, check) = if let Some(w) = work.get(&i) {
            match image_manifest(bytes, &old, view, w, &encoded)? {
                Some((m, b, layers)) => (
                    m,
                    b,
                    Some((w.config.digest.clone(), w.diff_ids.clone(), layers)),
                ),
                None => continue,
            }
        } else if view.kind == ManifestKind::Index {
            match index_manifest(bytes, &old, view, conv, &renamed, &in_plan, &mut dropped)? {
                Some((m, b)) => (m, b, None),
                None => continue,
            }
        } else {
            continue;
        };
        let digest = Digest::of(old.digest.algorithm(), &new_bytes);
        if digest == old.digest {
            continue;
        }
        let mut desc = old.clone();
        desc.media_type = media_type.to_string();
        desc.digest = digest.clone();
        desc.size = new_bytes.len() as u64;
        if let Some((config, diff_ids, layers)) = check {
            checks.push(Check {
                desc: desc.clone(),
                bytes: new_bytes.clone(),
                config,
                diff_ids,
                layers,
            });
        }
        let node = &mut plan.manifests[i];
        node.desc = desc.clone();
        node.bytes = new_bytes;
        node.sparse = false;
        converted.push((old.digest.clone(), digest));
        renamed.insert(old.digest, desc);
    }
    plan.manifests.retain(|n| !dropped.contains(&n.desc.digest));

    // 4. The blobs to copy: those of the manifests as written.
    let mut files = HashMap::new();
    for e in encoded.values() {
        files.insert(e.digest.clone(), e.path.clone());
    }
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    for node in &plan.manifests {
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
    plan.blobs = blobs;
    plan.conversion = Some(Conversion {
        _dir: dir,
        files,
        converted,
        checks,
    });
    Ok(())
}

/// A converted image manifest: media type, bytes, what became of each layer.
type ConvertedImage = (&'static str, Vec<u8>, Vec<LayerOutcome>);

/// The converted image manifest, or `None` when nothing changes (its bytes are kept).
fn image_manifest(
    bytes: &[u8],
    desc: &Descriptor,
    view: &ManifestView,
    w: &ImageWork,
    encoded: &HashMap<JobKey, Encoded>,
) -> Result<Option<ConvertedImage>, TransportError> {
    let orig = object(bytes, &desc.digest)?;
    let orig_layers: Vec<Value> = orig
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if orig_layers.len() != view.layers.len() {
        return Err(inconsistent(format!(
            "manifest {}: layers do not parse",
            desc.digest
        )));
    }
    // A manifest whose layers and media types all stay keeps its exact bytes.
    let mut changed =
        view.media_type != w.format.manifest() || w.config.media_type != w.format.config();
    let mut layers = Vec::with_capacity(orig_layers.len());
    let mut outcomes = Vec::with_capacity(orig_layers.len());
    for (i, ((lp, layer), raw)) in w
        .layers
        .iter()
        .zip(&view.layers)
        .zip(&orig_layers)
        .enumerate()
    {
        match lp {
            LayerPlan::Keep => {
                layers.push(raw.clone());
                outcomes.push(LayerOutcome::Same(layer.digest.clone()));
            }
            LayerPlan::Same { media_type } => {
                let mut v = raw.clone();
                if layer.media_type != *media_type {
                    changed = true;
                    set_descriptor(&mut v, media_type, &layer.digest, layer.size);
                }
                layers.push(v);
                outcomes.push(LayerOutcome::Same(layer.digest.clone()));
            }
            LayerPlan::Reencode { key, media_type } => {
                let e = encoded.get(key).ok_or_else(|| {
                    TransportError::Join(format!("layer {} was not converted", layer.digest))
                })?;
                let expected = &w.diff_ids[i];
                if &e.diff_id != expected {
                    return Err(TransportError::Store(sealift_store::Error::DigestMismatch {
                        expected: expected.clone(),
                        actual: e.diff_id.clone(),
                    })
                    .during(format!(
                        "converting layer {i} ({}) of manifest {}: its uncompressed content \
                         does not match the config's rootfs.diff_ids[{i}] (the source is \
                         inconsistent)",
                        layer.digest, desc.digest
                    )));
                }
                changed = true;
                layers.push(reencoded_layer(raw, media_type, &e.digest, e.size));
                outcomes.push(LayerOutcome::Reencoded {
                    digest: e.digest.clone(),
                    diff_id: e.diff_id.clone(),
                });
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let mut config = orig.get("config").cloned().unwrap_or(Value::Null);
    set_descriptor(
        &mut config,
        w.format.config(),
        &w.config.digest,
        w.config.size,
    );
    let media_type = w.format.manifest();
    let out = reserialise(
        &orig,
        media_type,
        vec![("config", config), ("layers", Value::Array(layers))],
    )?;
    Ok(Some((media_type, out, outcomes)))
}

/// The converted bytes of an index, or `None` when none of its entries changed.
fn index_manifest(
    bytes: &[u8],
    desc: &Descriptor,
    view: &ManifestView,
    conv: &Convert,
    renamed: &HashMap<Digest, Descriptor>,
    in_plan: &HashSet<Digest>,
    dropped: &mut HashSet<Digest>,
) -> Result<Option<(&'static str, Vec<u8>)>, TransportError> {
    let media_type: &'static str = match conv.format {
        Some(f) => f.index(),
        None if Format::of(&view.media_type) == Format::Docker => mt::DOCKER_MANIFEST_LIST,
        None => mt::OCI_INDEX,
    };
    let to_docker = conv.format == Some(Format::Docker);
    let changed = view.media_type != media_type
        || view.manifests.iter().any(|e| {
            renamed.contains_key(&e.digest)
                || e.attests()
                    .is_some_and(|a| to_docker || renamed.contains_key(&a))
        });
    if !changed {
        return Ok(None);
    }
    let orig = object(bytes, &desc.digest)?;
    let entries: Vec<Value> = orig
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.len() != view.manifests.len() {
        return Err(inconsistent(format!(
            "index {}: entries do not parse",
            desc.digest
        )));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (mut raw, entry) in entries.into_iter().zip(&view.manifests) {
        if !in_plan.contains(&entry.digest) {
            // Filtered out by --platform: the rewritten index holds only what is copied.
            continue;
        }
        if let Some(subject) = entry.attests() {
            if to_docker {
                tracing::warn!(
                    "dropping attestation manifest {} (for {subject}) from {}: Docker manifest \
                     lists cannot carry attestations",
                    entry.digest,
                    desc.digest
                );
                dropped.insert(entry.digest.clone());
                continue;
            }
            if let Some(new) = renamed.get(&subject) {
                if let Some(Value::Object(a)) = raw.get_mut("annotations") {
                    a.insert(
                        mt::ANNOTATION_DOCKER_REF_DIGEST.into(),
                        new.digest.to_string().into(),
                    );
                }
            }
        }
        if let Some(new) = renamed.get(&entry.digest) {
            set_descriptor(&mut raw, &new.media_type, &new.digest, new.size);
        } else if to_docker
            && mt::kind(&entry.media_type) != mt::Kind::Index
            && entry.media_type != mt::DOCKER_MANIFEST
        {
            tracing::warn!(
                "{} in {} is not an image ({}); a Docker manifest list carries it as it is",
                entry.digest,
                desc.digest,
                entry.media_type
            );
        }
        out.push(raw);
    }
    let bytes = reserialise(&orig, media_type, vec![("manifests", Value::Array(out))])?;
    Ok(Some((media_type, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_has_no_zstd() {
        let c = Convert {
            compression: Some(Compression::Zstd),
            format: Some(Format::Docker),
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--format docker") && e.contains("--dest-compress zstd"),
            "{e}"
        );
        assert_eq!(Format::Docker.layer(Compression::Zstd), None);
        assert_eq!(
            Format::Docker.layer(Compression::None),
            Some(mt::DOCKER_LAYER_TAR)
        );
    }

    #[test]
    fn reserialise_orders_keys_and_keeps_unknown_fields() {
        let orig: Map<String, Value> = serde_json::from_str(
            r#"{"x-unknown":1,"annotations":{"a":"b"},"layers":[],"config":{},"schemaVersion":2,"subject":{"s":1}}"#,
        )
        .unwrap();
        let out = reserialise(
            &orig,
            mt::OCI_MANIFEST,
            vec![("config", Value::Null), ("layers", Value::Array(vec![]))],
        )
        .unwrap();
        let keys: Vec<String> = serde_json::from_slice::<Map<String, Value>>(&out)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "schemaVersion",
                "mediaType",
                "config",
                "layers",
                "subject",
                "annotations",
                "x-unknown"
            ]
        );
    }

    #[test]
    fn reencoded_layers_lose_compressed_byte_annotations_and_urls() {
        let d = Digest::sha256(b"x");
        let raw: Value = serde_json::json!({
            "mediaType": mt::OCI_LAYER_GZIP,
            "digest": Digest::sha256(b"y").to_string(),
            "size": 3,
            "urls": ["https://example.invalid"],
            "annotations": {"containerd.io/snapshot/stargz/toc.digest": "sha256:00", "keep": "me"}
        });
        let v = reencoded_layer(&raw, mt::OCI_LAYER_ZSTD, &d, 9);
        assert_eq!(v["mediaType"], mt::OCI_LAYER_ZSTD);
        assert_eq!(v["digest"], d.to_string());
        assert_eq!(v["size"], 9);
        assert!(v.get("urls").is_none());
        assert_eq!(v["annotations"], serde_json::json!({"keep": "me"}));
    }
}

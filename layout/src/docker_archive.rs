//! Docker archives (the `docker save` format) for sites that load images straight into a
//! container engine with `docker load` or `podman load`.
//!
//! One platform per image: an index is resolved to one image manifest (by `--platform`, or
//! because it has only one). The archive holds each config as `<hex>.json`, each layer as
//! `<hex>.tar[.gz|.zst]` (the stored bytes, unchanged: both engines decompress on load),
//! `manifest.json` and the legacy `repositories`. Entries are sorted and their headers fixed,
//! so the same store and refs give the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::media_type::{self as mt, Compression};
use sealift_oci::{Digest, ManifestKind, ManifestView, Platform, StoreRef};
use sealift_store::Store;

use super::error::LayoutError;
use super::Progress;
use crate::compress::Compressor;
use crate::export::ExportReport;
use crate::format::{header, write_partial, Format};

/// How to write a Docker archive.
#[derive(Clone, Default)]
pub struct DockerArchiveOptions {
    /// The platform to take from multi-platform images.
    pub platform: Option<Platform>,
    /// Called with bytes written so far and the total.
    pub progress: Option<Progress>,
}

/// One image as the archive's manifest.json describes it.
struct Image {
    manifest: Digest,
    config: Digest,
    layers: Vec<(Digest, String)>,
    tags: Vec<String>,
}

/// The image manifest of `root` for one platform.
fn pick_platform(
    store: &Store,
    name: &str,
    root: &Digest,
    platform: Option<&Platform>,
) -> Result<(Digest, ManifestView), LayoutError> {
    let (_, view) = store.manifest(root)?;
    if view.kind == ManifestKind::Image {
        return Ok((root.clone(), view));
    }
    let images: Vec<_> = view
        .manifests
        .iter()
        .filter(|d| d.attests().is_none())
        .filter(|d| !d.platform.as_ref().is_some_and(Platform::is_unknown))
        .collect();
    let chosen: Vec<_> = match platform {
        Some(p) => images
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|q| p.selects(q)))
            .collect(),
        None => images.iter().collect(),
    };
    let list = || {
        images
            .iter()
            .map(|d| d.platform.as_ref().map_or("?".into(), ToString::to_string))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let one = match chosen.as_slice() {
        [one] => one,
        [] => {
            return Err(LayoutError::Unsupported(format!(
                "{name} has no platform {} (it has: {})",
                platform.map(ToString::to_string).unwrap_or_default(),
                list()
            )))
        }
        _ if platform.is_none() => {
            return Err(LayoutError::Unsupported(format!(
                "{name} is a multi-platform image ({}); a Docker archive holds one platform per image: pass --platform",
                list()
            )))
        }
        _ => {
            return Err(LayoutError::Unsupported(format!(
                "{name}: --platform {} matches several entries ({}); give the variant too",
                platform.map(ToString::to_string).unwrap_or_default(),
                list()
            )))
        }
    };
    if store.record(&one.digest)?.is_none() {
        return Err(LayoutError::MissingBlob {
            digest: one.digest.clone(),
            media_type: one.media_type.clone(),
            needed_by: format!("{name} (this platform was not copied into the store)"),
        });
    }
    let (_, v) = store.manifest(&one.digest)?;
    if v.kind != ManifestKind::Image {
        return Err(LayoutError::Unsupported(format!(
            "{name}: nested indexes cannot go into a Docker archive"
        )));
    }
    Ok((one.digest.clone(), v))
}

fn layer_file(d: &Digest, media_type: &str) -> String {
    let ext = match mt::layer_compression(media_type) {
        Some(Compression::Gzip) => ".tar.gz",
        Some(Compression::Zstd) => ".tar.zst",
        _ => ".tar",
    };
    format!("{}{ext}", d.hex())
}

/// Write `refs` as a Docker archive at `path` (`.tar`, or compressed by its name).
pub fn export_docker_archive(
    store: &Store,
    refs: &[StoreRef],
    path: &Path,
    opts: &DockerArchiveOptions,
) -> Result<ExportReport, LayoutError> {
    let mut images: Vec<Image> = Vec::new();
    let mut report = ExportReport::default();
    for r in refs {
        let name = r.to_string();
        let root = store.resolve(r)?;
        let (manifest, view) = pick_platform(store, &name, &root, opts.platform.as_ref())?;
        let config = view
            .config
            .as_ref()
            .ok_or_else(|| LayoutError::Unsupported(format!("{name}: {manifest} has no config")))?;
        if !matches!(
            config.media_type.as_str(),
            mt::OCI_CONFIG | mt::DOCKER_CONFIG
        ) {
            return Err(LayoutError::Unsupported(format!(
                "{name} is an artifact ({}), not a container image",
                config.media_type
            )));
        }
        let mut layers = Vec::new();
        for l in &view.layers {
            if store.record(&l.digest)?.is_none() {
                return Err(LayoutError::MissingBlob {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    needed_by: format!("{name} ({manifest})"),
                });
            }
            layers.push((l.digest.clone(), layer_file(&l.digest, &l.media_type)));
        }
        let tag = r.tag.as_ref().map(|t| format!("{}:{t}", r.repo));
        report.images.push((name, root));
        match images.iter_mut().find(|i| i.manifest == manifest) {
            Some(i) => i.tags.extend(tag),
            None => images.push(Image {
                manifest,
                config: config.digest.clone(),
                layers,
                tags: tag.into_iter().collect(),
            }),
        }
    }

    // Files by name, each once: configs and layers shared between images are written once.
    let mut files: BTreeMap<String, Digest> = BTreeMap::new();
    for i in &images {
        files.insert(format!("{}.json", i.config.hex()), i.config.clone());
        for (d, f) in &i.layers {
            files.insert(f.clone(), d.clone());
        }
    }
    let mut sizes = BTreeMap::new();
    for d in files.values() {
        let rec = store
            .record(d)?
            .ok_or_else(|| sealift_store::Error::NotFound(d.clone()))?;
        sizes.insert(d.clone(), rec.size);
    }
    report.blobs = files.len();
    report.bytes = files.values().map(|d| sizes[d]).sum();

    let manifest_json: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            serde_json::json!({
                "Config": format!("{}.json", i.config.hex()),
                "RepoTags": i.tags,
                "Layers": i.layers.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Legacy `repositories`: repo → tag → top layer id; engines use manifest.json instead.
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for i in &images {
        let top = i.layers.last().map(|(d, _)| d.hex().to_string());
        for t in &i.tags {
            if let (Some((repo, tag)), Some(top)) = (t.rsplit_once(':'), &top) {
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), top.clone());
            }
        }
    }
    let manifest_bytes = to_json(&manifest_json);
    let repositories_bytes = to_json(&repositories);

    let format = match Format::from_path(path) {
        Format::Dir => Format::Tar,
        f => f,
    };
    let total = report.bytes;
    write_partial(path, |out, tmp| {
        let werr = || LayoutError::io("writing", tmp);
        let mut b = tar::Builder::new(Compressor::new(out, format, tmp)?);
        b.mode(tar::HeaderMode::Deterministic);
        let mut done = 0;
        for (name, d) in &files {
            let size = sizes[d];
            if name.ends_with(".json") && size > MAX_MANIFEST_SIZE as u64 {
                return Err(LayoutError::Unsupported(format!(
                    "config {d} is {size} bytes, over the 4 MiB limit"
                )));
            }
            b.append_data(&mut header(size, 0o644, false), name, store.open_blob(d)?)
                .map_err(werr())?;
            done += size;
            if let Some(p) = &opts.progress {
                p(done, total);
            }
        }
        for (name, bytes) in [
            ("manifest.json", &manifest_bytes),
            ("repositories", &repositories_bytes),
        ] {
            b.append_data(
                &mut header(bytes.len() as u64, 0o644, false),
                name,
                &bytes[..],
            )
            .map_err(werr())?;
        }
        b.into_inner()
            .and_then(Compressor::finish)
            .map_err(werr())?;
        Ok(())
    })?;
    Ok(report)
}

/// Maps and vectors of strings always serialise.
fn to_json(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

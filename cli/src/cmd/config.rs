//! Image configs, read-only, from the store: the parsing is sealift-oci's
//! [`ImageConfig`]; this file only reads bytes and shapes errors for the CLI.

use anyhow::{Context as _, Result};
use sealift_oci::config::{ConfigError, MAX_CONFIG_SIZE};
use sealift_oci::media_type as mt;
use sealift_oci::{Digest, ManifestKind};
use sealift_store::Store;

pub use sealift_oci::config::ImageConfig;

/// DiffIDs, parsed; a config without any lists none, a malformed one is an error naming
/// the config.
pub fn diff_ids(cfg: &ImageConfig, config: &Digest) -> Result<Vec<Digest>> {
    match cfg.diff_ids() {
        Err(ConfigError::NoDiffIds) => Ok(Vec::new()),
        r => r.with_context(|| format!("config {config}")),
    }
}

/// Read and parse an image config from the store.
pub fn read(store: &Store, digest: &Digest) -> Result<ImageConfig> {
    let bytes = store
        .read_small(digest, MAX_CONFIG_SIZE as u64)
        .with_context(|| format!("reading config {digest}"))?;
    ImageConfig::parse(&bytes).with_context(|| format!("parsing config {digest}"))
}
/// An index's entry platforms (attestations and unknown/unknown skipped, duplicates once),
/// or a single image's platform from its config.
pub fn platforms(store: &Store, digest: &Digest) -> Result<Vec<String>> {
    let (_, view) = store.manifest(digest)?;
    let mut out: Vec<String> = Vec::new();
    match view.kind {
        ManifestKind::Index => {
            for d in &view.manifests {
                if d.attests().is_some() {
                    continue;
                }
                if let Some(p) = d.platform.as_ref().filter(|p| !p.is_unknown()) {
                    let s = p.to_string();
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        ManifestKind::Image => {
            if let Some(c) = view
                .config
                .as_ref()
                .filter(|c| mt::kind(&c.media_type) == mt::Kind::Config)
            {
                if store.record(&c.digest)?.is_some() {
                    let cfg = read(store, &c.digest)?;
                    let p = cfg.platform();
                    if !p.os.is_empty() && !p.architecture.is_empty() && !p.is_unknown() {
                        out.push(p.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

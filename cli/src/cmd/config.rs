//! Image configs, read-only, from the store: the parsing is sealift-oci's
//! [`ImageConfig`]; this file only reads bytes and shapes errors for the CLI.

use anyhow::{Context as _, Result};
use sealift_oci::config::{ConfigError, MAX_CONFIG_SIZE};
use sealift_oci::Digest;
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

//! Image configs, read-only: the few fields the CLI shows.

use anyhow::{Context as _, Result};
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestKind, Platform};
use sealift_store::Store;
use serde::Deserialize;

/// Configs are small; this bound only stops a mislabelled layer from being read whole.
const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// The parts of an image config (OCI or Docker) that `images` and `inspect` show.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Creation time, as written (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// How a container runs.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Layer content digests.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` inside an image config. Docker writes `null` for empty lists.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunConfig {
    /// Entrypoint.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Environment.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

/// `rootfs` inside an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    /// DiffIDs, bottom layer first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: None,
            variant: self.variant.clone(),
        }
    }

    /// DiffIDs, parsed; a malformed one is an error naming the config.
    pub fn diff_ids(&self, config: &Digest) -> Result<Vec<Digest>> {
        let Some(rootfs) = &self.rootfs else {
            return Ok(Vec::new());
        };
        rootfs
            .diff_ids
            .iter()
            .map(|s| {
                s.parse::<Digest>()
                    .with_context(|| format!("config {config}: DiffID {s:?}"))
            })
            .collect()
    }
}

/// Whether a config descriptor is an image config (not an artifact's config).
pub fn is_image_config(d: &Descriptor) -> bool {
    matches!(d.media_type.as_str(), mt::OCI_CONFIG | mt::DOCKER_CONFIG)
}

/// Read and parse an image config from the store.
pub fn read(store: &Store, digest: &Digest) -> Result<ImageConfig> {
    let bytes = store
        .read_small(digest, MAX_CONFIG_SIZE)
        .with_context(|| format!("reading config {digest}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing config {digest}"))
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
            if let Some(c) = view.config.as_ref().filter(|c| is_image_config(c)) {
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

//! Per-manifest summaries: what a listing shows of a manifest that is fixed by its content
//! (today its platforms), kept in the `summaries` tree so that `images` over 10k tags does
//! not read and parse 10k manifests and configs again (a quarter of its time before).
//!
//! A summary is a function of content-addressed bytes, so it never goes stale and needs no
//! transaction: it is written after the manifest's commit, or for a manifest stored before
//! summaries existed the first time it is asked for, and GC removes it with the manifest.
//! Losing one (a crash before the next flush) only means computing it again.

use crate::error::{Error, Result};
use crate::record::{self, ManifestSummary};
use crate::store::Store;
use sealift_oci::config::{ImageConfig, MAX_CONFIG_SIZE};
use sealift_oci::manifest::{ManifestKind, ManifestView};
use sealift_oci::media_type as mt;
use sealift_oci::Digest;

impl Store {
    /// The platforms of a stored manifest: an index's entry platforms (attestations and
    /// unknown/unknown skipped, duplicates once, in entry order), or an image's from its
    /// config; none for an artifact. From the summary when there is one.
    pub fn platforms(&self, digest: &Digest) -> Result<Vec<String>> {
        if let Some(v) = self.summaries.get(digest.to_key())? {
            return Ok(record::decode::<ManifestSummary>("summaries", &v)?.platforms);
        }
        let (_, view) = self.manifest(digest)?;
        let summary = self.summarize(&view)?;
        let platforms = summary.as_ref().map(|s| s.platforms.clone());
        if let Some(s) = summary {
            self.keep_summary(digest, &s);
        }
        Ok(platforms.unwrap_or_default())
    }

    /// Write the summary of a manifest just committed (best effort: a missing one is
    /// computed again when asked for).
    pub(crate) fn summarize_committed(&self, digest: &Digest, view: &ManifestView) {
        match self.summarize(view) {
            Ok(Some(s)) => self.keep_summary(digest, &s),
            Ok(None) => {}
            Err(e) => tracing::debug!("summary of {digest}: {e}"),
        }
    }

    fn keep_summary(&self, digest: &Digest, s: &ManifestSummary) {
        if let Err(e) = self.summaries.insert(digest.to_key(), record::encode(s)) {
            tracing::debug!("keeping the summary of {digest}: {e}");
        }
    }

    /// The summary of `view`; `None` when part of it is not in the store (an image whose
    /// config is absent), so that nothing incomplete is kept.
    fn summarize(&self, view: &ManifestView) -> Result<Option<ManifestSummary>> {
        let mut platforms: Vec<String> = Vec::new();
        match view.kind {
            ManifestKind::Index => {
                for d in &view.manifests {
                    if d.attests().is_some() {
                        continue;
                    }
                    if let Some(p) = d.platform.as_ref().filter(|p| !p.is_unknown()) {
                        let s = p.to_string();
                        if !platforms.contains(&s) {
                            platforms.push(s);
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
                    let bytes = match self.read_small(&c.digest, MAX_CONFIG_SIZE as u64) {
                        Err(Error::NotFound(_)) => return Ok(None),
                        r => r?,
                    };
                    let cfg = ImageConfig::parse(&bytes).map_err(|source| Error::Config {
                        digest: c.digest.clone(),
                        source,
                    })?;
                    let p = cfg.platform();
                    if !p.os.is_empty() && !p.architecture.is_empty() && !p.is_unknown() {
                        platforms.push(p.to_string());
                    }
                }
            }
        }
        Ok(Some(ManifestSummary { platforms }))
    }
}

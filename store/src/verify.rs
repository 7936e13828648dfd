//! Checking the store against itself: records against files, the graph for completeness,
//! and (with `full`) every byte against its digest and every layer against its DiffID.

use std::fmt;
use std::time::Duration;

use crate::error::Result;
use crate::record::BlobRecord;
use crate::store::Store;
use sealift_oci::config::{ImageConfig, MAX_CONFIG_SIZE};
use sealift_oci::diffid::diff_id;
use sealift_oci::digest::{Digest, Hasher};
use sealift_oci::manifest::ManifestKind;
use sealift_oci::media_type::{self as mt, layer_compression};

/// What to check.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Re-hash every blob and recompute DiffIDs.
    pub full: bool,
    /// Remove orphan files and drop records whose bytes are gone or wrong.
    pub repair: bool,
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A record whose file is absent.
    MissingFile {
        /// The blob.
        digest: Digest,
    },
    /// A file whose size differs from its record.
    WrongSize {
        /// The blob.
        digest: Digest,
        /// Recorded size.
        expected: u64,
        /// File size.
        actual: u64,
    },
    /// A file whose bytes hash to something else.
    WrongDigest {
        /// The blob.
        digest: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A manifest whose required child is absent.
    MissingChild {
        /// The manifest.
        parent: Digest,
        /// The child.
        child: Digest,
    },
    /// A manifest file that no longer parses.
    BadManifest {
        /// The manifest.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// A layer whose uncompressed content does not match the config's DiffID.
    WrongDiffId {
        /// The image manifest.
        manifest: Digest,
        /// The layer.
        layer: Digest,
        /// From the config.
        expected: String,
        /// Computed.
        actual: Digest,
    },
    /// The config lists a different number of DiffIDs than the manifest has layers.
    DiffIdCount {
        /// The image manifest.
        manifest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// DiffIDs in the config.
        diff_ids: usize,
    },
    /// A layer that does not decompress as its media type says.
    BadLayer {
        /// The image manifest.
        manifest: Digest,
        /// The layer.
        layer: Digest,
        /// Why.
        reason: String,
    },
    /// A tag whose target is not in the store.
    DanglingTag {
        /// `repo:tag`.
        reference: String,
        /// The target.
        digest: Digest,
    },
    /// A file under blobs/ that no record names.
    OrphanFile {
        /// Its path.
        path: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingFile { digest } => {
                write!(f, "{digest}: recorded but its file is missing")
            }
            Problem::WrongSize {
                digest,
                expected,
                actual,
            } => write!(
                f,
                "{digest}: file has {actual} bytes, record says {expected}"
            ),
            Problem::WrongDigest { digest, actual } => {
                write!(f, "{digest}: file content hashes to {actual}")
            }
            Problem::MissingChild { parent, child } => {
                write!(
                    f,
                    "{parent}: required child {child} is missing (image is broken)"
                )
            }
            Problem::BadManifest { digest, reason } => {
                write!(f, "{digest}: manifest unreadable: {reason}")
            }
            Problem::WrongDiffId {
                manifest,
                layer,
                expected,
                actual,
            } => write!(
                f,
                "{manifest}: layer {layer} uncompresses to {actual}, config's DiffID is {expected}"
            ),
            Problem::DiffIdCount {
                manifest,
                layers,
                diff_ids,
            } => write!(
                f,
                "{manifest}: {layers} layers but the config lists {diff_ids} DiffIDs"
            ),
            Problem::BadLayer {
                manifest,
                layer,
                reason,
            } => write!(f, "{manifest}: layer {layer} does not decompress: {reason}"),
            Problem::DanglingTag { reference, digest } => {
                write!(
                    f,
                    "{reference}: points at {digest}, which is not in the store"
                )
            }
            Problem::OrphanFile { path } => write!(f, "{path}: file with no record"),
        }
    }
}

/// The outcome of a verify run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub checked: usize,
    /// Bytes re-hashed (full only).
    pub hashed_bytes: u64,
    /// Problems found (before any repair).
    pub problems: Vec<Problem>,
    /// What `repair` did, one line each.
    pub repaired: Vec<String>,
}

impl Store {
    /// Check the store. See [`VerifyOptions`].
    pub fn verify(&self, opts: VerifyOptions) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut bad_records: Vec<(Digest, BlobRecord, bool)> = Vec::new();
        let records: Vec<(Digest, BlobRecord)> = self.records().collect::<Result<_>>()?;
        // Listed after the records were read: every record's bytes were published before
        // it was committed, so the listing holds them (an object store answers a listing
        // page per 1,000 objects instead of a HEAD per record).
        let presence = self.presence_for(records.len())?;
        for (d, rec) in &records {
            report.checked += 1;
            let len = match presence.size(self, d)? {
                Some(len) => len,
                None => {
                    report
                        .problems
                        .push(Problem::MissingFile { digest: d.clone() });
                    bad_records.push((d.clone(), rec.clone(), false));
                    continue;
                }
            };
            if len != rec.size {
                report.problems.push(Problem::WrongSize {
                    digest: d.clone(),
                    expected: rec.size,
                    actual: len,
                });
                bad_records.push((d.clone(), rec.clone(), true));
                continue;
            }
            if opts.full {
                let actual = self.hash_blob(d)?;
                report.hashed_bytes += rec.size;
                if &actual != d {
                    report.problems.push(Problem::WrongDigest {
                        digest: d.clone(),
                        actual,
                    });
                    bad_records.push((d.clone(), rec.clone(), true));
                    continue;
                }
            }
        }
        let bad: std::collections::HashSet<&Digest> =
            bad_records.iter().map(|(d, _, _)| d).collect();
        let attestations = if opts.full {
            self.attestation_manifests(&records, &bad)?
        } else {
            std::collections::HashSet::new()
        };
        for (d, rec) in &records {
            if !rec.manifest || bad.contains(d) {
                continue;
            }
            for e in self.edges(d)? {
                if e.required && (bad.contains(&e.child) || self.record(&e.child)?.is_none()) {
                    report.problems.push(Problem::MissingChild {
                        parent: d.clone(),
                        child: e.child,
                    });
                }
            }
            if opts.full && !attestations.contains(d) {
                self.check_diff_ids(d, &bad, &mut report)?;
            }
        }
        for t in self.tags()? {
            if self.record(&t.digest)?.is_none() || bad.contains(&t.digest) {
                report.problems.push(Problem::DanglingTag {
                    reference: format!("{}:{}", t.repo, t.tag),
                    digest: t.digest,
                });
            }
        }
        for path in self.sweep_orphan_files(true, Duration::ZERO)? {
            report.problems.push(Problem::OrphanFile { path });
        }
        if opts.repair {
            for (d, rec, remove_file) in &bad_records {
                let _s = self.stripe(d);
                self.drop_record(d, rec)?;
                // A replica drops its record only: the bytes are the writer's.
                if *remove_file && !self.is_replica() {
                    self.backend.delete(d)?;
                }
                report
                    .repaired
                    .push(format!("dropped record {d} (its bytes are gone or wrong)"));
            }
            for path in self.sweep_orphan_files(false, Duration::ZERO)? {
                report.repaired.push(format!("removed orphan file {path}"));
            }
            self.db.flush()?;
        }
        Ok(report)
    }

    /// Manifests some index in the store lists as a buildx attestation manifest. BuildKit
    /// documents their config as present for compatibility only, to be ignored: its layers
    /// are in-toto statements, not filesystem layers, so there are no DiffIDs to check.
    fn attestation_manifests(
        &self,
        records: &[(Digest, BlobRecord)],
        bad: &std::collections::HashSet<&Digest>,
    ) -> Result<std::collections::HashSet<Digest>> {
        let mut out = std::collections::HashSet::new();
        for (d, rec) in records {
            if !rec.manifest || bad.contains(d) || mt::kind(&rec.media_type) != mt::Kind::Index {
                continue;
            }
            // An index that does not parse is reported by `check_diff_ids`.
            if let Ok((_, view)) = self.manifest(d) {
                out.extend(
                    view.manifests
                        .iter()
                        .filter(|e| e.attests().is_some())
                        .map(|e| e.digest.clone()),
                );
            }
        }
        Ok(out)
    }

    fn check_diff_ids(
        &self,
        d: &Digest,
        bad: &std::collections::HashSet<&Digest>,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let view = match self.manifest(d) {
            Ok((_, v)) => v,
            Err(e) => {
                report.problems.push(Problem::BadManifest {
                    digest: d.clone(),
                    reason: e.to_string(),
                });
                return Ok(());
            }
        };
        let Some(config) = view.config.as_ref() else {
            return Ok(());
        };
        // DiffIDs describe filesystem layers only: an artifact, or a manifest with any other
        // kind of layer (in-toto statements of an attestation whose index is elsewhere, an
        // artifact's blobs), is not a filesystem image, and its config's rootfs (if any) is
        // not about those layers.
        if view.artifact_type.is_some()
            || !view
                .layers
                .iter()
                .all(|l| mt::is_filesystem_layer(&l.media_type))
        {
            return Ok(());
        }
        if view.kind != ManifestKind::Image
            || !matches!(
                config.media_type.as_str(),
                mt::OCI_CONFIG | mt::DOCKER_CONFIG
            )
            || bad.contains(&config.digest)
            || self.record(&config.digest)?.is_none()
        {
            return Ok(());
        }
        let cfg = self.read_small(&config.digest, MAX_CONFIG_SIZE as u64)?;
        // A config that does not parse lists no DiffIDs: reported as a count mismatch.
        let cfg = ImageConfig::parse(&cfg).unwrap_or_default();
        let diff_ids = cfg.diff_id_strings();
        if diff_ids.len() != view.layers.len() {
            report.problems.push(Problem::DiffIdCount {
                manifest: d.clone(),
                layers: view.layers.len(),
                diff_ids: diff_ids.len(),
            });
            return Ok(());
        }
        for (layer, expected) in view.layers.iter().zip(diff_ids) {
            let Some(c) = layer_compression(&layer.media_type) else {
                continue;
            };
            if bad.contains(&layer.digest) || self.record(&layer.digest)?.is_none() {
                continue;
            }
            let f = self.backend.open(&layer.digest, 0)?;
            let actual = match diff_id(f, c) {
                Ok(a) => a,
                Err(e) => {
                    report.problems.push(Problem::BadLayer {
                        manifest: d.clone(),
                        layer: layer.digest.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if actual.to_string() != expected {
                report.problems.push(Problem::WrongDiffId {
                    manifest: d.clone(),
                    layer: layer.digest.clone(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

impl Store {
    /// Re-hash a blob's published bytes, streamed from the backend.
    fn hash_blob(&self, d: &Digest) -> Result<Digest> {
        let mut h = Hasher::new(d.algorithm());
        crate::backend::read_all(self.backend.as_ref(), d, &mut |chunk| {
            h.update(chunk);
            Ok(())
        })?;
        Ok(h.finish())
    }
}

//! Disk usage: what images would cost without sharing (logical) against what the store
//! holds (physical).

use std::collections::{HashMap, HashSet};

use crate::blob::join;
use crate::error::Result;
use crate::graph::{key_digest, Visit};
use crate::record::{self, BlobRecordRef};
use crate::store::Store;
use crate::tag::TagEntry;
use sealift_oci::digest::Digest;
use sealift_oci::media_type::is_manifest;

/// Usage of one repository.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RepoUsage {
    /// The repository.
    pub repo: String,
    /// Tags in it.
    pub tags: usize,
    /// Sum of each tagged image's size.
    pub logical: u64,
    /// Bytes of the distinct blobs its images reach.
    pub physical: u64,
}

/// A blob reached by several images.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SharedBlob {
    /// Digest.
    pub digest: Digest,
    /// Size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// How many tagged images reach it.
    pub images: usize,
}

/// The whole report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DuReport {
    /// Sum over tags of each image's size (what separate copies would take).
    pub logical: u64,
    /// Bytes of every blob in the store, each counted once.
    pub physical: u64,
    /// Number of blobs and manifests.
    pub blobs: usize,
    /// Per repository.
    pub repos: Vec<RepoUsage>,
    /// The most-shared blobs, most shared first.
    pub shared: Vec<SharedBlob>,
}

/// What the walks of some tags found.
#[derive(Default)]
struct Usage {
    /// Sum of each tagged image's size.
    logical: u64,
    /// Per repository, in key order.
    repos: Vec<RepoUsage>,
    /// Per blob that is not a manifest: how many tagged images reach it, and its size.
    uses: HashMap<Vec<u8>, (usize, u64)>,
}

impl Store {
    /// Compute usage; `top` bounds the shared list.
    ///
    /// Tags come in key order, which groups them by repository, so a repository's distinct
    /// blobs are counted with a set that lives only while its tags are read; across the
    /// store only a count and a size per shared-candidate blob are kept, and records are
    /// read without copying what is not needed. Each tag's graph is walked on its own (a
    /// walk is a few key lookups), instead of keeping every graph in memory.
    pub fn du(&self, top: usize) -> Result<DuReport> {
        let tags = self.tags()?;
        // Two halves that split no repository: each is walked on a thread of its own, and
        // the scan of every record for the store's total on a third; they overlap, since
        // each is reads of the metadata and nothing else.
        let mut mid = tags.len() / 2;
        while mid > 0 && mid < tags.len() && tags[mid].repo == tags[mid - 1].repo {
            mid += 1;
        }
        let (first, second) = tags.split_at(mid);
        let (total, first, second) = std::thread::scope(|scope| {
            let total = scope.spawn(|| -> Result<(u64, usize)> {
                let (mut bytes, mut blobs) = (0, 0);
                for item in self.blobs.iter() {
                    let (_, v) = item?;
                    bytes += record::decode_ref::<BlobRecordRef<'_>>("blobs", &v)?.size;
                    blobs += 1;
                }
                Ok((bytes, blobs))
            });
            let second = scope.spawn(|| self.usage_of(second));
            let first = self.usage_of(first);
            (join(total), first, join(second))
        });
        let (mut usage, second) = (first?, second?);
        usage.logical += second.logical;
        usage.repos.extend(second.repos);
        for (k, (n, s)) in second.uses {
            usage.uses.entry(k).or_insert((0, s)).0 += n;
        }
        self.finish_usage(usage, total?, top)
    }

    /// Usage of the repositories of `tags` (in key order; no repository elsewhere).
    fn usage_of(&self, tags: &[TagEntry]) -> Result<Usage> {
        let mut out = Usage::default();
        let mut repo: Option<(RepoUsage, HashSet<Vec<u8>>)> = None;
        // One tag's graph: (key, size, whether it is a manifest).
        let mut nodes: Vec<(Vec<u8>, u64, bool)> = Vec::new();
        for t in tags {
            if repo.as_ref().is_none_or(|(u, _)| u.repo != t.repo.as_str()) {
                out.repos.extend(repo.take().map(|(u, _)| u));
                let usage = RepoUsage {
                    repo: t.repo.to_string(),
                    ..Default::default()
                };
                repo = Some((usage, HashSet::new()));
            }
            let Some((usage, distinct)) = repo.as_mut() else {
                continue;
            };
            nodes.clear();
            let walked = self.walk_sized(&t.digest, true, &mut |node| {
                match node {
                    Visit::Record { key, value } => {
                        let rec: BlobRecordRef<'_> = record::decode_ref("blobs", value)?;
                        nodes.push((key.to_vec(), rec.size, is_manifest(rec.media_type)));
                    }
                    // Behind a required edge: recorded as long as its manifest is. In a
                    // store damaged by hand (or repaired by `verify --repair`) it may not
                    // be; du then counts it at the size its manifest gives, and `images`
                    // and `verify` name the damage.
                    Visit::Leaf { key, size, .. } => nodes.push((key.to_vec(), size, false)),
                    Visit::Missing { .. } => {}
                }
                Ok(())
            });
            // A tag whose graph cannot be read counts as empty (`verify` reports it).
            if walked.is_err() {
                nodes.clear();
            }
            let size: u64 = nodes.iter().map(|n| n.1).sum();
            out.logical += size;
            usage.tags += 1;
            usage.logical += size;
            for (k, s, manifest) in nodes.drain(..) {
                if !manifest {
                    out.uses.entry(k.clone()).or_insert((0, s)).0 += 1;
                }
                if distinct.insert(k) {
                    usage.physical += s;
                }
            }
        }
        out.repos.extend(repo.map(|(u, _)| u));
        Ok(out)
    }

    /// The report from what [`Store::usage_of`] found: the `top` most-shared blobs.
    fn finish_usage(
        &self,
        usage: Usage,
        (physical, blobs): (u64, usize),
        top: usize,
    ) -> Result<DuReport> {
        let mut report = DuReport {
            logical: usage.logical,
            physical,
            blobs,
            repos: usage.repos,
            shared: Vec::new(),
        };
        let mut shared: Vec<(Vec<u8>, usize, u64)> = usage
            .uses
            .into_iter()
            .filter(|(_, (n, _))| *n > 1)
            .map(|(k, (n, s))| (k, n, s))
            .collect();
        // Key order is digest order (algorithm, then the hash's bytes, as its hex sorts).
        shared.sort_by(|a, b| {
            (b.1 as u128 * b.2 as u128)
                .cmp(&(a.1 as u128 * a.2 as u128))
                .then(a.0.cmp(&b.0))
        });
        shared.truncate(top);
        for (k, images, size) in shared {
            let digest = key_digest(&k)?;
            let media_type = self
                .record(&digest)?
                .map(|r| r.media_type)
                .unwrap_or_default();
            report.shared.push(SharedBlob {
                digest,
                size,
                media_type,
                images,
            });
        }
        Ok(report)
    }
}

//! Disk usage: what images would cost without sharing (logical) against what the store
//! holds (physical).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::Result;
use crate::store::Store;
use sealift_oci::digest::Digest;

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

impl Store {
    /// Compute usage; `top` bounds the shared list.
    pub fn du(&self, top: usize) -> Result<DuReport> {
        let mut report = DuReport::default();
        for item in self.records() {
            let (_, rec) = item?;
            report.physical += rec.size;
            report.blobs += 1;
        }
        let mut repos: BTreeMap<String, (RepoUsage, HashSet<Digest>)> = BTreeMap::new();
        let mut uses: HashMap<Digest, (usize, u64, String)> = HashMap::new();
        let mut graphs: HashMap<Digest, Vec<(Digest, u64, String)>> = HashMap::new();
        for t in self.tags()? {
            if !graphs.contains_key(&t.digest) {
                let nodes = match self.walk(&t.digest) {
                    Ok((nodes, _)) => nodes
                        .into_iter()
                        .map(|(d, r)| (d, r.size, r.media_type))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                graphs.insert(t.digest.clone(), nodes);
            }
            let nodes = &graphs[&t.digest];
            let size: u64 = nodes.iter().map(|n| n.1).sum();
            report.logical += size;
            let entry = repos.entry(t.repo.to_string()).or_default();
            entry.0.repo = t.repo.to_string();
            entry.0.tags += 1;
            entry.0.logical += size;
            for (d, s, m) in nodes {
                if entry.1.insert(d.clone()) {
                    entry.0.physical += s;
                }
                let u = uses.entry(d.clone()).or_insert((0, *s, m.clone()));
                u.0 += 1;
            }
        }
        report.repos = repos.into_values().map(|(u, _)| u).collect();
        let mut shared: Vec<SharedBlob> = uses
            .into_iter()
            .filter(|(_, (n, _, m))| *n > 1 && !sealift_oci::media_type::is_manifest(m))
            .map(|(digest, (images, size, media_type))| SharedBlob {
                digest,
                size,
                media_type,
                images,
            })
            .collect();
        shared.sort_by(|a, b| {
            (b.images as u128 * b.size as u128)
                .cmp(&(a.images as u128 * a.size as u128))
                .then(a.digest.cmp(&b.digest))
        });
        shared.truncate(top);
        report.shared = shared;
        Ok(report)
    }
}

//! What each repository reaches: the digests served under its name.
//!
//! A repository reaches the graphs of its tags, and every referrer (recursively) of every
//! manifest in them. The set is built on first use and kept until the generation moves:
//! [`Reach::invalidate`] is called for every change of the store's `tags` or `referrers`
//! tree ([`sealift_store::watch`]). A miss on a set older than [`RECHECK_AFTER`] rebuilds
//! it once more, which covers a tag set a moment before the change notice was handled,
//! without letting a stream of unknown digests rebuild it on every request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealift_store::{Digest, Repo, Store};

/// How old a set must be before a miss rebuilds it.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Repositories kept; past this the cache is emptied (it rebuilds on demand).
const MAX_REPOS: usize = 4096;

struct Entry {
    generation: u64,
    built: Instant,
    digests: HashSet<Digest>,
}

/// The per-repository cache.
pub struct Reach {
    generation: AtomicU64,
    cache: Mutex<HashMap<Repo, Arc<Entry>>>,
}

impl Reach {
    /// An empty cache.
    pub fn new() -> Reach {
        Reach {
            generation: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Something changed: every set is stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `repo` reaches `digest`. Blocking (reads sled): call from a blocking task.
    pub fn contains(
        &self,
        store: &Store,
        repo: &Repo,
        digest: &Digest,
    ) -> sealift_store::Result<bool> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(repo)
            .cloned();
        if let Some(e) = &cached {
            if e.generation == generation
                && (e.digests.contains(digest) || e.built.elapsed() < RECHECK_AFTER)
            {
                return Ok(e.digests.contains(digest));
            }
        }
        let entry = Arc::new(Entry {
            generation,
            built: Instant::now(),
            digests: build(store, repo)?,
        });
        let found = entry.digests.contains(digest);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_REPOS {
            cache.clear();
        }
        cache.insert(repo.clone(), entry);
        Ok(found)
    }
}

/// Walk every tag of `repo`, then the referrers of every manifest reached, until nothing
/// new turns up.
fn build(store: &Store, repo: &Repo) -> sealift_store::Result<HashSet<Digest>> {
    let mut seen = HashSet::new();
    let mut todo: Vec<Digest> = store
        .tags()?
        .into_iter()
        .filter(|t| &t.repo == repo)
        .map(|t| t.digest)
        .collect();
    while let Some(root) = todo.pop() {
        if seen.contains(&root) {
            continue;
        }
        let nodes = match store.walk(&root) {
            Ok((nodes, _missing)) => nodes,
            // Collected since the tag listing (or a referrer whose record went): nothing
            // to serve there.
            Err(sealift_store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        for (d, rec) in nodes {
            if rec.manifest {
                todo.extend(store.referrers(&d)?);
            }
            seen.insert(d);
        }
    }
    Ok(seen)
}

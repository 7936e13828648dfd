//! What each repository reaches: the digests served under its name.
//!
//! A repository reaches the graphs of its tags, and every referrer (recursively) of every
//! manifest in them. The set is built on first use and kept until the generation moves:
//! the server's watch task bumps it for every change of the store's `tags` or `referrers`
//! tree ([`sealift_store::watch`]). A miss first takes in, synchronously, the changes whose
//! notice the task has not handled yet, so a digest tagged a moment ago is never refused,
//! while a stream of unknown digests costs a lookup each, not a rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use sealift_oci::{Digest, Repo};
use sealift_store::watch::ReachWatch;
use sealift_store::Store;

/// Repositories kept; past this the cache is emptied (it rebuilds on demand).
const MAX_REPOS: usize = 4096;

struct Entry {
    generation: u64,
    digests: HashSet<Digest>,
}

/// The per-repository cache.
pub struct Reach {
    generation: AtomicU64,
    cache: Mutex<HashMap<Repo, Arc<Entry>>>,
    watch: Mutex<Option<ReachWatch>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reach {
    /// An empty cache.
    pub fn new() -> Reach {
        Reach {
            generation: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
            watch: Mutex::new(None),
        }
    }

    /// Follow the store's changes through `watch` (`None`: stop following, and release the
    /// subscription so it never holds up the store's writers).
    pub fn set_watch(&self, watch: Option<ReachWatch>) {
        *lock(&self.watch) = watch;
        self.invalidate();
    }

    /// Wait for the next change; `Ready(false)` once the store is closed or the watch gone.
    pub fn poll_watch(&self, cx: &mut Context<'_>) -> Poll<bool> {
        match lock(&self.watch).as_mut() {
            Some(w) => w.poll_changed(cx),
            None => Poll::Ready(false),
        }
    }

    /// Something changed: every set is stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Take in the changes already made whose notice has not been handled yet.
    fn catch_up(&self) {
        if lock(&self.watch).as_mut().is_some_and(|w| w.take_pending()) {
            self.invalidate();
        }
    }

    /// Whether `repo` reaches `digest`. Blocking (reads the store's metadata): call from a blocking task.
    pub fn contains(
        &self,
        store: &Store,
        repo: &Repo,
        digest: &Digest,
    ) -> sealift_store::Result<bool> {
        let cached = lock(&self.cache).get(repo).cloned();
        if let Some(e) = &cached {
            if e.generation == self.generation.load(Ordering::Acquire) {
                if e.digests.contains(digest) {
                    return Ok(true);
                }
                self.catch_up();
                if e.generation == self.generation.load(Ordering::Acquire) {
                    return Ok(false);
                }
            }
        }
        // Read before building: a change during the build leaves the new set stale.
        let generation = self.generation.load(Ordering::Acquire);
        let entry = Arc::new(Entry {
            generation,
            digests: build(store, repo)?,
        });
        let found = entry.digests.contains(digest);
        let mut cache = lock(&self.cache);
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

//! The metadata engine: named trees of byte keys and byte values, in one redb file
//! (`meta.redb`), with the small part of a tree API the store uses: reads, single writes,
//! batches, compare-and-swap, transactions over several trees, a durability barrier
//! ([`Db::flush`]) and change subscriptions.
//!
//! Why redb (it replaced sled in format 2, see ARCHITECTURE.md): a read is a walk over
//! pages that are used as they are, not deserialised into a cache of nodes, so listing
//! 10k images touches a few MiB instead of the whole record tree; the file holds a third
//! of sled's bytes; and a commit is either in the file after a crash or not at all.
//!
//! Durability follows the store's own rule, "durable before it counts": every commit is
//! made without an fsync (`Durability::None`, kept across a crash only once a later commit
//! is durable), and [`Db::flush`] is the barrier the store calls where something must
//! survive a crash (after a put, before a GC unlink, at close). A background thread also
//! flushes within half a second of a change, so a killed process loses at most that much
//! of what nobody flushed (sled's interval, which the store relied on for the same).
//!
//! Writers are serialised by redb (one write transaction at a time, readers never wait);
//! a transaction's closure therefore runs once and must not start another write.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

mod snapshot;
mod tx;
mod watch;

pub use tx::{ConflictableTransactionError, TransactionError, Transactional, TransactionalTree};
pub use watch::Subscriber;
use watch::{WatchInner, WatchState};

/// A value (or key) read out of a tree.
pub type Value = Vec<u8>;

/// An engine failure (I/O, a corrupt file, the file held by another handle).
#[derive(Debug)]
pub struct Error(pub redb::Error);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl<E: Into<redb::Error>> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.into())
    }
}

/// A result of the engine.
pub type Result<T> = std::result::Result<T, Error>;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// How often the background thread makes changes durable that nobody flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Commits after which one is made durable whatever the time (see [`Db::commit`]).
const FLUSH_AFTER_COMMITS: u32 = 1024;

struct Inner {
    db: redb::Database,
    /// A commit since the last durable one.
    dirty: AtomicBool,
    /// Commits since the last durable one (see [`FLUSH_AFTER_COMMITS`]).
    since_flush: AtomicU32,
    /// Held across a durable commit, so that a flush that finds nothing dirty because
    /// another flush took it waits for that one's commit to be on disk.
    flushing: Mutex<()>,
    watchers: Mutex<Vec<Weak<WatchState>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let watchers = self.watchers.get_mut().unwrap_or_else(|p| p.into_inner());
        for w in watchers.drain(..).filter_map(|w| w.upgrade()) {
            w.close();
        }
    }
}

/// The open database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// One named tree of a [`Db`].
#[derive(Clone)]
pub struct Tree {
    db: Db,
    name: &'static str,
}

impl Db {
    /// Open (creating if needed) the database file at `path`, with a page cache of
    /// `cache_bytes`. `DatabaseAlreadyOpen` means another handle (in this process: one
    /// being dropped, whose flusher still holds it) has the file; the caller may retry.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Db> {
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let inner = Arc::new(Inner {
            db,
            dirty: AtomicBool::new(false),
            since_flush: AtomicU32::new(0),
            flushing: Mutex::new(()),
            watchers: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        let flusher = std::thread::Builder::new()
            .name("sealift-kv-flush".into())
            .spawn(move || flush_in_background(weak));
        if let Err(e) = flusher {
            tracing::warn!("no background flush thread ({e}): changes are durable at flush");
        }
        Ok(Db { inner })
    }

    /// The tree `name`, created if it does not exist (its creation is durable at the next
    /// flush).
    pub fn open_tree(&self, name: &'static str) -> Result<Tree> {
        let exists = {
            let tx = self.inner.db.begin_read()?;
            match tx.open_table(def(name)) {
                Ok(_) => true,
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if !exists {
            let tx = self.begin_write()?;
            tx.open_table(def(name))?;
            self.commit(tx)?;
        }
        Ok(Tree {
            db: self.clone(),
            name,
        })
    }

    /// Make every commit so far durable (one fsync); nothing to do when nothing changed.
    pub fn flush(&self) -> Result<()> {
        let _one = self
            .inner
            .flushing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !self.inner.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.since_flush.store(0, Ordering::Release);
        let made = (|| {
            let mut tx = self.inner.db.begin_write()?;
            tx.set_durability(redb::Durability::Immediate)?;
            tx.commit()?;
            Ok(())
        })();
        if made.is_err() {
            self.inner.dirty.store(true, Ordering::Release);
        }
        made
    }

    /// A number never returned before by this database (from 1).
    pub fn generate_id(&self) -> Result<u64> {
        let tx = self.begin_write()?;
        let id = {
            let mut t = tx.open_table(def(IDS))?;
            let next = last_id(&t)? + 1;
            t.insert(&b"next"[..], &next.to_be_bytes()[..])?;
            next
        };
        self.commit(tx)?;
        Ok(id)
    }

    /// Make [`Db::generate_id`] return more than `at_least` from now on.
    pub fn reserve_ids(&self, at_least: u64) -> Result<()> {
        let tx = self.begin_write()?;
        {
            let mut t = tx.open_table(def(IDS))?;
            if last_id(&t)? < at_least {
                t.insert(&b"next"[..], &at_least.to_be_bytes()[..])?;
            }
        }
        self.commit(tx)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction> {
        let mut tx = self.inner.db.begin_write()?;
        tx.set_durability(redb::Durability::None)?;
        Ok(tx)
    }

    fn commit(&self, tx: redb::WriteTransaction) -> Result<()> {
        tx.commit()?;
        self.inner.dirty.store(true, Ordering::Release);
        // A page a commit copies stays allocated until a durable commit: a run of tiny
        // commits (a hold per blob of a large no-op copy: ~7k in the half second between
        // background flushes) would grow the file by hundreds of MB that it never gives
        // back. A durable commit every so many bounds that, for an fsync per this many.
        if self.inner.since_flush.fetch_add(1, Ordering::AcqRel) + 1 >= FLUSH_AFTER_COMMITS {
            self.flush()?;
        }
        Ok(())
    }

    fn changed(&self, tree: &str) {
        let mut watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        watchers.retain(|w| match w.upgrade() {
            Some(w) => {
                if w.tree == tree {
                    w.notify();
                }
                true
            }
            None => false,
        });
    }
}

/// The tree that holds [`Db::generate_id`]'s counter.
const IDS: &str = "ids";

/// The last id [`Db::generate_id`] returned (or [`Db::reserve_ids`] passed), 0 for none.
fn last_id(t: &redb::Table<&'static [u8], &'static [u8]>) -> Result<u64> {
    Ok(t.get(&b"next"[..])?
        .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or([0; 8])))
        .unwrap_or(0))
}

fn def(name: &'static str) -> Def {
    TableDefinition::new(name)
}

fn flush_in_background(db: Weak<Inner>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(inner) = db.upgrade() else { return };
        let db = Db { inner };
        if let Err(e) = db.flush() {
            tracing::warn!("flushing store metadata: {e}");
        }
    }
}

/// The successor of every key starting with `prefix`: the end of a prefix scan.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

impl Tree {
    fn read(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let tx = self.db.inner.db.begin_read()?;
        Ok(tx.open_table(def(self.name))?)
    }

    /// The value under `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        Ok(self.read()?.get(key.as_ref())?.map(|v| v.value().to_vec()))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.read()?.get(key.as_ref())?.is_some())
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.read()?.len()? as usize)
    }

    /// Whether the tree holds nothing.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.read()?.is_empty()?)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        self.range_bounds(Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let p = prefix.as_ref();
        self.range_bounds(Bound::Included(p.to_vec()), prefix_end(p))
    }

    fn range_bounds(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Iter {
        let range = self.read().and_then(|t| {
            let lo = lo.as_ref().map(Vec::as_slice);
            let hi = hi.as_ref().map(Vec::as_slice);
            Ok(t.range_owned((lo, hi))?)
        });
        match range {
            Ok(r) => Iter {
                inner: Some(r),
                err: None,
            },
            Err(e) => Iter {
                inner: None,
                err: Some(e),
            },
        }
    }

    /// Set `key` to `value`; the value it had.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.write(|t| {
            Ok(t.insert(key.as_ref(), value.as_ref())?
                .map(|v| v.value().to_vec()))
        })
    }

    /// Remove `key`; the value it had.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        self.write(|t| Ok(t.remove(key.as_ref())?.map(|v| v.value().to_vec())))
    }

    /// Apply every write of `batch` in one commit.
    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.write(|t| {
            for (k, v) in &batch.ops {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Make every commit so far durable (the whole database's, see [`Db::flush`]).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()
    }

    /// Be told of every change to this tree from now on.
    pub fn watch(&self) -> Subscriber {
        let state = Arc::new(WatchState {
            tree: self.name,
            inner: Mutex::new(WatchInner::default()),
        });
        self.db
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&state));
        Subscriber { state }
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<R>,
    ) -> Result<R> {
        let tx = self.db.begin_write()?;
        let r = {
            let mut t = tx.open_table(def(self.name))?;
            f(&mut t)?
        };
        self.db.commit(tx)?;
        self.db.changed(self.name);
        Ok(r)
    }
}

/// An iterator over a tree's entries (a read transaction of its own, kept until the
/// iterator is dropped: it sees the tree as it was when it started).
pub struct Iter {
    inner: Option<redb::OwnedRange<&'static [u8], &'static [u8]>>,
    err: Option<Error>,
}

impl Iter {
    /// Keys only.
    pub fn keys(self) -> impl Iterator<Item = Result<Value>> {
        self.map(|r| r.map(|(k, _)| k))
    }
}

impl Iterator for Iter {
    type Item = Result<(Value, Value)>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.err.take() {
            return Some(Err(e));
        }
        let next = self.inner.as_mut()?.next()?;
        Some(
            next.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(Error::from),
        )
    }
}

/// Writes applied together by [`Tree::apply_batch`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Set `key` to `value`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Remove `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().to_vec(), None));
    }
}

//! The store's on-disk format: its version, the metadata file, and the upgrade of a store
//! of format 1 (metadata in sled, `db/`) to format 2 (the same trees, keys and values in
//! redb, `meta.redb`), which runs inside [`crate::Store::open`], under the store's LOCK,
//! once.
//!
//! Crash safety comes from the order: the new file is written under a temporary name and
//! made durable, renamed into place, and only then does `VERSION` say 2 (written to a
//! temporary file, fsync'd, renamed). A kill before that rename leaves `VERSION` at 1 and
//! the old database untouched, so the next open upgrades again from the start; a kill
//! after it leaves only the old `db/`, which the next open removes.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Version of the on-disk layout (directories and trees). Written to `VERSION`. Format 1
/// kept the metadata in sled (`db/`); format 2 keeps the same trees in redb (`meta.redb`),
/// and an open of a format 1 store upgrades it ([`from_sled`]).
pub const FORMAT_VERSION: u32 = 2;

/// The metadata database file, under the store directory.
pub const META_FILE: &str = "meta.redb";

/// The format 1 database directory.
const OLD_DB: &str = "db";

/// Entries copied per write transaction.
const COPY_CHUNK: usize = 10_000;

/// Copy every sled tree of the store at `root` into a new `meta.redb`, then say format 2.
pub(crate) fn from_sled(root: &Path) -> Result<()> {
    let old = root.join(OLD_DB);
    let tmp = root.join(format!("{META_FILE}.upgrading"));
    let started = std::time::Instant::now();
    remove_snapshot_leftovers(&old);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing", &tmp)(e)),
    }
    let mut entries = 0u64;
    {
        let sled = sled::Config::new().path(&old).open()?;
        let db = crate::kv::Db::open(&tmp, 16 << 20)?;
        let mut max_lease = 0u64;
        for name in sled.tree_names() {
            if name.as_ref() == b"__sled__default" {
                continue;
            }
            let from = sled.open_tree(&name)?;
            if from.is_empty() {
                continue;
            }
            let name = String::from_utf8(name.to_vec()).map_err(|_| Error::Corrupt {
                tree: "meta",
                reason: "a sled tree whose name is not UTF-8".into(),
            })?;
            // Tree names are 'static in the store; an upgrade runs once a process.
            let name: &'static str = Box::leak(name.into_boxed_str());
            let to = db.open_tree(name)?;
            let mut batch = crate::kv::Batch::default();
            let mut n = 0;
            for item in from.iter() {
                let (k, v) = item?;
                if name == "leases" {
                    let id = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                    max_lease = max_lease.max(id);
                }
                batch.insert(&k, &v);
                n += 1;
                if n == COPY_CHUNK {
                    to.apply_batch(std::mem::take(&mut batch))?;
                    entries += n as u64;
                    n = 0;
                }
            }
            to.apply_batch(batch)?;
            entries += n as u64;
        }
        // Lease ids come from a counter; sled kept its own, so start past every id a
        // lease still holds.
        db.reserve_ids(max_lease)?;
        db.flush()?;
    }
    let meta = root.join(META_FILE);
    fs::rename(&tmp, &meta).map_err(Error::io("renaming into place", &meta))?;
    sync_dir(root)?;
    write_version(root)?;
    tracing::info!(
        "upgraded the store's metadata from format 1 (sled) to {FORMAT_VERSION} (redb): \
         {entries} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    remove_old_db(root);
    Ok(())
}

/// Remove a format 1 database that an upgrade left behind (killed after `VERSION` said 2).
pub(crate) fn remove_old_db(root: &Path) {
    let old = root.join(OLD_DB);
    if old.join("conf").exists() || old.join("db").exists() {
        if let Err(e) = fs::remove_dir_all(&old) {
            tracing::warn!("removing the old metadata {}: {e}", old.display());
        }
    }
}

/// Say in `VERSION` that the store at `root` is of this format (durably: temporary file,
/// fsync, rename, directory fsync), for a new store or one just upgraded.
pub(crate) fn write_version(root: &Path) -> Result<()> {
    let path = root.join("VERSION");
    let tmp = root.join("VERSION.tmp");
    let mut f = fs::File::create(&tmp).map_err(Error::io("writing", &tmp))?;
    f.write_all(format!("sealift-store {FORMAT_VERSION}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io("writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(Error::io("renaming into place", &path))?;
    sync_dir(root)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

/// sled 0.34 writes its snapshot to `snap.<lsn>.generating`, fsyncs, then renames it to
/// `snap.<lsn>`; the previous snapshot is removed only after that rename. A process killed,
/// or a disk filled, before the rename leaves a `.generating` file (empty, or without its
/// trailing length and CRC), and sled's open picks the highest-sorting `snap.*` file, finds
/// it corrupt and refuses every later open ("Read corrupted data at file offset None"). The
/// leftover is never needed: the previous snapshot is still there and the log still holds
/// everything after it. The store's LOCK is held, so no other process is writing one.
fn remove_snapshot_leftovers(db_dir: &Path) {
    let Ok(entries) = fs::read_dir(db_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match fs::remove_file(e.path()) {
                Ok(()) => tracing::info!("removed {name}, a snapshot sled left unfinished"),
                Err(err) => tracing::warn!("removing {}: {err}", e.path().display()),
            }
        }
    }
}

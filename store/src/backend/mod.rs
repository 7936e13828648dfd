//! Where blob bytes live: the boundary between the store (which hashes, verifies, records
//! and collects) and the thing that holds bytes keyed by digest (a local directory, or an
//! S3-compatible bucket).
//!
//! The store never trusts a backend with verification: it hashes every byte it hands to a
//! [`Staged`] write and publishes only what matched. A backend only has to keep three
//! promises:
//! - a staged write is invisible under the digest until [`Staged::publish`];
//! - [`Staged::seal`] makes the staged bytes durable (still invisible), so a publish after
//!   it cannot lose them; [`Staged::finish`] may come first, so that an ingest batch
//!   finishes many writes and then seals them all at once, their barriers overlapping;
//! - after [`Backend::sync`] returns, every publish before it survives a crash (the local
//!   backend fsyncs the blob directories; an object store's publish is durable already).
//!
//! What a killed process leaves is found again by the name the store recorded for each
//! staged write (the `ingests` tree): [`Backend::discard`] removes it. Published bytes with
//! no record (a kill between publish and commit) are orphans that GC removes after grace.

pub mod aws_config;
pub mod local;
pub mod open;
pub mod s3;
mod s3_client;
mod s3_staged;

pub use aws_config::S3Settings;
pub use open::ConnectOptions;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use sealift_oci::digest::Digest;

/// Where a store keeps its blob bytes, as given to `init --blobs` and remembered by the
/// store (in its metadata, key `blobs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `blobs/<alg>/<hex>` under the store directory (the default).
    Local,
    /// `s3://BUCKET/PREFIX`: objects `PREFIX/blobs/<alg>/<hex>` in an S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl std::str::FromStr for Location {
    type Err = Error;

    fn from_str(s: &str) -> Result<Location> {
        if s == "local" {
            return Ok(Location::Local);
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(Error::BadLocation {
                location: s.to_string(),
                reason: "expected `local` or `s3://BUCKET/PREFIX`".into(),
            });
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(Error::BadLocation {
                location: s.to_string(),
                reason: format!(
                    "bucket {bucket:?} is not a valid S3 bucket name (3-63 of a-z, 0-9, '-', '.')"
                ),
            });
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(Error::BadLocation {
                location: s.to_string(),
                reason: format!("prefix {prefix:?} has an empty, `.` or `..` segment"),
            });
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local => f.write_str("local"),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A blob's bytes, opened for reading from some offset.
pub enum BlobReader {
    /// A local file (callers may hard-link, stat or hand it to the kernel).
    File(File),
    /// A stream from elsewhere.
    Stream(Box<dyn ChunkStream>),
}

/// A stream of bytes that can also hand out its chunks as they arrive, without copying
/// them: a server passes an object store's response body on as it is (`read` would copy
/// every byte into the caller's buffer once more).
pub trait ChunkStream: Read + Send {
    /// The next chunk, of at most `max` bytes; `None` at the end. A stream that ends before
    /// its promised length is an error, never a silent end.
    fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<bytes::Bytes>>;
}

impl ChunkStream for std::io::Empty {
    fn next_chunk(&mut self, _max: usize) -> std::io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlobReader::File(f) => f.read(buf),
            BlobReader::Stream(s) => s.read(buf),
        }
    }
}

/// One published object, as a listing sees it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The digest its name spells, or `None` for a name that is not a digest.
    pub digest: Option<Digest>,
    /// Where it is, for messages and for [`Backend::delete_listed`]: a file's path, or
    /// `s3://BUCKET/KEY`.
    pub name: String,
    /// When it was last written, when the listing says (an object store's does); `None`
    /// where it would cost a call per object (a local directory: a stat per file is most
    /// of what a sweep of 100k files would spend, and a sweep with no grace period never
    /// looks). [`Backend::modified`] reads it.
    pub modified: Option<SystemTime>,
    /// Its size, when the listing says (an object store's does; a local directory's would
    /// cost a stat per file).
    pub size: Option<u64>,
}

/// A write in progress. The store writes exactly the bytes it hashed, then either seals
/// and publishes, or aborts. Dropping without publishing must leave nothing visible.
pub trait Staged: Send {
    /// The name the store records in `ingests`, from which [`Backend::discard`] finds the
    /// leftovers of a killed write.
    fn name(&self) -> &str;
    /// Append bytes.
    fn write(&mut self, buf: &[u8]) -> Result<()>;
    /// Every byte is written and the store has verified the digest: no more writes come.
    /// Not durable yet ([`Staged::seal`] is); a batch finishes each write as its digest
    /// checks out, then seals all of them together.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// Every byte is written and the store has verified the digest: make the bytes durable,
    /// still invisible under the digest. Callable after [`Staged::finish`], and again
    /// (then it has nothing left to do).
    fn seal(&mut self) -> Result<()>;
    /// Make the sealed bytes visible under their digest. Durable after [`Backend::sync`].
    fn publish(self: Box<Self>) -> Result<()>;
    /// Give up: remove whatever was staged.
    fn abort(self: Box<Self>);
    /// Whether the store must make the `ingests` record of this write durable before any
    /// byte is written: true when the leftovers of a kill can only be found again through
    /// that record (a multipart upload, which the bucket does not let the store list).
    fn needs_durable_record(&self) -> bool {
        false
    }
}

/// What holds blob bytes. Implementations in `local.rs` (and `s3.rs`); `open.rs` picks one.
/// All calls block; they may be made from any thread, including tokio's blocking pool.
pub trait Backend: Send + Sync {
    /// Where the bytes are, for messages (`local DIR`, `s3://BUCKET/PREFIX`).
    fn describe(&self) -> String;
    /// The location the store remembers.
    fn location(&self) -> Location;
    /// The size of the published bytes of `d`, or `None` when there are none.
    fn stat(&self, d: &Digest) -> Result<Option<u64>>;
    /// Read the published bytes of `d` from `offset` to the end.
    fn open(&self, d: &Digest, offset: u64) -> Result<BlobReader>;
    /// The local file holding `d`, when blobs are local files (exports hard-link it).
    fn local_path(&self, d: &Digest) -> Option<PathBuf>;
    /// Start writing `size` bytes that should hash to `d`. `unique` is a fresh random
    /// suffix the backend may use in its name.
    fn stage(&self, d: &Digest, size: u64, unique: &str) -> Result<Box<dyn Staged>>;
    /// Remove what the staged write recorded as `name` left behind (its process was
    /// killed, or its lease released). Absent leftovers are not an error.
    fn discard(&self, name: &str) -> Result<()>;
    /// Names of staged leftovers the backend can list (local: files under `ingest/`);
    /// those with no record are removed on open. Backends that cannot list return none.
    fn staged_names(&self) -> Result<Vec<String>>;
    /// Make every publish so far durable.
    fn sync(&self) -> Result<()>;
    /// Remove the published bytes of `d`. Absent bytes are not an error.
    fn delete(&self, d: &Digest) -> Result<()>;
    /// Remove a listed object that is not named by a digest.
    fn delete_listed(&self, item: &Listed) -> Result<()>;
    /// Visit every published object, a page at a time (memory does not grow with the
    /// number of objects). Stop early when `visit` returns `false`.
    fn list(&self, visit: &mut dyn FnMut(Listed) -> Result<bool>) -> Result<()>;
    /// When a listed object was last written: what the listing said, or asked now.
    fn modified(&self, item: &Listed) -> Result<SystemTime> {
        Ok(item.modified.unwrap_or(std::time::UNIX_EPOCH))
    }
    /// A URL from which a client can GET the bytes of `d` for `ttl`, when the backend can
    /// hand one out (the local backend cannot).
    fn presign(&self, d: &Digest, ttl: Duration) -> Result<Option<String>>;
    /// Whether a crash can leave a record whose bytes are not published. False for object
    /// stores, where publish happens before the record commits and cannot be undone by a
    /// power loss; true for local files (a defence against file systems that lose renames).
    fn check_records_after_crash(&self) -> bool;
}

/// Stream all of `d`'s published bytes from `backend`, 1 MiB at a time, to `each`
/// (verify re-hashes with it, migrate copies with it).
pub(crate) fn read_all(
    backend: &dyn Backend,
    d: &Digest,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut r = backend.open(d, 0)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|source| Error::Read {
            digest: d.clone(),
            source,
        })?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n])?;
    }
}

/// The object key or relative path of a digest: `blobs/<alg>/<hex>`.
pub fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

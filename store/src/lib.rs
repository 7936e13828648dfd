//! sealift-store: a content-addressed store for container images.
//!
//! Blob and manifest bytes live in files under `blobs/<alg>/<hex>`, written through
//! `ingest/`, hashed while streaming, fsync'd and renamed before their metadata commits.
//! Metadata (blob records, the manifest graph, referrers, tags, pins, leases) lives in redb.
//! GC collects what no tag, pin, lease or live subject reaches. See ARCHITECTURE.md.
//!
//! ```
//! use sealift_oci::Digest;
//! use sealift_store::Store;
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! let lease = store.lease("example", None).unwrap();
//! let bytes = b"hello";
//! let d = Digest::sha256(bytes);
//! store.put_blob(&lease, &d, 5, "application/octet-stream", &mut &bytes[..]).unwrap();
//! assert_eq!(store.read_small(&d, 1024).unwrap(), bytes);
//! ```

pub mod adopt;
pub mod backend;
pub mod batch;
pub mod blob;
pub mod du;
pub mod error;
pub mod fault;
pub mod format;
pub mod gc;
pub mod graph;
mod hashing;
pub mod image;
pub(crate) mod kv;
pub mod lease;
pub mod lock;
pub mod migrate;
pub mod open;
mod orphan;
pub mod record;
pub mod state;
pub mod store;
mod summary;
mod sweep;
pub mod tag;
mod tx;
pub mod verify;
pub mod watch;

pub use backend::{BlobReader, ChunkStream, Location};
pub use batch::IngestBatch;
pub use blob::PutOutcome;
pub use error::{Error, Result};
pub use graph::ManifestOptions;
pub use lease::{Lease, LeaseGuard};
pub use store::{default_store_path, Store};
pub use tag::TagEntry;

//! Integration tests for `sealift-store`: one test binary, one module per area.
//!
//! Every image is built in code (hand-written ustar archives, gzip'd with flate2) from
//! deterministic bytes, so digests are stable from run to run.

#[path = "store/common.rs"]
mod common;
#[path = "store/backends.rs"]
#[macro_use]
mod backends;

#[path = "store/batch.rs"]
mod batch;
#[path = "store/blobs.rs"]
mod blobs;
#[path = "store/concurrency.rs"]
mod concurrency;
#[path = "store/du.rs"]
mod du;
#[path = "store/gc.rs"]
mod gc;
#[path = "store/gc_crash.rs"]
mod gc_crash;
#[path = "store/image.rs"]
mod image;
#[path = "store/leases.rs"]
mod leases;
#[path = "store/lock.rs"]
mod lock;
#[path = "store/manifests.rs"]
mod manifests;
#[path = "store/persistence.rs"]
mod persistence;
#[path = "store/replica.rs"]
mod replica;
#[path = "store/s3.rs"]
mod s3;
#[path = "store/summary.rs"]
mod summary;
#[path = "store/tags.rs"]
mod tags;
#[path = "store/upgrade.rs"]
mod upgrade;
#[path = "store/verify.rs"]
mod verify;

//! The blob tests run on each backend: local files and an S3 bucket on a real SeaweedFS
//! (started once per test process by the test kit, a fresh bucket per test).
//!
//! `on_both_backends!(name, ...)` turns each `fn name(kind: Kind)` into the tests
//! `name::local` and `name::s3`.

#![allow(dead_code)]

use std::collections::BTreeSet;

use sealift_store::backend::{ConnectOptions, S3Settings};
use sealift_store::{Location, Store};
use sealift_testkit::{seaweed, Seaweed};

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
}

/// A store directory and, on S3, its own bucket.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    pub location: Location,
    pub options: ConnectOptions,
}

/// Settings for the shared SeaweedFS, passed in-process (the environment is not touched).
pub fn s3_options() -> ConnectOptions {
    let server = Seaweed::shared();
    ConnectOptions {
        s3: Some(S3Settings {
            endpoint: Some(server.endpoint()),
            region: seaweed::REGION.into(),
            access_key_id: seaweed::ACCESS_KEY.into(),
            secret_access_key: seaweed::SECRET_KEY.into(),
            session_token: None,
        }),
    }
}

impl Fixture {
    pub fn new(kind: Kind) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (location, options) = match kind {
            Kind::Local => (Location::Local, ConnectOptions::default()),
            Kind::S3 => (
                Location::S3 {
                    bucket: Seaweed::shared().bucket(),
                    prefix: "site/store".into(),
                },
                s3_options(),
            ),
        };
        Fixture {
            dir,
            kind,
            location,
            options,
        }
    }

    /// Open (creating on first use) the store, with its blobs on this backend.
    pub fn open(&self) -> Store {
        Store::init_with(self.dir.path(), &self.location, &self.options).unwrap()
    }

    /// A fresh fixture and its open store.
    pub fn store(kind: Kind) -> (Fixture, Store) {
        let f = Fixture::new(kind);
        let s = f.open();
        (f, s)
    }

    pub fn bucket(&self) -> Option<&str> {
        match &self.location {
            Location::S3 { bucket, .. } => Some(bucket),
            Location::Local => None,
        }
    }

    /// Digests of the published blobs, as the backend lists them.
    pub fn published(&self, store: &Store) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        store
            .backend()
            .list(&mut |item| {
                out.insert(item.digest.map(|d| d.to_string()).unwrap_or(item.name));
                Ok(true)
            })
            .unwrap();
        out
    }

    /// The digests of the published blobs: the files under `blobs/` (read directly), or the
    /// objects the bucket lists under the prefix.
    pub fn blob_names(&self, store: &Store) -> BTreeSet<String> {
        match self.kind {
            Kind::Local => crate::common::blob_files(self.dir.path()),
            Kind::S3 => self.published(store),
        }
    }

    /// What unfinished writes left: files under `ingest/`, or multipart uploads neither
    /// completed nor aborted in the bucket.
    pub fn leftovers(&self) -> Vec<String> {
        match self.bucket() {
            None => crate::common::ingest_files(self.dir.path()),
            Some(b) => Seaweed::shared().incomplete_uploads(b),
        }
    }

    /// Replace the published bytes of `d` (damage on purpose).
    pub fn overwrite(&self, store: &Store, d: &sealift_oci::Digest, bytes: &[u8]) {
        match self.kind {
            Kind::Local => {
                let p = store.blob_path(d);
                if p.exists() {
                    crate::common::make_writable(&p);
                }
                std::fs::write(p, bytes).unwrap();
            }
            Kind::S3 => {
                // Stage and publish straight through the backend: no check, no record.
                let mut w = store
                    .backend()
                    .stage(d, bytes.len() as u64, "damage")
                    .unwrap();
                w.write(bytes).unwrap();
                w.seal().unwrap();
                w.publish().unwrap();
            }
        }
    }

    /// The name a listing gives the published bytes of `d` (a path, or `s3://BUCKET/KEY`).
    pub fn listed_name(&self, store: &Store, d: &sealift_oci::Digest) -> String {
        match &self.location {
            Location::Local => store.blob_path(d).display().to_string(),
            Location::S3 { bucket, prefix } => {
                format!(
                    "s3://{bucket}/{prefix}/{}",
                    sealift_store::backend::blob_key(d)
                )
            }
        }
    }

    /// Remove the published bytes of `d` behind the store's back.
    pub fn remove(&self, store: &Store, d: &sealift_oci::Digest) {
        store.backend().delete(d).unwrap();
    }
}

/// `name::local` and `name::s3` for each `fn name(kind: Kind)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name(crate::backends::Kind::Local)
                }
                #[test]
                fn s3() {
                    super::$name(crate::backends::Kind::S3)
                }
            }
        )*
    };
}

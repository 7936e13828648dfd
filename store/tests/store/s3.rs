//! What only an object store has: multipart uploads, their abort, ranged reads, the bucket's
//! own clock for GC grace, and calls from inside async code.

use std::io::Read;
use std::time::Duration;

use sealift_oci::Digest;
use sealift_store::backend::{ConnectOptions, S3Settings};
use sealift_store::gc::GcOptions;
use sealift_store::{Error, Location, PutOutcome, Store};
use sealift_testkit::{seaweed, Seaweed};

use crate::backends::{s3_options, Fixture, Kind};
use crate::common::*;

/// More than one 8 MiB part, not a multiple of it.
const BIG: usize = 2 * 8 * 1024 * 1024 + 12_345;

#[test]
fn multipart_blob_round_trips_with_ranged_reads() {
    let (fx, store) = Fixture::store(Kind::S3);
    let lease = store.lease("t", None).unwrap();
    let data = noise("multipart", BIG);
    let d = Digest::sha256(&data);
    let out = store
        .put_blob(
            &lease,
            &d,
            BIG as u64,
            "application/octet-stream",
            &mut &data[..],
        )
        .unwrap();
    assert_eq!(out, PutOutcome::Written);
    assert_eq!(store.record(&d).unwrap().unwrap().size, BIG as u64);
    assert_eq!(store.backend().stat(&d).unwrap(), Some(BIG as u64));
    assert_eq!(fx.published(&store), [d.to_string()].into());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(store.blob_file(&d).is_none(), "no local file to hard-link");

    let read_from = |offset: usize| {
        let mut out = Vec::new();
        let mut r = store.open_blob_at(&d, offset as u64).unwrap();
        r.read_to_end(&mut out).unwrap();
        out
    };
    let all = read_from(0);
    assert!(all == data, "read back {} bytes, differing", all.len());
    let from = 9 * 1024 * 1024 + 7;
    assert!(read_from(from)[..] == data[from..], "ranged read differs");
    assert!(read_from(BIG).is_empty());

    // A second put of the same digest is answered from the record (HEAD, no upload).
    let out = store
        .put_blob(&lease, &d, BIG as u64, "", &mut PanicReader)
        .unwrap();
    assert_eq!(out, PutOutcome::Present);
    let r = store.verify(sealift_store::verify::VerifyOptions {
        full: true,
        repair: false,
    });
    let r = r.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.hashed_bytes, BIG as u64);
    let url = store
        .backend()
        .presign(&d, Duration::from_secs(60))
        .unwrap()
        .expect("a presigned URL");
    assert!(url.starts_with(&Seaweed::shared().endpoint()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(!url.contains(seaweed::SECRET_KEY));
}

#[test]
fn wrong_digest_in_a_multipart_upload_leaves_no_object_and_no_record() {
    let (fx, store) = Fixture::store(Kind::S3);
    let lease = store.lease("t", None).unwrap();
    let data = noise("multipart-liar", BIG);
    let claimed = Digest::sha256(b"not these bytes");
    let err = store
        .put_blob(&lease, &claimed, BIG as u64, "", &mut &data[..])
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(
        fx.published(&store).is_empty(),
        "{:?}",
        fx.published(&store)
    );
    assert_eq!(store.backend().stat(&claimed).unwrap(), None);
    assert!(
        fx.leftovers().is_empty(),
        "upload not aborted: {:?}",
        fx.leftovers()
    );
    assert!(record_digests(&store).is_empty());
}

/// A process killed mid-upload leaves an incomplete multipart upload; the name it recorded
/// is enough to abort it.
#[test]
fn discard_of_a_recorded_name_aborts_the_upload() {
    let (fx, store) = Fixture::store(Kind::S3);
    let data = noise("killed", BIG);
    let d = Digest::sha256(&data);
    let mut w = store.backend().stage(&d, BIG as u64, "x").unwrap();
    w.write(&data[..10 * 1024 * 1024]).unwrap();
    let name = w.name().to_string();
    // What a kill leaves: no abort, no drop.
    std::mem::forget(w);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fx.leftovers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fx.leftovers().len(), 1, "one upload in progress");
    assert_eq!(store.backend().stat(&d).unwrap(), None, "nothing visible");
    store.backend().discard(&name).unwrap();
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    // Discarding again (a second recovery) is not an error.
    store.backend().discard(&name).unwrap();
    assert!(fx.published(&store).is_empty());
}

/// Bytes published with no record (a kill between publish and commit) stay for the grace
/// period: another process sharing the bucket may be about to record them.
#[test]
fn gc_removes_an_unrecorded_object_only_after_grace() {
    let (fx, store) = Fixture::store(Kind::S3);
    let data = noise("orphan", 4000);
    let d = Digest::sha256(&data);
    fx.overwrite(&store, &d, &data);
    assert_eq!(fx.published(&store), [d.to_string()].into());
    let r = store
        .gc(&GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        })
        .unwrap();
    assert_eq!(r.orphan_files, 0);
    assert_eq!(fx.published(&store), [d.to_string()].into());
    // The bucket stamps whole seconds: be sure the object is older than "now - 0".
    std::thread::sleep(Duration::from_millis(1100));
    let r = store
        .gc(&GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .unwrap();
    assert_eq!(r.orphan_files, 1);
    assert!(fx.published(&store).is_empty());
}

/// Every call blocks on the backend's own runtime, so a caller inside an async task (serve
/// handlers, a copy's tasks) neither panics nor deadlocks; dropping the store there is
/// fine too.
#[test]
fn calls_from_inside_an_async_task_work() {
    let fx = Fixture::new(Kind::S3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = fx.open();
        let lease = store.lease("t", None).unwrap();
        let data = noise("async", 300_000);
        let d = Digest::sha256(&data);
        store
            .put_blob(&lease, &d, data.len() as u64, "", &mut &data[..])
            .unwrap();
        assert_eq!(store.read_small(&d, 1 << 20).unwrap(), data);
        drop(lease);
        drop(store);
    });
}

#[test]
fn the_store_remembers_its_bucket_and_refuses_another() {
    let (fx, store) = Fixture::store(Kind::S3);
    let lease = store.lease("t", None).unwrap();
    put_new(
        &store,
        &lease,
        &Blob::new("application/octet-stream", noise("kept", 100)),
    );
    drop(lease);
    drop(store);
    // Opened without naming the location: the store says where its blobs are.
    let store = Store::open_with(fx.dir.path(), &fx.options).unwrap();
    assert_eq!(store.blob_location(), fx.location);
    assert_eq!(record_digests(&store).len(), 1);
    drop(store);
    let err = Store::init(fx.dir.path(), &Location::Local).err().unwrap();
    assert!(
        matches!(&err, Error::LocationMismatch { .. })
            && err.to_string().contains("sealift migrate"),
        "{err}"
    );
}

#[test]
fn a_missing_bucket_and_wrong_credentials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Location::S3 {
        bucket: "no-such-bucket-here".into(),
        prefix: String::new(),
    };
    let err = Store::init_with(dir.path(), &missing, &s3_options())
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        text.contains("bucket no-such-bucket-here does not exist"),
        "{text}"
    );
    // The failed init did not remember the bucket: a corrected one is accepted.
    let good = Fixture::new(Kind::S3);
    Store::init_with(dir.path(), &good.location, &good.options).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let wrong = ConnectOptions {
        s3: Some(S3Settings {
            secret_access_key: "not-the-secret".into(),
            ..s3_options().s3.unwrap()
        }),
    };
    let err = Store::init_with(dir.path(), &good.location, &wrong)
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    let settings = format!("{:?}", wrong.s3.unwrap());
    assert!(!settings.contains("not-the-secret") && !settings.contains(seaweed::ACCESS_KEY));
}

//! put_blob: ingest, verification, and what a refused stream leaves behind.

use std::os::unix::fs::PermissionsExt;

use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use sealift_store::{Error, PutOutcome};

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(
    put_blob_writes_then_reports_present_without_reading,
    put_blob_empty_and_sha512,
    put_blob_wrong_digest_commits_nothing,
    put_blob_stops_reading_past_declared_size,
    put_blob_short_stream_is_size_mismatch,
    put_blob_reader_error_commits_nothing,
    put_blob_with_released_lease_is_refused,
    put_blob_lease_released_mid_stream_commits_nothing,
    put_blob_rewrites_a_recorded_blob_whose_file_is_missing,
    large_blob_hashed_on_its_own_thread_is_verified_the_same,
);

fn put_blob_writes_then_reports_present_without_reading(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("blob-one", 200_000);
    let d = Digest::sha256(&data);
    let out = store
        .put_blob(
            &lease,
            &d,
            data.len() as u64,
            "application/octet-stream",
            &mut &data[..],
        )
        .unwrap();
    assert_eq!(out, PutOutcome::Written);

    if kind == Kind::Local {
        // Bytes on disk, at the content address, read-only.
        let path = store.blob_path(&d);
        assert_eq!(path, fx.dir.path().join("blobs/sha256").join(d.hex()));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "committed blob files are read-only");
    } else {
        // The object, at the content address under the prefix, and nothing else.
        assert_eq!(fx.published(&store), [d.to_string()].into());
        assert_eq!(store.backend().stat(&d).unwrap(), Some(data.len() as u64));
    }
    let rec = store.record(&d).unwrap().expect("record");
    assert_eq!(rec.size, data.len() as u64);
    assert_eq!(rec.media_type, "application/octet-stream");
    assert!(!rec.manifest);
    assert_eq!(store.read_small(&d, 1 << 20).unwrap(), data);

    // Second put: present, and the stream is never touched.
    let out = store
        .put_blob(
            &lease,
            &d,
            data.len() as u64,
            "application/octet-stream",
            &mut PanicReader,
        )
        .unwrap();
    assert_eq!(out, PutOutcome::Present);
    assert!(fx.leftovers().is_empty());
    assert_eq!(fx.blob_names(&store), [d.to_string()].into());

    // Present but declared with another size: refused, still without reading.
    let err = store
        .put_blob(&lease, &d, data.len() as u64 + 1, "", &mut PanicReader)
        .unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { digest, expected, actual, truncated: false }
            if digest == &d && *expected == data.len() as u64 + 1 && *actual == data.len() as u64),
        "{err:?}"
    );
}

fn put_blob_empty_and_sha512(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let empty = Digest::sha256(b"");
    assert_eq!(
        store
            .put_blob(&lease, &empty, 0, "", &mut &b""[..])
            .unwrap(),
        PutOutcome::Written
    );
    assert_eq!(store.read_small(&empty, 10).unwrap(), b"");

    let data = noise("sha512", 5000);
    let d = Digest::of(sealift_oci::Algorithm::Sha512, &data);
    store
        .put_blob(&lease, &d, 5000, "application/octet-stream", &mut &data[..])
        .unwrap();
    if kind == Kind::Local {
        let p = fx.dir.path().join("blobs/sha512").join(d.hex());
        assert_eq!(std::fs::read(p).unwrap(), data);
    }
    assert_eq!(store.read_small(&d, 1 << 20).unwrap(), data);
    assert_eq!(
        fx.blob_names(&store),
        [empty.to_string(), d.to_string()].into()
    );
    assert_eq!(store.record(&d).unwrap().unwrap().size, 5000);
}

fn put_blob_wrong_digest_commits_nothing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("real", 70_000);
    let claimed = Digest::sha256(b"something else entirely");
    let err = store
        .put_blob(&lease, &claimed, data.len() as u64, "", &mut &data[..])
        .unwrap_err();
    match err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::sha256(&data));
        }
        e => panic!("expected DigestMismatch, got {e:?}"),
    }
    assert!(fx.blob_names(&store).is_empty(), "nothing under blobs/");
    assert!(store.record(&claimed).unwrap().is_none());
    assert!(store.record(&Digest::sha256(&data)).unwrap().is_none());
    assert!(record_digests(&store).is_empty());
    assert!(fx.leftovers().is_empty(), "no leftover in ingest/");
}

fn put_blob_stops_reading_past_declared_size(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let size = 3 * 1024 * 1024 + 17;
    let d = Digest::sha256(b"declared");
    let mut r = Endless { served: 0 };
    let err = store.put_blob(&lease, &d, size, "", &mut r).unwrap_err();
    match err {
        Error::SizeMismatch {
            digest,
            expected,
            actual,
            truncated,
        } => {
            assert_eq!(digest, d);
            assert_eq!(expected, size);
            assert!(truncated, "reading stopped past the declared size");
            assert!(actual > size);
        }
        e => panic!("expected SizeMismatch, got {e:?}"),
    }
    assert!(r.served > size);
    assert!(
        r.served < size + 2 * 1024 * 1024,
        "read {} bytes for a {size}-byte blob",
        r.served
    );
    assert!(fx.blob_names(&store).is_empty());
    assert!(fx.leftovers().is_empty());
    assert!(record_digests(&store).is_empty());
}

fn put_blob_short_stream_is_size_mismatch(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("short", 1000);
    let d = Digest::sha256(&data);
    let err = store
        .put_blob(&lease, &d, 1001, "", &mut &data[..])
        .unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { digest, expected: 1001, actual: 1000, truncated: false } if digest == &d),
        "{err:?}"
    );
    assert!(fx.blob_names(&store).is_empty());
    assert!(fx.leftovers().is_empty());
    assert!(store.record(&d).unwrap().is_none());
    // A later correct put is not confused by the failed one.
    assert_eq!(
        store
            .put_blob(&lease, &d, 1000, "", &mut &data[..])
            .unwrap(),
        PutOutcome::Written
    );
}

fn put_blob_reader_error_commits_nothing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("flaky", 3 * 1024 * 1024);
    let d = Digest::sha256(&data);
    let mut r = FailingReader {
        data: data.clone(),
        pos: 0,
        fail_after: 1_500_000,
    };
    let err = store
        .put_blob(&lease, &d, data.len() as u64, "", &mut r)
        .unwrap_err();
    match &err {
        Error::Read { digest, source } => {
            assert_eq!(digest, &d);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset);
        }
        e => panic!("expected Error::Read, got {e:?}"),
    }
    assert!(fx.blob_names(&store).is_empty());
    assert!(fx.leftovers().is_empty());
    assert!(store.record(&d).unwrap().is_none());
    assert!(matches!(store.open_blob(&d), Err(Error::NotFound(x)) if x == d));
}

fn put_blob_with_released_lease_is_refused(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease_detached("gone", None).unwrap();
    store.release(lease).unwrap();
    let data = b"late".to_vec();
    let d = Digest::sha256(&data);
    let err = store
        .put_blob(&lease, &d, 4, "", &mut &data[..])
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseGone(id) if id == lease.id),
        "{err:?}"
    );
    assert!(store.record(&d).unwrap().is_none());
    assert!(
        fx.blob_names(&store).is_empty(),
        "a refused commit must not leave its file under blobs/"
    );
    assert!(fx.leftovers().is_empty());
}

/// Releases the lease when the stream reaches its end: the lease goes away while the
/// blob is being ingested.
struct ReleasingReader<'a> {
    store: &'a sealift_store::Store,
    lease: sealift_store::Lease,
    data: &'a [u8],
}

impl std::io::Read for ReleasingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            self.store.release(self.lease).unwrap();
            return Ok(0);
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn put_blob_lease_released_mid_stream_commits_nothing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease_detached("short-lived", None).unwrap();
    let data = noise("mid-stream", 100_000);
    let d = Digest::sha256(&data);
    let mut r = ReleasingReader {
        store: &store,
        lease,
        data: &data,
    };
    let res = store.put_blob(&lease, &d, data.len() as u64, "", &mut r);
    assert!(
        res.is_err(),
        "a put whose lease went away must fail: {res:?}"
    );
    assert!(store.record(&d).unwrap().is_none());
    assert!(
        fx.blob_names(&store).is_empty(),
        "{:?}",
        fx.blob_names(&store)
    );
    assert!(fx.leftovers().is_empty());
}

/// A record whose file is gone (a hand, or a crash of an older GC) is not "present": the
/// put reads the stream and writes the file again, and `hold` does not claim it either.
fn put_blob_rewrites_a_recorded_blob_whose_file_is_missing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("blob-gone", 50_000);
    let d = Digest::sha256(&data);
    let size = data.len() as u64;
    store
        .put_blob(&lease, &d, size, "", &mut &data[..])
        .unwrap();
    fx.remove(&store, &d);
    let rec = store.record(&d).unwrap().expect("record kept");
    assert!(!store.file_present(&d, &rec));
    assert!(store.hold(&lease, &d).unwrap().is_none());
    let out = store
        .put_blob(&lease, &d, size, "", &mut &data[..])
        .unwrap();
    assert_eq!(out, PutOutcome::Written);
    if kind == Kind::Local {
        assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), data);
    }
    assert_eq!(store.read_small(&d, 1 << 20).unwrap(), data);
    assert!(store.file_present(&d, &rec));
    let out = store
        .put_blob(&lease, &d, size, "", &mut PanicReader)
        .unwrap();
    assert_eq!(out, PutOutcome::Present);
    assert!(store
        .verify(Default::default())
        .unwrap()
        .problems
        .is_empty());
}

/// From 4 MiB a blob is hashed on a second thread while it is written: the same checks
/// hold (too long, too short, wrong bytes: refused, nothing left; right bytes: stored).
fn large_blob_hashed_on_its_own_thread_is_verified_the_same(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let data = noise("large", 9 * 1024 * 1024 + 5);
    let d = Digest::sha256(&data);
    let size = data.len() as u64;

    let mut r = Endless { served: 0 };
    let err = store.put_blob(&lease, &d, size, "", &mut r).unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { truncated: true, actual, .. } if *actual > size),
        "{err:?}"
    );
    assert!(r.served < size + 2 * 1024 * 1024, "read {} bytes", r.served);

    let err = store
        .put_blob(&lease, &d, size, "", &mut &data[..data.len() - 1])
        .unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { truncated: false, actual, .. } if *actual == size - 1),
        "{err:?}"
    );

    let mut wrong = data.clone();
    wrong[7 * 1024 * 1024] ^= 1;
    let err = store
        .put_blob(&lease, &d, size, "", &mut &wrong[..])
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, actual } if expected == &d && actual == &Digest::sha256(&wrong)),
        "{err:?}"
    );
    assert!(fx.blob_names(&store).is_empty());
    assert!(fx.leftovers().is_empty());
    assert!(record_digests(&store).is_empty());

    let out = store
        .put_blob(&lease, &d, size, mt::OCI_LAYER_TAR, &mut &data[..])
        .unwrap();
    assert_eq!(out, PutOutcome::Written);
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.open_blob(&d).unwrap(), &mut back).unwrap();
    assert!(back == data, "the stored bytes differ");
    assert_eq!(fx.blob_names(&store), [d.to_string()].into());
}

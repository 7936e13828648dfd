//! Read replicas on a real S3 bucket (SeaweedFS): a second store on the writer's bucket and
//! prefix adopts the writer's objects after a size check instead of uploading them, and its
//! GC drops records only, never the writer's objects.

use sealift_oci::Digest;
use sealift_store::gc::GcOptions;
use sealift_store::{Error, Location, PutOutcome, Store};

use crate::backends::{Fixture, Kind};
use crate::common::*;

const MT: &str = "application/octet-stream";

#[test]
fn a_replica_adopts_the_writers_objects_and_never_deletes_any() {
    let (fx, writer) = Fixture::store(Kind::S3);
    let lease = writer.lease("w", None).unwrap();
    let data = noise("adopted", 300_000);
    let d = Digest::sha256(&data);
    let other = noise("only the writer's", 1000);
    let o = Digest::sha256(&other);
    for (digest, bytes) in [(&d, &data), (&o, &other)] {
        let put = writer.put_blob(&lease, digest, bytes.len() as u64, MT, &mut &bytes[..]);
        assert_eq!(put.unwrap(), PutOutcome::Written);
    }

    let rdir = tempfile::tempdir().unwrap();
    let replica = Store::init_with(rdir.path(), &fx.location, &fx.options).unwrap();
    assert!(!replica.is_replica());
    replica.mark_replica().unwrap();
    assert!(replica.is_replica());
    let rl = replica.lease("r", None).unwrap();
    // The wrong size is not adopted; an absent digest neither.
    let size = data.len() as u64;
    assert!(replica
        .hold_or_adopt(&rl, &d, size + 1, MT)
        .unwrap()
        .is_none());
    assert!(replica.record(&d).unwrap().is_none());
    let absent = Digest::sha256(b"nobody wrote this");
    assert!(replica
        .hold_or_adopt(&rl, &absent, 17, MT)
        .unwrap()
        .is_none());
    // The right size is: a record, held, with the bytes readable through the replica.
    let rec = replica.hold_or_adopt(&rl, &d, size, MT).unwrap().unwrap();
    assert_eq!((rec.size, rec.media_type.as_str()), (size, MT));
    assert_eq!(replica.record(&d).unwrap().unwrap().size, size);
    assert_eq!(replica.read_small(&d, size).unwrap(), data);
    // A put of it is answered from the record without reading a byte.
    let put = replica.put_blob(&rl, &d, size, MT, &mut std::io::empty());
    assert_eq!(put.unwrap(), PutOutcome::Present);
    // Held by the lease: GC keeps it while the lease lives.
    let gc = GcOptions {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    replica.gc(&gc).unwrap();
    assert!(replica.record(&d).unwrap().is_some());

    // Released: the replica's GC drops its record, and neither it nor the orphan sweep
    // touches an object (the writer's `o` has no record here and stays too).
    drop(rl);
    let report = replica.gc(&gc).unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.orphan_files, 0, "{report:?}");
    assert!(replica.record(&d).unwrap().is_none());
    assert_eq!(writer.backend().stat(&d).unwrap(), Some(size));
    assert_eq!(writer.backend().stat(&o).unwrap(), Some(1000));
    assert_eq!(fx.published(&writer), [d.to_string(), o.to_string()].into());
    // verify sees no orphans in a bucket it does not own.
    let v = replica.verify(Default::default()).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    drop(lease);
    let v = writer.verify(Default::default()).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn local_stores_never_adopt_and_cannot_be_replicas() {
    let (_fx, store) = Fixture::store(Kind::Local);
    let e = store.mark_replica().unwrap_err();
    assert!(matches!(e, Error::BadLocation { .. }), "{e}");
    assert!(e.to_string().contains("s3://"), "{e}");
    assert!(!store.is_replica());
    let lease = store.lease("l", None).unwrap();
    let data = noise("local", 100);
    let d = Digest::sha256(&data);
    assert!(store.hold_or_adopt(&lease, &d, 100, MT).unwrap().is_none());
    store.put_blob(&lease, &d, 100, MT, &mut &data[..]).unwrap();
    // Present and held like `hold` does.
    assert!(store.hold_or_adopt(&lease, &d, 100, MT).unwrap().is_some());
    assert_eq!(store.blob_location(), Location::Local);
}

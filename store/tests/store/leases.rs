//! Leases: process-bound ones end with their session, timed ones survive a reopen, and
//! release drops what a lease held.

use std::collections::BTreeSet;
use std::time::Duration;

use sealift_oci::Digest;
use sealift_store::gc::GcOptions;
use sealift_store::Error;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(
    process_bound_lease_is_dropped_on_reopen,
    timed_lease_survives_reopen_and_protects_until_released,
    release_drops_holds,
);

fn gc0() -> GcOptions {
    GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    }
}

fn removed(r: &sealift_store::gc::GcReport) -> BTreeSet<Digest> {
    r.removed.iter().map(|c| c.digest.clone()).collect()
}

fn process_bound_lease_is_dropped_on_reopen(kind: Kind) {
    let fx = Fixture::new(kind);
    let kept = Blob::new("application/octet-stream", noise("pb-kept", 10_000));
    let img = image("amd64", vec![layer("pb-img")]);
    let lease = {
        let store = fx.open();
        let lease = store.lease_detached("crashed copy", None).unwrap();
        put_new(&store, &lease, &kept);
        put_image(&store, &lease, &img);
        // While this session lives the lease protects everything, grace or not.
        let r = store.gc(&gc0()).unwrap();
        assert!(r.removed.is_empty(), "{:?}", r.removed);
        lease
        // Dropped without release: as if the process died.
    };
    let store = fx.open();
    let err = store
        .put_blob(&lease, &Digest::sha256(b"z"), 1, "", &mut &b"z"[..])
        .unwrap_err();
    assert!(
        matches!(err, Error::LeaseGone(id) if id == lease.id),
        "{err:?}"
    );
    let r = store.gc(&gc0()).unwrap();
    let mut want = img.digests();
    want.insert(kept.digest.clone());
    assert_eq!(removed(&r), want);
    assert_eq!(
        r.bytes,
        kept.size() + img.blobs().iter().map(|b| b.size()).sum::<u64>()
    );
    assert!(fx.blob_names(&store).is_empty());
    assert!(record_digests(&store).is_empty());
}

fn timed_lease_survives_reopen_and_protects_until_released(kind: Kind) {
    let fx = Fixture::new(kind);
    let held = Blob::new("application/octet-stream", noise("timed", 20_000));
    let loose = Blob::new("application/octet-stream", noise("loose", 1_000));
    let lease = {
        let store = fx.open();
        let lease = store
            .lease_detached("resumable sync", Some(Duration::from_secs(3600)))
            .unwrap();
        put_new(&store, &lease, &held);
        let other = store.lease("short", None).unwrap();
        put_new(&store, &other, &loose);
        lease
    };
    let store = fx.open();
    let r = store.gc(&gc0()).unwrap();
    assert_eq!(removed(&r), [loose.digest.clone()].into());
    assert!(store.record(&held.digest).unwrap().is_some());
    if kind == Kind::Local {
        assert_eq!(
            std::fs::read(store.blob_path(&held.digest)).unwrap(),
            held.bytes
        );
    }
    assert_eq!(store.read_small(&held.digest, 1 << 20).unwrap(), held.bytes);

    // The timed lease is still usable after the reopen: resumable work continues.
    let more = Blob::new("application/octet-stream", noise("timed-more", 500));
    put_new(&store, &lease, &more);
    assert!(store.gc(&gc0()).unwrap().removed.is_empty());

    store.release(lease).unwrap();
    let r = store.gc(&gc0()).unwrap();
    assert_eq!(
        removed(&r),
        [held.digest.clone(), more.digest.clone()].into()
    );
    assert!(fx.blob_names(&store).is_empty());
}

fn release_drops_holds(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let a = Blob::new("application/octet-stream", noise("rel-a", 4000));
    let b = Blob::new("application/octet-stream", noise("rel-b", 4000));
    let l1 = store.lease_detached("one", None).unwrap();
    let l2 = store.lease_detached("two", None).unwrap();
    put_new(&store, &l1, &a);
    put_new(&store, &l2, &b);
    // Both leases hold `a` once l2 has checked it exists.
    assert!(store.hold(&l2, &a.digest).unwrap().is_some());
    assert!(store
        .hold(&l2, &Digest::sha256(b"nothing"))
        .unwrap()
        .is_none());

    store.release(l1).unwrap();
    let r = store.gc(&gc0()).unwrap();
    assert!(r.removed.is_empty(), "l2 still holds both: {:?}", r.removed);

    store.release(l2).unwrap();
    let r = store.gc(&gc0()).unwrap();
    assert_eq!(removed(&r), [a.digest.clone(), b.digest.clone()].into());
    assert!(fx.blob_names(&store).is_empty());
    assert!(matches!(
        store.hold(&l2, &a.digest),
        Err(Error::LeaseGone(_))
    ));
}

#[test]
fn lease_guard_releases_on_drop() {
    let (_dir, store) = open_temp();
    let a = Blob::new("application/octet-stream", noise("guard", 4000));
    {
        let g = store.lease("guarded", None).unwrap();
        put_new(&store, &g, &a);
        assert!(store.gc(&gc0()).unwrap().removed.is_empty());
    }
    let r = store.gc(&gc0()).unwrap();
    assert_eq!(removed(&r), [a.digest.clone()].into());
}

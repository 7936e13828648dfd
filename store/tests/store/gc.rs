//! GC by reachability: tags, pins and referrers; exact removal sets; dry runs; grace.

use std::collections::BTreeSet;
use std::time::Duration;

use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use sealift_store::gc::{GcOptions, GcReport};
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;
use serde_json::json;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(
    gc_removes_exactly_an_untagged_image,
    referrer_lives_with_its_subject,
    orphaned_referrer_is_kept_for_the_grace_period,
    fresh_unlinked_blob_is_kept_by_grace_only,
    pins_are_roots,
    gc_removes_orphan_files_but_not_live_ones,
);

fn gc(store: &Store, grace: u64, dry_run: bool) -> GcReport {
    store
        .gc(&GcOptions {
            dry_run,
            grace: Duration::from_secs(grace),
        })
        .unwrap()
}

fn removed(r: &GcReport) -> BTreeSet<Digest> {
    let s: BTreeSet<Digest> = r.removed.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(s.len(), r.removed.len(), "no digest listed twice");
    assert_eq!(r.bytes, r.removed.iter().map(|c| c.size).sum::<u64>());
    s
}

fn size_of(blobs: &[&Blob], set: &BTreeSet<Digest>) -> u64 {
    let mut seen = BTreeSet::new();
    blobs
        .iter()
        .filter(|b| set.contains(&b.digest) && seen.insert(b.digest.clone()))
        .map(|b| b.size())
        .sum()
}

/// Image A: an index over two platform manifests that share layer `s1` and whose amd64
/// image shares layer `s2` with image B.
struct World {
    a: Index,
    b: Image,
    s2: Layer,
}

fn world() -> World {
    let s1 = layer("shared-within-a");
    let s2 = layer("shared-a-b");
    let a = index(vec![
        (
            image("amd64", vec![s1.clone(), layer("a-amd"), s2.clone()]),
            "amd64",
        ),
        (image("arm64", vec![s1.clone(), layer("a-arm")]), "arm64"),
    ]);
    let b = image("amd64", vec![s2.clone(), layer("b-own")]);
    World { a, b, s2 }
}

fn all_blobs(w: &World) -> Vec<&Blob> {
    let mut v = vec![&w.a.index];
    for i in &w.a.images {
        v.extend(i.blobs());
    }
    v.extend(w.b.blobs());
    v
}

fn gc_removes_exactly_an_untagged_image(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let w = world();
    {
        let lease = store.lease("pull", None).unwrap();
        put_index(&store, &lease, &w.a);
        put_image(&store, &lease, &w.b);
        store.set_tag(&repo("a"), &tag("v1"), w.a.digest()).unwrap();
        store.set_tag(&repo("b"), &tag("v1"), w.b.digest()).unwrap();
    }
    let everything: BTreeSet<Digest> = w.a.digests().union(&w.b.digests()).cloned().collect();
    assert_eq!(
        everything.len(),
        12,
        "A: index, 2×(manifest+config), 4 layers; B: 3 more"
    );
    assert_eq!(record_digests(&store), everything);

    // Both tagged: nothing goes, grace or not.
    let r = gc(&store, 0, false);
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert_eq!(r.live, everything.len());
    assert_eq!(fx.blob_names(&store), names(&everything));

    assert!(store.remove_tag(&repo("a"), &tag("v1")).unwrap());
    let expected: BTreeSet<Digest> = w.a.digests().difference(&w.b.digests()).cloned().collect();
    assert!(!expected.contains(&w.s2.blob.digest));
    assert_eq!(expected.len(), 8);
    let expected_bytes = size_of(&all_blobs(&w), &expected);

    // Dry run: lists the same set, deletes nothing.
    let dry = gc(&store, 0, true);
    assert!(dry.dry_run);
    assert_eq!(removed(&dry), expected);
    assert_eq!(dry.bytes, expected_bytes);
    assert_eq!(record_digests(&store), everything);
    assert_eq!(fx.blob_names(&store), names(&everything));

    let r = gc(&store, 0, false);
    assert!(!r.dry_run);
    assert_eq!(removed(&r), expected);
    assert_eq!(r.bytes, expected_bytes);
    for c in &r.removed {
        let b = all_blobs(&w)
            .into_iter()
            .find(|b| b.digest == c.digest)
            .unwrap();
        assert_eq!(c.size, b.size());
        assert_eq!(c.media_type, b.media_type);
    }
    let rest: BTreeSet<Digest> = everything.difference(&expected).cloned().collect();
    assert_eq!(record_digests(&store), rest);
    assert_eq!(
        fx.blob_names(&store),
        names(&rest),
        "files gone from blobs/"
    );
    assert!(store.record(&w.s2.blob.digest).unwrap().is_some());
    let (_, missing) = store.walk(w.b.digest()).unwrap();
    assert!(missing.is_empty());
    for d in &expected {
        assert!(store.edges(d).unwrap().is_empty(), "edges of {d} forgotten");
    }
    let v = store
        .verify(VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);

    // Nothing more to do.
    assert!(gc(&store, 0, false).removed.is_empty());

    // Then B goes too, shared layer and all.
    store.remove_tag(&repo("b"), &tag("v1")).unwrap();
    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), w.b.digests());
    assert!(record_digests(&store).is_empty());
    assert!(fx.blob_names(&store).is_empty());
}

#[test]
fn deleting_untagged_index_children_only_when_index_goes() {
    // distribution's --delete-untagged removed children of tagged indexes (#3004): here
    // children of a tagged index are live even though no tag names them.
    let (_dir, store) = open_temp();
    let w = world();
    let lease = store.lease("pull", None).unwrap();
    put_index(&store, &lease, &w.a);
    store.set_tag(&repo("a"), &tag("v1"), w.a.digest()).unwrap();
    drop(lease);
    let r = gc(&store, 0, false);
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert_eq!(record_digests(&store), w.a.digests());
}

/// An SBOM-style artifact whose subject is `subject`.
fn referrer(subject: &Blob, name: &str) -> (Blob, Blob, Blob) {
    let empty = Blob::new(mt::OCI_EMPTY, b"{}".to_vec());
    let sbom = Blob::new(
        "application/spdx+json",
        serde_json::to_vec(&json!({"spdxVersion": "SPDX-2.3", "name": name})).unwrap(),
    );
    let m = manifest_over(
        &empty,
        &[sbom.descriptor()],
        Some(("subject", subject.descriptor())),
    );
    let mut v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    v["artifactType"] = json!("application/spdx+json");
    let m = Blob::new(mt::OCI_MANIFEST, serde_json::to_vec(&v).unwrap());
    (m, empty, sbom)
}

fn put_referrer(store: &Store, r: &(Blob, Blob, Blob)) {
    let lease = store.lease("referrer", None).unwrap();
    put(store, &lease, &r.1);
    put(store, &lease, &r.2);
    put_manifest(store, &lease, &r.0);
}

fn digests_of(r: &(Blob, Blob, Blob)) -> BTreeSet<Digest> {
    [r.0.digest.clone(), r.1.digest.clone(), r.2.digest.clone()].into()
}

fn referrer_lives_with_its_subject(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = image("amd64", vec![layer("subj")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
        store
            .set_tag(&repo("app"), &tag("v1"), img.digest())
            .unwrap();
    }
    let sbom = referrer(&img.manifest, "app");
    put_referrer(&store, &sbom);
    assert_eq!(
        store.referrers(img.digest()).unwrap(),
        vec![sbom.0.digest.clone()]
    );
    let rec = store.record(&sbom.0.digest).unwrap().unwrap();
    assert_eq!(
        rec.subject.as_deref(),
        Some(img.digest().to_string().as_str())
    );
    assert_eq!(rec.artifact_type.as_deref(), Some("application/spdx+json"));

    // Subject tagged: the referrer stays even with no grace at all.
    let r = gc(&store, 0, false);
    assert!(r.removed.is_empty(), "{:?}", r.removed);

    // Subject untagged: subject and referrer go together.
    store.remove_tag(&repo("app"), &tag("v1")).unwrap();
    let r = gc(&store, 0, false);
    let want: BTreeSet<Digest> = img.digests().union(&digests_of(&sbom)).cloned().collect();
    assert_eq!(removed(&r), want);
    assert!(fx.blob_names(&store).is_empty());
    assert!(store.referrers(img.digest()).unwrap().is_empty());
}

fn orphaned_referrer_is_kept_for_the_grace_period(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = image("amd64", vec![layer("orph")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
        store
            .set_tag(&repo("app"), &tag("v1"), img.digest())
            .unwrap();
    }
    let sig = referrer(&img.manifest, "sig");
    put_referrer(&store, &sig);
    store.remove_tag(&repo("app"), &tag("v1")).unwrap();

    // The subject goes; its referrer arrived just now and stays within the hour.
    let r = gc(&store, 3600, false);
    assert_eq!(removed(&r), img.digests());
    assert!(r.kept_by_grace >= 1);
    assert_eq!(record_digests(&store), digests_of(&sig));
    assert_eq!(fx.blob_names(&store), names(&digests_of(&sig)));
    let (_, missing) = store.walk(&sig.0.digest).unwrap();
    assert!(missing.is_empty(), "the referrer's own graph is intact");

    // With no grace it is collectable.
    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), digests_of(&sig));
    assert!(fx.blob_names(&store).is_empty());
}

#[test]
fn referrer_never_keeps_its_subject() {
    let (_dir, store) = open_temp();
    let img = image("amd64", vec![layer("subj-only")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
        store
            .set_tag(&repo("app"), &tag("v1"), img.digest())
            .unwrap();
    }
    let sig = referrer(&img.manifest, "tagged-sig");
    put_referrer(&store, &sig);
    store
        .set_tag(&repo("app"), &tag("sig"), &sig.0.digest)
        .unwrap();
    store.remove_tag(&repo("app"), &tag("v1")).unwrap();
    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), img.digests());
    assert_eq!(record_digests(&store), digests_of(&sig));
}

fn fresh_unlinked_blob_is_kept_by_grace_only(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let loose = Blob::new("application/octet-stream", noise("loose", 9_999));
    {
        let lease = store.lease("partial pull", None).unwrap();
        put_new(&store, &lease, &loose);
    }
    let r = gc(&store, 3600, false);
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert_eq!(r.kept_by_grace, 1);
    assert!(fx.blob_names(&store).contains(&loose.digest.to_string()));

    let dry = gc(&store, 0, true);
    assert_eq!(removed(&dry), [loose.digest.clone()].into());
    assert!(fx.blob_names(&store).contains(&loose.digest.to_string()));

    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), [loose.digest.clone()].into());
    assert_eq!(r.bytes, 9_999);
    assert!(fx.blob_names(&store).is_empty());
    assert!(store.record(&loose.digest).unwrap().is_none());
}

#[test]
fn untagged_image_is_kept_by_grace_then_collected() {
    // Grace covers what nothing has linked yet: the untagged manifest, and through its
    // edges its children. With no grace all of it goes.
    let (_dir, store) = open_temp();
    let img = image("amd64", vec![layer("linked")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
    }
    let r = gc(&store, 3600, false);
    // The manifest itself was never linked and is fresh: it (and so its children) stay.
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), img.digests());
}

fn pins_are_roots(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let w = world();
    {
        let lease = store.lease("pull", None).unwrap();
        put_index(&store, &lease, &w.a);
    }
    store.pin(w.a.digest()).unwrap();
    assert_eq!(store.pins().unwrap(), vec![w.a.digest().clone()]);
    let r = gc(&store, 0, false);
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert_eq!(record_digests(&store), w.a.digests());

    // Pinning one platform's manifest keeps that part after the index is unpinned.
    let amd = &w.a.images[0];
    store.pin(amd.digest()).unwrap();
    assert!(store.unpin(w.a.digest()).unwrap());
    assert!(!store.unpin(w.a.digest()).unwrap());
    let r = gc(&store, 0, false);
    let want: BTreeSet<Digest> = w.a.digests().difference(&amd.digests()).cloned().collect();
    assert_eq!(removed(&r), want);
    assert_eq!(fx.blob_names(&store), names(&amd.digests()));

    store.unpin(amd.digest()).unwrap();
    assert!(store.pins().unwrap().is_empty());
    let r = gc(&store, 0, false);
    assert_eq!(removed(&r), amd.digests());
    assert!(fx.blob_names(&store).is_empty());
}

fn gc_removes_orphan_files_but_not_live_ones(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = image("amd64", vec![layer("orphan-files")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
        store
            .set_tag(&repo("app"), &tag("v1"), img.digest())
            .unwrap();
    }
    // A crash between unlink and metadata: a file with no record.
    let stray = noise("stray", 100);
    let stray_d = Digest::sha256(&stray);
    fx.overwrite(&store, &stray_d, &stray);
    let present = || store.backend().stat(&stray_d).unwrap().is_some();
    let dry = gc(&store, 0, true);
    assert_eq!(dry.orphan_files, 1);
    assert!(present());
    let r = gc(&store, 0, false);
    assert_eq!(r.orphan_files, 1);
    assert!(r.removed.is_empty());
    assert!(!present());
    assert_eq!(fx.blob_names(&store), names(&img.digests()));
}

//! verify: records against files, full re-hashing and DiffIDs, and repair that never
//! hides a broken image.

use std::collections::BTreeSet;

use sealift_oci::Digest;
use sealift_store::verify::{Problem, VerifyOptions, VerifyReport};
use sealift_store::Store;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(
    good_image_verifies_clean_including_diff_ids,
    missing_layer_file_is_reported_with_its_broken_parent,
    missing_tagged_manifest_is_a_dangling_tag,
    same_size_corruption_is_found_only_by_full_verify,
    wrong_size_is_found_by_fast_verify,
    orphan_file_is_reported,
    wrong_diff_id_is_found_by_full_verify,
    diff_id_count_mismatch_is_found_by_full_verify,
    repair_removes_orphans_and_bad_records_and_leaves_the_image_visibly_broken,
    repair_of_a_corrupt_tagged_manifest_leaves_a_dangling_tag,
    many_records_are_checked_from_one_listing,
);

const FAST: VerifyOptions = VerifyOptions {
    full: false,
    repair: false,
};
const FULL: VerifyOptions = VerifyOptions {
    full: true,
    repair: false,
};

fn problems(r: &VerifyReport) -> BTreeSet<String> {
    r.problems.iter().map(|p| format!("{p:?}")).collect()
}

fn set(ps: &[Problem]) -> BTreeSet<String> {
    ps.iter().map(|p| format!("{p:?}")).collect()
}

fn tagged_image(store: &Store, name: &str) -> Image {
    let img = image(
        "amd64",
        vec![layer(&format!("{name}-1")), layer(&format!("{name}-2"))],
    );
    let lease = store.lease("pull", None).unwrap();
    put_image(store, &lease, &img);
    store
        .set_tag(&repo(name), &tag("v1"), img.digest())
        .unwrap();
    img
}

fn good_image_verifies_clean_including_diff_ids(kind: Kind) {
    let (_fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "good");
    let r = store.verify(FAST).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.checked, img.blobs().len());
    assert_eq!(r.hashed_bytes, 0);
    let r = store.verify(FULL).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        r.hashed_bytes,
        img.blobs().iter().map(|b| b.size()).sum::<u64>()
    );
    assert!(r.repaired.is_empty());
}

fn missing_layer_file_is_reported_with_its_broken_parent(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "miss");
    let gone = &img.layers[0].blob.digest;
    fx.remove(&store, gone);
    let want = set(&[
        Problem::MissingFile {
            digest: gone.clone(),
        },
        Problem::MissingChild {
            parent: img.digest().clone(),
            child: gone.clone(),
        },
    ]);
    assert_eq!(problems(&store.verify(FAST).unwrap()), want);
    assert_eq!(problems(&store.verify(FULL).unwrap()), want);
}

fn missing_tagged_manifest_is_a_dangling_tag(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let idx = index(vec![(image("amd64", vec![layer("dang")]), "amd64")]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_index(&store, &lease, &idx);
    }
    store
        .set_tag(&repo("idx"), &tag("v1"), idx.digest())
        .unwrap();
    let m = idx.images[0].digest();
    fx.remove(&store, m);
    fx.remove(&store, idx.digest());
    let want = set(&[
        Problem::MissingFile { digest: m.clone() },
        Problem::MissingFile {
            digest: idx.digest().clone(),
        },
        Problem::DanglingTag {
            reference: "idx:v1".into(),
            digest: idx.digest().clone(),
        },
    ]);
    assert_eq!(problems(&store.verify(FAST).unwrap()), want);
}

fn same_size_corruption_is_found_only_by_full_verify(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "corrupt");
    let victim = &img.layers[1].blob;
    let mut bytes = store.read_small(&victim.digest, 1 << 20).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    fx.overwrite(&store, &victim.digest, &bytes);
    if kind == Kind::Local {
        let p = store.blob_path(&victim.digest);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), victim.size());
    }
    assert_eq!(
        store.backend().stat(&victim.digest).unwrap(),
        Some(victim.size())
    );

    let fast = store.verify(FAST).unwrap();
    assert!(fast.problems.is_empty(), "{:?}", fast.problems);

    let full = store.verify(FULL).unwrap();
    let want = set(&[
        Problem::WrongDigest {
            digest: victim.digest.clone(),
            actual: Digest::sha256(&bytes),
        },
        // The image is broken: its layer is unusable.
        Problem::MissingChild {
            parent: img.digest().clone(),
            child: victim.digest.clone(),
        },
    ]);
    assert_eq!(problems(&full), want);
}

fn wrong_size_is_found_by_fast_verify(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "size");
    let victim = &img.config;
    let mut bytes = victim.bytes.clone();
    bytes.push(b' ');
    fx.overwrite(&store, &victim.digest, &bytes);
    let r = store.verify(FAST).unwrap();
    assert!(
        r.problems.contains(&Problem::WrongSize {
            digest: victim.digest.clone(),
            expected: victim.size(),
            actual: victim.size() + 1,
        }),
        "{:?}",
        r.problems
    );
}

fn orphan_file_is_reported(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    tagged_image(&store, "orph");
    let stray = noise("stray-verify", 333);
    let stray_digest = Digest::sha256(&stray);
    fx.overwrite(&store, &stray_digest, &stray);
    let mut want = vec![Problem::OrphanFile {
        path: fx.listed_name(&store, &stray_digest),
    }];
    if kind == Kind::Local {
        let junk = fx.dir.path().join("blobs/sha256/not-a-digest");
        std::fs::write(&junk, b"junk").unwrap();
        want.push(Problem::OrphanFile {
            path: junk.display().to_string(),
        });
    }
    let r = store.verify(FAST).unwrap();
    assert_eq!(problems(&r), set(&want));
    assert_eq!(
        store.backend().stat(&stray_digest).unwrap(),
        Some(stray.len() as u64),
        "verify without repair changes nothing"
    );
}

fn wrong_diff_id_is_found_by_full_verify(kind: Kind) {
    let (_fx, store) = Fixture::store(kind);
    let l1 = layer("diff-1");
    let l2 = layer("diff-2");
    let wrong = Digest::sha256(b"not the uncompressed tar");
    let cfg = config("amd64", &[l1.diff_id.clone(), wrong.clone()]);
    let img = image_with_config(cfg, vec![l1, l2.clone()]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
    }
    store
        .set_tag(&repo("diff"), &tag("v1"), img.digest())
        .unwrap();
    assert!(store.verify(FAST).unwrap().problems.is_empty());
    let r = store.verify(FULL).unwrap();
    assert_eq!(
        r.problems,
        vec![Problem::WrongDiffId {
            manifest: img.digest().clone(),
            layer: l2.blob.digest.clone(),
            expected: wrong.to_string(),
            actual: l2.diff_id.clone(),
        }]
    );
}

fn diff_id_count_mismatch_is_found_by_full_verify(kind: Kind) {
    let (_fx, store) = Fixture::store(kind);
    let l1 = layer("count-1");
    let cfg = config("amd64", &[]);
    let img = image_with_config(cfg, vec![l1]);
    {
        let lease = store.lease("pull", None).unwrap();
        put_image(&store, &lease, &img);
    }
    let r = store.verify(FULL).unwrap();
    assert_eq!(
        r.problems,
        vec![Problem::DiffIdCount {
            manifest: img.digest().clone(),
            layers: 1,
            diff_ids: 0,
        }]
    );
}

fn repair_removes_orphans_and_bad_records_and_leaves_the_image_visibly_broken(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "rep");
    let gone = img.layers[0].blob.clone();
    fx.remove(&store, &gone.digest);
    let stray_digest = Digest::sha256(b"stray");
    fx.overwrite(&store, &stray_digest, b"stray");
    let stray = fx.listed_name(&store, &stray_digest);

    let r = store
        .verify(VerifyOptions {
            full: true,
            repair: true,
        })
        .unwrap();
    assert_eq!(
        problems(&r),
        set(&[
            Problem::MissingFile {
                digest: gone.digest.clone()
            },
            Problem::MissingChild {
                parent: img.digest().clone(),
                child: gone.digest.clone()
            },
            Problem::OrphanFile {
                path: stray.clone()
            },
        ])
    );
    assert_eq!(r.repaired.len(), 2, "{:?}", r.repaired);
    assert_eq!(
        store.backend().stat(&stray_digest).unwrap(),
        None,
        "orphan removed"
    );
    assert!(
        store.record(&gone.digest).unwrap().is_none(),
        "bad record dropped"
    );

    // Never silently clean: the image is still reported broken.
    let after = store.verify(FULL).unwrap();
    assert_eq!(
        problems(&after),
        set(&[Problem::MissingChild {
            parent: img.digest().clone(),
            child: gone.digest.clone()
        }])
    );
    let (_, missing) = store.walk(img.digest()).unwrap();
    assert_eq!(missing, vec![(img.digest().clone(), gone.digest.clone())]);

    // Re-fetching the layer heals it.
    let lease = store.lease("refetch", None).unwrap();
    put_new(&store, &lease, &gone);
    let healed = store.verify(FULL).unwrap();
    assert!(healed.problems.is_empty(), "{:?}", healed.problems);
}

fn repair_of_a_corrupt_tagged_manifest_leaves_a_dangling_tag(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let img = tagged_image(&store, "badman");
    let p = store.blob_path(img.digest());
    let mut bytes = img.manifest.bytes.clone();
    // Same size and still valid JSON: one indentation space becomes a tab.
    let i = bytes.iter().rposition(|&b| b == b' ').unwrap();
    bytes[i] = b'\t';
    fx.overwrite(&store, img.digest(), &bytes);
    let r = store
        .verify(VerifyOptions {
            full: true,
            repair: true,
        })
        .unwrap();
    assert!(
        r.problems.contains(&Problem::WrongDigest {
            digest: img.digest().clone(),
            actual: Digest::sha256(&bytes),
        }),
        "{:?}",
        r.problems
    );
    assert!(store.record(img.digest()).unwrap().is_none());
    assert!(!p.exists(), "corrupt file removed by repair");
    assert_eq!(store.backend().stat(img.digest()).unwrap(), None);
    assert!(store.edges(img.digest()).unwrap().is_empty());

    let after = store.verify(FULL).unwrap();
    assert_eq!(
        problems(&after),
        set(&[Problem::DanglingTag {
            reference: "badman:v1".into(),
            digest: img.digest().clone(),
        }])
    );
}

/// Past a few hundred records an object store is listed once instead of asked per record:
/// a missing object and one of the wrong size are still found, and nothing else is.
fn many_records_are_checked_from_one_listing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("test", None).unwrap();
    let blobs: Vec<Blob> = (0..300)
        .map(|i| Blob::new("application/octet-stream", format!("blob {i}").into_bytes()))
        .collect();
    for b in &blobs {
        put(&store, &lease, b);
    }
    let r = store.verify(FAST).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.checked, 300);
    fx.remove(&store, &blobs[7].digest);
    let mut longer = blobs[100].bytes.clone();
    longer.push(b'!');
    fx.overwrite(&store, &blobs[100].digest, &longer);
    let want = set(&[
        Problem::MissingFile {
            digest: blobs[7].digest.clone(),
        },
        Problem::WrongSize {
            digest: blobs[100].digest.clone(),
            expected: blobs[100].size(),
            actual: blobs[100].size() + 1,
        },
    ]);
    assert_eq!(problems(&store.verify(FAST).unwrap()), want);
}

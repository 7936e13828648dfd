//! Everything the store knows survives closing and reopening it.

use std::collections::BTreeMap;

use sealift_oci::Digest;
use sealift_store::Store;

use crate::common::*;

#[test]
fn tags_records_edges_and_pins_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let idx = index(vec![
        (image("amd64", vec![layer("p-1"), layer("p-2")]), "amd64"),
        (image("arm64", vec![layer("p-1"), layer("p-3")]), "arm64"),
    ]);
    let solo = image("amd64", vec![layer("p-solo")]);
    type Snapshot = (
        Vec<(String, String, Digest, u64)>,
        Vec<(Digest, sealift_store::record::BlobRecord)>,
        BTreeMap<Digest, Vec<(Digest, bool)>>,
        Vec<Digest>,
    );
    let snapshot = |store: &Store| -> Snapshot {
        let tags = store
            .tags()
            .unwrap()
            .into_iter()
            .map(|t| (t.repo.to_string(), t.tag.to_string(), t.digest, t.updated))
            .collect();
        let records = all_records(store);
        let mut edges = BTreeMap::new();
        for (d, r) in &records {
            if r.manifest {
                let mut e: Vec<_> = store
                    .edges(d)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.child, e.required))
                    .collect();
                e.sort();
                edges.insert(d.clone(), e);
            }
        }
        (tags, records, edges, store.pins().unwrap())
    };

    let before = {
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease("pull", None).unwrap();
        put_index(&store, &lease, &idx);
        put_image(&store, &lease, &solo);
        store
            .set_tag(&repo("multi"), &tag("v1"), idx.digest())
            .unwrap();
        store
            .set_tag(&repo("multi"), &tag("latest"), idx.digest())
            .unwrap();
        store
            .set_tag(&repo("solo"), &tag("v1"), solo.digest())
            .unwrap();
        store.pin(solo.digest()).unwrap();
        drop(lease);
        let s = snapshot(&store);
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.2.len(), 4, "index + 3 image manifests");
        s
    };

    let store = Store::open(dir.path()).unwrap();
    let after = snapshot(&store);
    assert_eq!(after, before);
    assert_eq!(
        store.resolve(&"multi:v1".parse().unwrap()).unwrap(),
        *idx.digest()
    );
    for b in idx
        .images
        .iter()
        .flat_map(|i| i.blobs())
        .chain(solo.blobs())
    {
        assert_eq!(store.read_small(&b.digest, 1 << 20).unwrap(), b.bytes);
    }
    let (bytes, view) = store.manifest(idx.digest()).unwrap();
    assert_eq!(bytes, idx.index.bytes);
    assert_eq!(view.manifests.len(), 2);
    let (nodes, missing) = store.walk(idx.digest()).unwrap();
    assert!(missing.is_empty());
    assert_eq!(nodes.len(), idx.digests().len());
    let r = store.verify(sealift_store::verify::VerifyOptions {
        full: true,
        repair: false,
    });
    assert!(r.unwrap().problems.is_empty());

    // And GC after the reopen keeps all of it (tags and pins are roots).
    let r = store
        .gc(&sealift_store::gc::GcOptions {
            dry_run: false,
            grace: std::time::Duration::ZERO,
        })
        .unwrap();
    assert!(r.removed.is_empty(), "{:?}", r.removed);
}

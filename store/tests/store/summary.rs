//! What listings read without walking every record: edges that carry their child's size,
//! and per-manifest summaries (platforms). A store written before either existed must list
//! exactly as one written now.

use std::path::Path;

use sealift_oci::Digest;
use sealift_store::record::{self, EdgeRecord};
use sealift_store::Store;

use crate::common::*;

/// What `images` and `du` show of every root.
fn listing(store: &Store, roots: &[&Digest]) -> String {
    let mut out = String::new();
    for d in roots {
        let s = store.image_summary(d).unwrap().unwrap();
        out += &format!("{d}: {s:?} {:?}\n", store.platforms(d).unwrap());
    }
    out + &serde_json::to_string(&store.du(10).unwrap()).unwrap()
}

/// Rewrite the store's metadata as a sealift from before issue 13 left it: edge records
/// without sizes, and no summaries.
fn as_written_before_sizes(dir: &Path) {
    use redb::ReadableTable;
    let db = redb::Database::open(dir.join("meta.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut edges = tx.open_table(tree("edges")).unwrap();
        let all: Vec<(Vec<u8>, Vec<u8>)> = edges
            .iter()
            .unwrap()
            .map(|i| {
                let (k, v) = i.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        assert!(!all.is_empty());
        for (k, v) in all {
            let e: EdgeRecord = record::decode("edges", &v).unwrap();
            assert!(v.len() > record::encode(&e).len(), "edges now carry a size");
            edges
                .insert(k.as_slice(), record::encode(&e).as_slice())
                .unwrap();
        }
    }
    tx.delete_table(tree("summaries")).unwrap();
    tx.commit().unwrap();
}

/// A tree of the store's metadata file, to read or rewrite it as another sealift would.
fn tree(name: &str) -> redb::TableDefinition<'_, &'static [u8], &'static [u8]> {
    redb::TableDefinition::new(name)
}

/// The keys of one tree of the metadata of the (closed) store at `dir`.
fn keys(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(dir.join("meta.redb")).unwrap();
    let tx = db.begin_read().unwrap();
    let t = match tx.open_table(tree(name)) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Vec::new(),
        Err(e) => panic!("{e}"),
    };
    t.iter()
        .unwrap()
        .map(|i| i.unwrap().0.value().to_vec())
        .collect()
}

fn summaries(dir: &Path) -> usize {
    keys(dir, "summaries").len()
}

#[test]
fn a_store_written_before_edge_sizes_lists_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let idx = index(vec![
        (image("amd64", vec![layer("s1"), layer("s2")]), "amd64"),
        (image("arm64", vec![layer("s1"), layer("s3")]), "arm64"),
    ]);
    let single = image("riscv64", vec![layer("s4")]);
    let before = {
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease("test", None).unwrap();
        put_index(&store, &lease, &idx);
        put_image(&store, &lease, &single);
        store
            .set_tag(&repo("multi"), &tag("1"), idx.digest())
            .unwrap();
        store
            .set_tag(&repo("one"), &tag("1"), single.digest())
            .unwrap();
        drop(lease);
        // A missing file, and one of the wrong size, are found both ways.
        let gone = &idx.images[1].layers[1].blob.digest;
        let longer = &single.layers[0].blob.digest;
        for (d, grow) in [(gone, false), (longer, true)] {
            let path = dir.path().join("blobs/sha256").join(d.hex());
            make_writable(&path);
            if grow {
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.push(0);
                std::fs::write(&path, bytes).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        listing(&store, &[idx.digest(), single.digest()])
    };
    assert!(
        before.contains("linux/amd64") && before.contains("linux/riscv64"),
        "{before}"
    );
    assert!(before.contains(&idx.images[1].layers[1].blob.digest.to_string()));
    // Three image manifests and the index, summarised when they were committed.
    assert_eq!(summaries(dir.path()), 4);

    as_written_before_sizes(dir.path());
    assert_eq!(summaries(dir.path()), 0);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(listing(&store, &[idx.digest(), single.digest()]), before);
    drop(store);
    // Asking for platforms kept the summaries it had to compute.
    assert_eq!(summaries(dir.path()), 2);
}

#[test]
fn gc_removes_the_summary_with_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let kept = image("amd64", vec![layer("g1")]);
    let dropped = image("arm64", vec![layer("g2")]);
    {
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease("test", None).unwrap();
        put_image(&store, &lease, &kept);
        put_image(&store, &lease, &dropped);
        store.set_tag(&repo("k"), &tag("1"), kept.digest()).unwrap();
        drop(lease);
    }
    assert_eq!(summaries(dir.path()), 2);
    {
        let store = Store::open(dir.path()).unwrap();
        let report = store
            .gc(&sealift_store::gc::GcOptions {
                dry_run: false,
                grace: std::time::Duration::ZERO,
            })
            .unwrap();
        assert!(
            report.removed.iter().any(|c| &c.digest == dropped.digest()),
            "{report:?}"
        );
        assert_eq!(store.platforms(kept.digest()).unwrap(), ["linux/amd64"]);
    }
    assert_eq!(keys(dir.path(), "summaries"), vec![kept.digest().to_key()]);
}

//! A store of format 1 (metadata in sled) opens in format 2 (redb) with the same content.
//!
//! `format1.tar.gz` is a real one: `make-sample --corpus` imported by sealift at eafa88b
//! (the last release writing format 1), then `sealift tag corpus:shared other/repo:v1`.
//! What that sealift listed is written out below.

use std::path::Path;

use sealift_oci::Digest;
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;

/// `sealift --json images` of the fixture before the upgrade: reference, digest, size.
const IMAGES: &[(&str, &str, &str, u64)] = &[
    (
        "corpus",
        "docker",
        "767f3636e36ba043b8ec7aa6eeda389f273dc1100a0f4b28c16d017b8fb894f0",
        2989,
    ),
    (
        "corpus",
        "foreign",
        "7dc94f5e58fa4ad4e4b4151e8032c9b56e5f91be1208d65bca2b484d7be35700",
        1298,
    ),
    (
        "corpus",
        "multi",
        "2bbec0344d5a356f37a887f191bf1b87800c08350da5a8ba03ec76b394fecd99",
        5061,
    ),
    (
        "corpus",
        "nondist",
        "cf4db1928635c910d779a73b9ab5eea150bf48c8cdd7e0724d554aafa9c41604",
        1281,
    ),
    (
        "corpus",
        "shared",
        "9b23c202a208dbe9a61db96ddb05d130f6e476ff4a3eb8f187192ff64355f83b",
        1465,
    ),
    (
        "corpus",
        "zstd",
        "02351a49487ba2aa5b7e99324e3a5afc7b1facd598f2a5832cf602ca8d5d5619",
        3769,
    ),
    (
        "other/repo",
        "v1",
        "9b23c202a208dbe9a61db96ddb05d130f6e476ff4a3eb8f187192ff64355f83b",
        1465,
    ),
];

fn unpack(dir: &Path) {
    let f = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/store/format1.tar.gz"
    ))
    .unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(dir)
        .unwrap();
}

/// Check the fixture's content, and `extra` blobs of `extra_bytes` put since.
fn check_content(store: &Store, extra: usize, extra_bytes: u64) {
    let tags = store.tags().unwrap();
    let got: Vec<(String, String, String)> = tags
        .iter()
        .map(|t| (t.repo.to_string(), t.tag.to_string(), t.digest.to_string()))
        .collect();
    let want: Vec<(String, String, String)> = IMAGES
        .iter()
        .map(|(r, t, d, _)| (r.to_string(), t.to_string(), format!("sha256:{d}")))
        .collect();
    assert_eq!(got, want);
    for (_, _, d, size) in IMAGES {
        let d: Digest = format!("sha256:{d}").parse().unwrap();
        let s = store.image_summary(&d).unwrap().unwrap();
        assert_eq!(s.size, *size, "{d}");
        assert!(
            s.missing.is_empty() && s.missing_files.is_empty(),
            "{d}: {s:?}"
        );
    }
    // `sealift --json du` before the upgrade: logical 17328, physical 16395, 35 blobs.
    let du = store.du(10).unwrap();
    assert_eq!(
        (du.logical, du.physical, du.blobs),
        (17328, 16395 + extra_bytes, 35 + extra)
    );
    let report = store
        .verify(VerifyOptions {
            full: true,
            ..Default::default()
        })
        .unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.checked, 35 + extra);
}

#[test]
fn a_format_1_store_opens_upgraded_with_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    assert!(dir.path().join("db/conf").exists());
    {
        let store = Store::open(dir.path()).unwrap();
        check_content(&store, 0, 0);
        // Still a working store: a new lease, put and tag.
        let lease = store.lease("after", None).unwrap();
        let d = Digest::sha256(b"new");
        store.put_blob(&lease, &d, 3, "", &mut &b"new"[..]).unwrap();
        store.pin(&d).unwrap();
    }
    let version = std::fs::read_to_string(dir.path().join("VERSION")).unwrap();
    assert_eq!(version.trim(), "sealift-store 2");
    assert!(
        !dir.path().join("db").exists(),
        "the sled database is removed"
    );
    assert!(dir.path().join("meta.redb").exists());
    let store = Store::open(dir.path()).unwrap();
    check_content(&store, 1, 3);
    assert_eq!(store.pins().unwrap(), vec![Digest::sha256(b"new")]);
}

#[test]
fn an_upgrade_killed_before_version_2_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    // What a kill part way leaves: a partial new file beside the untouched old database.
    std::fs::write(dir.path().join("meta.redb.upgrading"), b"partial").unwrap();
    let store = Store::open(dir.path()).unwrap();
    check_content(&store, 0, 0);
    drop(store);
    assert!(!dir.path().join("meta.redb.upgrading").exists());
}

/// An empty `snap.<lsn>.generating`, as sled 0.34 leaves it when killed or out of space
/// while writing a snapshot, does not stop the upgrade (sled would refuse to open).
#[test]
fn an_unfinished_sled_snapshot_does_not_stop_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    let leftover = sealift_testkit::leave_unfinished_sled_snapshot(dir.path());
    assert!(leftover.exists());
    let store = Store::open(dir.path()).unwrap();
    check_content(&store, 0, 0);
}

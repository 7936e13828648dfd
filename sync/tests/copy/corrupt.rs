//! Bytes that do not match their descriptor, from a registry or a layout, are refused by
//! whichever side hashes them (the sink, when it hashes: each byte is hashed once), and
//! nothing is tagged.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use super::common::{corpus_in_registry, cp, digest_of};
use super::skopeo_raw;
use sealift_copy::copy::CopyOptions;
use sealift_fixtures::{corpus, Layout};
use sealift_store::Store;
use sealift_testkit::{Fault, FaultProxy, Registry};

/// The corpus's `shared` image in a real registry as `x/shared:1`, and a proxy in front
/// of it that corrupts every blob body it passes (the registry must outlive the proxy).
async fn corrupting_source(tmp: &Path) -> (Layout, Registry, FaultProxy) {
    let (layout, reg) = corpus_in_registry(tmp, "shared", "x/shared:1").await;
    let h = reg.host();
    let proxy = FaultProxy::start(&h);
    proxy.push(Fault::Corrupt {
        path: "/blobs/".into(),
        times: 100,
    });
    (layout, reg, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupted_transfer_commits_nothing_and_tags_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _reg, proxy) = corrupting_source(tmp.path()).await;
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let err = cp(
        &format!("docker://{}/x/shared:1", proxy.host()),
        "store:x/shared:1",
        Some(&store),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("digest") || err.contains("mismatch"), "{err}");
    assert!(store.tags().unwrap().is_empty(), "nothing tagged");
    let v = store
        .verify(sealift_store::verify::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    // Whatever was committed is correct content (verified above); the corrupt blobs are not.
    for item in store.records() {
        let (d, _) = item.unwrap();
        assert!(layout.blobs.contains_key(&d.to_string()));
    }
}

/// A layout's blob file changed on disk (same size, other bytes) is refused by the store's
/// own hash: the layout source hands the store sink its bytes unhashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_layout_blob_is_refused_by_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = corpus();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    // The largest blob of the image: a layer.
    let root = digest_of(&layout, "shared");
    let m: serde_json::Value =
        serde_json::from_slice(&layout.blobs[&root.to_string()].bytes).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = dir
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let err = cp(
        &format!("oci:{}:shared", dir.display()),
        "store:x/shared:1",
        Some(&store),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains(&layer), "{err}");
    assert!(err.contains("digest"), "{err}");
    assert!(store.tags().unwrap().is_empty(), "nothing tagged");
    assert!(store.record(&layer.parse().unwrap()).unwrap().is_none());
}

/// Registry to registry, each blob is hashed once, by the upload (the download skips its
/// own check because the sink hashes): bytes corrupted on the way in are still refused
/// before the upload completes, and the destination tag is never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupted_registry_to_registry_copy_is_refused_and_tags_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _reg, proxy) = corrupting_source(tmp.path()).await;
    let dest = Registry::start();
    let err = cp(
        &format!("docker://{}/x/shared:1", proxy.host()),
        &format!("docker://{}/y/shared:1", dest.host()),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("digest") || err.contains("mismatch"), "{err}");
    let out = std::process::Command::new(sealift_testkit::require_tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/y/shared:1", dest.host()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the destination tag was written");
    // Without the fault the same copy goes through, byte for byte.
    proxy.clear();
    cp(
        &format!("docker://{}/x/shared:1", proxy.host()),
        &format!("docker://{}/y/shared:1", dest.host()),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let want = &layout.blobs[&digest_of(&layout, "shared").to_string()].bytes;
    assert_eq!(
        &skopeo_raw(&format!("docker://{}/y/shared:1", dest.host())),
        want
    );
}

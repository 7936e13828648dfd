//! The copy engine between every kind of place, against the real distribution registry.

mod common;
#[path = "copy/corrupt.rs"]
mod corrupt;

use std::sync::Arc;

use common::{corpus_in_registry, cp, digest_of};
use sealift_copy::copy::CopyOptions;
use sealift_fixtures::corpus;
use sealift_oci::{Digest, Platform, StoreRef};
use sealift_store::Store;
use sealift_testkit::{Fault, FaultProxy, Registry};

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = std::process::Command::new(sealift_testkit::require_tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_through_every_place_keeps_the_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = corpus();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let reg = Registry::start();
    let reg2 = Registry::start();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let h = reg.host();
    let h2 = reg2.host();
    let opts = CopyOptions::default();
    for name in ["multi", "docker", "zstd", "shared"] {
        let want = &layout.blobs[&digest_of(&layout, name).to_string()].bytes;
        let src = format!("oci:{}:{name}", dir.display());
        let r = cp(&src, &format!("docker://{h}/corpus/{name}:v1"), None, &opts)
            .await
            .unwrap();
        assert!(r.blobs_moved > 0);
        assert_eq!(
            &skopeo_raw(&format!("docker://{h}/corpus/{name}:v1")),
            want,
            "{name} in registry"
        );
        cp(
            &format!("docker://{h}/corpus/{name}:v1"),
            &format!("store:c/{name}:v1"),
            Some(&store),
            &opts,
        )
        .await
        .unwrap();
        let d = store
            .resolve(&format!("c/{name}:v1").parse::<StoreRef>().unwrap())
            .unwrap();
        assert_eq!(d, digest_of(&layout, name));
        let tar = tmp.path().join(format!("{name}.tar"));
        cp(
            &format!("store:c/{name}:v1"),
            &format!("oci-archive:{}:{name}", tar.display()),
            Some(&store),
            &opts,
        )
        .await
        .unwrap();
        if name != "docker" {
            assert_eq!(
                &skopeo_raw(&format!("oci-archive:{}:{name}", tar.display())),
                want,
                "{name} in tar"
            );
        }
        cp(
            &format!("oci-archive:{}:{name}", tar.display()),
            &format!("docker://{h2}/again/{name}:v2"),
            None,
            &opts,
        )
        .await
        .unwrap();
        assert_eq!(
            &skopeo_raw(&format!("docker://{h2}/again/{name}:v2")),
            want,
            "{name} after 4 hops"
        );
    }
    // Registry to registry, same registry: blobs are mounted, not re-sent.
    let r = cp(
        &format!("docker://{h}/corpus/shared:v1"),
        &format!("docker://{h}/mounted/shared:v1"),
        None,
        &opts,
    )
    .await
    .unwrap();
    assert!(r.blobs_mounted > 0 && r.bytes_moved == 0, "{r:?}");
    // A second copy is a no-op.
    let r = cp(
        &format!("docker://{h}/corpus/shared:v1"),
        &format!("docker://{h2}/again/shared:v2"),
        None,
        &opts,
    )
    .await
    .unwrap();
    assert!(r.up_to_date, "{r:?}");
    let v = store
        .verify(sealift_store::verify::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn platform_filter_keeps_the_index_bytes_or_rewrites_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = corpus();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let multi = digest_of(&layout, "multi");
    let idx: serde_json::Value =
        serde_json::from_slice(&layout.blobs[&multi.to_string()].bytes).unwrap();
    let entry = |arch: &str| -> Digest {
        idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let amd64 = entry("amd64");
    let arm64 = entry("arm64");
    let attestation = entry("unknown");
    let opts = CopyOptions {
        platforms: vec!["linux/amd64".parse::<Platform>().unwrap()],
        ..Default::default()
    };
    let r = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:m/sparse:1",
        Some(&store),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(
        r.destination_digest,
        Some(multi.clone()),
        "sparse copy keeps the index digest"
    );
    assert_eq!(r.platforms, vec!["linux/amd64".to_string()]);
    assert!(store.record(&amd64).unwrap().is_some());
    assert!(
        store.record(&attestation).unwrap().is_some(),
        "the attestation follows amd64"
    );
    assert!(store.record(&arm64).unwrap().is_none());
    assert_eq!(
        store.resolve(&"m/sparse:1".parse().unwrap()).unwrap(),
        multi
    );

    let opts = CopyOptions {
        platforms: vec!["linux/arm64".parse::<Platform>().unwrap()],
        rewrite_index: true,
        ..Default::default()
    };
    let r = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:m/rewritten:1",
        Some(&store),
        &opts,
    )
    .await
    .unwrap();
    let new = r.destination_digest.clone().unwrap();
    assert_ne!(new, multi);
    let (_, view) = store.manifest(&new).unwrap();
    assert_eq!(
        view.manifests.len(),
        1,
        "only arm64 (its attestation is for amd64)"
    );
    assert_eq!(view.manifests[0].digest, arm64);

    let none = CopyOptions {
        platforms: vec!["windows/amd64".parse::<Platform>().unwrap()],
        ..Default::default()
    };
    let err = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:m/none:1",
        Some(&store),
        &none,
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("linux/amd64"),
        "error lists what the index has: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn referrers_come_along_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = corpus();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let reg = Registry::start();
    let h = reg.host();
    let zstd = digest_of(&layout, "zstd");
    let opts = CopyOptions {
        referrers: true,
        ..Default::default()
    };
    let r = cp(
        &format!("oci:{}:zstd", dir.display()),
        &format!("docker://{h}/app/zstd:1"),
        None,
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1, "{r:?}");
    // distribution 2.8 has no referrers API: the fallback tag lists the SBOM.
    let listed = sealift_registry::Registry::new(sealift_registry::RegistryConfig::new(&h))
        .unwrap()
        .referrers("app/zstd", &zstd, None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    // And back: registry -> store with referrers.
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let r = cp(
        &format!("docker://{h}/app/zstd:1"),
        "store:app/zstd:1",
        Some(&store),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1);
    assert_eq!(
        store.referrers(&zstd).unwrap(),
        vec![listed[0].digest.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_writes_nothing_and_counts_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = corpus();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let opts = CopyOptions {
        dry_run: true,
        ..Default::default()
    };
    let r = cp(
        &format!("oci:{}:shared", dir.display()),
        "store:d/shared:1",
        Some(&store),
        &opts,
    )
    .await
    .unwrap();
    assert!(r.dry_run && r.blobs_moved > 0 && r.bytes_moved > 0);
    assert!(store.tags().unwrap().is_empty());
    assert_eq!(store.records().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_survive_drops_throttling_and_server_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, reg) = corpus_in_registry(tmp.path(), "multi", "f/multi:1").await;
    let h = reg.host();
    let proxy = FaultProxy::start(&h);
    proxy.push(Fault::DropAfter {
        path: "/blobs/".into(),
        after: 100,
        times: 2,
    });
    proxy.push(Fault::TooMany {
        path: "/manifests/".into(),
        retry_after: 1,
        times: 1,
    });
    proxy.push(Fault::Status {
        path: "/blobs/".into(),
        status: 503,
        times: 2,
    });
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let r = cp(
        &format!("docker://{}/f/multi:1", proxy.host()),
        "store:f/multi:1",
        Some(&store),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.destination_digest, Some(digest_of(&layout, "multi")));
    let log = proxy.requests();
    assert!(
        log.iter().any(|l| l.range.is_some()),
        "a dropped blob was resumed with Range"
    );
    assert!(log.iter().any(|l| l.status == 429));
    assert!(log.iter().filter(|l| l.status == 503).count() >= 2);
    let v = store
        .verify(sealift_store::verify::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cosign_signature_tags_come_along() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = corpus();
    let shared = digest_of(&layout, "shared");
    // A cosign-style signature: a plain manifest (no subject) tagged sha256-<hex>.sig.
    let payload = sealift_fixtures::Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{shared}"}}}}}}"#)
            .into_bytes(),
    );
    let layer = layout.add(payload);
    let config = layout.add(sealift_fixtures::empty_blob());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let sig = layout.add(sealift_fixtures::Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap(),
    ));
    layout.add_ref(sig.clone(), Some("sig"));
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let reg = Registry::start();
    let h = reg.host();
    let opts = CopyOptions::default();
    let sig_tag = format!("sha256-{}.sig", shared.hex());
    cp(
        &format!("oci:{}:shared", dir.display()),
        &format!("docker://{h}/s/app:1"),
        None,
        &opts,
    )
    .await
    .unwrap();
    cp(
        &format!("oci:{}:sig", dir.display()),
        &format!("docker://{h}/s/app:{sig_tag}"),
        None,
        &opts,
    )
    .await
    .unwrap();

    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let with = CopyOptions {
        referrers: true,
        ..Default::default()
    };
    let r = cp(
        &format!("docker://{h}/s/app:1"),
        "store:s/app:1",
        Some(&store),
        &with,
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1, "{r:?}");
    let tagged = store
        .resolve(&format!("s/app:{sig_tag}").parse().unwrap())
        .unwrap();
    assert_eq!(tagged.to_string(), sig["digest"].as_str().unwrap());
    // And on to another repository of a registry, tag and all.
    let r = cp(
        "store:s/app:1",
        &format!("docker://{h}/t/app:1"),
        Some(&store),
        &with,
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1, "the store's cosign tag travels too: {r:?}");
    assert_eq!(
        skopeo_raw(&format!("docker://{h}/t/app:{sig_tag}")),
        serde_json::to_vec(&manifest).unwrap()
    );
    let r = cp(
        &format!("docker://{h}/s/app:1"),
        &format!("docker://{h}/u/app:1"),
        None,
        &with,
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1);
    assert_eq!(
        skopeo_raw(&format!("docker://{h}/u/app:{sig_tag}")),
        serde_json::to_vec(&manifest).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deep_index_chain_is_refused_before_thousands_of_fetches() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let top = common::push_deep_chain(&reg.host(), "deep/chain", "1", 10_000).await;
    let proxy = FaultProxy::start(&reg.host());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let out = tmp.path().join("out");
    for dst in [
        "store:deep/chain:1".to_string(),
        format!("oci:{}:deep", out.display()),
    ] {
        proxy.clear();
        let err = cp(
            &format!("docker://{}/deep/chain:1", proxy.host()),
            &dst,
            Some(&store),
            &CopyOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            err.contains(&top.to_string()) && err.contains("nests more than 16 manifests deep"),
            "{err}"
        );
        // The limit stops the walk before it fetches what lies past it.
        let fetched = proxy
            .requests()
            .iter()
            .filter(|r| r.path.contains("/manifests/"))
            .count();
        assert!(
            fetched <= sealift_oci::manifest::MAX_DEPTH + 2,
            "{fetched} manifest requests"
        );
    }
    assert!(store.tags().unwrap().is_empty());
    assert!(!out.join("index.json").exists());
}

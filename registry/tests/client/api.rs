//! Blobs, manifests, tags, the catalog, mounts and referrers against the real registry; corrupted content refused.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_manifests_tags_and_catalog_round_trip() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let mut cfg = config(&proxy.host());
    cfg.page_size = 3;
    let reg = Registry::new(cfg).unwrap();
    reg.ping().await.unwrap();

    // A small blob (one PUT) and one over the chunk threshold (PATCH chunks).
    let small = pseudo_random(1000, 1);
    let big = pseudo_random(40 * 1024 * 1024, 2);
    let small_d = put_blob(&reg, "app/one", &small).await;
    let big_d = put_blob(&reg, "app/one", &big).await;
    let patches = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(patches, 3, "40 MiB in 16 MiB chunks");
    assert_eq!(
        reg.blob_head("app/one", &small_d.digest).await.unwrap(),
        Some(1000)
    );
    assert_eq!(
        reg.blob_head("app/one", &big_d.digest).await.unwrap(),
        Some(big.len() as u64)
    );
    assert_eq!(read_all(&reg, "app/one", &small_d).await.unwrap(), small);
    assert_eq!(read_all(&reg, "app/one", &big_d).await.unwrap(), big);
    let absent = Digest::sha256(b"absent");
    assert_eq!(reg.blob_head("app/one", &absent).await.unwrap(), None);
    let err = reg.blob_get("app/one", &absent, 6).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");

    // A body that does not match its digest is refused before anything is committed.
    let wrong = reg
        .blob_put("app/one", &absent, 3, std::io::Cursor::new(b"abc".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, RegistryError::DigestMismatch { .. }),
        "{wrong}"
    );

    // Manifests: exact bytes back, by tag and by digest.
    let mut config = small_d.clone();
    config.media_type = mt::OCI_CONFIG.into();
    let bytes = image_manifest(&config, std::slice::from_ref(&big_d), None);
    let digest = reg
        .manifest_put("app/one", "v1", mt::OCI_MANIFEST, &bytes)
        .await
        .unwrap();
    assert_eq!(digest, Digest::sha256(&bytes));
    for reference in ["v1".to_string(), digest.to_string()] {
        let m = reg.manifest_get("app/one", &reference).await.unwrap();
        assert_eq!(m.bytes, bytes);
        assert_eq!(m.digest, digest);
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
    }
    let head = reg.manifest_head("app/one", "v1").await.unwrap().unwrap();
    assert_eq!(head.digest, digest);
    assert_eq!(head.size, bytes.len() as u64);
    assert_eq!(head.media_type, mt::OCI_MANIFEST);
    assert_eq!(reg.manifest_head("app/one", "nope").await.unwrap(), None);
    let err = reg.manifest_get("app/one", "nope").await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::NotFound { repo, reference, .. } if repo == "app/one" && reference == "nope"),
        "{err}"
    );

    // Tags (distribution 2.8 answers in one page whatever `n` asks; the catalog below
    // shows the pagination).
    let mut want: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    for t in &want {
        reg.manifest_put("app/one", t, mt::OCI_MANIFEST, &bytes)
            .await
            .unwrap();
    }
    want.push("v1".into());
    let mut tags = reg.tags("app/one").await.unwrap();
    tags.sort();
    assert_eq!(tags, want);
    let err = reg.tags("never/pushed").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");

    // Catalog over pages of 3.
    for r in [
        "app/two",
        "app/three",
        "lib/four",
        "lib/five",
        "lib/six",
        "z",
    ] {
        push_image(&reg, r, "latest", 7).await;
    }
    proxy.clear();
    let repos = reg.catalog().await.unwrap();
    assert_eq!(
        repos,
        [
            "app/one",
            "app/three",
            "app/two",
            "lib/five",
            "lib/four",
            "lib/six",
            "z"
        ]
    );
    let pages: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/_catalog") && r.status == 200)
        .map(|r| r.path)
        .collect();
    assert_eq!(pages.len(), 3, "7 repositories in pages of 3: {pages:?}");
    assert!(pages.iter().all(|p| p.contains("n=3")), "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_across_repositories() {
    let server = TestRegistry::start();
    let reg = client(&server.host());
    let d = put_blob(&reg, "src/repo", &pseudo_random(5000, 3)).await;
    assert_eq!(reg.blob_head("dst/repo", &d.digest).await.unwrap(), None);
    assert!(reg
        .blob_mount("dst/repo", "src/repo", &d.digest)
        .await
        .unwrap());
    assert_eq!(
        reg.blob_head("dst/repo", &d.digest).await.unwrap(),
        Some(5000)
    );
    // Nothing to mount: the registry opens an upload instead, which the client cancels.
    let absent = Digest::sha256(b"not there");
    assert!(!reg
        .blob_mount("dst/repo", "src/repo", &absent)
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_and_manifest_are_refused() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let reg = client(&proxy.host());
    let blob = put_blob(&reg, "r", &pseudo_random(300_000, 4)).await;
    let (_, digest) = push_image(&reg, "r", "v1", 4).await;

    proxy.push(Fault::Corrupt {
        path: format!("/blobs/{}", blob.digest),
        times: 1,
    });
    let err = read_all(&reg, "r", &blob).await.unwrap_err();
    assert!(
        matches!(registry_error(&err), RegistryError::DigestMismatch { expected, .. } if *expected == blob.digest),
        "{err}"
    );
    // Once the fault is spent the same read succeeds.
    assert_eq!(read_all(&reg, "r", &blob).await.unwrap().len(), 300_000);

    // By tag: caught by Docker-Content-Digest; by digest: by the digest asked for.
    for reference in ["v1".to_string(), digest.to_string()] {
        proxy.push(Fault::Corrupt {
            path: "/manifests/".into(),
            times: 1,
        });
        let err = reg.manifest_get("r", &reference).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == digest),
            "{reference}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_fall_back_to_the_tag_schema() {
    let server = TestRegistry::start();
    let reg = client(&server.host());
    let (subject_bytes, subject) = push_image(&reg, "r", "v1", 12).await;
    let subject_desc = Descriptor::new(
        mt::OCI_MANIFEST,
        subject.clone(),
        subject_bytes.len() as u64,
    );

    // An SBOM artifact that refers to the image.
    let empty = put_blob(&reg, "r", b"{}").await;
    let mut empty_cfg = empty.clone();
    empty_cfg.media_type = mt::OCI_EMPTY.into();
    let mut sbom_layer = put_blob(&reg, "r", br#"{"spdxVersion":"SPDX-2.3"}"#).await;
    sbom_layer.media_type = "application/spdx+json".into();
    let sbom = image_manifest(&empty_cfg, &[sbom_layer], Some(&subject_desc));
    let sbom_digest = Digest::sha256(&sbom);
    reg.manifest_put("r", &sbom_digest.to_string(), mt::OCI_MANIFEST, &sbom)
        .await
        .unwrap();

    // distribution 2.8 has no referrers API: nothing yet.
    assert!(reg.referrers("r", &subject, None).await.unwrap().is_empty());

    // The fallback tag's index lists the referrer.
    let mut entry = Descriptor::new(mt::OCI_MANIFEST, sbom_digest.clone(), sbom.len() as u64);
    entry.artifact_type = Some("application/spdx+json".into());
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": [entry],
    }))
    .unwrap();
    reg.manifest_put("r", &referrers_tag(&subject), mt::OCI_INDEX, &index)
        .await
        .unwrap();
    let found = reg.referrers("r", &subject, None).await.unwrap();
    assert_eq!(found, vec![entry.clone()]);
    let filtered = reg
        .referrers("r", &subject, Some("application/spdx+json"))
        .await
        .unwrap();
    assert_eq!(filtered, vec![entry]);
    assert!(reg
        .referrers(
            "r",
            &subject,
            Some("application/vnd.dev.cosign.artifact.sig.v1+json")
        )
        .await
        .unwrap()
        .is_empty());
}

//! The OCI 1.1 referrers API: empty answers, absent subjects, artifactType filters and
//! pagination.

use std::net::SocketAddr;

use sealift_oci::{Digest, Repo};
use sealift_serve::ServeOptions;
use sealift_store::Store;
use serde_json::Value;

use crate::common::*;

/// Store an artifact manifest whose `subject` is `subject` (present or not), with
/// `artifact_type` and an annotation `note`.
fn put_referrer(store: &Store, subject: &Digest, artifact_type: &str, note: &str) -> Digest {
    let lease = store.lease("test referrer", None).unwrap();
    let empty = Digest::sha256(b"{}");
    store
        .put_blob(&lease, &empty, 2, OCI_EMPTY, &mut &b"{}"[..])
        .unwrap();
    let empty_desc = serde_json::json!({ "mediaType": OCI_EMPTY, "digest": empty, "size": 2 });
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty_desc,
        "layers": [empty_desc],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 1234 },
        "annotations": { "note": note },
    });
    let bytes = serde_json::to_vec(&m).unwrap();
    let opts = sealift_store::ManifestOptions {
        expected: None,
        media_type: Some(OCI_MANIFEST),
        sparse: false,
    };
    store.put_manifest(&lease, &bytes, opts).unwrap().digest
}

/// The digests of a referrers response, checked to be an OCI index.
fn referrer_digests(st: u16, body: &[u8], head: &str) -> Vec<String> {
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(body));
    assert_eq!(header_of(head, "content-type"), Some(OCI_INDEX), "{head}");
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX);
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

// Conformance suite, content discovery: "GET request to nonexistent blob should result in
// empty 200 response", also for a repository that has no tags at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_of_a_repository_without_tags_are_an_empty_index() {
    let s = Served::start(ServeOptions::default()).await;
    let zero = format!("sha256:{}", "0".repeat(64));
    let zstd = s.digest("zstd");
    for path in [
        format!("/v2/absent/referrers/{zero}"),
        format!("/v2/absent/referrers/{zstd}"),
        format!("/v2/absent/referrers/{zstd}?artifactType={SPDX}"),
        format!("/v2/corpus/referrers/{zero}"),
    ] {
        let (st, body, head) = get_raw(s.addr, path.clone(), String::new()).await;
        assert!(referrer_digests(st, &body, &head).is_empty(), "{path}");
    }
    s.shutdown().await;
}

// Conformance suite: an artifact pushed with a `subject` that is not in the registry is
// listed by the referrers API of that subject, filtered or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_referrers_of_an_absent_subject_are_listed() {
    let s = Served::start(ServeOptions::default()).await;
    let absent = Digest::sha256(b"an image never pulled");
    assert!(s.store.record(&absent).unwrap().is_none());
    let repo: Repo = "art".parse().unwrap();
    let sbom = put_referrer(&s.store, &absent, SPDX, "sbom");
    let sig = put_referrer(&s.store, &absent, COSIGN, "signature");
    s.store
        .set_tag(&repo, &"sbom".parse().unwrap(), &sbom)
        .unwrap();
    s.store
        .set_tag(&repo, &"sig".parse().unwrap(), &sig)
        .unwrap();
    // One more, tagged nowhere: no repository reaches it, so none lists it.
    let stray = put_referrer(&s.store, &absent, SPDX, "stray");
    s.store.pin(&stray).unwrap();

    let mut both = vec![sbom.to_string(), sig.to_string()];
    both.sort();
    let cases = [
        (String::new(), both.clone()),
        (format!("?artifactType={SPDX}"), vec![sbom.to_string()]),
        (
            "?artifactType=application%2Fspdx%2Bjson".into(),
            vec![sbom.to_string()],
        ),
        (format!("?artifactType={COSIGN}"), vec![sig.to_string()]),
    ];
    for (q, want) in cases {
        let path = format!("/v2/art/referrers/{absent}{q}");
        let (st, body, head) = get_raw(s.addr, path.clone(), String::new()).await;
        assert_eq!(referrer_digests(st, &body, &head), want, "{path}");
        assert_eq!(
            header_of(&head, "oci-filters-applied"),
            (!q.is_empty()).then_some("artifactType"),
            "{path}"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        for m in v["manifests"].as_array().unwrap() {
            let t = if m["digest"] == sbom.to_string() {
                SPDX
            } else {
                COSIGN
            };
            assert_eq!(m["artifactType"], t);
            assert_eq!(m["mediaType"], OCI_MANIFEST);
        }
    }
    // A repository that does not reach them lists none.
    let (st, body, head) = get_raw(
        s.addr,
        format!("/v2/corpus/referrers/{absent}"),
        String::new(),
    )
    .await;
    assert!(referrer_digests(st, &body, &head).is_empty());
    s.shutdown().await;
}

// `artifactType=application/spdx+json` written with a raw `+` (as the conformance suite
// and most clients send it) and escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_type_filter_takes_a_raw_plus() {
    let s = Served::start(ServeOptions::default()).await;
    let zstd = s.digest("zstd");
    let sbom = s.store.referrers(&zstd).unwrap();
    assert_eq!(sbom.len(), 1);
    for t in [
        "application/spdx+json",
        "application/spdx%2Bjson",
        "application%2fspdx%2bjson",
    ] {
        let path = format!("/v2/corpus/referrers/{zstd}?artifactType={t}");
        let (st, body, head) = get_raw(s.addr, path.clone(), String::new()).await;
        assert_eq!(
            referrer_digests(st, &body, &head),
            vec![sbom[0].to_string()],
            "{path}"
        );
    }
    let path = format!("/v2/corpus/referrers/{zstd}?artifactType=application/spdx%20json");
    let (st, body, head) = get_raw(s.addr, path, String::new()).await;
    assert!(referrer_digests(st, &body, &head).is_empty());
    s.shutdown().await;
}

/// Follow `Link: <…>; rel="next"` from `first`: (every digest in order, pages, largest body).
async fn walk_referrers(addr: SocketAddr, first: String) -> (Vec<String>, usize, usize) {
    let (mut all, mut pages, mut largest) = (Vec::new(), 0, 0);
    let mut next = Some(first);
    while let Some(path) = next.take() {
        let (st, body, head) = get_raw(addr, path.clone(), String::new()).await;
        all.extend(referrer_digests(st, &body, &head));
        pages += 1;
        largest = largest.max(body.len());
        if let Some(link) = header_of(&head, "link") {
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            next = Some(link[1..link.find('>').unwrap()].to_string());
        }
        assert!(pages < 100, "Link loop at {path}");
    }
    (all, pages, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_paginated_with_links() {
    let s = Served::start(ServeOptions::default()).await;
    let zstd = s.digest("zstd");
    // 40 signatures with 30 KB of annotations each: 1.2 MB of descriptors, more than a
    // page may hold.
    let big = "x".repeat(30_000);
    for i in 0..40 {
        let t = if i % 2 == 0 {
            COSIGN
        } else {
            "application/example+json"
        };
        put_referrer(&s.store, &zstd, t, &format!("{i} {big}"));
    }
    let mut want: Vec<String> = s
        .store
        .referrers(&zstd)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    want.sort();
    assert_eq!(want.len(), 41);

    // No `n`: pages bounded in bytes, every referrer once, in digest order.
    let (all, pages, largest) =
        walk_referrers(s.addr, format!("/v2/corpus/referrers/{zstd}")).await;
    assert_eq!(all, want);
    assert!(pages >= 2, "{pages} pages");
    assert!(largest < (1 << 20) + 64 * 1024, "a page of {largest} bytes");
    // `n`: at most n each.
    let (all, pages, _) = walk_referrers(s.addr, format!("/v2/corpus/referrers/{zstd}?n=7")).await;
    assert_eq!(all, want);
    assert_eq!(pages, 41usize.div_ceil(7));
    // The filter is carried from page to page.
    let mut sigs: Vec<String> = Vec::new();
    for d in &want {
        let rec = s.store.record(&d.parse().unwrap()).unwrap().unwrap();
        if rec.artifact_type.as_deref() == Some(COSIGN) {
            sigs.push(d.clone());
        }
    }
    assert_eq!(sigs.len(), 20);
    let (all, pages, _) = walk_referrers(
        s.addr,
        format!("/v2/corpus/referrers/{zstd}?n=6&artifactType={COSIGN}"),
    )
    .await;
    assert_eq!(all, sigs);
    assert_eq!(pages, 4);
    s.shutdown().await;
}

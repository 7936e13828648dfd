//! The read API: manifests, blobs and ranges, tags and catalog pagination, repository
//! scoping, bad requests and writes.

use std::time::{Duration, Instant};

use sealift_fixtures::CORPUS_REFS;
use sealift_oci::{Digest, Repo};
use sealift_serve::ServeOptions;
use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_blobs_and_ranges() {
    let s = Served::start(ServeOptions::default()).await;
    let c = http();

    let r = c.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = c.head(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Manifests by tag and digest: the stored bytes and their headers; HEAD the same
    // headers and no body; a matching If-None-Match: 304.
    let zstd = s.digest("zstd");
    for reference in ["zstd".to_string(), zstd.to_string()] {
        let url = s.url(&format!("/v2/corpus/manifests/{reference}"));
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], OCI_MANIFEST);
        assert_eq!(h["docker-content-digest"], zstd.to_string().as_str());
        assert_eq!(h["etag"], format!("\"{zstd}\"").as_str());
        assert_eq!(
            h["content-length"],
            s.bytes(&zstd).len().to_string().as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), s.bytes(&zstd));
        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], h["content-length"]);
        assert_eq!(
            r.headers()["docker-content-digest"],
            h["docker-content-digest"]
        );
        assert!(r.bytes().await.unwrap().is_empty());
        let r = c
            .get(&url)
            .header("if-none-match", h["etag"].clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
    }

    // Accept: Docker-only for an OCI manifest is refused, clearly, never converted.
    let url = s.url("/v2/corpus/manifests/zstd");
    let r = c
        .get(&url)
        .header("accept", format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.bytes().await.unwrap();
    assert_eq!(code(&body), "MANIFEST_UNKNOWN");
    let msg = String::from_utf8_lossy(&body);
    assert!(
        msg.contains("Accept") && msg.contains(OCI_MANIFEST),
        "{msg}"
    );
    let r = c
        .get(&url)
        .header("accept", format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let docker = s.digest("docker");
    let r = c
        .get(s.url("/v2/corpus/manifests/docker"))
        .header("accept", DOCKER_LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], DOCKER_LIST);
    assert_eq!(r.bytes().await.unwrap(), s.bytes(&docker));

    // The biggest blob: whole, HEAD, ranges.
    let (blob, bytes) = s
        .layout
        .blobs
        .values()
        .filter(|b| !b.media_type.contains("manifest") && !b.media_type.contains("index"))
        .max_by_key(|b| b.size)
        .map(|b| (b.digest.parse::<Digest>().unwrap(), b.bytes.clone()))
        .unwrap();
    let size = bytes.len() as u64;
    assert!(size > 100);
    let url = s.url(&format!("/v2/corpus/blobs/{blob}"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"],
        blob.to_string().as_str()
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap(), bytes);
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    let ranges: &[(&str, u64, u64)] = &[
        ("bytes=1-10", 1, 10),
        ("bytes=50-", 50, size - 1),
        ("bytes=-7", size - 7, size - 1),
        ("bytes=3-99999999999999999999999999", 3, size - 1),
    ];
    for (range, start, end) in ranges {
        let r = c.get(&url).header("range", *range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{size}").as_str()
        );
        let got = r.bytes().await.unwrap();
        assert_eq!(&got[..], &bytes[*start as usize..=*end as usize], "{range}");
    }
    for range in [
        format!("bytes={size}-"),
        "bytes=99999999999999999999999999-".into(),
        "bytes=-0".into(),
    ] {
        let r = c.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
        assert_eq!(code(&r.bytes().await.unwrap()), "UNSUPPORTED");
    }
    // If-Range naming other content: the whole blob.
    let r = c
        .get(&url)
        .header("range", "bytes=1-10")
        .header("if-range", "\"sha256:other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len() as u64, size);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_catalog_paginate_with_links() {
    let s = Served::start(ServeOptions::default()).await;
    let multi = s.digest("multi");
    for repo in ["other/b", "other/a", "zz"] {
        let repo: Repo = repo.parse().unwrap();
        s.store
            .set_tag(&repo, &"1".parse().unwrap(), &multi)
            .unwrap();
    }
    let c = http();
    let walk = |first: String, key: &'static str| {
        let c = c.clone();
        let base = s.url("");
        async move {
            let max = if first.contains("n=2") { 2 } else { usize::MAX };
            let mut url = Some(first);
            let mut all = Vec::new();
            let mut pages = 0;
            while let Some(u) = url.take() {
                let r = c.get(&u).send().await.unwrap();
                assert_eq!(r.status(), 200, "{u}");
                if let Some(link) = r.headers().get("link") {
                    let l = link.to_str().unwrap();
                    assert!(l.ends_with(">; rel=\"next\""), "{l}");
                    let path = &l[1..l.find('>').unwrap()];
                    url = Some(format!("{base}{path}"));
                }
                let v: Value = r.json().await.unwrap();
                let items = v[key].as_array().unwrap();
                assert!(items.len() <= max);
                all.extend(items.iter().map(|t| t.as_str().unwrap().to_string()));
                pages += 1;
            }
            (all, pages)
        }
    };
    let mut want: Vec<String> = s
        .store
        .tags()
        .unwrap()
        .into_iter()
        .filter(|t| t.repo.as_str() == "corpus")
        .map(|t| t.tag.as_str().to_string())
        .collect();
    want.sort();
    assert!(want.len() >= CORPUS_REFS.len());
    let (tags, pages) = walk(s.url("/v2/corpus/tags/list?n=2"), "tags").await;
    assert_eq!(tags, want);
    assert_eq!(pages, want.len().div_ceil(2));
    let (all, _) = walk(s.url("/v2/corpus/tags/list"), "tags").await;
    assert_eq!(all.len(), want.len());

    let (repos, pages) = walk(s.url("/v2/_catalog?n=2"), "repositories").await;
    assert_eq!(repos, ["corpus", "other/a", "other/b", "zz"]);
    assert_eq!(pages, 2);
    let r = c.get(s.url("/v2/_catalog?n=x")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.bytes().await.unwrap()), "UNSUPPORTED");
    let r = c
        .get(s.url("/v2/nothing/here/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(code(&r.bytes().await.unwrap()), "NAME_UNKNOWN");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_scoped_to_what_a_repository_reaches() {
    let s = Served::start(ServeOptions::default()).await;
    let multi = s.digest("multi");
    let zstd = s.digest("zstd");
    let repo: Repo = "other/a".parse().unwrap();
    s.store
        .set_tag(&repo, &"1".parse().unwrap(), &multi)
        .unwrap();
    let c = http();
    let get = |path: String| {
        let c = c.clone();
        let url = s.url(&path);
        async move {
            let r = c.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap())
        }
    };
    let zstd_layer = s.first_layer("zstd").digest.clone();
    // multi's children are there; zstd's manifest, layer and referrers are not.
    let (st, _) = get(format!("/v2/other/a/manifests/{multi}")).await;
    assert_eq!(st, 200);
    let (st, body) = get(format!("/v2/other/a/manifests/{zstd}")).await;
    assert_eq!((st, code(&body).as_str()), (404, "MANIFEST_UNKNOWN"));
    let (st, body) = get(format!("/v2/other/a/blobs/{zstd_layer}")).await;
    assert_eq!((st, code(&body).as_str()), (404, "BLOB_UNKNOWN"));
    let (st, body) = get(format!("/v2/other/a/referrers/{zstd}")).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));

    // Tag it: served at once (a miss takes in pending changes), with its referrer.
    s.store
        .set_tag(&repo, &"z".parse().unwrap(), &zstd)
        .unwrap();
    let (st, body) = get(format!("/v2/other/a/blobs/{zstd_layer}")).await;
    assert_eq!(st, 200);
    assert_eq!(&body[..], s.bytes(&zstd_layer));
    let (_, body) = get(format!("/v2/other/a/referrers/{zstd}")).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);

    // Untag it: gone again once the change notice arrives (it is asynchronous).
    s.store.remove_tag(&repo, &"z".parse().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _) = get(format!("/v2/other/a/blobs/{zstd_layer}")).await;
        if st == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still served after the tag went");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_writes_405() {
    let s = Served::start(ServeOptions::default()).await;
    let a = s.addr;
    let zero = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(String, u16, &str)> = vec![
        ("/v2/../../etc/passwd".into(), 404, "UNSUPPORTED"),
        (
            "/v2/corpus/../../manifests/multi".into(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/%2e%2e/%2e%2e/etc/manifests/x".into(),
            400,
            "NAME_INVALID",
        ),
        (
            "/v2/corpus%2f..%2f..%2fetc/tags/list".into(),
            400,
            "NAME_INVALID",
        ),
        ("/v2/Corpus/tags/list".into(), 400, "NAME_INVALID"),
        (
            "/v2/corpus/blobs/sha256:..%2f..%2fetc%2fpasswd".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/corpus/blobs/..%2F..%2Fdb".into(),
            400,
            "DIGEST_INVALID",
        ),
        ("/v2/corpus/manifests/..".into(), 400, "MANIFEST_INVALID"),
        (
            "/v2/corpus/manifests/sha256:1234".into(),
            400,
            "DIGEST_INVALID",
        ),
        (format!("/v2/corpus/blobs/{zero}"), 404, "BLOB_UNKNOWN"),
        (
            format!("/v2/corpus/manifests/{zero}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        ("/v2/corpus/manifests/nope".into(), 404, "MANIFEST_UNKNOWN"),
        (format!("/v2/absent/blobs/{zero}"), 404, "NAME_UNKNOWN"),
        ("/v2/absent/manifests/latest".into(), 404, "NAME_UNKNOWN"),
    ];
    for (path, status, want) in cases {
        let (st, body, _) = blocking(move || raw(a, "GET", &path, "")).await;
        assert_eq!(
            (st, code(&body).as_str()),
            (status, want),
            "GET {}",
            String::from_utf8_lossy(&body)
        );
    }
    let blob = s.digest("zstd");
    for (method, path) in [
        ("POST", "/v2/corpus/blobs/uploads/".to_string()),
        ("PATCH", "/v2/corpus/blobs/uploads/123".into()),
        ("PUT", "/v2/corpus/manifests/new".into()),
        ("DELETE", format!("/v2/corpus/manifests/{blob}")),
        ("DELETE", format!("/v2/corpus/blobs/{blob}")),
        ("POST", "/v2/".into()),
    ] {
        let (st, body, head) =
            blocking(move || raw(a, method, &path, "Content-Length: 0\r\n")).await;
        assert_eq!(st, 405, "{method}");
        assert_eq!(code(&body), "UNSUPPORTED");
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );
    }
    // A blob that is only reachable as an upload target: GET there is still refused.
    let (st, _, _) = blocking(move || raw(a, "GET", "/v2/corpus/blobs/uploads/1", "")).await;
    assert_eq!(st, 405);
    // Nothing changed.
    assert_eq!(
        s.store.resolve(&"corpus:zstd".parse().unwrap()).unwrap(),
        blob
    );
    s.shutdown().await;
}

//! Error bodies carry only the spec's codes; invalid ranges get 416 as from distribution.

use std::net::SocketAddr;

use sealift_serve::ServeOptions;

use crate::common::*;

/// The distribution spec's error codes: every 4xx JSON body must carry one of these.
const SPEC_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

// Every error body carries a code of the spec's list, with the status the spec gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_carry_only_the_specs_codes() {
    let s = Served::start(ServeOptions::default()).await;
    let zero = format!("sha256:{}", "0".repeat(64));
    let zstd = s.digest("zstd");
    let layer = s.first_layer("zstd");
    let blob = format!("/v2/corpus/blobs/{}", layer.digest);
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "GET",
            "/v2/corpus/manifests/-bad".into(),
            String::new(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "GET",
            "/v2/corpus/manifests/..".into(),
            String::new(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "GET",
            "/v2/corpus/manifests/a%20b".into(),
            String::new(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "GET",
            "/v2/corpus/tags/list?n=x".into(),
            String::new(),
            400,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/_catalog?n=-1".into(),
            String::new(),
            400,
            "UNSUPPORTED",
        ),
        (
            "GET",
            format!("/v2/corpus/referrers/{zstd}?n=lots"),
            String::new(),
            400,
            "UNSUPPORTED",
        ),
        (
            "GET",
            blob.clone(),
            "Range: bytes=500-0\r\n".into(),
            416,
            "UNSUPPORTED",
        ),
        (
            "GET",
            blob.clone(),
            format!("Range: bytes={}-\r\n", layer.size),
            416,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/Corpus/tags/list".into(),
            String::new(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/corpus/blobs/sha256:abc".into(),
            String::new(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            format!("/v2/corpus/blobs/{zero}"),
            String::new(),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/corpus/manifests/{zero}"),
            String::new(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            "/v2/absent/tags/list".into(),
            String::new(),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "GET",
            "/v2/nowhere".into(),
            String::new(),
            404,
            "UNSUPPORTED",
        ),
        (
            "PUT",
            "/v2/corpus/manifests/x".into(),
            "Content-Length: 0\r\n".into(),
            405,
            "UNSUPPORTED",
        ),
    ];
    for (method, path, headers, status, want) in cases {
        let a = s.addr;
        let p = path.clone();
        let (st, body, _) = blocking(move || raw(a, method, &p, &headers)).await;
        let got = code(&body);
        assert!(SPEC_CODES.contains(&got.as_str()), "{method} {path}: {got}");
        assert_eq!((st, got.as_str()), (status, want), "{method} {path}");
    }
    s.shutdown().await;
}

// RFC 9110 §14.2: 416 when every range is invalid or unsatisfiable. The same headers sent
// to the distribution registry holding the same blob get the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ranges_get_416_as_from_distribution() {
    let s = Served::start(ServeOptions::default()).await;
    let reg = sealift_testkit::Registry::start();
    let (src, dst) = (
        format!("docker://{}/corpus:zstd", s.host()),
        format!("docker://{}/mirror:1", reg.host()),
    );
    blocking(move || {
        tool(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "-q",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &src,
                &dst,
            ],
        )
    })
    .await;
    let layer = s.first_layer("zstd");
    let size = layer.size;
    assert!(size > 20, "{size}");
    let reg_addr: SocketAddr = reg.host().parse().unwrap();
    let ranges = [
        "bytes=500-0".to_string(),
        "bytes=5-2".into(),
        "bytes=a-b".into(),
        "bytes=-".into(),
        "bytes".into(),
        "bytes=0-1,5-2".into(),
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
        "bytes=1-10".into(),
        "bytes=-7".into(),
        "bytes=0-".into(),
        "bytes=".into(),
    ];
    for range in ranges {
        let h = format!("Range: {range}\r\n");
        let (ours, body, head) = get_raw(
            s.addr,
            format!("/v2/corpus/blobs/{}", layer.digest),
            h.clone(),
        )
        .await;
        let (theirs, their_body, their_head) =
            get_raw(reg_addr, format!("/v2/mirror/blobs/{}", layer.digest), h).await;
        assert_eq!(ours, theirs, "{range}: ours {ours}, distribution {theirs}");
        match ours {
            206 => {
                assert_eq!(body, their_body, "{range}");
                assert_eq!(
                    header_of(&head, "content-range"),
                    header_of(&their_head, "content-range"),
                    "{range}"
                );
            }
            416 => {
                assert_eq!(code(&body), "UNSUPPORTED", "{range}");
                assert_eq!(
                    header_of(&head, "content-range"),
                    Some(format!("bytes */{size}").as_str())
                );
            }
            200 => assert_eq!(body.len() as u64, size, "{range}"),
            other => panic!("{range}: {other}"),
        }
    }
    // Several ranges: the whole blob (distribution sends multipart/byteranges instead).
    let (st, body, _) = get_raw(
        s.addr,
        format!("/v2/corpus/blobs/{}", layer.digest),
        "Range: bytes=0-1,4-5\r\n".into(),
    )
    .await;
    assert_eq!((st, body.len() as u64), (200, size));
    s.shutdown().await;
}

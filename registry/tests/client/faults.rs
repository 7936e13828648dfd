//! Failures through the fault proxy: resumed downloads, retries, stalls, chunked uploads, the concurrency limit.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_download_resumes_with_range() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let reg = client(&proxy.host());
    let bytes = pseudo_random(3 * 1024 * 1024, 5);
    let d = put_blob(&reg, "r", &bytes).await;
    proxy.clear();
    proxy.push(Fault::DropAfter {
        path: format!("/blobs/{}", d.digest),
        after: 1024 * 1024,
        times: 1,
    });
    assert_eq!(read_all(&reg, "r", &d).await.unwrap(), bytes);
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].fault, Some("DropAfter"));
    assert_eq!(gets[0].range, None);
    let range = gets[1]
        .range
        .as_deref()
        .expect("the resume asks for a range");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("range {range:?}"));
    assert!(from > 0 && from <= 1024 * 1024, "{range}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let mut cfg = config(&proxy.host());
    // Retry-After is capped at twice the maximum delay: let 1 s through.
    cfg.retry.max_delay = Duration::from_secs(1);
    let reg = Registry::new(cfg).unwrap();
    let (bytes, _) = push_image(&reg, "r", "v1", 6).await;

    // 429 with Retry-After: 1 is honoured.
    proxy.push(Fault::TooMany {
        path: "/manifests/v1".into(),
        retry_after: 1,
        times: 1,
    });
    let start = Instant::now();
    assert_eq!(reg.manifest_get("r", "v1").await.unwrap().bytes, bytes);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );

    // 503 three times, then success.
    proxy.clear();
    proxy.push(Fault::Status {
        path: "/manifests/v1".into(),
        status: 503,
        times: 3,
    });
    assert_eq!(reg.manifest_get("r", "v1").await.unwrap().bytes, bytes);
    assert_eq!(proxy.requests().len(), 4);

    // 503 for longer than the policy tries: the error names the status.
    proxy.clear();
    proxy.push(Fault::Status {
        path: "/manifests/v1".into(),
        status: 503,
        times: 100,
    });
    let err = reg.manifest_get("r", "v1").await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Http { status: 503, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(proxy.requests().len(), 5, "attempts = 5");

    // A 4xx other than 429 is not retried.
    proxy.clear();
    proxy.push(Fault::Status {
        path: "/manifests/v1".into(),
        status: 400,
        times: 100,
    });
    let err = reg.manifest_get("r", "v1").await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Http { status: 400, .. }),
        "{err}"
    );
    assert_eq!(proxy.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_download_errors_instead_of_hanging() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let mut cfg = config(&proxy.host());
    cfg.timeout = Duration::from_millis(500);
    cfg.retry.attempts = 2;
    let reg = Registry::new(cfg).unwrap();
    let d = put_blob(&reg, "r", &pseudo_random(200_000, 8)).await;
    proxy.push(Fault::Stall {
        path: format!("/blobs/{}", d.digest),
        after: 1000,
        stall: Duration::from_secs(30),
        times: 100,
    });
    let start = Instant::now();
    let err = read_all(&reg, "r", &d).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(registry_error(&err), RegistryError::Timeout { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_retries_a_failed_chunk() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let mut cfg = config(&proxy.host());
    cfg.chunk_size = 1024 * 1024;
    let reg = Registry::new(cfg).unwrap();
    // Upload session URLs carry `_state`: the first PATCH fails twice before it goes
    // through, and the upload carries on from the same chunk.
    proxy.push(Fault::Status {
        path: "_state=".into(),
        status: 502,
        times: 2,
    });
    let bytes = pseudo_random(3 * 1024 * 1024 + 17, 13);
    let d = put_blob(&reg, "r", &bytes).await;
    assert_eq!(proxy.pending(), 0);
    let methods: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    let patches: Vec<u16> = methods
        .iter()
        .filter(|(m, _)| m == "PATCH")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(patches, [502, 502, 202, 202, 202, 202], "{methods:?}");
    assert_eq!(read_all(&reg, "r", &d).await.unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_holds_while_bodies_are_read() {
    let server = TestRegistry::start();
    let proxy = FaultProxy::start(&server.host());
    let mut cfg = config(&proxy.host());
    cfg.max_concurrent = 2;
    let reg = Registry::new(cfg).unwrap();
    let (bytes, _) = push_image(&reg, "r", "v1", 14).await;
    // Every manifest body pauses 700 ms after its headers: with two permits, four reads
    // take two rounds.
    proxy.push(Fault::Stall {
        path: "/manifests/v1".into(),
        after: 0,
        stall: Duration::from_millis(700),
        times: 4,
    });
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move { reg.manifest_get("r", "v1").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().bytes, bytes);
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

//! Basic auth over TLS, and sign-in throttling under password guessing.

use sealift_oci::Digest;
use sealift_serve::ServeOptions;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = sealift_testkit::self_signed_cert(tmp.path());
    let htpasswd = tmp.path().join("htpasswd");
    let hash = bcrypt::hash("pw-of-alice", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let s = Served::start(ServeOptions {
        htpasswd: Some(htpasswd),
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..Default::default()
    })
    .await;
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let url = |p: &str| format!("https://{}{p}", s.addr);

    let r = c.get(url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"sealift\", charset=\"UTF-8\""
    );
    assert_eq!(code(&r.bytes().await.unwrap()), "UNAUTHORIZED");
    let r = c
        .get(url("/v2/corpus/manifests/zstd"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(url("/v2/corpus/manifests/zstd"))
        .basic_auth("mallory", Some("pw-of-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(url("/v2/corpus/manifests/zstd"))
        .basic_auth("alice", Some("pw-of-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), s.bytes(&s.digest("zstd")));
    // Writes: 401 without credentials, 405 with them.
    let r = c
        .delete(url("/v2/corpus/manifests/zstd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .delete(url("/v2/corpus/manifests/zstd"))
        .basic_auth("alice", Some("pw-of-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // Plain HTTP on the TLS port gets nothing.
    assert!(http().get(s.url("/v2/")).send().await.is_err());

    // skopeo over HTTPS with the credentials.
    skopeo_pull_shared(&s, "tls-out", &["--src-creds=alice:pw-of-alice"]).await;
    s.shutdown().await;
}

// issue 9: 64 clients guessing passwords do not starve a signed-in pull: their checks run
// a bounded number at a time, and a client past a few failures is answered 429 without
// bcrypt running at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_and_a_pull_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let hash = bcrypt::hash("pw-of-alice", 6).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let s = Served::start(ServeOptions {
        htpasswd: Some(htpasswd),
        ..Default::default()
    })
    .await;
    let (addr, stats) = (s.addr, s.stats.clone());

    const GUESSERS: u8 = 64;
    const TRIES: usize = 12;
    let url = format!("http://{addr}/v2/corpus/manifests/zstd");
    let mut guessers = Vec::new();
    for i in 0..GUESSERS {
        // Each from its own loopback address, as separate machines would be.
        let ip = std::net::IpAddr::from([127, 0, 0, 2 + i]);
        let c = reqwest::Client::builder()
            .local_address(ip)
            .build()
            .unwrap();
        let url = url.clone();
        guessers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for t in 0..TRIES {
                let r = c
                    .get(&url)
                    .basic_auth("alice", Some(format!("guess-{i}-{t}")))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    // Meanwhile alice pulls zstd: manifest, config and layers, each checked.
    let c = reqwest::Client::new();
    let zstd = s.digest("zstd");
    let mut pulled = 0u64;
    let r = c
        .get(&url)
        .basic_auth("alice", Some("pw-of-alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(Digest::sha256(&bytes), zstd);
    pulled += 1;
    let view = sealift_oci::ManifestView::parse(&bytes, None).unwrap();
    for d in std::iter::once(view.config.clone().unwrap()).chain(view.layers) {
        let r = c
            .get(format!("http://{addr}/v2/corpus/blobs/{}", d.digest))
            .basic_auth("alice", Some("pw-of-alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", d.digest);
        assert_eq!(Digest::sha256(&r.bytes().await.unwrap()), d.digest);
        pulled += 1;
    }
    let mut refused = (0u64, 0u64);
    for g in guessers {
        for st in g.await.unwrap() {
            match st {
                401 => refused.0 += 1,
                429 => refused.1 += 1,
                other => panic!("a wrong password got {other}"),
            }
        }
    }
    let guesses = u64::from(GUESSERS) * TRIES as u64;
    assert_eq!(refused.0 + refused.1, guesses);
    assert!(refused.1 > 0, "no client was made to back off: {refused:?}");
    // Every request with credentials either ran bcrypt, was remembered, or was throttled;
    // each 429 is one that did not run bcrypt.
    assert_eq!(stats.throttled(), refused.1);
    assert_eq!(
        stats.bcrypt_checks() + stats.auth_cache_hits() + stats.throttled(),
        guesses + pulled
    );
    assert!(stats.bcrypt_checks() < guesses, "{}", stats.bcrypt_checks());
    assert!(stats.bcrypt_peak() >= 1);
    assert!(
        stats.bcrypt_peak() <= stats.bcrypt_limit(),
        "{} bcrypt checks at once, limit {}",
        stats.bcrypt_peak(),
        stats.bcrypt_limit()
    );
    s.shutdown().await;
}

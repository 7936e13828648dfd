//! The registry client against the real distribution registry (sealift-testkit), with a
//! fault-injecting proxy in front where a test needs failures.

use std::time::{Duration, Instant};

use sealift_fixtures::pseudo_random;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest};
use sealift_registry::{
    referrers_tag, AuthEnv, Credentials, Registry, RegistryConfig, RegistryError, RetryPolicy,
};
use sealift_testkit::{
    Fault, FaultProxy, Registry as TestRegistry, RegistryOptions, TokenAuthOptions,
};
use tokio::io::AsyncReadExt;

/// A client for `host` with quick retries, and credentials looked up nowhere (so the
/// machine's own auth files cannot change the outcome).
fn config(host: &str) -> RegistryConfig {
    let mut cfg = RegistryConfig::new(host);
    cfg.retry = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    cfg.auth_env = Some(AuthEnv::default());
    cfg
}

fn client(host: &str) -> Registry {
    Registry::new(config(host)).unwrap()
}

fn with_creds(host: &str, user: &str, password: &str) -> Registry {
    let mut cfg = config(host);
    cfg.credentials = Some(Credentials::Basic {
        username: user.into(),
        password: password.into(),
    });
    Registry::new(cfg).unwrap()
}

async fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> Descriptor {
    let d = Digest::sha256(bytes);
    reg.blob_put(
        repo,
        &d,
        bytes.len() as u64,
        std::io::Cursor::new(bytes.to_vec()),
    )
    .await
    .unwrap();
    Descriptor::new(mt::OCI_LAYER_TAR, d, bytes.len() as u64)
}

async fn read_all(reg: &Registry, repo: &str, d: &Descriptor) -> std::io::Result<Vec<u8>> {
    let mut r = reg.blob_get(repo, &d.digest, d.size).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// An OCI image manifest over a config and layers, with an optional subject.
fn image_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    subject: Option<&Descriptor>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if let Some(s) = subject {
        v["subject"] = serde_json::to_value(s).unwrap();
        v["artifactType"] = "application/spdx+json".into();
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Push a small image (config + one layer) as `repo:tag`; its manifest bytes and digest.
async fn push_image(reg: &Registry, repo: &str, tag: &str, seed: u64) -> (Vec<u8>, Digest) {
    let mut config = put_blob(reg, repo, format!(r#"{{"seed":{seed}}}"#).as_bytes()).await;
    config.media_type = mt::OCI_CONFIG.into();
    let layer = put_blob(reg, repo, &pseudo_random(10_000, seed)).await;
    let bytes = image_manifest(&config, &[layer], None);
    let d = reg
        .manifest_put(repo, tag, mt::OCI_MANIFEST, &bytes)
        .await
        .unwrap();
    (bytes, d)
}

fn registry_error(e: &std::io::Error) -> &RegistryError {
    RegistryError::from_io(e).unwrap_or_else(|| panic!("not a registry error: {e:?}"))
}

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
async fn basic_auth_with_and_without_credentials() {
    let server = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some(("alice".into(), "s3cret".into())),
        ..RegistryOptions::default()
    });
    let reg = with_creds(&server.host(), "alice", "s3cret");
    reg.ping().await.unwrap();
    let (bytes, digest) = push_image(&reg, "private/app", "v1", 9).await;
    let m = reg.manifest_get("private/app", "v1").await.unwrap();
    assert_eq!((m.bytes, &m.digest), (bytes, &digest));

    let anon = client(&server.host());
    let err = anon.manifest_get("private/app", "v1").await.unwrap_err();
    match &err {
        RegistryError::Unauthorized { host, detail } => {
            assert_eq!(host, &server.host());
            assert!(detail.contains("no credentials"), "{detail}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&server.host()), "{err}");

    let wrong = with_creds(&server.host(), "alice", "wrong");
    let err = wrong.ping().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no secrets in errors: {err}"
    );

    // Credentials found in a podman auth file.
    let tmp = tempfile::tempdir().unwrap();
    let auth_file = tmp.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            server.host()
        ),
    )
    .unwrap();
    let mut cfg = config(&server.host());
    cfg.auth_env = Some(AuthEnv {
        registry_auth_file: Some(auth_file),
        ..AuthEnv::default()
    });
    let from_file = Registry::new(cfg).unwrap();
    assert_eq!(
        from_file
            .manifest_get("private/app", "v1")
            .await
            .unwrap()
            .digest,
        digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_push_pull_and_cached_tokens() {
    let server = TestRegistry::start_with(RegistryOptions {
        token: Some(TokenAuthOptions {
            user: "bob".into(),
            password: "hunter2".into(),
            anonymous_pull: true,
        }),
        ..RegistryOptions::default()
    });
    let tokens = server.token_server().unwrap();
    let reg = with_creds(&server.host(), "bob", "hunter2");

    // One repository, one push scope: one token for everything that follows.
    let before = tokens.requests();
    let layer = put_blob(&reg, "team/app", &pseudo_random(20_000, 10)).await;
    let mut cfg_blob = put_blob(&reg, "team/app", b"{}").await;
    cfg_blob.media_type = mt::OCI_CONFIG.into();
    let bytes = image_manifest(&cfg_blob, std::slice::from_ref(&layer), None);
    let digest = reg
        .manifest_put("team/app", "v1", mt::OCI_MANIFEST, &bytes)
        .await
        .unwrap();
    assert_eq!(
        reg.blob_head("team/app", &layer.digest).await.unwrap(),
        Some(20_000)
    );
    assert_eq!(
        read_all(&reg, "team/app", &layer).await.unwrap().len(),
        20_000
    );
    assert_eq!(
        reg.manifest_get("team/app", "v1").await.unwrap().digest,
        digest
    );
    assert_eq!(reg.tags("team/app").await.unwrap(), ["v1"]);
    assert_eq!(
        tokens.requests() - before,
        1,
        "token requests for one scope"
    );

    // A clone shares the cache; a new repository needs a new token, once.
    let clone = reg.clone();
    assert!(clone
        .manifest_head("team/app", "v1")
        .await
        .unwrap()
        .is_some());
    assert_eq!(tokens.requests() - before, 1);
    for _ in 0..3 {
        assert!(clone
            .manifest_head("team/other", "v1")
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(tokens.requests() - before, 2);

    // Cross-repo mount asks for both scopes in one token.
    assert!(reg
        .blob_mount("team/copy", "team/app", &layer.digest)
        .await
        .unwrap());

    // Anonymous pull is allowed by this token server; anonymous push is not.
    let anon = client(&server.host());
    assert_eq!(
        anon.manifest_get("team/app", "v1").await.unwrap().digest,
        digest
    );
    let err = anon
        .blob_put(
            "team/app",
            &Digest::sha256(b"x"),
            1,
            std::io::Cursor::new(b"x".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // Wrong password: the token server refuses, named in the error.
    let wrong = with_creds(&server.host(), "bob", "nope");
    let err = wrong.manifest_get("team/app", "v1").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("token server"), "{err}");

    // An identity (refresh) token, as `docker login` stores for some registries.
    let realm = tokens.realm();
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{realm}?service={}&offline_token=true",
            tokens.service()
        ))
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = resp["refresh_token"].as_str().unwrap().to_string();
    let mut cfg = config(&server.host());
    cfg.credentials = Some(Credentials::IdentityToken(refresh));
    let by_identity = Registry::new(cfg).unwrap();
    put_blob(&by_identity, "team/idt", b"pushed with an identity token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_carries_no_authorization() {
    // The private registry (basic auth) and a public one holding the same blob, each
    // behind its own proxy: two hosts.
    let private = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some(("carol".into(), "pw".into())),
        ..RegistryOptions::default()
    });
    let public = TestRegistry::start();
    let front = FaultProxy::start(&private.host());
    let storage = FaultProxy::start(&public.host());
    let bytes = pseudo_random(2 * 1024 * 1024, 11);
    let reg = with_creds(&front.host(), "carol", "pw");
    let d = put_blob(&reg, "r", &bytes).await;
    put_blob(&client(&public.host()), "r", &bytes).await;

    front.clear();
    front.push(Fault::Redirect {
        path: format!("/blobs/{}", d.digest),
        location_base: storage.url(),
        times: 1,
    });
    assert_eq!(read_all(&reg, "r", &d).await.unwrap(), bytes);
    let redirected: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.fault == Some("Redirect"))
        .collect();
    assert_eq!(redirected.len(), 1);
    assert!(
        redirected[0].authorization,
        "the registry itself gets credentials"
    );
    let served = storage.requests();
    assert!(!served.is_empty());
    assert!(
        served.iter().all(|r| !r.authorization),
        "Authorization leaked to another host: {served:?}"
    );
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

//! Basic and token auth, cached tokens, and no Authorization on a redirect to another host.

use crate::*;

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

//! The harness against the real distribution registry, skopeo and openssl.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use sealift_testkit::{
    push_layout_with_skopeo, Fault, FaultProxy, Registry, RegistryOptions, TokenAuthOptions,
};
use serde_json::Value;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";
const TOOLS_REF: &str = "sample/tools:1.0";

/// A blocking face on reqwest for sync tests.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl Http {
    fn new() -> Http {
        Http::with_redirects(reqwest::redirect::Policy::none())
    }

    fn with_redirects(policy: reqwest::redirect::Policy) -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = reqwest::Client::builder()
            .redirect(policy)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a reqwest client");
        Http { runtime, client }
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.runtime.block_on(async {
            let response = request.send().await.expect("the request is answered");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.expect("the whole body").to_vec();
            Reply {
                status,
                headers,
                body,
            }
        })
    }

    fn get(&self, url: &str) -> Reply {
        self.send(self.client.get(url))
    }

    /// Reads a body until it ends or fails: the bytes received and whether it failed.
    fn get_partial(&self, url: &str) -> (u16, Vec<u8>, bool) {
        self.runtime.block_on(async {
            let mut response = self.client.get(url).send().await.expect("a response head");
            let status = response.status().as_u16();
            let mut body = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => return (status, body, false),
                    Err(_) => return (status, body, true),
                }
            }
        })
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn token_options(anonymous_pull: bool) -> RegistryOptions {
    RegistryOptions {
        token: Some(TokenAuthOptions {
            user: USER.into(),
            password: PASSWORD.into(),
            anonymous_pull,
        }),
        ..RegistryOptions::default()
    }
}

/// The fixture layout written to a temp dir, and the bytes of `sample/tools:1.0`'s manifest.
fn sample_layout() -> (tempfile::TempDir, sealift_fixtures::Layout, Vec<u8>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let layout = sealift_fixtures::sample();
    layout.write_dir(dir.path()).expect("writing the layout");
    let digest = layout.find_ref(TOOLS_REF).expect("the tools image")["digest"]
        .as_str()
        .expect("a digest")
        .to_owned();
    let manifest = layout
        .blob_bytes(&digest)
        .expect("the manifest blob")
        .to_vec();
    (dir, layout, manifest)
}

#[test]
fn anonymous_registry_answers_v2() {
    let registry = Registry::start();
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert!(registry.data_dir().is_dir());
    let reply = Http::new().get(&format!("{}/v2/", registry.url()));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    let data_dir = registry.data_dir().to_owned();
    drop(registry);
    assert!(!data_dir.exists(), "the temp dir is removed on drop");
}

#[test]
fn htpasswd_registry_wants_basic_auth() {
    let registry = Registry::start_with(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        delete_enabled: true,
        ..RegistryOptions::default()
    });
    assert_eq!(registry.credentials(), Some((USER, PASSWORD)));
    let http = Http::new();
    let url = format!("{}/v2/", registry.url());
    let anonymous = http.get(&url);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.header("www-authenticate").starts_with("Basic "),
        "{:?}",
        anonymous.headers
    );
    let right = http.send(
        http.client
            .get(&url)
            .header("authorization", basic(USER, PASSWORD)),
    );
    assert_eq!(right.status, 200);
    let wrong = http.send(
        http.client
            .get(&url)
            .header("authorization", basic(USER, "nope")),
    );
    assert_eq!(wrong.status, 401);
}

#[test]
fn token_registry_accepts_tokens_from_its_token_server() {
    let registry = Registry::start_with(token_options(false));
    let server = registry.token_server().expect("a token server");
    let http = Http::new();

    let challenge = http.get(&format!("{}/v2/", registry.url()));
    assert_eq!(challenge.status, 401);
    let www = challenge.header("www-authenticate");
    assert!(
        www.starts_with(&format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            server.realm(),
            server.service()
        )),
        "{www}"
    );

    // GET with basic auth, as docker/skopeo do.
    let scope = "repository:foo/bar:pull,push";
    let token_url = format!(
        "{}?service={}&scope={scope}",
        server.realm(),
        server.service()
    );
    let reply = http.send(
        http.client
            .get(&token_url)
            .header("authorization", basic(USER, PASSWORD)),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    let token = body["token"].as_str().expect("a token").to_owned();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(body.get("refresh_token").is_none());

    let bearer = |url: &str, token: &str| {
        http.send(
            http.client
                .get(url)
                .header("authorization", format!("Bearer {token}")),
        )
    };
    assert_eq!(
        bearer(&format!("{}/v2/", registry.url()), &token).status,
        200
    );
    let tags = bearer(&format!("{}/v2/foo/bar/tags/list", registry.url()), &token);
    assert_eq!(tags.status, 404, "{}", String::from_utf8_lossy(&tags.body));
    assert_eq!(tags.json()["errors"][0]["code"], "NAME_UNKNOWN");

    // A tampered signature, and a token for another repository, are refused.
    // (Flip a character inside the signature: the last one holds padding bits too.)
    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("base64url is ASCII");
    let refused = bearer(
        &format!("{}/v2/foo/bar/tags/list", registry.url()),
        &tampered,
    );
    assert_eq!(refused.status, 401);
    let other = bearer(
        &format!("{}/v2/foo/other/tags/list", registry.url()),
        &token,
    );
    assert_eq!(other.status, 401);
    assert!(other
        .header("www-authenticate")
        .contains("insufficient_scope"));

    // Wrong password: 401 from the token server itself.
    let wrong = http.send(
        http.client
            .get(&token_url)
            .header("authorization", basic(USER, "nope")),
    );
    assert_eq!(wrong.status, 401);

    // Anonymous, without anonymous_pull: a token with no access.
    let anonymous = http.get(&token_url).json()["token"]
        .as_str()
        .map(str::to_owned);
    let anonymous = anonymous.expect("an anonymous token");
    assert_eq!(
        bearer(&format!("{}/v2/", registry.url()), &anonymous).status,
        200
    );
    let denied = bearer(
        &format!("{}/v2/foo/bar/tags/list", registry.url()),
        &anonymous,
    );
    assert_eq!(denied.status, 401);

    assert_eq!(server.requests(), 3);
}

#[test]
fn token_server_refresh_tokens_and_anonymous_pull() {
    let registry = Registry::start_with(token_options(true));
    let server = registry.token_server().expect("a token server");
    let http = Http::new();
    let tags_url = format!("{}/v2/foo/bar/tags/list", registry.url());
    let bearer = |token: &str| {
        http.send(
            http.client
                .get(&tags_url)
                .header("authorization", format!("Bearer {token}")),
        )
    };
    let form = |pairs: &[(&str, &str)]| http.send(http.client.post(server.realm()).form(pairs));

    let scope = "repository:foo/bar:pull,push";
    let password = form(&[
        ("grant_type", "password"),
        ("username", USER),
        ("password", PASSWORD),
        ("service", server.service()),
        ("scope", scope),
        ("client_id", "sealift-test"),
        ("access_type", "offline"),
    ]);
    assert_eq!(
        password.status,
        200,
        "{}",
        String::from_utf8_lossy(&password.body)
    );
    let body = password.json();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    assert_eq!(body["scope"], scope);
    assert_eq!(
        bearer(body["access_token"].as_str().expect("a token")).status,
        404
    );

    let refreshed = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", server.service()),
        ("scope", scope),
        ("client_id", "sealift-test"),
    ]);
    assert_eq!(refreshed.status, 200);
    let body = refreshed.json();
    assert_eq!(body["refresh_token"], refresh.as_str());
    assert_eq!(bearer(body["token"].as_str().expect("a token")).status, 404);

    let bad_refresh = form(&[("grant_type", "refresh_token"), ("refresh_token", "nope")]);
    assert_eq!(bad_refresh.status, 401);
    let bad_password = form(&[
        ("grant_type", "password"),
        ("username", USER),
        ("password", "nope"),
    ]);
    assert_eq!(bad_password.status, 401);

    // GET with offline_token=true hands out a refresh token too.
    let offline = http.send(
        http.client
            .get(format!(
                "{}?service={}&scope={scope}&offline_token=true",
                server.realm(),
                server.service()
            ))
            .header("authorization", basic(USER, PASSWORD)),
    );
    assert!(offline.json()["refresh_token"].as_str().is_some());

    // anonymous_pull: pull is granted without credentials, push is not.
    server.set_expires_in(60);
    let anonymous = http.get(&format!(
        "{}?service={}&scope={scope}",
        server.realm(),
        server.service()
    ));
    assert_eq!(anonymous.json()["expires_in"], 60);
    assert_eq!(
        bearer(anonymous.json()["token"].as_str().expect("a token")).status,
        404
    );
    let push_url = format!("{}/v2/foo/bar/blobs/uploads/", registry.url());
    let push = http.send(http.client.post(&push_url).header(
        "authorization",
        format!(
            "Bearer {}",
            anonymous.json()["token"].as_str().unwrap_or("")
        ),
    ));
    assert_eq!(push.status, 401);

    assert_eq!(server.requests(), 6);
}

#[test]
fn skopeo_pushes_through_token_auth() {
    let registry = Registry::start_with(token_options(false));
    let (dir, _layout, manifest) = sample_layout();
    push_layout_with_skopeo(
        dir.path(),
        TOOLS_REF,
        &registry.host(),
        TOOLS_REF,
        Some((USER, PASSWORD)),
    );
    let skopeo = sealift_testkit::require_tool("skopeo");
    let output = Command::new(skopeo)
        .args([
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
        ])
        .arg(format!("--creds={USER}:{PASSWORD}"))
        .arg(format!("docker://{}/{TOOLS_REF}", registry.host()))
        .output()
        .expect("running skopeo inspect");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, manifest);
    let server = registry.token_server().expect("a token server");
    assert!(
        server.requests() >= 2,
        "{} token requests",
        server.requests()
    );
}

#[test]
fn fault_proxy_forwards_and_injects_faults() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host());
    let other = FaultProxy::start(&registry.host());
    let (dir, layout, manifest) = sample_layout();

    // Pushing through the proxy: upload Locations must lead back through it.
    push_layout_with_skopeo(dir.path(), TOOLS_REF, &proxy.host(), TOOLS_REF, None);
    let log = proxy.requests();
    assert!(log.iter().any(
        |r| matches!(r.method.as_str(), "PATCH" | "PUT") && r.path.contains("/blobs/uploads/")
    ));
    assert!(log
        .iter()
        .any(|r| r.method == "PUT" && r.path.ends_with("/manifests/1.0")));
    assert!(log.iter().all(|r| r.status < 500), "{log:#?}");
    proxy.clear();

    let blob = layout
        .blobs
        .values()
        .max_by_key(|b| b.size)
        .expect("a blob");
    assert!(
        blob.size > 64 * 1024,
        "a blob big enough to cut: {}",
        blob.size
    );
    let blob_url = |base: &str| format!("{base}/v2/sample/tools/blobs/{}", blob.digest);
    let http = Http::new();

    // Pass-through: the blob, a range of it, the manifest.
    let whole = http.get(&blob_url(&proxy.url()));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, blob.bytes);
    let ranged = http.send(
        http.client
            .get(blob_url(&proxy.url()))
            .header("range", "bytes=100-"),
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, &blob.bytes[100..]);
    let manifest_reply = http.send(
        http.client
            .get(format!("{}/v2/sample/tools/manifests/1.0", proxy.url()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json"),
    );
    assert_eq!(manifest_reply.body, manifest);

    // DropAfter: a short body, then the connection goes.
    proxy.push(Fault::DropAfter {
        path: blob.digest.clone(),
        after: 10_000,
        times: 1,
    });
    let (status, body, failed) = http.get_partial(&blob_url(&proxy.url()));
    assert_eq!(status, 200);
    assert!(failed, "the body fails");
    assert_eq!(body, &blob.bytes[..10_000]);
    assert_eq!(proxy.pending(), 0);

    // TooMany: 429 with Retry-After, upstream untouched; the next request passes.
    proxy.push(Fault::TooMany {
        path: "/blobs/".into(),
        retry_after: 7,
        times: 1,
    });
    let throttled = http.get(&blob_url(&proxy.url()));
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after"), "7");
    assert_eq!(throttled.json()["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(http.get(&blob_url(&proxy.url())).body, blob.bytes);

    // Status: 503 twice, then through.
    proxy.push(Fault::Status {
        path: "/blobs/".into(),
        status: 503,
        times: 2,
    });
    assert_eq!(http.get(&blob_url(&proxy.url())).status, 503);
    assert_eq!(http.get(&blob_url(&proxy.url())).status, 503);
    assert_eq!(http.get(&blob_url(&proxy.url())).status, 200);

    // Corrupt: same length, other bytes. A HEAD does not use the rule up.
    proxy.push(Fault::Corrupt {
        path: blob.digest.clone(),
        times: 1,
    });
    let head = http.send(http.client.head(blob_url(&proxy.url())));
    assert_eq!(head.status, 200);
    let corrupt = http.get(&blob_url(&proxy.url()));
    assert_eq!(corrupt.status, 200);
    assert_eq!(corrupt.body.len(), blob.bytes.len());
    assert_ne!(corrupt.body, blob.bytes);
    assert!(corrupt
        .body
        .iter()
        .zip(&blob.bytes)
        .all(|(c, b)| c ^ b == 0xff));

    // Stall: the whole body, late.
    proxy.push(Fault::Stall {
        path: blob.digest.clone(),
        after: 1000,
        stall: Duration::from_millis(400),
        times: 1,
    });
    let started = Instant::now();
    let stalled = http.get(&blob_url(&proxy.url()));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(stalled.body, blob.bytes);

    // Redirect to "another host": Authorization is not carried there by reqwest.
    proxy.clear();
    proxy.push(Fault::Redirect {
        path: blob.digest.clone(),
        location_base: other.url(),
        times: 2,
    });
    let redirect = http.send(
        http.client
            .get(blob_url(&proxy.url()))
            .header("authorization", "Bearer secret-token"),
    );
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.header("location"), blob_url(&other.url()));
    let following = Http::with_redirects(reqwest::redirect::Policy::limited(3));
    let followed = following.send(
        following
            .client
            .get(blob_url(&proxy.url()))
            .header("authorization", "Bearer secret-token"),
    );
    assert_eq!(followed.status, 200);
    assert_eq!(followed.body, blob.bytes);

    let log = proxy.requests();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log
        .iter()
        .all(|r| r.authorization && r.status == 307 && r.fault == Some("Redirect")));
    let other_log = other.requests();
    assert_eq!(other_log.len(), 1, "{other_log:#?}");
    assert!(!other_log[0].authorization);
    assert_eq!(other_log[0].status, 200);
    assert_eq!(other_log[0].method, "GET");
}

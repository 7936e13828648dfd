//! `sealift-serve` against real clients: skopeo, the distribution registry (as skopeo's
//! destination), sealift's own registry client and copy engine, and raw HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealift_fixtures::{Layout, CORPUS_REFS};
use sealift_serve::{ServeError, ServeOptions};
use sealift_store::{Digest, Repo, Store, Tag};
use sealift_sync::copy::{copy, CopyOptions};
use sealift_sync::layout::{import_path, ImportOptions};
use sealift_sync::location::Location;
use sealift_sync::registry::{AuthEnv, Registry, RegistryConfig};
use sealift_sync::transport::{open_sink, open_source, OpenOptions};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A store holding the corpus (as `corpus:<name>`), served on a free loopback port.
struct Served {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    addr: SocketAddr,
    layout: Layout,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Served {
    async fn start(opts: ServeOptions) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let layout = sealift_fixtures::corpus();
        let corpus = dir.path().join("corpus");
        layout.write_dir(&corpus).unwrap();
        let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
        let import = ImportOptions {
            tag: Some("corpus:latest".parse().unwrap()),
            progress: None,
        };
        import_path(&store, &corpus, &import).unwrap();
        Served::on(dir, store, layout, opts).await
    }

    async fn on(
        dir: tempfile::TempDir,
        store: Arc<Store>,
        layout: Layout,
        opts: ServeOptions,
    ) -> Served {
        let opts = ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..opts
        };
        let server = sealift_serve::bind(store.clone(), &opts).await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Served {
            dir,
            store,
            addr,
            layout,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn digest(&self, name: &str) -> Digest {
        self.layout.find_ref(name).unwrap()["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn bytes(&self, d: &Digest) -> &[u8] {
        self.layout.blob_bytes(&d.to_string()).unwrap()
    }

    /// Stop and wait for `run` to return.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

fn tool(name: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(sealift_testkit::require_tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run blocking work (a subprocess) without stalling the server's runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A request sent byte for byte (reqwest would normalise `..` away): (status, body).
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, Vec<u8>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, buf[split + 4..].to_vec(), head)
}

/// The first error code of a distribution error body.
fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_every_image_to_a_layout_and_to_distribution() {
    let s = Served::start(ServeOptions::default()).await;
    let reg = sealift_testkit::Registry::start();
    for name in CORPUS_REFS {
        let want = s.digest(name);
        let src = format!("docker://{}/corpus:{name}", s.host());
        // What skopeo reads is the stored bytes.
        let s2 = src.clone();
        let raw =
            blocking(move || tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &s2]))
                .await;
        assert_eq!(raw, s.bytes(&want), "{name}: inspect --raw");
        // Copied out (--preserve-digests: skopeo would otherwise compress the plain tar
        // layer of `zstd`): to an OCI layout, or, for Docker-typed images (which skopeo
        // converts to OCI on the way into a layout), to a `dir:` which keeps them as is. The
        // foreign layer of `foreign` was never in the store (nor is it at its URL), so
        // only its manifest can be read.
        let docker = s.layout.blobs[&want.to_string()]
            .media_type
            .contains("docker");
        if *name == "foreign" {
            continue;
        }
        let out = s.dir.path().join(format!("out-{name}"));
        let dst = if docker {
            format!("dir:{}", out.display())
        } else {
            format!("oci:{}:{name}", out.display())
        };
        let s2 = src.clone();
        blocking(move || {
            tool(
                "skopeo",
                &[
                    "--insecure-policy",
                    "copy",
                    "-q",
                    "--all",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    &s2,
                    &dst,
                ],
            )
        })
        .await;
        let file = if docker {
            out.join("manifest.json")
        } else {
            let index: Value =
                serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
            assert_eq!(
                index["manifests"][0]["digest"],
                want.to_string(),
                "{name} -> layout"
            );
            out.join("blobs/sha256").join(want.hex())
        };
        assert_eq!(
            std::fs::read(file).unwrap(),
            s.bytes(&want),
            "{name} -> {out:?}"
        );

        // To the distribution registry. skopeo pushes non-distributable layers to a
        // registry, and the store never had their bytes: `nondist` stops at the layout.
        if *name == "nondist" {
            continue;
        }
        let dst = format!("docker://{}/mirror/{name}:1", reg.host());
        blocking(move || {
            tool(
                "skopeo",
                &[
                    "--insecure-policy",
                    "copy",
                    "-q",
                    "--all",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    &src,
                    &dst,
                ],
            )
        })
        .await;
        let dst = format!("docker://{}/mirror/{name}:1", reg.host());
        let raw =
            blocking(move || tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &dst]))
                .await;
        assert_eq!(raw, s.bytes(&want), "{name} -> distribution");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealift_pulls_every_image_and_its_referrers() {
    let s = Served::start(ServeOptions::default()).await;
    let mut cfg = RegistryConfig::new(s.host());
    cfg.auth_env = Some(AuthEnv::default());
    let client = Registry::new(cfg).unwrap();

    // The referrers API: the SBOM of `zstd`, with its artifact type, and the filter.
    let zstd = s.digest("zstd");
    let refs = client.referrers("corpus", &zstd, None).await.unwrap();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let sbom = &refs[0];
    assert_eq!(sbom.artifact_type.as_deref(), Some("application/spdx+json"));
    let sbom_bytes = s.bytes(&sbom.digest);
    assert_eq!(sbom.size, sbom_bytes.len() as u64);
    let sbom_view = sealift_store::ManifestView::parse(sbom_bytes, None).unwrap();
    assert_eq!(sbom.annotations, sbom_view.annotations);
    assert_eq!(sbom_view.subject.unwrap().digest, zstd);
    let none = client
        .referrers("corpus", &zstd, Some("application/example"))
        .await
        .unwrap();
    assert!(none.is_empty());
    // A manifest nothing refers to: an empty list.
    let multi = s.digest("multi");
    assert!(client
        .referrers("corpus", &multi, None)
        .await
        .unwrap()
        .is_empty());

    // Every image into a second store through the copy engine, with referrers.
    let dir = tempfile::tempdir().unwrap();
    let other = Arc::new(Store::open(dir.path()).unwrap());
    for name in CORPUS_REFS {
        let src: Location = format!("docker://{}/corpus:{name}", s.host())
            .parse()
            .unwrap();
        let dst: Location = format!("store:copied:{name}").parse().unwrap();
        let source = open_source(&src, Some(&other), &OpenOptions::default()).unwrap();
        let sink = open_sink(&dst, Some(&other), &OpenOptions::default()).unwrap();
        let opts = CopyOptions {
            referrers: true,
            ..Default::default()
        };
        let report = copy(source, sink, &opts)
            .await
            .unwrap_or_else(|e| panic!("copying {name}: {e}"));
        assert_eq!(report.destination_digest.as_ref(), Some(&s.digest(name)));
        let tag: Tag = name.parse().unwrap();
        let got = other
            .resolve(&sealift_store::StoreRef::tagged(
                "copied".parse().unwrap(),
                tag,
            ))
            .unwrap();
        assert_eq!(got, s.digest(name));
        let (bytes, _) = other.manifest(&got).unwrap();
        assert_eq!(bytes, s.bytes(&got), "{name}");
    }
    assert_eq!(other.referrers(&zstd).unwrap(), vec![sbom.digest.clone()]);
    s.shutdown().await;
}

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
        assert_eq!(code(&r.bytes().await.unwrap()), "RANGE_INVALID");
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
    assert_eq!(code(&r.bytes().await.unwrap()), "PAGINATION_NUMBER_INVALID");
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
    let zstd_layer = sealift_store::ManifestView::parse(s.bytes(&zstd), None)
        .unwrap()
        .layers[0]
        .digest
        .clone();
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
        ("/v2/corpus/manifests/..".into(), 400, "TAG_INVALID"),
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
        (format!("/v2/absent/referrers/{zero}"), 404, "NAME_UNKNOWN"),
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

fn openssl_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_cert(tmp.path());
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
    let out = s.dir.path().join("tls-out");
    let (src, dst) = (
        format!("docker://{}/corpus:shared", s.host()),
        format!("oci:{}:shared", out.display()),
    );
    blocking(move || {
        tool(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "-q",
                "--src-tls-verify=false",
                "--src-creds=alice:pw-of-alice",
                &src,
                &dst,
            ],
        )
    })
    .await;
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        s.digest("shared").to_string()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn options_are_checked_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    let e = sealift_serve::bind(
        store.clone(),
        &ServeOptions {
            addr: "0.0.0.0:0".parse().unwrap(),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, ServeError::PlainHttpNotLoopback { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("--insecure-plain-http") && msg.contains("--tls-cert"),
        "{msg}"
    );
    let e = sealift_serve::bind(
        store.clone(),
        &ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls_cert: Some(dir.path().join("cert.pem")),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("tls_key"), "{e}");
    let bad = dir.path().join("htpasswd");
    std::fs::write(&bad, "alice:plaintext\n").unwrap();
    let e = sealift_serve::bind(
        store.clone(),
        &ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            htpasswd: Some(bad),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("line 1"), "{e}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let e = sealift_serve::bind(
        store,
        &ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls_cert: Some(garbage.clone()),
            tls_key: Some(garbage),
            ..Default::default()
        },
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("garbage.pem"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_a_download_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("big");
    let manifest: Digest = sealift_fixtures::big_layout_dir(&layout_dir, 1, 32 << 20, 7)
        .unwrap()
        .parse()
        .unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    let import = ImportOptions {
        tag: Some("big:latest".parse().unwrap()),
        progress: None,
    };
    import_path(&store, &layout_dir, &import).unwrap();
    let (bytes, view) = store.manifest(&manifest).unwrap();
    assert!(!bytes.is_empty());
    let layer = view.layers[0].clone();
    let s = Served::on(dir, store, Layout::new(), ServeOptions::default()).await;
    let url = s.url(&format!("/v2/big/blobs/{}", layer.digest));

    let mut r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    let addr = s.addr;
    let stopped = tokio::spawn(s.shutdown());
    // New connections are refused once the listener is closed…
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // …and the download in flight completes, verified.
    let mut hasher = sealift_store::digest::Hasher::new(layer.digest.algorithm());
    hasher.update(&first);
    let mut n = first.len() as u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        hasher.update(&chunk);
        n += chunk.len() as u64;
    }
    assert_eq!(n, layer.size);
    assert_eq!(hasher.finish(), layer.digest);
    stopped.await.unwrap();
}

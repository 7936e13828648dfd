//! `sealift-serve` against real clients: skopeo, the distribution registry (as skopeo's
//! destination), sealift's own registry client and copy engine, and raw HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealift_copy::copy::{copy, CopyOptions};
use sealift_copy::location::Location;
use sealift_copy::transport::{open_sink, open_source};
use sealift_copy::Clients;
use sealift_fixtures::{Layout, CORPUS_REFS};
use sealift_layout::{import_path, ImportOptions};
use sealift_oci::{Digest, Repo, Tag};
use sealift_registry::{AuthEnv, Registry, RegistryConfig};
use sealift_serve::{ServeError, ServeOptions, ServeStats};
use sealift_store::Store;
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
    stats: Arc<ServeStats>,
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
        let stats = server.stats();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Served {
            dir,
            store,
            addr,
            layout,
            stats,
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

    /// The first layer of image `name`.
    fn first_layer(&self, name: &str) -> sealift_oci::Descriptor {
        let d = self.digest(name);
        sealift_oci::ManifestView::parse(self.bytes(&d), None)
            .unwrap()
            .layers[0]
            .clone()
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
    let sbom_view = sealift_oci::ManifestView::parse(sbom_bytes, None).unwrap();
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
        let source = open_source(&src, Some(&other), &Clients::default()).unwrap();
        let sink = open_sink(&dst, Some(&other), &Clients::default()).unwrap();
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
            .resolve(&sealift_oci::StoreRef::tagged(
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

/// skopeo copies `corpus:shared` over HTTPS into the OCI layout `<dir>/<name>`, whose
/// index must name its digest; returns the layout's path.
async fn skopeo_pull_shared(s: &Served, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = s.dir.path().join(name);
    let mut args: Vec<String> = ["--insecure-policy", "copy", "-q", "--src-tls-verify=false"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
    args.push(format!("docker://{}/corpus:shared", s.host()));
    args.push(format!("oci:{}:shared", out.display()));
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("skopeo", &args)
    })
    .await;
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        s.digest("shared").to_string()
    );
    out
}

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
    let mut hasher = sealift_oci::digest::Hasher::new(layer.digest.algorithm());
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
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SPDX: &str = "application/spdx+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

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

/// `raw` on the blocking pool.
async fn get_raw(addr: SocketAddr, path: String, headers: String) -> (u16, Vec<u8>, String) {
    blocking(move || raw(addr, "GET", &path, &headers)).await
}

/// A response header's value (names compared without case).
fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
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

/// A TLS client trusting `cert`, offering `alpn`.
fn tls_connector(cert: &Path, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Read until the server closes the connection (EOF or an error).
async fn until_closed(mut conn: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

// issue 9: 2,000 connections that send nothing (plain TCP, a finished TLS handshake, or only
// the HTTP/2 preface) do not stop a pull, and are closed after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_stop_a_pull() {
    use tokio::io::AsyncWriteExt as _;
    const EACH: usize = 2000 / 3 + 1;
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = sealift_testkit::self_signed_cert(tmp.path());
    let s = Served::start(ServeOptions {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        idle_timeout_secs: 20,
        ..Default::default()
    })
    .await;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let h1 = tls_connector(&cert, b"http/1.1");
    let h2 = tls_connector(&cert, b"h2");
    let mut waiting = Vec::new();
    for _ in 0..EACH {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        waiting.push(tokio::spawn(until_closed(tcp)));
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let tls = h1.connect(name.clone(), tcp).await.unwrap();
        waiting.push(tokio::spawn(until_closed(tls)));
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut tls = h2.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        waiting.push(tokio::spawn(until_closed(tls)));
    }
    assert!(waiting.len() >= 2000);
    // All of them were taken by the server (they stay until the idle timeout)…
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.stats.accepted_connections() < waiting.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "{} accepted",
            s.stats.accepted_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and skopeo pulls over HTTPS beside them.
    let out = skopeo_pull_shared(&s, "pulled", &[]).await;
    let want = s.digest("shared");
    let manifest = std::fs::read(out.join("blobs/sha256").join(want.hex())).unwrap();
    assert_eq!(manifest, s.bytes(&want));
    let view = sealift_oci::ManifestView::parse(&manifest, None).unwrap();
    for d in view.layers {
        let bytes = std::fs::read(out.join("blobs/sha256").join(d.digest.hex())).unwrap();
        assert_eq!(Digest::sha256(&bytes), d.digest);
    }
    // Then the server closes every idle one.
    let all = futures_util::future::join_all(waiting);
    tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .expect("idle connections closed by the server");
    assert!(s.stats.closed_idle() >= 2000, "{}", s.stats.closed_idle());
    s.shutdown().await;
}

// At the connection limit the connection idle the longest makes room: idle connections
// beyond the limit never lock a client out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_idle_connections_make_room() {
    let s = Served::start(ServeOptions {
        max_connections: 50,
        ..Default::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    let zstd = s.digest("zstd");
    let r = http()
        .get(s.url("/v2/corpus/manifests/zstd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), s.bytes(&zstd));
    assert!(s.stats.accepted_connections() > 200);
    assert!(s.stats.evicted() >= 151, "{} evicted", s.stats.evicted());
    assert!(s.stats.open_connections() <= 50);
    // The oldest went first.
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(30), idle[0].read(&mut buf))
        .await
        .expect("the oldest idle connection was closed");
    assert!(matches!(first, Ok(0) | Err(_)));
    s.shutdown().await;
}

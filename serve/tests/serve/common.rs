//! Served (the corpus in a store, served on a free port) and the helpers the test
//! modules share: external tools, raw HTTP, error codes.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sealift_fixtures::Layout;
use sealift_layout::{import_path, ImportOptions};
use sealift_oci::Digest;
use sealift_serve::{ServeError, ServeOptions, ServeStats};
use sealift_store::Store;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A store holding the corpus (as `corpus:<name>`), served on a free loopback port.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub addr: SocketAddr,
    pub layout: Layout,
    pub stats: Arc<ServeStats>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Served {
    pub async fn start(opts: ServeOptions) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let layout = sealift_fixtures::corpus();
        let corpus = dir.path().join("corpus");
        layout.write_dir(&corpus).unwrap();
        let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
        let import = ImportOptions {
            tag: Some("corpus:latest".parse().unwrap()),
            progress: None,
            verify: None,
        };
        import_path(&store, &corpus, &import).unwrap();
        Served::on(dir, store, layout, opts).await
    }

    pub async fn on(
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

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn digest(&self, name: &str) -> Digest {
        self.layout.find_ref(name).unwrap()["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn bytes(&self, d: &Digest) -> &[u8] {
        self.layout.blob_bytes(&d.to_string()).unwrap()
    }

    /// The first layer of image `name`.
    pub fn first_layer(&self, name: &str) -> sealift_oci::Descriptor {
        let d = self.digest(name);
        sealift_oci::ManifestView::parse(self.bytes(&d), None)
            .unwrap()
            .layers[0]
            .clone()
    }

    /// Stop and wait for `run` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

pub fn tool(name: &str, args: &[&str]) -> Vec<u8> {
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
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A request sent byte for byte (reqwest would normalise `..` away): (status, body).
pub fn raw(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, Vec<u8>, String) {
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
pub fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// skopeo copies `corpus:shared` over HTTPS into the OCI layout `<dir>/<name>`, whose
/// index must name its digest; returns the layout's path.
pub async fn skopeo_pull_shared(s: &Served, name: &str, extra: &[&str]) -> std::path::PathBuf {
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

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const SPDX: &str = "application/spdx+json";
pub const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// `raw` on the blocking pool.
pub async fn get_raw(addr: SocketAddr, path: String, headers: String) -> (u16, Vec<u8>, String) {
    blocking(move || raw(addr, "GET", &path, &headers)).await
}

/// A response header's value (names compared without case).
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

//! Options checked before binding, graceful shutdown, idle connections and the connection
//! limit.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealift_fixtures::Layout;
use sealift_layout::{import_path, ImportOptions};
use sealift_oci::Digest;
use sealift_serve::{ServeError, ServeOptions};
use sealift_store::Store;

use crate::common::*;

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

/// `redirect_blobs` needs blobs in object storage: on local blob files it is refused at
/// start (naming the option and the way out), and its URL lifetime is bounded.
#[tokio::test]
async fn redirecting_local_blobs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    let bind = |redirect_ttl_secs| {
        let opts = ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            redirect_blobs: true,
            redirect_ttl_secs,
            ..Default::default()
        };
        let store = store.clone();
        async move { sealift_serve::bind(store, &opts).await }
    };
    let e = bind(300).await.err().unwrap();
    assert!(
        matches!(
            e,
            ServeError::Option {
                name: "redirect_blobs",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("s3://"), "{e}");
    for ttl in [0, sealift_serve::MAX_REDIRECT_TTL_SECS + 1] {
        let e = bind(ttl).await.err().unwrap();
        assert!(
            matches!(
                e,
                ServeError::Option {
                    name: "redirect_ttl_secs",
                    ..
                }
            ),
            "{e}"
        );
    }
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
        verify: None,
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

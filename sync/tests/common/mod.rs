//! Helpers shared by the copy, conversion and job tests (each uses some of them).
#![allow(dead_code)]

pub mod schema;

use std::process::Command;
use std::sync::Arc;

use sealift_copy::copy::{copy, CopyOptions, CopyReport};
use sealift_copy::location::Location;
use sealift_copy::transport::{open_sink, open_source};
use sealift_copy::Clients;
use sealift_fixtures::Layout;
use sealift_oci::Digest;
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;

/// The digest of the index.json entry named `name`.
pub fn digest_of(layout: &Layout, name: &str) -> Digest {
    layout.find_ref(name).unwrap()["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The corpus written under `tmp` and its image `name` pushed to a fresh real registry as
/// `docker://HOST/REPO_TAG`; the registry must outlive its use.
pub async fn corpus_in_registry(
    tmp: &std::path::Path,
    name: &str,
    repo_tag: &str,
) -> (Layout, sealift_testkit::Registry) {
    let layout = sealift_fixtures::corpus();
    let dir = tmp.join("corpus");
    layout.write_dir(&dir).unwrap();
    let reg = sealift_testkit::Registry::start();
    cp(
        &format!("oci:{}:{name}", dir.display()),
        &format!("docker://{}/{repo_tag}", reg.host()),
        None,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    (layout, reg)
}

/// Copy between two locations as the CLI writes them; the error as its message.
pub async fn cp(
    src: &str,
    dst: &str,
    store: Option<&Arc<Store>>,
    opts: &CopyOptions,
) -> Result<CopyReport, String> {
    let s: Location = src.parse().unwrap();
    let d: Location = dst.parse().unwrap();
    let clients = Clients::default();
    let source = open_source(&s, store, &clients).map_err(|e| e.to_string())?;
    let sink = open_sink(&d, store, &clients).map_err(|e| e.to_string())?;
    // `During` shows its whole chain in its message.
    copy(source, sink, opts).await.map_err(|e| e.to_string())
}

/// Push a hostile index chain `depth` manifests deep ([`sealift_fixtures::deep_chain`]) to
/// `host/repo:tag` with the registry client, bottom up (the registry takes an index only
/// once its entries are there): sealift's copy refuses such a chain, so it cannot put one
/// up. Returns the top digest.
pub async fn push_deep_chain(host: &str, repo: &str, tag: &str, depth: usize) -> Digest {
    use sealift_registry::{Registry, RegistryConfig};
    let mut layout = Layout::new();
    let top = sealift_fixtures::deep_chain(&mut layout, depth);
    let reg = Registry::new(RegistryConfig::new(host)).unwrap();
    let mut chain = Vec::new();
    let mut at = top["digest"].as_str().unwrap().to_string();
    loop {
        let blob = &layout.blobs[&at];
        let v: serde_json::Value = serde_json::from_slice(&blob.bytes).unwrap();
        chain.push(blob);
        match v["manifests"][0]["digest"].as_str() {
            Some(next) => at = next.to_string(),
            None => {
                let config = &layout.blobs[v["config"]["digest"].as_str().unwrap()];
                let d: Digest = config.digest.parse().unwrap();
                reg.blob_put(
                    repo,
                    &d,
                    config.size,
                    std::io::Cursor::new(config.bytes.clone()),
                )
                .await
                .unwrap();
                break;
            }
        }
    }
    for blob in chain.iter().rev() {
        reg.manifest_put(repo, &blob.digest, &blob.media_type, &blob.bytes)
            .await
            .unwrap();
    }
    let top = chain[0];
    reg.manifest_put(repo, tag, &top.media_type, &top.bytes)
        .await
        .unwrap();
    top.digest.parse().unwrap()
}

/// `verify --full` on the store finds nothing.
pub fn verify_full(store: &Store) {
    let v = store
        .verify(VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "verify --full: {:?}", v.problems);
}

/// Run skopeo (required), returning its stdout; fail the test on a non-zero exit.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new(sealift_testkit::require_tool("skopeo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

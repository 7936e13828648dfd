//! The registry client against the real distribution registry (sealift-testkit), with a
//! fault-injecting proxy in front where a test needs failures. One binary, a module per area
//! under client/; the helpers the modules share are here.

mod client {
    mod api;
    mod auth;
    mod faults;
}

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
pub(crate) fn config(host: &str) -> RegistryConfig {
    let mut cfg = RegistryConfig::new(host);
    cfg.retry = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    cfg.auth_env = Some(AuthEnv::default());
    cfg
}

pub(crate) fn client(host: &str) -> Registry {
    Registry::new(config(host)).unwrap()
}

pub(crate) fn with_creds(host: &str, user: &str, password: &str) -> Registry {
    let mut cfg = config(host);
    cfg.credentials = Some(Credentials::Basic {
        username: user.into(),
        password: password.into(),
    });
    Registry::new(cfg).unwrap()
}

pub(crate) async fn put_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> Descriptor {
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

pub(crate) async fn read_all(
    reg: &Registry,
    repo: &str,
    d: &Descriptor,
) -> std::io::Result<Vec<u8>> {
    let mut r = reg.blob_get(repo, &d.digest, d.size).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// An OCI image manifest over a config and layers, with an optional subject.
pub(crate) fn image_manifest(
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
pub(crate) async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    seed: u64,
) -> (Vec<u8>, Digest) {
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

pub(crate) fn registry_error(e: &std::io::Error) -> &RegistryError {
    RegistryError::from_io(e).unwrap_or_else(|| panic!("not a registry error: {e:?}"))
}

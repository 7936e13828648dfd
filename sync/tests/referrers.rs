//! `Registry::referrers` against `sealift serve` (in-process, over a real store) holding more
//! referrers of one subject than one page carries: the client follows the `Link` pages.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use sealift_registry::{AuthEnv, Registry, RegistryConfig};
use sealift_serve::{ServeError, ServeOptions};
use sealift_store::{Lease, ManifestOptions, Store};
use tokio::sync::oneshot;

const SPDX: &str = "application/spdx+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Store an OCI artifact manifest (empty config and layer), with `subject` when given.
fn put_artifact(
    store: &Store,
    lease: &Lease,
    artifact_type: &str,
    subject: Option<&Digest>,
    note: &str,
) -> Digest {
    let empty = serde_json::json!({
        "mediaType": mt::OCI_EMPTY,
        "digest": Digest::sha256(b"{}"),
        "size": 2,
    });
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty,
        "layers": [empty],
        "annotations": { "note": note },
    });
    if let Some(s) = subject {
        m["subject"] = serde_json::json!({ "mediaType": mt::OCI_MANIFEST, "digest": s, "size": 1 });
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let opts = ManifestOptions {
        expected: None,
        media_type: Some(mt::OCI_MANIFEST),
        sparse: false,
    };
    store.put_manifest(lease, &bytes, opts).unwrap().digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_follow_link_pages_of_sealift_serve() {
    // 1,300 referrers: serve pages at 1,000, so the full list and the SPDX filter (1,050)
    // each take two pages, the cosign filter (250) one.
    const SPDX_COUNT: usize = 1050;
    const COSIGN_COUNT: usize = 250;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    let lease = store.lease_detached("referrers test", None).unwrap();
    store
        .put_blob(
            &lease,
            &Digest::sha256(b"{}"),
            2,
            mt::OCI_EMPTY,
            &mut &b"{}"[..],
        )
        .unwrap();
    let subject = put_artifact(&store, &lease, "application/example", None, "subject");
    store
        .set_tag(&"r".parse().unwrap(), &"subject".parse().unwrap(), &subject)
        .unwrap();
    let mut spdx = BTreeSet::new();
    let mut cosign = BTreeSet::new();
    for i in 0..SPDX_COUNT + COSIGN_COUNT {
        let (t, set) = if i < SPDX_COUNT {
            (SPDX, &mut spdx)
        } else {
            (COSIGN, &mut cosign)
        };
        set.insert(put_artifact(
            &store,
            &lease,
            t,
            Some(&subject),
            &i.to_string(),
        ));
    }
    let all: BTreeSet<Digest> = spdx.union(&cosign).cloned().collect();
    assert_eq!(all.len(), SPDX_COUNT + COSIGN_COUNT);

    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    let server = sealift_serve::bind(store.clone(), &opts).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut cfg = RegistryConfig::new(addr.to_string());
    cfg.auth_env = Some(AuthEnv::default());
    let client = Registry::new(cfg).unwrap();
    let listed = |found: Vec<sealift_oci::Descriptor>| {
        let n = found.len();
        let set: BTreeSet<Digest> = found.into_iter().map(|d| d.digest).collect();
        assert_eq!(set.len(), n, "a referrer listed twice");
        set
    };
    let got = client.referrers("r", &subject, None).await.unwrap();
    assert_eq!(listed(got), all);
    let got = client.referrers("r", &subject, Some(SPDX)).await.unwrap();
    assert_eq!(listed(got), spdx);
    let got = client.referrers("r", &subject, Some(COSIGN)).await.unwrap();
    assert_eq!(listed(got), cosign);
    // A subject nobody refers to: one empty page.
    let none = Digest::sha256(b"nothing refers to this");
    assert!(client.referrers("r", &none, None).await.unwrap().is_empty());

    let _ = stop.send(());
    let r: Result<(), ServeError> = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("server stops")
        .unwrap();
    r.unwrap();
}

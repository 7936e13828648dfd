//! Real clients pull everything: skopeo (to a layout and into distribution) and sealift's
//! own copy engine with referrers.

use std::sync::Arc;

use sealift_copy::copy::{copy, CopyOptions};
use sealift_copy::location::Location;
use sealift_copy::transport::{open_sink, open_source};
use sealift_copy::Clients;
use sealift_fixtures::CORPUS_REFS;
use sealift_oci::Tag;
use sealift_registry::{AuthEnv, Registry, RegistryConfig};
use sealift_serve::ServeOptions;
use sealift_store::Store;
use serde_json::Value;

use crate::common::*;

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

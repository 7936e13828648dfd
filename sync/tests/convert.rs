//! `--dest-compress` and `--format`: conversion during a copy, checked on what lands at the
//! destination (store, OCI layout directory, registry), against the OCI JSON schemas, and
//! with skopeo reading the result.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::schema::{schemas, validate_graph};
use common::{cp, digest_of, skopeo, verify_full};
use sealift_copy::convert::{Convert, Format};
use sealift_copy::copy::CopyOptions;
use sealift_fixtures::{corpus, gzip, layer_tar, Blob, Layout};
use sealift_oci::diffid::diff_id;
use sealift_oci::media_type::{self as mt, Compression};
use sealift_oci::{Digest, ManifestView, StoreRef};
use sealift_store::Store;
use sealift_testkit::Registry;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Helpers

fn src_bytes<'a>(layout: &'a Layout, d: &Digest) -> &'a [u8] {
    layout
        .blob_bytes(&d.to_string())
        .unwrap_or_else(|| panic!("{d} not in the corpus"))
}

fn opts(compression: Option<Compression>, format: Option<Format>) -> CopyOptions {
    CopyOptions {
        convert: Some(Convert {
            compression,
            format,
        }),
        ..Default::default()
    }
}

fn corpus_dir(tmp: &Path) -> (Layout, PathBuf) {
    let layout = corpus();
    let dir = tmp.join("corpus");
    layout.write_dir(&dir).unwrap();
    (layout, dir)
}

fn layout_blob(dir: &Path, d: &Digest) -> Vec<u8> {
    std::fs::read(dir.join("blobs").join(d.algorithm().as_str()).join(d.hex()))
        .unwrap_or_else(|e| panic!("{d} in {}: {e}", dir.display()))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn diff_ids(config: &[u8]) -> Vec<Digest> {
    json_of(config)["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

/// zstd + uncompressed layers → gzip, into the store: new layer digests, same DiffIDs
/// (recomputed from the stored blobs), same config bytes, `verify --full` clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zstd_image_recompressed_to_gzip_keeps_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let old = digest_of(&layout, "zstd");
    let old_view = ManifestView::parse(src_bytes(&layout, &old), None).unwrap();

    let r = cp(
        &format!("oci:{}:zstd", dir.display()),
        "store:conv/zstd:gzip",
        Some(&store),
        &opts(Some(Compression::Gzip), None),
    )
    .await
    .unwrap();
    let new = r.destination_digest.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(r.source_digest, Some(old.clone()));
    assert_eq!(r.converted, vec![(old.clone(), new.clone())]);
    assert_eq!(
        store
            .resolve(&"conv/zstd:gzip".parse::<StoreRef>().unwrap())
            .unwrap(),
        new
    );

    let (bytes, view) = store.manifest(&new).unwrap();
    assert_eq!(view.media_type, mt::OCI_MANIFEST);
    assert_eq!(view.layers.len(), 2);
    // The config is the very same blob.
    let config = view.config.clone().unwrap();
    assert_eq!(config, old_view.config.clone().unwrap());
    let config_bytes = store.read_small(&config.digest, 1 << 20).unwrap();
    assert_eq!(config_bytes, src_bytes(&layout, &config.digest));
    let want = diff_ids(&config_bytes);
    for (i, (layer, before)) in view.layers.iter().zip(&old_view.layers).enumerate() {
        assert_eq!(layer.media_type, mt::OCI_LAYER_GZIP, "layer {i}");
        assert_ne!(layer.digest, before.digest, "layer {i} was re-encoded");
        let f = store.open_blob(&layer.digest).unwrap();
        assert_eq!(
            diff_id(f, Compression::Gzip).unwrap(),
            want[i],
            "layer {i} DiffID"
        );
        assert_eq!(
            std::fs::metadata(store.blob_path(&layer.digest))
                .unwrap()
                .len(),
            layer.size
        );
    }
    // The source's zstd/tar blobs were not transferred.
    for before in &old_view.layers {
        assert!(store.record(&before.digest).unwrap().is_none());
    }
    // Key order of a re-serialised manifest.
    let keys: Vec<String> = json_of(&bytes)
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["schemaVersion", "mediaType", "config", "layers"]);
    let s = schemas();
    let read = |d: &Digest| store.read_small(d, 4 << 20).unwrap();
    assert_eq!(validate_graph(&s, &new, &read), (0, 1, 1));
    verify_full(&store);

    // Copying again converts to the same bytes: the destination is up to date.
    let again = cp(
        &format!("oci:{}:zstd", dir.display()),
        "store:conv/zstd:gzip",
        Some(&store),
        &opts(Some(Compression::Gzip), None),
    )
    .await
    .unwrap();
    assert!(again.up_to_date, "{again:?}");
    assert_eq!(again.destination_digest, Some(new));
}

/// Docker manifest list → OCI into a layout directory: OCI index, manifests and config
/// media types; same configs and layers (gzip either way); platforms kept; valid against
/// the OCI schemas; skopeo reads and copies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_list_to_oci_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let out = tmp.path().join("out");
    let old = digest_of(&layout, "docker");
    let old_idx = json_of(src_bytes(&layout, &old));

    let r = cp(
        &format!("oci:{}:docker", dir.display()),
        &format!("oci:{}:converted", out.display()),
        None,
        &opts(None, Some(Format::Oci)),
    )
    .await
    .unwrap();
    let new = r.destination_digest.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(r.media_type, mt::OCI_INDEX);
    assert_eq!(r.converted.len(), 3, "two images and the list: {r:?}");
    assert_eq!(r.converted.last().unwrap(), &(old.clone(), new.clone()));

    let idx_bytes = layout_blob(&out, &new);
    let idx = json_of(&idx_bytes);
    assert_eq!(idx["mediaType"], mt::OCI_INDEX);
    let old_entries = old_idx["manifests"].as_array().unwrap();
    let entries = idx["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), old_entries.len());
    for (e, o) in entries.iter().zip(old_entries) {
        assert_eq!(e["mediaType"], mt::OCI_MANIFEST);
        assert_eq!(e["platform"], o["platform"], "platform kept");
        assert_ne!(e["digest"], o["digest"]);
        let d: Digest = e["digest"].as_str().unwrap().parse().unwrap();
        let od: Digest = o["digest"].as_str().unwrap().parse().unwrap();
        let m = json_of(&layout_blob(&out, &d));
        let om = json_of(src_bytes(&layout, &od));
        assert_eq!(m["mediaType"], mt::OCI_MANIFEST);
        assert_eq!(m["config"]["mediaType"], mt::OCI_CONFIG);
        assert_eq!(m["config"]["digest"], om["config"]["digest"], "same config");
        assert_eq!(m["config"]["size"], om["config"]["size"]);
        for (l, ol) in m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(om["layers"].as_array().unwrap())
        {
            assert_eq!(l["mediaType"], mt::OCI_LAYER_GZIP);
            assert_eq!(l["digest"], ol["digest"], "gzip layers pass through");
        }
    }
    let s = schemas();
    let read = |d: &Digest| layout_blob(&out, d);
    assert_eq!(validate_graph(&s, &new, &read), (1, 2, 2));

    // skopeo sees exactly the converted bytes and can copy the result.
    let reference = format!("oci:{}:converted", out.display());
    assert_eq!(skopeo(&["inspect", "--raw", &reference]), idx_bytes);
    let again = tmp.path().join("skopeo-out");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        &reference,
        &format!("oci:{}:again", again.display()),
    ]);
    assert_eq!(
        skopeo(&[
            "inspect",
            "--raw",
            &format!("oci:{}:again", again.display())
        ]),
        idx_bytes
    );
}

/// Docker has no zstd layer type: asking for both is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_and_zstd_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = corpus_dir(tmp.path());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let err = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:conv/bad:1",
        Some(&store),
        &opts(Some(Compression::Zstd), Some(Format::Docker)),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("--format docker") && err.contains("--dest-compress zstd"),
        "{err}"
    );
    assert!(store.tags().unwrap().is_empty());
    assert_eq!(store.records().count(), 0);

    // A Docker image without --format stays Docker: zstd is refused for it too.
    let err = cp(
        &format!("oci:{}:docker", dir.display()),
        "store:conv/bad:2",
        Some(&store),
        &opts(Some(Compression::Zstd), None),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("--dest-compress zstd") && err.contains("--format oci"),
        "{err}"
    );
    assert!(err.contains("Docker schema2 manifest"), "{err}");
    assert_eq!(store.records().count(), 0);
}

/// multi (amd64, arm64, attestation for amd64) → OCI + zstd: the attestation manifest is
/// copied as it is, and its index entry now names the new amd64 digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attestation_follows_the_converted_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let old = digest_of(&layout, "multi");
    let old_idx = ManifestView::parse(src_bytes(&layout, &old), None).unwrap();
    let entry = |v: &ManifestView, arch: &str| {
        v.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.architecture == arch))
            .cloned()
            .unwrap()
    };
    let old_amd64 = entry(&old_idx, "amd64");
    let old_att = entry(&old_idx, "unknown");
    assert_eq!(old_att.attests(), Some(old_amd64.digest.clone()));

    let r = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:conv/multi:zstd",
        Some(&store),
        &opts(Some(Compression::Zstd), Some(Format::Oci)),
    )
    .await
    .unwrap();
    let new = r.destination_digest.clone().unwrap();
    assert_ne!(new, old);
    let (_, idx) = store.manifest(&new).unwrap();
    assert_eq!(idx.manifests.len(), 3);
    let amd64 = entry(&idx, "amd64");
    let att = entry(&idx, "unknown");
    assert_ne!(amd64.digest, old_amd64.digest);
    assert!(r
        .converted
        .contains(&(old_amd64.digest.clone(), amd64.digest.clone())));
    assert_eq!(
        att.digest, old_att.digest,
        "the attestation itself is unchanged"
    );
    assert_eq!(
        att.annotations[mt::ANNOTATION_DOCKER_REF_DIGEST],
        amd64.digest.to_string()
    );
    assert_eq!(att.attests(), Some(amd64.digest.clone()));
    assert_eq!(
        store.read_small(&att.digest, 1 << 20).unwrap(),
        src_bytes(&layout, &att.digest)
    );
    for arch in ["amd64", "arm64"] {
        let (_, m) = store.manifest(&entry(&idx, arch).digest).unwrap();
        let cfg = store
            .read_small(&m.config.as_ref().unwrap().digest, 1 << 20)
            .unwrap();
        let want = diff_ids(&cfg);
        for (i, l) in m.layers.iter().enumerate() {
            assert_eq!(l.media_type, mt::OCI_LAYER_ZSTD);
            let f = store.open_blob(&l.digest).unwrap();
            assert_eq!(
                diff_id(f, Compression::Zstd).unwrap(),
                want[i],
                "{arch} {i}"
            );
        }
    }
    let s = schemas();
    let read = |d: &Digest| store.read_small(d, 4 << 20).unwrap();
    // index, amd64, arm64, attestation; configs of all three.
    assert_eq!(validate_graph(&s, &new, &read), (1, 3, 3));
    verify_full(&store);
}

/// To Docker: a Docker manifest list of schema2 images with Docker gzip layers (zstd
/// recompressed to gzip); attestations are dropped since a list cannot carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oci_to_docker_drops_attestations_and_zstd() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let r = cp(
        &format!("oci:{}:multi", dir.display()),
        "store:conv/multi:docker",
        Some(&store),
        &opts(None, Some(Format::Docker)),
    )
    .await
    .unwrap();
    let (_, idx) = store
        .manifest(r.destination_digest.as_ref().unwrap())
        .unwrap();
    assert_eq!(idx.media_type, mt::DOCKER_MANIFEST_LIST);
    assert_eq!(idx.manifests.len(), 2, "attestation dropped");
    assert!(idx.manifests.iter().all(|d| d.attests().is_none()));
    for e in &idx.manifests {
        assert_eq!(e.media_type, mt::DOCKER_MANIFEST);
        let (_, m) = store.manifest(&e.digest).unwrap();
        assert_eq!(m.config.as_ref().unwrap().media_type, mt::DOCKER_CONFIG);
        assert!(m
            .layers
            .iter()
            .all(|l| l.media_type == mt::DOCKER_LAYER_GZIP));
    }

    // zstd + tar layers to Docker: gzip, the only compressed Docker type.
    let old = digest_of(&layout, "zstd");
    let r = cp(
        &format!("oci:{}:zstd", dir.display()),
        "store:conv/zstd:docker",
        Some(&store),
        &opts(None, Some(Format::Docker)),
    )
    .await
    .unwrap();
    let (_, m) = store
        .manifest(r.destination_digest.as_ref().unwrap())
        .unwrap();
    assert_eq!(m.media_type, mt::DOCKER_MANIFEST);
    let old_m = ManifestView::parse(src_bytes(&layout, &old), None).unwrap();
    assert_eq!(m.layers[0].media_type, mt::DOCKER_LAYER_GZIP, "zstd → gzip");
    assert_ne!(m.layers[0].digest, old_m.layers[0].digest);
    assert_eq!(
        m.layers[1].media_type,
        mt::DOCKER_LAYER_TAR,
        "tar stays tar"
    );
    assert_eq!(m.layers[1].digest, old_m.layers[1].digest);
    verify_full(&store);
}

/// Already OCI + gzip: nothing changes, not even the digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passthrough_keeps_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let out = tmp.path().join("out");
    let old = digest_of(&layout, "shared");
    let r = cp(
        &format!("oci:{}:shared", dir.display()),
        &format!("oci:{}:same", out.display()),
        None,
        &opts(Some(Compression::Gzip), Some(Format::Oci)),
    )
    .await
    .unwrap();
    assert_eq!(r.destination_digest, Some(old.clone()));
    assert!(r.converted.is_empty(), "{r:?}");
    assert_eq!(layout_blob(&out, &old), src_bytes(&layout, &old));
    // The multi index too: every image is OCI gzip already.
    let multi = digest_of(&layout, "multi");
    let r = cp(
        &format!("oci:{}:multi", dir.display()),
        &format!("oci:{}:multi", out.display()),
        None,
        &opts(Some(Compression::Gzip), Some(Format::Oci)),
    )
    .await
    .unwrap();
    assert_eq!(r.destination_digest, Some(multi));
    assert!(r.converted.is_empty());
}

/// A source whose layer does not uncompress to its config's DiffID is refused, naming the
/// layer, and nothing is tagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inconsistent_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layout::new();
    let tar = layer_tar(&[("etc/hello", b"hello\n")]);
    let layer = l.add(Blob::new(mt::OCI_LAYER_GZIP, gzip(&tar)));
    let wrong = Digest::sha256(b"not this layer");
    let config = l.add(Blob::json(
        mt::OCI_CONFIG,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [wrong.to_string()] },
        }),
    ));
    let manifest = l.add(Blob::json(
        mt::OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_MANIFEST,
            "config": config,
            "layers": [layer.clone()],
        }),
    ));
    l.add_ref(manifest, Some("bad"));
    let dir = tmp.path().join("bad");
    l.write_dir(&dir).unwrap();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let err = cp(
        &format!("oci:{}:bad", dir.display()),
        "store:conv/bad:1",
        Some(&store),
        &opts(Some(Compression::Zstd), None),
    )
    .await
    .unwrap_err();
    let layer_digest = layer["digest"].as_str().unwrap();
    assert!(err.contains(layer_digest), "names the layer: {err}");
    assert!(err.contains(&wrong.to_string()), "{err}");
    assert!(err.contains("rootfs.diff_ids[0]"), "{err}");
    assert!(store.tags().unwrap().is_empty());
}

/// A bigger layer streams through: 24 MiB of incompressible data, tar → zstd → gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_layer_streams_through_both_codecs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    let root: Digest = sealift_fixtures::big_layout_dir(&dir, 1, 24 << 20, 7)
        .unwrap()
        .parse()
        .unwrap();
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let src = format!("oci:{}:{}", dir.display(), sealift_fixtures::BIG_REF);
    let z = cp(
        &src,
        "store:big/z:1",
        Some(&store),
        &opts(Some(Compression::Zstd), None),
    )
    .await
    .unwrap();
    assert_eq!(z.converted[0].0, root);
    let zdir = tmp.path().join("zlayout");
    let r = cp(
        "store:big/z:1",
        &format!("oci:{}:g", zdir.display()),
        Some(&store),
        &opts(Some(Compression::Gzip), None),
    )
    .await
    .unwrap();
    let new = r.destination_digest.unwrap();
    let m = json_of(&layout_blob(&zdir, &new));
    let l: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    let c: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
    let f = std::fs::File::open(zdir.join("blobs/sha256").join(l.hex())).unwrap();
    assert_eq!(
        diff_id(f, Compression::Gzip).unwrap(),
        diff_ids(&layout_blob(&zdir, &c))[0]
    );
    verify_full(&store);
}

/// Through a registry: converted blobs are pushed from their temporary files and skopeo
/// reads back the converted manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn converted_image_pushed_to_a_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = corpus_dir(tmp.path());
    let reg = Registry::start();
    let h = reg.host();
    let r = cp(
        &format!("oci:{}:zstd", dir.display()),
        &format!("docker://{h}/conv/zstd:gzip"),
        None,
        &opts(Some(Compression::Gzip), None),
    )
    .await
    .unwrap();
    let new = r.destination_digest.unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{h}/conv/zstd:gzip"),
    ]);
    assert_eq!(Digest::sha256(&raw), new);
    // Back into a layout through skopeo, which checks every blob digest.
    let out = tmp.path().join("from-registry");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{h}/conv/zstd:gzip"),
        &format!("oci:{}:x", out.display()),
    ]);
    let m = json_of(&raw);
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], mt::OCI_LAYER_GZIP);
    }
}

/// Non-distributable and foreign layers are left exactly as they are (their bytes are not
/// there to convert); the other layers are converted around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_layers_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, dir) = corpus_dir(tmp.path());
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    for (name, format) in [("nondist", None), ("foreign", Some(Format::Oci))] {
        let old = digest_of(&layout, name);
        let old_m = json_of(src_bytes(&layout, &old));
        let r = cp(
            &format!("oci:{}:{name}", dir.display()),
            &format!("store:conv/{name}:zstd"),
            Some(&store),
            &opts(Some(Compression::Zstd), format),
        )
        .await
        .unwrap();
        let new = r.destination_digest.unwrap();
        let (bytes, _) = store.manifest(&new).unwrap();
        let m = json_of(&bytes);
        assert_eq!(m["mediaType"], mt::OCI_MANIFEST);
        let (layers, old_layers) = (
            m["layers"].as_array().unwrap(),
            old_m["layers"].as_array().unwrap(),
        );
        for (l, o) in layers.iter().zip(old_layers) {
            let t = o["mediaType"].as_str().unwrap();
            if mt::is_non_distributable(t) {
                assert_eq!(l, o, "{name}: foreign layer descriptor unchanged");
            } else {
                assert_eq!(l["mediaType"], mt::OCI_LAYER_ZSTD, "{name}");
                assert_ne!(l["digest"], o["digest"], "{name}");
            }
        }
    }
    verify_full(&store);
}

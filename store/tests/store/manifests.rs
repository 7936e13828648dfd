//! put_manifest: exact bytes, children, refusals, sparse indexes, promotion of blobs.

use std::os::unix::fs::PermissionsExt;

use sealift_oci::manifest::{ManifestError, Role, MAX_MANIFEST_SIZE};
use sealift_oci::media_type as mt;
use sealift_oci::{Digest, ManifestKind};
use sealift_store::{Error, ManifestOptions, PutOutcome};
use serde_json::json;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(missing_required_child_is_refused_and_leaves_nothing,);

fn opts<'a>(expected: &'a Digest, media_type: &'a str) -> ManifestOptions<'a> {
    ManifestOptions {
        expected: Some(expected),
        media_type: Some(media_type),
        sparse: false,
    }
}

#[test]
fn image_manifest_is_stored_byte_for_byte_with_edges() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("m-a"), layer("m-b")]);
    put(&store, &lease, &img.config);
    for l in &img.layers {
        put(&store, &lease, &l.blob);
    }
    let m = &img.manifest;
    // Pretty-printed JSON with newlines: re-serialising would change the digest.
    assert!(m.bytes.contains(&b'\n'));
    let stored = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap();
    assert_eq!(stored.digest, m.digest);
    assert_eq!(stored.outcome, PutOutcome::Written);
    assert_eq!(stored.view.kind, ManifestKind::Image);

    let (bytes, view) = store.manifest(&m.digest).unwrap();
    assert_eq!(bytes, m.bytes, "bytes stored exactly");
    assert_eq!(Digest::sha256(&bytes), m.digest);
    assert_eq!(std::fs::read(store.blob_path(&m.digest)).unwrap(), m.bytes);
    let mode = std::fs::metadata(store.blob_path(&m.digest))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o444);
    assert_eq!(view.config.as_ref().unwrap().digest, img.config.digest);
    assert_eq!(view.layers.len(), 2);

    let rec = store.record(&m.digest).unwrap().unwrap();
    assert!(rec.manifest);
    assert_eq!(rec.media_type, mt::OCI_MANIFEST);
    assert_eq!(rec.size, m.size());

    let edges = store.edges(&m.digest).unwrap();
    let mut got: Vec<_> = edges.iter().map(|e| (e.child.clone(), e.role)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (img.config.digest.clone(), Role::Config),
        (img.layers[0].blob.digest.clone(), Role::Layer),
        (img.layers[1].blob.digest.clone(), Role::Layer),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert!(edges.iter().all(|e| e.required));

    let (nodes, missing) = store.walk(&m.digest).unwrap();
    assert_eq!(nodes[0].0, m.digest, "walk starts at the root");
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.0.clone())
            .collect::<std::collections::BTreeSet<_>>(),
        img.digests()
    );
    assert!(missing.is_empty());

    // Again: present, same digest, nothing new on disk.
    let files = blob_files(dir.path());
    let again = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::Present);
    assert_eq!(blob_files(dir.path()), files);
    assert_eq!(files, names(&img.digests()));
}

fn missing_required_child_is_refused_and_leaves_nothing(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("present"), layer("absent")]);
    put(&store, &lease, &img.config);
    put(&store, &lease, &img.layers[0].blob);
    let m = &img.manifest;
    let err = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap_err();
    let absent = &img.layers[1].blob;
    match &err {
        Error::MissingChild {
            parent,
            child,
            media_type,
            size,
        } => {
            assert_eq!(parent, &m.digest);
            assert_eq!(child, &absent.digest);
            assert_eq!(media_type, mt::OCI_LAYER_GZIP);
            assert_eq!(*size, absent.size());
        }
        e => panic!("expected MissingChild, got {e:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&m.digest.to_string()) && msg.contains(&absent.digest.to_string()));
    assert!(store.record(&m.digest).unwrap().is_none());
    assert!(store.edges(&m.digest).unwrap().is_empty());
    assert!(fx.leftovers().is_empty());
    // Only the two blobs that were stored: a refused manifest leaves no file behind
    // (it would show up as an orphan in verify).
    let expected: std::collections::BTreeSet<Digest> =
        [img.config.digest.clone(), img.layers[0].blob.digest.clone()].into();
    assert_eq!(fx.blob_names(&store), names(&expected));
    let report = store
        .verify(sealift_store::verify::VerifyOptions::default())
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Once the child arrives the same bytes are accepted.
    put(&store, &lease, absent);
    assert_eq!(put_manifest(&store, &lease, m), PutOutcome::Written);
}

#[test]
fn absent_non_distributable_layer_is_accepted() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let normal = layer("nd-normal");
    let foreign = Blob::new(mt::OCI_LAYER_ND_GZIP, gzip(&tar(&[("w", b"windows base")])));
    let cfg = config("amd64", &[normal.diff_id.clone(), Digest::sha256(b"x")]);
    let mut fd = foreign.descriptor();
    fd["urls"] = json!(["https://example.invalid/base.tar.gz"]);
    let m = manifest_over(&cfg, &[normal.blob.descriptor(), fd], None);
    put(&store, &lease, &cfg);
    put(&store, &lease, &normal.blob);
    let stored = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap();
    assert_eq!(stored.outcome, PutOutcome::Written);
    let edges = store.edges(&m.digest).unwrap();
    assert_eq!(edges.len(), 3);
    let fe = edges.iter().find(|e| e.child == foreign.digest).unwrap();
    assert!(!fe.required, "absent foreign layer is an optional edge");
    let (_, missing) = store.walk(&m.digest).unwrap();
    assert!(missing.is_empty());
    store.set_tag(&repo("win"), &tag("1"), &m.digest).unwrap();
    assert!(store.record(&foreign.digest).unwrap().is_none());
}

#[test]
fn child_size_disagreement_is_refused() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let l = layer("sized");
    let cfg = config("amd64", std::slice::from_ref(&l.diff_id));
    put(&store, &lease, &cfg);
    put(&store, &lease, &l.blob);
    let mut ld = l.blob.descriptor();
    ld["size"] = json!(l.blob.size() + 1);
    let m = manifest_over(&cfg, &[ld], None);
    let err = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap_err();
    match err {
        Error::ChildSize {
            parent,
            child,
            expected,
            actual,
        } => {
            assert_eq!(parent, m.digest);
            assert_eq!(child, l.blob.digest);
            assert_eq!(expected, l.blob.size() + 1);
            assert_eq!(actual, l.blob.size());
        }
        e => panic!("expected ChildSize, got {e:?}"),
    }
    assert!(store.record(&m.digest).unwrap().is_none());
    assert!(store.edges(&m.digest).unwrap().is_empty());
    assert!(
        !blob_files(dir.path()).contains(&m.digest.to_string()),
        "refused manifest left its file under blobs/"
    );
    // The refusal did not link the child either (the transaction rolled back).
    assert!(!store.record(&l.blob.digest).unwrap().unwrap().linked);
}

#[test]
fn oversized_manifest_is_refused_naming_its_digest() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let cfg = config("amd64", &[]);
    put(&store, &lease, &cfg);
    let mut bytes = manifest_over(&cfg, &[], None).bytes;
    // Valid JSON, padded with whitespace past the cap.
    bytes.extend(std::iter::repeat_n(b' ', MAX_MANIFEST_SIZE));
    let d = Digest::sha256(&bytes);
    let err = store
        .put_manifest(&lease, &bytes, ManifestOptions::default())
        .unwrap_err();
    match &err {
        Error::Manifest { digest, source } => {
            assert_eq!(digest, &d);
            assert_eq!(source, &ManifestError::TooLarge(bytes.len()));
        }
        e => panic!("expected Manifest TooLarge, got {e:?}"),
    }
    assert!(err.to_string().contains(&d.to_string()));
    assert!(store.record(&d).unwrap().is_none());
    assert_eq!(blob_files(dir.path()), names(&[cfg.digest.clone()].into()));
}

#[test]
fn bad_json_is_refused_naming_its_digest() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let bytes =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":"#;
    let d = Digest::sha256(bytes);
    let err = store
        .put_manifest(&lease, bytes, ManifestOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Manifest { digest, source: ManifestError::Json(_) } if digest == &d),
        "{err:?}"
    );
    assert!(err.to_string().contains(&d.to_string()), "{err}");
    assert!(store.record(&d).unwrap().is_none());
}

#[test]
fn expected_digest_mismatch_is_refused() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let cfg = config("amd64", &[]);
    put(&store, &lease, &cfg);
    let m = manifest_over(&cfg, &[], None);
    let wrong = Digest::sha256(b"not the manifest");
    let err = store
        .put_manifest(&lease, &m.bytes, opts(&wrong, mt::OCI_MANIFEST))
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, actual } if expected == &wrong && actual == &m.digest),
        "{err:?}"
    );
    assert!(store.record(&m.digest).unwrap().is_none());
    assert!(!blob_files(dir.path()).contains(&m.digest.to_string()));
}

#[test]
fn media_type_mismatch_is_refused() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("mt")]);
    put_image(&store, &lease, &img);
    let bytes = index_bytes(&[(&img.manifest, "amd64")], mt::OCI_INDEX);
    let d = Digest::sha256(&bytes);
    let err = store
        .put_manifest(&lease, &bytes, opts(&d, mt::DOCKER_MANIFEST_LIST))
        .unwrap_err();
    match &err {
        Error::Manifest {
            digest,
            source: ManifestError::MediaTypeMismatch { declared, expected },
        } => {
            assert_eq!(digest, &d);
            assert_eq!(declared, mt::OCI_INDEX);
            assert_eq!(expected, mt::DOCKER_MANIFEST_LIST);
        }
        e => panic!("expected MediaTypeMismatch, got {e:?}"),
    }
    assert!(store.record(&d).unwrap().is_none());
    // Described correctly it is fine.
    store
        .put_manifest(&lease, &bytes, opts(&d, mt::OCI_INDEX))
        .unwrap();
    assert!(store.is_index(&d).unwrap());
}

#[test]
fn sparse_index_needs_the_sparse_option() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let amd = image("amd64", vec![layer("sp-amd")]);
    let arm = image("arm64", vec![layer("sp-arm")]);
    put_image(&store, &lease, &amd);
    let bytes = index_bytes(
        &[(&amd.manifest, "amd64"), (&arm.manifest, "arm64")],
        mt::OCI_INDEX,
    );
    let d = Digest::sha256(&bytes);

    let err = store
        .put_manifest(&lease, &bytes, opts(&d, mt::OCI_INDEX))
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingChild { parent, child, media_type, .. }
            if parent == &d && child == arm.digest() && media_type == mt::OCI_MANIFEST),
        "{err:?}"
    );
    assert!(store.record(&d).unwrap().is_none());
    assert!(!blob_files(dir.path()).contains(&d.to_string()));

    let stored = store
        .put_manifest(
            &lease,
            &bytes,
            ManifestOptions {
                expected: Some(&d),
                media_type: Some(mt::OCI_INDEX),
                sparse: true,
            },
        )
        .unwrap();
    assert_eq!(stored.outcome, PutOutcome::Written);
    assert_eq!(stored.view.kind, ManifestKind::Index);
    let (b, _) = store.manifest(&d).unwrap();
    assert_eq!(b, bytes);
    let edges = store.edges(&d).unwrap();
    assert_eq!(edges.len(), 2);
    for e in &edges {
        assert_eq!(e.role, Role::Manifest);
        assert_eq!(e.required, &e.child == amd.digest(), "{e:?}");
    }
    let (nodes, missing) = store.walk(&d).unwrap();
    assert!(missing.is_empty());
    let mut want = amd.digests();
    want.insert(d.clone());
    assert_eq!(
        nodes
            .into_iter()
            .map(|n| n.0)
            .collect::<std::collections::BTreeSet<_>>(),
        want
    );
    // A sparse index can be tagged (stores and layouts allow it).
    store.set_tag(&repo("multi"), &tag("amd-only"), &d).unwrap();
}

#[test]
fn sparse_option_does_not_excuse_image_manifest_children() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("sp-img")]);
    put(&store, &lease, &img.config);
    let err = store
        .put_manifest(
            &lease,
            &img.manifest.bytes,
            ManifestOptions {
                expected: Some(img.digest()),
                media_type: Some(mt::OCI_MANIFEST),
                sparse: true,
            },
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingChild { child, .. } if child == &img.layers[0].blob.digest),
        "{err:?}"
    );
}

#[test]
fn blob_stored_first_is_promoted_to_manifest() {
    let (dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("promo-a"), layer("promo-b")]);
    // A layout import: everything arrives as a blob with no media type known yet.
    for b in img.blobs() {
        store
            .put_blob(&lease, &b.digest, b.size(), "", &mut &b.bytes[..])
            .unwrap();
        assert_eq!(store.record(&b.digest).unwrap().unwrap().media_type, "");
    }
    let m = &img.manifest;
    assert!(!store.record(&m.digest).unwrap().unwrap().manifest);
    assert!(store.edges(&m.digest).unwrap().is_empty());
    let files_before = blob_files(dir.path());

    let stored = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap();
    assert_eq!(stored.digest, m.digest);
    let rec = store.record(&m.digest).unwrap().unwrap();
    assert!(rec.manifest, "promoted to a manifest");
    assert_eq!(rec.media_type, mt::OCI_MANIFEST);
    assert_eq!(store.edges(&m.digest).unwrap().len(), 3);
    assert_eq!(
        store
            .record(&img.config.digest)
            .unwrap()
            .unwrap()
            .media_type,
        mt::OCI_CONFIG
    );
    for l in &img.layers {
        let r = store.record(&l.blob.digest).unwrap().unwrap();
        assert_eq!(
            r.media_type,
            mt::OCI_LAYER_GZIP,
            "child media type filled in"
        );
        assert!(r.linked);
    }
    assert_eq!(blob_files(dir.path()), files_before, "no new files");
    let (bytes, _) = store.manifest(&m.digest).unwrap();
    assert_eq!(bytes, m.bytes);
    store
        .set_tag(&repo("promo"), &tag("v1"), &m.digest)
        .unwrap();
    let (_, missing) = store.walk(&m.digest).unwrap();
    assert!(missing.is_empty());

    // Putting it once more is a no-op.
    let again = store
        .put_manifest(&lease, &m.bytes, opts(&m.digest, mt::OCI_MANIFEST))
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::Present);
}

#[test]
fn docker_schema2_image_and_list() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let l = layer("docker-l");
    let cfg_bytes = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id.to_string()]},
    }))
    .unwrap();
    let cfg = Blob::new(mt::DOCKER_CONFIG, cfg_bytes);
    let lb = Blob::new(mt::DOCKER_LAYER_GZIP, l.blob.bytes.clone());
    let mbytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt::DOCKER_MANIFEST,
        "config": cfg.descriptor(),
        "layers": [lb.descriptor()],
    }))
    .unwrap();
    let m = Blob::new(mt::DOCKER_MANIFEST, mbytes);
    put(&store, &lease, &cfg);
    put(&store, &lease, &lb);
    put_manifest(&store, &lease, &m);
    let list = Blob::new(
        mt::DOCKER_MANIFEST_LIST,
        index_bytes(&[(&m, "amd64")], mt::DOCKER_MANIFEST_LIST),
    );
    // A Docker list described as an OCI index is refused too.
    let err = store
        .put_manifest(&lease, &list.bytes, opts(&list.digest, mt::OCI_INDEX))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Manifest {
            source: ManifestError::MediaTypeMismatch { .. },
            ..
        }
    ));
    put_manifest(&store, &lease, &list);
    assert!(store.is_index(&list.digest).unwrap());
    store
        .set_tag(&repo("docker"), &tag("v1"), &list.digest)
        .unwrap();
    let r = store
        .verify(sealift_store::verify::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

//! What `images` and `inspect` read: a reference's summary and its tree.

use sealift_oci::{Digest, Platform};
use sealift_store::image::NodeRole;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(image_summary_from_one_listing_finds_what_a_stat_per_node_finds,);

#[test]
fn image_tree_lists_entries_children_referrers_and_images() {
    let (_dir, store) = open_temp();
    let lease = store.lease("test", None).unwrap();
    let amd = image("amd64", vec![layer("a1"), layer("a2")]);
    let arm = image("arm64", vec![layer("b1")]);
    let idx = index(vec![(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    put_index(&store, &lease, &idx);
    // An SBOM whose subject is the amd64 image.
    let sbom_cfg = Blob::new("application/vnd.example.sbom+json", b"{}".to_vec());
    let sbom_layer = Blob::new("application/spdx+json", b"{\"spdx\":1}".to_vec());
    let sbom = manifest_over(
        &sbom_cfg,
        &[sbom_layer.descriptor()],
        Some(("subject", amd.manifest.descriptor())),
    );
    put(&store, &lease, &sbom_cfg);
    put(&store, &lease, &sbom_layer);
    put_manifest(&store, &lease, &sbom);

    let tree = store.image_tree(idx.digest(), None).unwrap();
    assert_eq!(tree.root.role, NodeRole::Root);
    assert_eq!(&tree.root.digest, idx.digest());
    let entries: Vec<(NodeRole, &Digest, Option<&str>)> = tree
        .root
        .children
        .iter()
        .map(|n| (n.role, &n.digest, n.platform.as_deref()))
        .collect();
    assert_eq!(
        entries,
        vec![
            (NodeRole::Manifest, amd.digest(), Some("linux/amd64")),
            (NodeRole::Manifest, arm.digest(), Some("linux/arm64")),
        ]
    );
    let amd_node = &tree.root.children[0];
    let roles: Vec<(NodeRole, &Digest, bool)> = amd_node
        .children
        .iter()
        .map(|n| (n.role, &n.digest, n.present))
        .collect();
    assert_eq!(
        roles,
        vec![
            (NodeRole::Config, &amd.config.digest, true),
            (NodeRole::Layer, &amd.layers[0].blob.digest, true),
            (NodeRole::Layer, &amd.layers[1].blob.digest, true),
        ]
    );
    assert_eq!(amd_node.referrers.len(), 1);
    assert_eq!(amd_node.referrers[0].role, NodeRole::Referrer);
    assert_eq!(amd_node.referrers[0].digest, sbom.digest);
    // The SBOM is a referrer, not one of the reference's images.
    let images: Vec<(&Digest, Option<String>, &Digest, usize)> = tree
        .images
        .iter()
        .map(|i| {
            let p = i.entry_platform.as_ref().map(Platform::to_string);
            (&i.manifest, p, &i.config.digest, i.layers)
        })
        .collect();
    assert_eq!(
        images,
        vec![
            (
                amd.digest(),
                Some("linux/amd64".into()),
                &amd.config.digest,
                2
            ),
            (
                arm.digest(),
                Some("linux/arm64".into()),
                &arm.config.digest,
                1
            ),
        ]
    );

    let arm64: Platform = "linux/arm64".parse().unwrap();
    let tree = store.image_tree(idx.digest(), Some(&arm64)).unwrap();
    assert_eq!(tree.root.children.len(), 1);
    assert_eq!(&tree.root.children[0].digest, arm.digest());
    assert_eq!(tree.images.len(), 1);
    assert_eq!(&tree.images[0].manifest, arm.digest());

    let unknown = Digest::sha256(b"not stored");
    assert!(store.image_tree(&unknown, None).is_err());
}

#[test]
fn image_summary_sizes_the_graph_and_names_missing_files() {
    let (dir, store) = open_temp();
    let lease = store.lease("test", None).unwrap();
    let img = image("amd64", vec![layer("s1"), layer("s2")]);
    put_image(&store, &lease, &img);

    let s = store.image_summary(img.digest()).unwrap().unwrap();
    assert!(s.manifest);
    assert_eq!(s.media_type, img.manifest.media_type);
    let total: u64 = img.blobs().iter().map(|b| b.size()).sum();
    assert_eq!(s.size, total);
    assert!(s.complete(), "{s:?}");

    let gone = &img.layers[1].blob.digest;
    let path = dir.path().join("blobs/sha256").join(gone.hex());
    make_writable(&path);
    std::fs::remove_file(&path).unwrap();
    let s = store.image_summary(img.digest()).unwrap().unwrap();
    assert_eq!(s.missing_files, vec![gone.clone()]);
    assert!(s.missing.is_empty());
    assert!(!s.complete());

    assert_eq!(
        store.image_summary(&Digest::sha256(b"absent")).unwrap(),
        None
    );
}

/// On an object store, `images` over many tags lists the bucket once instead of asking for
/// each node: missing bytes and bytes of the wrong size show exactly as a stat per node
/// shows them.
fn image_summary_from_one_listing_finds_what_a_stat_per_node_finds(kind: Kind) {
    let (fx, store) = Fixture::store(kind);
    let lease = store.lease("test", None).unwrap();
    let img = image("amd64", vec![layer("p1"), layer("p2")]);
    put_image(&store, &lease, &img);
    // As many graphs as a listing of 10k tags: the listing path on an object store.
    let summary = |store: &sealift_store::Store| {
        let presence = store.presence_for(10_000).unwrap();
        let listed = store
            .image_summary_with(img.digest(), &presence)
            .unwrap()
            .unwrap();
        assert_eq!(listed, store.image_summary(img.digest()).unwrap().unwrap());
        listed
    };
    assert!(summary(&store).complete());

    let gone = &img.layers[0].blob.digest;
    fx.remove(&store, gone);
    let mut longer = img.config.bytes.clone();
    longer.push(b' ');
    fx.overwrite(&store, &img.config.digest, &longer);
    let s = summary(&store);
    let mut found = s.missing_files.clone();
    found.sort();
    let mut want = vec![gone.clone(), img.config.digest.clone()];
    want.sort();
    assert_eq!(found, want);
    assert!(s.missing.is_empty());
}

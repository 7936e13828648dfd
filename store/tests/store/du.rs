//! du: logical (per image) against physical (each blob once) usage.

use sealift_store::Store;

use crate::common::*;

fn tag_images(store: &Store, imgs: &[(&Image, &str, &str)]) {
    let lease = store.lease("pull", None).unwrap();
    for (img, r, t) in imgs {
        put_image(store, &lease, img);
        store.set_tag(&repo(r), &tag(t), img.digest()).unwrap();
    }
}

fn total(img: &Image) -> u64 {
    img.blobs().iter().map(|b| b.size()).sum()
}

#[test]
fn shared_layer_is_counted_once_physically() {
    let (_dir, store) = open_temp();
    let shared = layer_sized("du-shared", 50_000);
    let a = image("amd64", vec![shared.clone(), layer("du-a")]);
    let b = image("arm64", vec![shared.clone(), layer("du-b")]);
    assert_ne!(a.config.digest, b.config.digest);
    tag_images(&store, &[(&a, "app-a", "v1"), (&b, "app-b", "v1")]);

    let r = store.du(10).unwrap();
    assert_eq!(r.logical, total(&a) + total(&b));
    assert_eq!(r.physical + shared.blob.size(), r.logical);
    assert!(r.physical < r.logical);
    assert_eq!(r.blobs, 7);
    assert_eq!(r.shared.len(), 1, "{:?}", r.shared);
    assert_eq!(r.shared[0].digest, shared.blob.digest);
    assert_eq!(r.shared[0].images, 2);
    assert_eq!(r.shared[0].size, shared.blob.size());
    assert_eq!(r.repos.len(), 2);
    assert_eq!(r.repos[0].repo, "app-a");
    assert_eq!(r.repos[0].logical, total(&a));
    assert_eq!(r.repos[0].physical, total(&a));
    assert_eq!(r.repos[1].logical, total(&b));
}

#[test]
fn shared_config_and_layer_in_one_repo() {
    let (_dir, store) = open_temp();
    let shared = layer_sized("du-shared2", 20_000);
    let cfg = config("amd64", std::slice::from_ref(&shared.diff_id));
    // Same config, same layer, different manifests (an annotation differs).
    let a = image_with_config(cfg.clone(), vec![shared.clone()]);
    let mut v: serde_json::Value = serde_json::from_slice(&a.manifest.bytes).unwrap();
    v["annotations"] = serde_json::json!({"org.opencontainers.image.version": "2"});
    let b = Image {
        manifest: Blob::new(
            sealift_oci::media_type::OCI_MANIFEST,
            serde_json::to_vec(&v).unwrap(),
        ),
        ..a.clone()
    };
    tag_images(&store, &[(&a, "app", "1"), (&b, "app", "2")]);
    let r = store.du(1).unwrap();
    assert_eq!(r.logical, total(&a) + total(&b));
    assert_eq!(r.physical, r.logical - shared.blob.size() - cfg.size());
    assert_eq!(r.shared.len(), 1, "top bounds the list");
    assert_eq!(
        r.shared[0].digest, shared.blob.digest,
        "largest shared first"
    );
    assert_eq!(r.shared[0].images, 2);
    let r = store.du(10).unwrap();
    assert_eq!(r.shared.len(), 2);
    assert!(r.shared.iter().all(|s| s.images == 2));
    assert_eq!(r.repos.len(), 1);
    assert_eq!(r.repos[0].tags, 2);
    assert_eq!(r.repos[0].physical, r.physical);
}

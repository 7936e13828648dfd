//! Tags: only complete graphs, resolution by tag and digest, sorted listing, removal.

use sealift_oci::{Digest, StoreRef};
use sealift_store::verify::VerifyOptions;
use sealift_store::Error;

use crate::common::*;

#[test]
fn set_tag_refuses_an_incomplete_graph() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("inc-a"), layer("inc-b")]);
    put_image(&store, &lease, &img);

    // Not in the store at all.
    let nowhere = Digest::sha256(b"no such manifest");
    let err = store
        .set_tag(&repo("app"), &tag("v0"), &nowhere)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(d) if d == &nowhere),
        "{err:?}"
    );

    // Lose a layer: delete its file and let verify --repair drop its record, leaving the
    // manifest with a required edge to nothing.
    let gone = &img.layers[1].blob;
    std::fs::remove_file(store.blob_path(&gone.digest)).unwrap();
    store
        .verify(VerifyOptions {
            full: false,
            repair: true,
        })
        .unwrap();
    assert!(store.record(&gone.digest).unwrap().is_none());
    let (_, missing) = store.walk(img.digest()).unwrap();
    assert_eq!(missing, vec![(img.digest().clone(), gone.digest.clone())]);

    let err = store
        .set_tag(&repo("app"), &tag("v1"), img.digest())
        .unwrap_err();
    match &err {
        Error::MissingChild {
            parent,
            child,
            media_type,
            size,
        } => {
            assert_eq!(parent, img.digest());
            assert_eq!(child, &gone.digest);
            assert_eq!(media_type, &gone.media_type);
            assert_eq!(*size, gone.size());
        }
        e => panic!("expected MissingChild, got {e:?}"),
    }
    assert!(store.tags().unwrap().is_empty(), "no tag was written");
    assert!(matches!(
        store.resolve(&"app:v1".parse().unwrap()),
        Err(Error::UnknownRef(_))
    ));

    // Put the layer back: now it can be tagged.
    put_new(&store, &lease, gone);
    store
        .set_tag(&repo("app"), &tag("v1"), img.digest())
        .unwrap();
    assert_eq!(
        store.resolve(&"app:v1".parse().unwrap()).unwrap(),
        *img.digest()
    );
}

#[test]
fn set_tag_refuses_index_whose_child_lost_a_layer() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let idx = index(vec![
        (image("amd64", vec![layer("ix-a")]), "amd64"),
        (image("arm64", vec![layer("ix-b")]), "arm64"),
    ]);
    put_index(&store, &lease, &idx);
    let victim = &idx.images[1];
    std::fs::remove_file(store.blob_path(&victim.config.digest)).unwrap();
    store
        .verify(VerifyOptions {
            full: false,
            repair: true,
        })
        .unwrap();
    let err = store
        .set_tag(&repo("multi"), &tag("v1"), idx.digest())
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingChild { parent, child, .. }
            if parent == victim.digest() && child == &victim.config.digest),
        "{err:?}"
    );
    assert!(store.tags().unwrap().is_empty());
}

#[test]
fn resolve_by_tag_and_digest() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let a = image("amd64", vec![layer("res-a")]);
    let b = image("arm64", vec![layer("res-b")]);
    put_image(&store, &lease, &a);
    put_image(&store, &lease, &b);
    store.set_tag(&repo("app"), &tag("v1"), a.digest()).unwrap();
    store
        .set_tag(&repo("app"), &tag("latest"), b.digest())
        .unwrap();

    let r = |s: &str| store.resolve(&s.parse::<StoreRef>().unwrap());
    assert_eq!(r("app:v1").unwrap(), *a.digest());
    assert_eq!(r("app").unwrap(), *b.digest(), "no tag means latest");
    assert_eq!(r(&format!("app@{}", a.digest())).unwrap(), *a.digest());
    // A digest reference resolves to the digest (it wins over the tag).
    assert_eq!(r(&format!("app:v1@{}", b.digest())).unwrap(), *b.digest());
    assert!(matches!(r("app:v2"), Err(Error::UnknownRef(s)) if s == "app:v2"));
    assert!(matches!(r("other:v1"), Err(Error::UnknownRef(_))));
    let absent = Digest::sha256(b"absent");
    assert!(matches!(
        r(&format!("app@{absent}")),
        Err(Error::UnknownRef(_))
    ));

    // Moving a tag.
    store.set_tag(&repo("app"), &tag("v1"), b.digest()).unwrap();
    assert_eq!(r("app:v1").unwrap(), *b.digest());
}

#[test]
fn tags_are_sorted_and_removable() {
    let (_dir, store) = open_temp();
    let lease = store.lease("t", None).unwrap();
    let img = image("amd64", vec![layer("sorted")]);
    put_image(&store, &lease, &img);
    let refs = [
        ("zeta", "1"),
        ("app", "v2"),
        ("app-b", "a"),
        ("app", "V1"),
        ("app/sub", "x"),
        ("app", "v10"),
        ("localhost:5000/app", "z"),
        ("app.b", "c"),
    ];
    for (r, t) in refs {
        store.set_tag(&repo(r), &tag(t), img.digest()).unwrap();
    }
    let listed: Vec<(String, String)> = store
        .tags()
        .unwrap()
        .into_iter()
        .map(|e| {
            assert_eq!(&e.digest, img.digest());
            assert!(e.updated > 0);
            (e.repo.to_string(), e.tag.to_string())
        })
        .collect();
    let mut want: Vec<(String, String)> = refs
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect();
    want.sort();
    assert_eq!(listed, want, "sorted by repo, then tag");

    assert!(store.remove_tag(&repo("app"), &tag("v2")).unwrap());
    assert!(!store.remove_tag(&repo("app"), &tag("v2")).unwrap());
    assert!(!store.remove_tag(&repo("nope"), &tag("v2")).unwrap());
    assert!(matches!(
        store.resolve(&"app:v2".parse().unwrap()),
        Err(Error::UnknownRef(_))
    ));
    let left: Vec<String> = store
        .tags()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e.repo, e.tag))
        .collect();
    assert_eq!(left.len(), refs.len() - 1);
    assert!(!left.contains(&"app:v2".to_string()));
    assert!(left.contains(&"app:v10".to_string()));
    // Removing a tag does not remove content.
    assert!(store.record(img.digest()).unwrap().is_some());
}

//! The place interface (`sealift_copy::place`) per backend, against a real registry, the
//! store, a layout directory and a layout tarball: catalog, tags, head, delete, and images
//! moved through each repository's source and sink.

mod common;

use std::sync::Arc;

use sealift_copy::copy::{copy, CopyOptions};
use sealift_copy::place::{
    Deleted, LayoutDirPlace, LayoutTarPlace, Place, Reference, RegistryPlace, Repository,
    StorePlace, Writes,
};
use sealift_copy::transport::TransportError;
use sealift_copy::Clients;
use sealift_fixtures::{mirror_corpus, mirror_repo};
use sealift_oci::{Digest, StoreRef};
use sealift_store::Store;
use sealift_testkit::{Registry, RegistryOptions};

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Copy `from:tag` to `to:tag` through the repositories' source and sink.
async fn move_image(from: &dyn Repository, to: &dyn Repository, tag: &str) -> Digest {
    let src = from.source(&Reference::tag(tag)).await.unwrap();
    let sink = to.sink(&Reference::tag(tag)).await.unwrap();
    let r = copy(src, sink, &CopyOptions::default()).await.unwrap();
    r.destination_digest.unwrap()
}

async fn head_digest(repo: &dyn Repository, tag: &str) -> Option<Digest> {
    repo.head(tag).await.unwrap().map(|h| h.descriptor.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_backend_lists_heads_deletes_and_moves_images() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = mirror_corpus(2, &["v1", "v2"], 256);
    let dir = tmp.path().join("corpus");
    corpus.write_dir(&dir).unwrap();
    let (r0, r1) = (mirror_repo(0), mirror_repo(1));
    let want = |name: &str| common::digest_of(&corpus, name);

    // Layout directory: repositories and tags from the ref names.
    let layout = LayoutDirPlace::new(dir.clone());
    assert!(layout.is_local());
    assert_eq!(layout.catalog().await.unwrap(), [r0.clone(), r1.clone()]);
    let lr1 = layout.repository(&r1);
    assert_eq!(lr1.describe(), format!("oci:{}:{r1}", dir.display()));
    assert_eq!(sorted(lr1.tags().await.unwrap()), ["v1", "v2"]);
    assert_eq!(
        head_digest(lr1.as_ref(), "v1").await,
        Some(want(&format!("{r1}:v1")))
    );
    assert_eq!(head_digest(lr1.as_ref(), "nope").await, None);
    assert!(layout.repository("none").tags().await.unwrap().is_empty());
    let d = want(&format!("{r1}:v1"));
    assert!(matches!(
        lr1.delete("v1", &d).await,
        Err(TransportError::Unsupported(_))
    ));

    // Store: what the layout's sources give its sinks.
    let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
    let sp = StorePlace::new(store.clone());
    assert!(sp.catalog().await.unwrap().is_empty());
    let copied = sp.repository("copied");
    for tag in ["v1", "v2"] {
        let got = move_image(lr1.as_ref(), copied.as_ref(), tag).await;
        assert_eq!(got, want(&format!("{r1}:{tag}")));
    }
    let idx = move_image(
        layout.repository(&r0).as_ref(),
        sp.repository("idx").as_ref(),
        "v1",
    )
    .await;
    assert_eq!(idx, want(&format!("{r0}:v1")));
    assert_eq!(sp.catalog().await.unwrap(), ["copied", "idx"]);
    assert_eq!(sorted(copied.tags().await.unwrap()), ["v1", "v2"]);
    let h = copied.head("v1").await.unwrap().unwrap();
    assert_eq!(h.descriptor.digest, d);
    assert_eq!(h.etag, None);
    assert_eq!(head_digest(copied.as_ref(), "v9").await, None);
    // Deleting: only while the tag still names the digest.
    let other = want(&format!("{r1}:v2"));
    assert_eq!(
        copied.delete("v1", &other).await.unwrap(),
        Deleted::Moved(d.clone())
    );
    assert_eq!(head_digest(copied.as_ref(), "v1").await, Some(d.clone()));
    assert_eq!(copied.delete("v1", &d).await.unwrap(), Deleted::Removed);
    assert_eq!(head_digest(copied.as_ref(), "v1").await, None);
    assert_eq!(copied.delete("v1", &d).await.unwrap(), Deleted::Gone);
    assert!(!copied.deletes_by_digest());

    // Registry: pushed from the store, through one shared client pool.
    let reg = Registry::start_with(RegistryOptions {
        delete_enabled: true,
        ..Default::default()
    });
    let clients = Arc::new(Clients::default());
    let rp = RegistryPlace::new(clients.clone(), &reg.host());
    assert!(!rp.is_local());
    let pushed = rp.repository("p/r1");
    assert_eq!(pushed.describe(), format!("docker://{}/p/r1", reg.host()));
    assert!(
        pushed.tags().await.unwrap().is_empty(),
        "no such repository yet"
    );
    assert_eq!(
        move_image(copied.as_ref(), pushed.as_ref(), "v2").await,
        other
    );
    assert_eq!(
        move_image(
            sp.repository("idx").as_ref(),
            rp.repository("p/r0").as_ref(),
            "v1"
        )
        .await,
        idx
    );
    assert_eq!(sorted(rp.catalog().await.unwrap()), ["p/r0", "p/r1"]);
    assert_eq!(pushed.tags().await.unwrap(), ["v2"]);
    let h = pushed.head("v2").await.unwrap().unwrap();
    assert_eq!(h.descriptor.digest, other);
    assert!(h.etag.is_some(), "distribution sends an ETag");
    assert_eq!(head_digest(pushed.as_ref(), "v1").await, None);
    // Registries delete by digest.
    assert!(pushed.deletes_by_digest());
    assert_eq!(pushed.delete("v2", &other).await.unwrap(), Deleted::Removed);
    assert_eq!(head_digest(pushed.as_ref(), "v2").await, None);
    assert_eq!(pushed.delete("v2", &other).await.unwrap(), Deleted::Gone);
    // A registry refusing deletes says so.
    let strict = Registry::start();
    let sr = RegistryPlace::new(clients.clone(), &strict.host()).repository("s/r1");
    assert_eq!(move_image(copied.as_ref(), sr.as_ref(), "v2").await, other);
    assert!(sr.delete("v2", &other).await.is_err());
    assert_eq!(head_digest(sr.as_ref(), "v2").await, Some(other.clone()));
    // Layout tarball: written as one bundle of store images, read back from one scan.
    let tar = tmp.path().join("out").join("bundle.tar");
    let tp = LayoutTarPlace::new(tar.clone());
    let Writes::Bundle(bundle) = tp.writes() else {
        panic!("a tarball is written as a bundle")
    };
    assert!(!bundle.exists());
    let refs: Vec<StoreRef> = vec!["copied:v2".parse().unwrap(), "idx:v1".parse().unwrap()];
    assert!(bundle.write(&store, refs, true).await.unwrap() > 0);
    assert!(bundle.exists());
    assert_eq!(tp.catalog().await.unwrap(), ["copied", "idx"]);
    let tr = tp.repository("copied");
    assert_eq!(tr.tags().await.unwrap(), ["v2"]);
    assert_eq!(head_digest(tr.as_ref(), "v2").await, Some(other.clone()));
    assert!(matches!(
        tr.sink(&Reference::tag("v3")).await,
        Err(TransportError::Unsupported(_))
    ));
    assert!(tr.delete("v2", &other).await.is_err());
    // Into a fresh layout directory, through the tarball's source.
    let back = LayoutDirPlace::new(tmp.path().join("back"));
    assert!(matches!(back.writes(), Writes::Images { serial: true }));
    let b = back.repository("again");
    assert_eq!(move_image(tr.as_ref(), b.as_ref(), "v2").await, other);
    assert_eq!(
        move_image(
            tp.repository("idx").as_ref(),
            back.repository("idx").as_ref(),
            "v1"
        )
        .await,
        idx
    );
    assert_eq!(head_digest(b.as_ref(), "v2").await, Some(other.clone()));
    assert_eq!(back.catalog().await.unwrap(), ["again", "idx"]);

    // One scan per tarball: the place keeps answering from it once the file is gone, where
    // a fresh place has nothing to read.
    std::fs::write(&tar, b"").unwrap();
    assert_eq!(tp.catalog().await.unwrap(), ["copied", "idx"]);
    assert_eq!(head_digest(tr.as_ref(), "v2").await, Some(other));
    assert!(LayoutTarPlace::new(tar).catalog().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_error_fails_what_needs_the_client_not_the_opening() {
    let clients = Arc::new(Clients::new(|host| {
        Err(TransportError::Credentials {
            host: host.to_string(),
            reason: "environment variable NOPE is not set".into(),
        })
    }));
    let rp = RegistryPlace::new(clients, "127.0.0.1:9");
    let repo = rp.repository("a/b");
    assert_eq!(repo.describe(), "docker://127.0.0.1:9/a/b");
    let e = repo.head("v1").await.unwrap_err().to_string();
    assert_eq!(
        e,
        "credentials for 127.0.0.1:9: environment variable NOPE is not set"
    );
    assert!(rp.catalog().await.is_err());
    assert!(repo.source(&Reference::tag("v1")).await.is_err());
}

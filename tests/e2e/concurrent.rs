//! GC running while imports write deletes nothing an import holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sealift_fixtures::{image, layer_tar, ImageSpec, LayerKind, Layout};
use sealift_layout::{import_path, ImportOptions};
use sealift_oci::StoreRef;
use sealift_store::gc::GcOptions;
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;

use super::util::Env;

#[test]
fn gc_during_imports_deletes_nothing_they_hold() {
    let env = Env::new();
    let store = Arc::new(Store::open(env.store()).unwrap());
    let base = layer_tar(&[("etc/base", &[7u8; 200_000][..])]);
    let rounds = 25;
    let mut dirs = Vec::new();
    for i in 0..rounds {
        // Every image shares the base layer, and has one layer of its own.
        let own = layer_tar(&[("app", format!("image {i}").repeat(5000).as_bytes())]);
        let mut layout = Layout::new();
        let desc = image(
            &mut layout,
            &ImageSpec {
                os: "linux",
                arch: "amd64",
                variant: None,
                layers: vec![(base.clone(), LayerKind::Gzip), (own, LayerKind::Gzip)],
                docker: false,
            },
        );
        layout.add_ref(desc, Some("v1"));
        let dir = env.path(&format!("img{i}"));
        layout.write_dir(&dir).unwrap();
        dirs.push(dir);
    }
    let done = Arc::new(AtomicBool::new(false));
    let gc = {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) {
                store
                    .gc(&GcOptions {
                        dry_run: false,
                        grace: std::time::Duration::ZERO,
                    })
                    .unwrap();
                runs += 1;
            }
            runs
        })
    };
    let mut previous: Option<StoreRef> = None;
    for (i, dir) in dirs.iter().enumerate() {
        let tag: StoreRef = format!("app{i}:latest").parse().unwrap();
        let report = import_path(
            &store,
            dir,
            &ImportOptions {
                tag: Some(tag.clone()),
                progress: None,
                verify: None,
            },
        )
        .unwrap_or_else(|e| panic!("import {i} failed while GC ran: {e}"));
        assert_eq!(report.images.len(), 1);
        // Drop the previous image so GC has real work racing the next import (which
        // shares its base layer).
        if let Some(p) = previous.take() {
            store.remove_tag(&p.repo, p.tag.as_ref().unwrap()).unwrap();
        }
        previous = Some(format!("app{i}:v1").parse().unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let runs = gc.join().unwrap();
    assert!(runs >= 2, "GC ran only {runs} times during the imports");
    let tags = store.tags().unwrap();
    assert_eq!(tags.len(), 1, "{tags:?}");
    let (_, missing) = store.walk(&tags[0].digest).unwrap();
    assert!(missing.is_empty());
    let report = store
        .verify(VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

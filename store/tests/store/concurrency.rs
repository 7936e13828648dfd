//! GC running in a loop while a writer stores, tags and untags images.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealift_oci::Digest;
use sealift_store::gc::GcOptions;
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;

use crate::backends::{Fixture, Kind};
use crate::common::*;

on_both_backends!(gc_loop_never_breaks_a_concurrent_writer,);

const IMAGES: usize = 200;
/// How many of the newest images stay tagged.
const KEEP: usize = 8;

fn small_layer(name: &str) -> Layer {
    layer_sized(name, 600)
}

fn gc_loop_never_breaks_a_concurrent_writer(kind: Kind) {
    let fx = Fixture::new(kind);
    let store = Arc::new(fx.open());
    let done = Arc::new(AtomicBool::new(false));
    let base = small_layer("conc-base");

    let gc_thread = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        std::thread::spawn(move || -> Result<(usize, usize), String> {
            let (mut runs, mut removed) = (0, 0);
            while !done.load(Ordering::Acquire) {
                let r = store
                    .gc(&GcOptions {
                        dry_run: false,
                        grace: Duration::ZERO,
                    })
                    .map_err(|e| format!("gc run {runs}: {e}"))?;
                runs += 1;
                removed += r.removed.len();
            }
            Ok((runs, removed))
        })
    };

    let writer = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        let base = base.clone();
        std::thread::spawn(move || -> Result<Vec<(String, Digest)>, String> {
            let result = (|| {
                let mut tags = Vec::new();
                let mut layers: Vec<Layer> = Vec::new();
                for i in 0..IMAGES {
                    // Untag an old image first, then reuse its own layer: the put races
                    // GC deleting that very blob (the "exists, hold it" transaction).
                    let reused = if i >= KEEP {
                        store
                            .remove_tag(&repo("conc"), &tag(&format!("i{}", i - KEEP)))
                            .map_err(|e| format!("untag {i}: {e}"))?;
                        Some(layers[i - KEEP].clone())
                    } else {
                        None
                    };
                    let own = small_layer(&format!("conc-{i}"));
                    layers.push(own.clone());
                    let mut ls = vec![base.clone(), own];
                    ls.extend(reused);
                    let img = image(if i % 2 == 0 { "amd64" } else { "arm64" }, ls);
                    let lease = store
                        .lease_detached(&format!("image {i}"), None)
                        .map_err(|e| format!("lease {i}: {e}"))?;
                    for b in img.blobs().into_iter().skip(1) {
                        store
                            .put_blob(
                                &lease,
                                &b.digest,
                                b.size(),
                                &b.media_type,
                                &mut &b.bytes[..],
                            )
                            .map_err(|e| format!("image {i} blob {}: {e}", b.digest))?;
                    }
                    store
                        .put_manifest(
                            &lease,
                            &img.manifest.bytes,
                            sealift_store::ManifestOptions {
                                expected: Some(img.digest()),
                                media_type: Some(&img.manifest.media_type),
                                sparse: false,
                            },
                        )
                        .map_err(|e| format!("image {i} manifest: {e}"))?;
                    let t = format!("i{i}");
                    store
                        .set_tag(&repo("conc"), &tag(&t), img.digest())
                        .map_err(|e| format!("tag {i}: {e}"))?;
                    store
                        .release(lease)
                        .map_err(|e| format!("release {i}: {e}"))?;
                    tags.push((t, img.digest().clone()));
                }
                Ok(tags)
            })();
            done.store(true, Ordering::Release);
            result
        })
    };

    let written = writer.join().unwrap().expect("writer failed");
    let (runs, removed) = gc_thread.join().unwrap().expect("gc failed");
    assert!(runs > 1, "GC actually ran concurrently ({runs} runs)");
    assert!(removed > 0, "GC actually collected untagged images");

    // The newest KEEP images are tagged, each with a complete graph.
    let tags = store.tags().unwrap();
    assert_eq!(tags.len(), KEEP);
    let want: BTreeSet<(String, Digest)> = written[IMAGES - KEEP..].iter().cloned().collect();
    let got: BTreeSet<(String, Digest)> = tags
        .iter()
        .map(|t| (t.tag.to_string(), t.digest.clone()))
        .collect();
    assert_eq!(got, want);
    let mut live = BTreeSet::new();
    for t in &tags {
        let (nodes, missing) = store.walk(&t.digest).unwrap();
        assert!(missing.is_empty(), "{}: missing {missing:?}", t.tag);
        assert_eq!(
            nodes.len(),
            5,
            "manifest, config, base, own and reused layer"
        );
        for (d, _) in nodes {
            let size = store.record(&d).unwrap().unwrap().size;
            if kind == Kind::Local {
                assert_eq!(std::fs::metadata(store.blob_path(&d)).unwrap().len(), size);
            }
            assert_eq!(store.backend().stat(&d).unwrap(), Some(size));
            live.insert(d);
        }
    }
    let v = store
        .verify(VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);

    // One last collection leaves exactly the tagged graphs.
    store
        .gc(&GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .unwrap();
    assert_eq!(record_digests(&store), live);
    assert_eq!(fx.blob_names(&store), names(&live));
    assert!(fx.leftovers().is_empty());
}

/// Invariant 4: "exists, and hold it" is one step, so GC cannot take a blob between the
/// check and the use. Here the hold is taken by a lease created while GC is already
/// scanning the lease table (widened by many expired leases that GC releases one by one),
/// on blobs nothing else keeps. (The narrower gap between the end of that scan and the
/// epoch bump cannot be hit from outside; gc.rs now bumps the epoch first.)
#[test]
fn hold_taken_by_a_lease_created_during_gc_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // An untagged image: collectable with no grace, and being re-pulled right now.
    let img = image("amd64", vec![layer("race-layer")]);
    {
        let l = store.lease("first pull", None).unwrap();
        put(&store, &l, &img.config);
        put(&store, &l, &img.layers[0].blob);
    }
    // Many expired timed leases: GC releases each during its lease scan.
    let expired: Vec<_> = (0..3000)
        .map(|i| {
            store
                .lease_detached(&format!("old {i}"), Some(Duration::from_secs(1)))
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2100));
    let first = expired[0];
    let last = *expired.last().unwrap();
    let probe = Digest::sha256(b"probe: never stored");

    let gc_thread = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store
                .gc(&GcOptions {
                    dry_run: false,
                    grace: Duration::ZERO,
                })
                .unwrap()
        })
    };
    // Wait until GC has released the first expired lease: it is inside its lease scan.
    while store.hold(&first, &probe).is_ok() {
        std::hint::spin_loop();
    }
    let lease = store.lease_detached("second pull", None).unwrap();
    let mut held = Vec::new();
    for b in [&img.config, &img.layers[0].blob] {
        held.push(store.hold(&lease, &b.digest).unwrap().is_some());
    }
    let still_scanning = store.hold(&last, &probe).is_ok();
    let report = gc_thread.join().unwrap();
    assert!(
        still_scanning,
        "the holds were taken while GC was still scanning leases (test precondition)"
    );
    assert_eq!(held, [true, true], "both blobs were present when held");
    let gone: Vec<_> = report.removed.iter().map(|c| c.digest.clone()).collect();
    assert!(
        store.record(&img.config.digest).unwrap().is_some()
            && store.record(&img.layers[0].blob.digest).unwrap().is_some(),
        "GC removed blobs a live lease had just held: {gone:?}"
    );
    // The pull completes.
    put_manifest(&store, &lease, &img.manifest);
    store
        .set_tag(&repo("race"), &tag("v1"), img.digest())
        .unwrap();
    store.release(lease).unwrap();
    let v = store.verify(VerifyOptions::default()).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

//! Layout import and export through the library, on the fixture corpus.

use sealift_fixtures::{corpus, sample, TarCompression, CORPUS_REFS, SAMPLE_REFS};
use sealift_store::{Digest, Store, StoreRef};
use sealift_sync::layout::{export, import_path, ExportOptions, ImportOptions};

fn digest_of(layout: &sealift_fixtures::Layout, name: &str) -> Digest {
    layout.find_ref(name).unwrap()["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn sample_layout_dir_imports_with_full_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("s")).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sample-layout");
    let report = import_path(&store, std::path::Path::new(dir), &ImportOptions::default()).unwrap();
    let layout = sample();
    for r in SAMPLE_REFS {
        let sr: StoreRef = r.parse().unwrap();
        assert_eq!(store.resolve(&sr).unwrap(), digest_of(&layout, r));
    }
    assert_eq!(report.blobs_written, layout.blobs.len(), "{report:?}");
    // A second import writes nothing.
    let again = import_path(&store, std::path::Path::new(dir), &ImportOptions::default()).unwrap();
    assert_eq!(again.blobs_written, 0);
    assert_eq!(again.bytes_written, 0);
}

#[test]
fn corpus_tarballs_import_in_every_compression() {
    let layout = corpus();
    for c in [
        TarCompression::None,
        TarCompression::Gzip,
        TarCompression::Zstd,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let tar = tmp.path().join("corpus.tar");
        layout.write_tar(&tar, c).unwrap();
        let store = Store::open(tmp.path().join("s")).unwrap();
        let opts = ImportOptions {
            tag: Some("corpus:x".parse().unwrap()),
            progress: None,
        };
        import_path(&store, &tar, &opts).unwrap();
        for name in CORPUS_REFS {
            let sr: StoreRef = format!("corpus:{name}").parse().unwrap();
            assert_eq!(
                store.resolve(&sr).unwrap(),
                digest_of(&layout, name),
                "{c:?} {name}"
            );
        }
        let v = store
            .verify(sealift_store::verify::VerifyOptions {
                full: true,
                repair: false,
            })
            .unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
}

#[test]
fn export_then_import_preserves_every_digest() {
    let layout = corpus();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("corpus");
    layout.write_dir(&dir).unwrap();
    let a = Store::open(tmp.path().join("a")).unwrap();
    let opts = ImportOptions {
        tag: Some("c:x".parse().unwrap()),
        progress: None,
    };
    import_path(&a, &dir, &opts).unwrap();
    let refs: Vec<StoreRef> = CORPUS_REFS
        .iter()
        .map(|n| format!("c:{n}").parse().unwrap())
        .collect();
    let out = tmp.path().join("out.tar.zst");
    let rep = export(
        &a,
        &refs,
        &out,
        &ExportOptions {
            referrers: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rep.images.len(), CORPUS_REFS.len());
    let b = Store::open(tmp.path().join("b")).unwrap();
    import_path(&b, &out, &ImportOptions::default()).unwrap();
    for r in &refs {
        assert_eq!(a.resolve(r).unwrap(), b.resolve(r).unwrap());
    }
    let zstd = digest_of(&layout, "zstd");
    assert_eq!(a.referrers(&zstd).unwrap(), b.referrers(&zstd).unwrap());
    assert_eq!(b.referrers(&zstd).unwrap().len(), 1);
}

//! Layout import and export through the library, on the fixture corpus.

use sealift_fixtures::{corpus, sample, TarCompression, CORPUS_REFS, SAMPLE_REFS};
use sealift_layout::{export, import_path, ExportOptions, ImportOptions};
use sealift_oci::{Digest, StoreRef};
use sealift_store::Store;

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
            verify: None,
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
        verify: None,
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

/// Counts the bytes read and fails past `cap`, so a regression fails at once instead of
/// writing gigabytes.
struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read >= self.cap {
            return Err(std::io::Error::other("read past the test's cap"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.total
            .store(self.read, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn a_blob_entry_larger_than_its_descriptor_is_refused_before_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("s")).unwrap();
    // index.json and the manifest first (as sealift exports), then a layer entry whose
    // header claims 8 GiB where the manifest declares 1 KiB.
    let (stream, entry) = sealift_fixtures::inflated_layer_tar(8 << 30, false);
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = Capped {
        inner: stream,
        read: 0,
        cap: 64 << 20,
        total: total.clone(),
    };
    let err =
        sealift_layout::import_reader(&store, reader, "inflated.tar", &ImportOptions::default())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains(&entry)
            && err.contains("is 8589934592 bytes")
            && err.contains("declares 1024"),
        "{err}"
    );
    // Refused at its header: only the import's read-ahead buffer (1 MiB) went past it.
    let read = total.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 4 << 20, "{read} bytes read");
    let ingest = std::fs::read_dir(tmp.path().join("s/ingest"))
        .unwrap()
        .count();
    assert_eq!(ingest, 0);
    assert!(store.tags().unwrap().is_empty());
}

//! Compressed OCI layout tarballs as sources everywhere: `sealift copy oci-archive:…` and a
//! sync job with an `oci-archive:` source read `.tar`, `.tar.gz` and `.tar.zst` in place,
//! whether the blobs come before or after index.json; hostile tarballs are still refused.

use std::io::Write;
use std::path::Path;

use sealift_fixtures::{mirror_corpus, mirror_repo, Layout, OCI_LAYOUT_BYTES};

use super::util::{ref_digest, Env};

#[derive(Clone, Copy, Debug)]
enum Packing {
    Plain,
    Gzip,
    Zstd,
}

impl Packing {
    fn ext(self) -> &'static str {
        match self {
            Packing::Plain => "tar",
            Packing::Gzip => "tar.gz",
            Packing::Zstd => "tar.zst",
        }
    }
}

/// One tar entry: name and bytes (the size in the header is `claim` when given).
struct Entry {
    name: String,
    bytes: Vec<u8>,
}

fn entry(name: impl Into<String>, bytes: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        bytes: bytes.to_vec(),
    }
}

/// The layout's entries: with `blobs_first`, every blob (in reverse digest order, so in no
/// order a copy would ask for them) before index.json and oci-layout; else index.json first.
fn entries(layout: &Layout, blobs_first: bool) -> Vec<Entry> {
    let mut blobs: Vec<Entry> = layout
        .blobs
        .iter()
        .map(|(d, b)| {
            entry(
                format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
                &b.bytes,
            )
        })
        .collect();
    let head = vec![
        entry("oci-layout", OCI_LAYOUT_BYTES),
        entry("index.json", &layout.index_json()),
    ];
    if blobs_first {
        blobs.reverse();
        blobs.extend(head);
        blobs
    } else {
        let mut all = head;
        all.extend(blobs);
        all
    }
}

/// Write raw tar entries (names set in the header bytes, so even unsafe ones go in as they
/// are), compressed as `packing` says.
fn write_tar(path: &Path, entries: &[Entry], packing: Packing) {
    let mut tar = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let name = &mut h.as_old_mut().name;
            name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        }
        h.set_size(e.bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(&e.bytes);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let bytes = match packing {
        Packing::Plain => tar,
        Packing::Gzip => {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(&tar).unwrap();
            g.finish().unwrap()
        }
        Packing::Zstd => zstd::encode_all(&tar[..], 3).unwrap(),
    };
    std::fs::write(path, bytes).unwrap();
}

fn corpus() -> Layout {
    // Repository 0: multi-platform indexes with an SBOM referrer; repository 1: images.
    mirror_corpus(2, &["1.0", "1.1"], 256 * 1024)
}

fn assert_stored(env: &Env, expected: &[(String, String)]) {
    let images = env.images();
    for e in expected {
        assert!(images.contains(e), "{e:?} not in {images:?}");
    }
    env.ok(&["verify", "--full"]);
}

#[test]
fn copy_reads_compressed_archives_with_blobs_before_or_after_index_json() {
    let layout = corpus();
    let multi = format!("{}:1.1", mirror_repo(0));
    let single = format!("{}:1.0", mirror_repo(1));
    for packing in [Packing::Zstd, Packing::Gzip, Packing::Plain] {
        for blobs_first in [true, false] {
            let env = Env::new();
            let file = env.path(&format!("corpus.{}", packing.ext()));
            write_tar(&file, &entries(&layout, blobs_first), packing);
            let f = file.to_str().unwrap();
            env.ok(&[
                "copy",
                &format!("oci-archive:{f}:{multi}"),
                "store:dst/multi:x",
            ]);
            env.ok(&[
                "copy",
                &format!("oci-archive:{f}:{single}"),
                "store:dst/one:y",
            ]);
            assert_stored(
                &env,
                &[
                    ("dst/multi:x".into(), ref_digest(&layout, &multi)),
                    ("dst/one:y".into(), ref_digest(&layout, &single)),
                ],
            );
            // The same file imports to the same digests: one reader of the format.
            env.ok(&["import", f]);
            assert_stored(&env, &[(multi.clone(), ref_digest(&layout, &multi))]);
            // Nothing was extracted beside the tarball.
            let beside: Vec<_> = std::fs::read_dir(env.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                beside
                    .iter()
                    .all(|n| n == "store" || n.starts_with("corpus.")),
                "{packing:?} blobs_first={blobs_first}: {beside:?}"
            );
        }
    }
}

#[test]
fn a_sync_job_reads_a_zstd_archive_into_the_store() {
    let env = Env::new();
    let layout = corpus();
    let file = env.path("corpus.tar.zst");
    write_tar(&file, &entries(&layout, true), Packing::Zstd);
    let cfg = env.path("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[job]]\nname = \"in\"\nsource = \"oci-archive:{}\"\ndestination = \"store:\"\nreferrers = true\n",
            file.display()
        ),
    )
    .unwrap();
    let out = env.ok(&["--json", "sync", "--config", cfg.to_str().unwrap()]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reports[0]["failed"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(reports[0]["copied"].as_array().unwrap().len(), 4, "{out}");
    let mut expected = Vec::new();
    for r in 0..2 {
        for t in ["1.0", "1.1"] {
            let name = format!("{}:{t}", mirror_repo(r));
            expected.push((name.clone(), ref_digest(&layout, &name)));
        }
    }
    assert_stored(&env, &expected);
    // A second run finds everything up to date.
    let out = env.ok(&["--json", "sync", "--config", cfg.to_str().unwrap()]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reports[0]["copied"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(reports[0]["skipped"].as_array().unwrap().len(), 4, "{out}");
}

#[test]
fn hostile_compressed_archives_are_refused() {
    let layout = corpus();
    let name = format!("{}:1.0", mirror_repo(1));
    let image = ref_digest(&layout, &name);
    for packing in [Packing::Zstd, Packing::Gzip] {
        // An entry escaping the layout.
        let env = Env::new();
        let mut es = entries(&layout, true);
        es.insert(0, entry("blobs/../../escape", b"x"));
        let file = env.path(&format!("escape.{}", packing.ext()));
        write_tar(&file, &es, packing);
        let src = format!("oci-archive:{}:{name}", file.display());
        let err = env.fails(&["copy", &src, "store:bad:x"]);
        assert!(err.contains("refusing tar entry"), "{err}");
        assert!(!env.path("escape").exists());

        // A blob entry longer than its descriptor says (the digest still names it).
        let mut es = entries(&layout, false);
        let manifest: serde_json::Value =
            serde_json::from_slice(layout.blobs[&image].bytes.as_slice()).unwrap();
        let layer = manifest["layers"][1]["digest"].as_str().unwrap();
        let blob = format!("blobs/sha256/{}", layer.trim_start_matches("sha256:"));
        for e in es.iter_mut().filter(|e| e.name == blob) {
            e.bytes.extend_from_slice(&[0u8; 4096]);
        }
        let file = env.path(&format!("long.{}", packing.ext()));
        write_tar(&file, &es, packing);
        let src = format!("oci-archive:{}:{name}", file.display());
        let err = env.fails(&["copy", &src, "store:bad:y"]);
        assert!(err.contains("declares"), "{err}");
        assert!(
            env.images().iter().all(|(r, _)| !r.starts_with("bad")),
            "{:?}",
            env.images()
        );
    }
}

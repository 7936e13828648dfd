//! Criterion benches of sealift-store's hot paths.
//!
//! - `digest/parse`, `digest/format`: `Digest` from and to its `sha256:<hex>` string.
//! - `manifest/parse_index`, `manifest/parse_image`: `ManifestView::parse` of a 4-platform
//!   OCI index and of a 9-layer OCI image manifest (fixtures-built, as real ones look).
//! - `put_blob/64MiB`: `Store::put_blob` of a new 64 MiB blob, end to end (hash while
//!   writing to `ingest/`, fsync, rename, fsync dir, sled commit and flush), in bytes/s.
//! - `store_ops/*`: fixed per-operation costs that dominate imports of many small blobs:
//!   `put_blob` of a 40-byte blob, `hold` (the "exists and hold" transaction) and `record`
//!   (a plain lookup) of an absent digest, `set_tag` and `walk` of an 11-node image.
//! - `diff_id/gzip_<n>MiB`: `diffid::diff_id` of a gzip layer of about 32 MiB (115 MiB of
//!   layer-like tar: a quarter incompressible files, the rest repetitive text), in
//!   compressed bytes/s.
//!
//! Sample sizes are small on purpose (the whole run takes about two minutes on 2 cores):
//! `cargo bench -p sealift-benches --bench store`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use sealift_fixtures::{gzip, image, index, layer_tar, ImageSpec, LayerKind, Layout, PseudoRandom};
use sealift_oci::diffid::diff_id;
use sealift_oci::media_type::{Compression, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};
use sealift_oci::{Digest, ManifestView, Repo, Tag};
use sealift_store::{ManifestOptions, Store};

const MIB: usize = 1024 * 1024;

fn digests(c: &mut Criterion) {
    let mut g = c.benchmark_group("digest");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let d = Digest::sha256(b"sealift");
    let s = d.to_string();
    g.bench_function("parse", |b| {
        b.iter(|| black_box(s.as_str()).parse::<Digest>().unwrap())
    });
    g.bench_function("format", |b| b.iter(|| black_box(&d).to_string()));
    g.bench_function("to_key", |b| b.iter(|| black_box(&d).to_key()));
    g.finish();
}

/// Bytes of a blob of `layout` by its descriptor.
fn bytes_of(layout: &Layout, desc: &serde_json::Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    layout.blob_bytes(digest).expect("blob in layout").to_vec()
}

fn manifests(c: &mut Criterion) {
    let mut layout = Layout::new();
    let mut entries = Vec::new();
    let mut image_desc = None;
    for (i, arch) in ["amd64", "arm64", "ppc64le", "s390x"].iter().enumerate() {
        let layers = (0..9)
            .map(|j| {
                let content = format!("layer {j} of {arch}\n");
                let tar = layer_tar(&[(&format!("/etc/layer-{i}-{j}"), content.as_bytes())]);
                (tar, LayerKind::Gzip)
            })
            .collect();
        let desc = image(
            &mut layout,
            &ImageSpec {
                os: "linux",
                arch,
                variant: None,
                layers,
                docker: false,
            },
        );
        image_desc.get_or_insert_with(|| desc.clone());
        entries.push(desc);
    }
    let idx_desc = index(&mut layout, entries, false);
    let idx = bytes_of(&layout, &idx_desc);
    let img = bytes_of(&layout, &image_desc.expect("an image"));

    let mut g = c.benchmark_group("manifest");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(idx.len() as u64));
    g.bench_function("parse_index", |b| {
        b.iter(|| ManifestView::parse(black_box(&idx), Some(OCI_INDEX)).unwrap())
    });
    g.throughput(Throughput::Bytes(img.len() as u64));
    g.bench_function("parse_image", |b| {
        b.iter(|| ManifestView::parse(black_box(&img), Some(OCI_MANIFEST)).unwrap())
    });
    g.finish();
}

fn put_blob(c: &mut Criterion) {
    const SIZE: usize = 64 * MIB;
    // On the default temp dir's file system (the disk, not tmpfs, on these machines), so
    // the fsyncs cost what they cost for real.
    let dir = tempfile::Builder::new()
        .prefix("sealift-bench-put-")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let lease = store.lease("bench", None).expect("lease");
    let mut base = vec![0u8; SIZE];
    PseudoRandom::new(1).fill(&mut base);
    let mut n: u64 = 0;

    let mut g = c.benchmark_group("put_blob");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("64MiB", |b| {
        b.iter_batched(
            || {
                // A new digest each time: the store would skip a blob it has.
                n += 1;
                let mut data = base.clone();
                data[..8].copy_from_slice(&n.to_le_bytes());
                let d = Digest::sha256(&data);
                (data, d)
            },
            |(data, d)| {
                store
                    .put_blob(&lease, &d, SIZE as u64, OCI_LAYER_TAR, &mut &data[..])
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    drop(lease);
    drop(store);
}

/// Fixed per-operation costs of the store, which dominate imports of many small blobs:
/// a put of a tiny blob, "exists and hold" on an absent digest against a plain lookup, and
/// re-tagging an image of 10 blobs.
fn store_ops(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("sealift-bench-ops-")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let lease = store.lease("bench", None).expect("lease");

    // An image of 9 tiny layers and a config, tagged once.
    let mut layers = Vec::new();
    for i in 0..9 {
        let bytes = format!("bench layer {i}\n").into_bytes();
        let d = Digest::sha256(&bytes);
        store
            .put_blob(
                &lease,
                &d,
                bytes.len() as u64,
                OCI_LAYER_TAR,
                &mut &bytes[..],
            )
            .unwrap();
        layers.push(format!(
            r#"{{"mediaType":"{OCI_LAYER_TAR}","digest":"{d}","size":{}}}"#,
            bytes.len()
        ));
    }
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = Digest::sha256(config);
    store
        .put_blob(
            &lease,
            &cd,
            config.len() as u64,
            OCI_CONFIG,
            &mut &config[..],
        )
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layers.join(",")
    );
    let md = store
        .put_manifest(&lease, manifest.as_bytes(), ManifestOptions::default())
        .unwrap()
        .digest;
    let repo: Repo = "bench/ops".parse().unwrap();
    let tag: Tag = "latest".parse().unwrap();

    let mut g = c.benchmark_group("store_ops");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut n: u64 = 0;
    g.bench_function("put_blob_40B", |b| {
        b.iter_batched(
            || {
                n += 1;
                let bytes = format!("bench tiny blob {n:024}\n").into_bytes();
                (Digest::sha256(&bytes), bytes)
            },
            |(d, bytes)| {
                store
                    .put_blob(
                        &lease,
                        &d,
                        bytes.len() as u64,
                        OCI_LAYER_TAR,
                        &mut &bytes[..],
                    )
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let absent = Digest::sha256(b"not in the store");
    // A sled transaction rolls sled's write buffer, and the writes it queues are paid by the
    // next flush: flush once per batch so the measured time includes them.
    g.bench_function("hold_absent", |b| {
        b.iter_custom(|iters| {
            let t = std::time::Instant::now();
            for _ in 0..iters {
                assert!(store.hold(&lease, black_box(&absent)).unwrap().is_none());
            }
            store.flush().unwrap();
            t.elapsed()
        })
    });
    g.bench_function("record_absent", |b| {
        b.iter(|| assert!(store.record(black_box(&absent)).unwrap().is_none()))
    });
    g.bench_function("set_tag_11_nodes", |b| {
        b.iter(|| store.set_tag(&repo, &tag, black_box(&md)).unwrap())
    });
    g.bench_function("walk_11_nodes", |b| {
        b.iter(|| store.walk(black_box(&md)).unwrap())
    });
    g.finish();
    drop(lease);
    drop(store);
}

/// A layer-like tar of about 115 MiB that gzip shrinks about 3.5x (to ~32 MiB), as it does
/// real image layers: files of 4-256 KiB, a quarter of them incompressible (binaries,
/// compressed assets), the rest text whose lines repeat within the file (source, configs,
/// metadata), so inflate sees both long matches and literal runs.
fn layer_like_tar() -> Vec<u8> {
    let mut rng = PseudoRandom::new(7);
    let mut below = |n: u64| (rng.next_u64() % n) as usize;
    let letters = b"abcdefghijklmnopqrstuvwxyz_";
    let vocab: Vec<Vec<u8>> = (0..8192)
        .map(|_| (0..2 + below(11)).map(|_| letters[below(27)]).collect())
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0;
    while total < 115 * MIB {
        let size = 4096 + below(252 * 1024);
        let mut f = Vec::with_capacity(size + 128);
        if below(4) == 0 {
            f.resize(size, 0);
            PseudoRandom::new(files.len() as u64).fill(&mut f);
        } else {
            let pool: Vec<Vec<u8>> = (0..64)
                .map(|_| {
                    let words: Vec<&[u8]> = (0..3 + below(10))
                        .map(|_| &vocab[below(8192)][..])
                        .collect();
                    let mut line = words.join(&b' ');
                    line.push(b'\n');
                    line
                })
                .collect();
            while f.len() < size {
                f.extend_from_slice(&pool[below(64)]);
            }
        }
        total += f.len();
        files.push((format!("/usr/share/bench/f{}", files.len()), f));
    }
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    layer_tar(&entries)
}

fn diff_ids(c: &mut Criterion) {
    let tar = layer_like_tar();
    let gz = gzip(&tar);
    let expected = Digest::sha256(&tar);
    drop(tar);

    let mut g = c.benchmark_group("diff_id");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(gz.len() as u64));
    let name = format!("gzip_{}MiB", gz.len() / MIB);
    g.bench_function(name.as_str(), |b| {
        b.iter(|| {
            let d = diff_id(black_box(&gz[..]), Compression::Gzip).unwrap();
            assert_eq!(d, expected);
        })
    });
    g.finish();
}

// The macro's `pub fn benches` carries no doc comment.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, digests, manifests, store_ops, put_blob, diff_ids);
}
criterion_main!(group::benches);

//! Deterministic test images and small helpers shared by the test modules.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::Path;

use sealift_oci::media_type as mt;
use sealift_oci::{Digest, Repo, Tag};
use sealift_store::record::BlobRecord;
use sealift_store::{Lease, ManifestOptions, PutOutcome, Store};
use serde_json::{json, Value};

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough that gzip'd
/// layers keep a realistic size.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in seed.bytes() {
        s = (s ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    if s == 0 {
        s = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn octal(field: &mut [u8], v: u64) {
    // NUL-terminated, zero-padded octal, as ustar wants.
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

/// A ustar archive of regular files with fixed owners and mtimes.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        assert!(name.len() < 100, "test tar names are short");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 1_700_000_000);
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// gzip with a fixed header (mtime 0), so the bytes are reproducible.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Bytes with a digest and the media type they are described with.
#[derive(Clone, Debug)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::sha256(&bytes),
            bytes,
            media_type: media_type.to_string(),
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The OCI descriptor of these bytes.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size(),
        })
    }
}

/// A gzip'd tar layer and its DiffID.
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: Digest,
}

/// A gzip layer holding a couple of files whose content derives from `name`.
pub fn layer(name: &str) -> Layer {
    layer_sized(name, 3000)
}

/// Like [`layer`] with roughly `len` bytes of content.
pub fn layer_sized(name: &str, len: usize) -> Layer {
    let a = noise(name, len);
    let b = format!("layer {name}\n").into_bytes();
    let t = tar(&[(&format!("data/{name}.bin"), &a), ("etc/name", &b)]);
    Layer {
        diff_id: Digest::sha256(&t),
        blob: Blob::new(mt::OCI_LAYER_GZIP, gzip(&t)),
    }
}

/// An image: config, layers, and the manifest naming them.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Layer>,
    pub manifest: Blob,
}

impl Image {
    /// Digest of the manifest.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// Every blob of the image, manifest first.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.manifest, &self.config];
        v.extend(self.layers.iter().map(|l| &l.blob));
        v
    }

    /// Every digest of the image.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.blobs().into_iter().map(|b| b.digest.clone()).collect()
    }
}

/// An image config with the given DiffIDs.
pub fn config(arch: &str, diff_ids: &[Digest]) -> Blob {
    let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    let v = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    });
    Blob::new(mt::OCI_CONFIG, serde_json::to_vec(&v).unwrap())
}

/// An OCI image manifest over `config` and `layers` (descriptors as given).
pub fn manifest_over(config: &Blob, layers: &[Value], extra: Option<(&str, Value)>) -> Blob {
    let mut v = json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers,
    });
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    Blob::new(mt::OCI_MANIFEST, serde_json::to_vec_pretty(&v).unwrap())
}

/// A complete image with a correct config for `arch`.
pub fn image(arch: &str, layers: Vec<Layer>) -> Image {
    let ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = config(arch, &ids);
    image_with_config(config, layers)
}

/// An image with the given config bytes.
pub fn image_with_config(config: Blob, layers: Vec<Layer>) -> Image {
    let descs: Vec<Value> = layers.iter().map(|l| l.blob.descriptor()).collect();
    let manifest = manifest_over(&config, &descs, None);
    Image {
        config,
        layers,
        manifest,
    }
}

/// A multi-platform image: an OCI index over several images.
#[derive(Clone, Debug)]
pub struct Index {
    pub index: Blob,
    pub images: Vec<Image>,
}

impl Index {
    pub fn digest(&self) -> &Digest {
        &self.index.digest
    }

    pub fn digests(&self) -> BTreeSet<Digest> {
        let mut s: BTreeSet<Digest> = self.images.iter().flat_map(|i| i.digests()).collect();
        s.insert(self.index.digest.clone());
        s
    }
}

/// The bytes of an OCI index over `entries` (manifest, architecture).
pub fn index_bytes(entries: &[(&Blob, &str)], media_type: &str) -> Vec<u8> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(m, arch)| {
            let mut d = m.descriptor();
            d["platform"] = json!({"os": "linux", "architecture": arch});
            d
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap()
}

/// An index over images, each entry's platform from its config's architecture.
pub fn index(images: Vec<(Image, &str)>) -> Index {
    let entries: Vec<(&Blob, &str)> = images.iter().map(|(i, a)| (&i.manifest, *a)).collect();
    let bytes = index_bytes(&entries, mt::OCI_INDEX);
    Index {
        index: Blob::new(mt::OCI_INDEX, bytes),
        images: images.into_iter().map(|(i, _)| i).collect(),
    }
}

/// Store a blob, which must be new.
pub fn put_new(store: &Store, lease: &Lease, b: &Blob) {
    let out = store
        .put_blob(lease, &b.digest, b.size(), &b.media_type, &mut &b.bytes[..])
        .unwrap();
    assert_eq!(out, PutOutcome::Written, "{} should be new", b.digest);
}

/// Store a blob that may already be there.
pub fn put(store: &Store, lease: &Lease, b: &Blob) -> PutOutcome {
    store
        .put_blob(lease, &b.digest, b.size(), &b.media_type, &mut &b.bytes[..])
        .unwrap()
}

/// Store a manifest with its digest and media type checked.
pub fn put_manifest(store: &Store, lease: &Lease, m: &Blob) -> PutOutcome {
    let r = store
        .put_manifest(
            lease,
            &m.bytes,
            ManifestOptions {
                expected: Some(&m.digest),
                media_type: Some(&m.media_type),
                sparse: false,
            },
        )
        .unwrap();
    assert_eq!(r.digest, m.digest);
    r.outcome
}

/// Store an image: blobs first, then the manifest.
pub fn put_image(store: &Store, lease: &Lease, img: &Image) {
    put(store, lease, &img.config);
    for l in &img.layers {
        put(store, lease, &l.blob);
    }
    put_manifest(store, lease, &img.manifest);
}

/// Store an index and all its images.
pub fn put_index(store: &Store, lease: &Lease, idx: &Index) {
    for i in &idx.images {
        put_image(store, lease, i);
    }
    put_manifest(store, lease, &idx.index);
}

pub fn repo(s: &str) -> Repo {
    s.parse().unwrap()
}

pub fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

/// Every digest with a record.
pub fn record_digests(store: &Store) -> BTreeSet<Digest> {
    store.records().map(|r| r.unwrap().0).collect()
}

/// Every record.
pub fn all_records(store: &Store) -> Vec<(Digest, BlobRecord)> {
    store.records().collect::<Result<_, _>>().unwrap()
}

/// File names (digests) under `blobs/sha256` and `blobs/sha512`.
pub fn blob_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for alg in ["sha256", "sha512"] {
        if let Ok(rd) = std::fs::read_dir(root.join("blobs").join(alg)) {
            for e in rd {
                out.insert(format!(
                    "{alg}:{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    out
}

/// Names of the files under `ingest/`.
pub fn ingest_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Digest strings of a set, to compare with [`blob_files`].
pub fn names(ds: &BTreeSet<Digest>) -> BTreeSet<String> {
    ds.iter().map(|d| d.to_string()).collect()
}

/// Make a committed (read-only) blob file writable so a test can damage it.
pub fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A reader that fails the test if anything reads it.
pub struct PanicReader;

impl Read for PanicReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        panic!("the store read a stream it should not have touched");
    }
}

/// An endless reader that counts what it hands out.
pub struct Endless {
    pub served: u64,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (self.served.wrapping_add(i as u64) % 251) as u8;
        }
        self.served += buf.len() as u64;
        Ok(buf.len())
    }
}

/// Serves `data`, but fails with an I/O error once `fail_after` bytes have been served.
pub struct FailingReader {
    pub data: Vec<u8>,
    pub pos: usize,
    pub fail_after: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fail_after {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        let end = self
            .fail_after
            .min(self.data.len())
            .min(self.pos + buf.len());
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

/// A fresh store in a temp dir.
pub fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// Run the ignored test `name` of this test binary as a child process with `var` set to
/// `dir` and the fault point `at` (`point:n`), and check the fault point killed it.
pub fn run_child_killed_at(name: &str, var: &str, dir: &Path, at: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(var, dir)
        .env(sealift_store::fault::VAR, at)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "child {name} with {at} was not killed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `verify --full` finds nothing wrong (`at` says where, in the message).
pub fn assert_verifies_full(store: &Store, at: &str) {
    let v = store
        .verify(sealift_store::verify::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{at}: {:?}", v.problems);
}

/// GC with no grace period.
pub fn gc_now(store: &Store) -> sealift_store::gc::GcReport {
    store
        .gc(&sealift_store::gc::GcOptions {
            dry_run: false,
            grace: std::time::Duration::ZERO,
        })
        .unwrap()
}

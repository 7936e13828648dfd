//! The `sealift` binary against temporary stores. Images are built deterministically by
//! sealift-fixtures and stored with the store library directly; the store is dropped before
//! the binary runs, since one process holds a store at a time.
//!
//! Long file: about 600 lines, kept as one file on purpose: one fixture shared by fourteen short
//! command tests, which a module split would only scatter (the per-area e2e suites live in
//! tests/e2e/).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use sealift_fixtures::{attestation, image, index, layer_tar, ImageSpec, LayerKind, Layout};
use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use sealift_store::{ManifestOptions, Store};
use serde_json::Value;

const MULTI: &str = "sample/hello:1.0";
const SINGLE: &str = "sample/single:latest";

/// A temporary store holding two tagged images:
/// - `sample/hello:1.0`: OCI index of linux/amd64 and linux/arm64/v8 plus an attestation
///   for amd64;
/// - `sample/single:latest`: a Docker schema2 image for linux/arm/v7 sharing nothing with it.
struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    multi: Digest,
    amd64: Digest,
    amd64_config: Digest,
    amd64_diff_ids: Vec<Digest>,
    single: Digest,
    /// Every blob and manifest of `sample/single`.
    single_blobs: BTreeSet<Digest>,
    /// One layer of `sample/hello` linux/amd64.
    amd64_layer: Digest,
}

fn digest_of(v: &Value) -> Digest {
    v["digest"].as_str().unwrap().parse().unwrap()
}

fn json_of(layout: &Layout, d: &Digest) -> Value {
    serde_json::from_slice(layout.blob_bytes(&d.to_string()).unwrap()).unwrap()
}

/// Put every blob, then image manifests, then indexes (children before parents).
fn load(store: &Store, layout: &Layout) {
    let lease = store.lease("cli test", None).unwrap();
    let rank = |m: &str| match mt::kind(m) {
        mt::Kind::Index => 2,
        mt::Kind::Manifest => 1,
        _ => 0,
    };
    for pass in 0..3 {
        for b in layout
            .blobs
            .values()
            .filter(|b| rank(&b.media_type) == pass)
        {
            let d: Digest = b.digest.parse().unwrap();
            if pass == 0 {
                store
                    .put_blob(&lease, &d, b.size, &b.media_type, &mut &b.bytes[..])
                    .unwrap();
            } else {
                store
                    .put_manifest(
                        &lease,
                        &b.bytes,
                        ManifestOptions {
                            expected: Some(&d),
                            media_type: Some(&b.media_type),
                            sparse: false,
                        },
                    )
                    .unwrap();
            }
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("store");

        let mut multi = Layout::new();
        let amd64 = image(
            &mut multi,
            &ImageSpec {
                os: "linux",
                arch: "amd64",
                variant: None,
                layers: vec![
                    (layer_tar(&[("etc/base", b"base\n")]), LayerKind::Gzip),
                    (layer_tar(&[("app/amd64", b"amd64\n")]), LayerKind::Gzip),
                ],
                docker: false,
            },
        );
        let arm64 = image(
            &mut multi,
            &ImageSpec {
                os: "linux",
                arch: "arm64",
                variant: Some("v8"),
                layers: vec![(layer_tar(&[("app/arm64", b"arm64\n")]), LayerKind::Gzip)],
                docker: false,
            },
        );
        let att = attestation(&mut multi, &amd64);
        let idx = index(&mut multi, vec![amd64.clone(), arm64, att], false);

        let mut single = Layout::new();
        let sd = image(
            &mut single,
            &ImageSpec {
                os: "linux",
                arch: "arm",
                variant: Some("v7"),
                layers: vec![(layer_tar(&[("app/arm", b"arm v7\n")]), LayerKind::Gzip)],
                docker: true,
            },
        );

        let amd64_d = digest_of(&amd64);
        let amd64_manifest = json_of(&multi, &amd64_d);
        let amd64_config = digest_of(&amd64_manifest["config"]);
        let config = json_of(&multi, &amd64_config);
        let amd64_diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        let amd64_layer = digest_of(&amd64_manifest["layers"][1]);

        let held = no_spawns();
        let store = Store::open(&store_path).unwrap();
        load(&store, &multi);
        load(&store, &single);
        let multi_d = digest_of(&idx);
        let single_d = digest_of(&sd);
        store
            .set_tag(
                &"sample/hello".parse().unwrap(),
                &"1.0".parse().unwrap(),
                &multi_d,
            )
            .unwrap();
        store
            .set_tag(
                &"sample/single".parse().unwrap(),
                &"latest".parse().unwrap(),
                &single_d,
            )
            .unwrap();
        drop(store);
        drop(held);

        Fixture {
            _dir: dir,
            store: store_path,
            multi: multi_d,
            amd64: amd64_d,
            amd64_config,
            amd64_diff_ids,
            single: single_d,
            single_blobs: single.blobs.keys().map(|k| k.parse().unwrap()).collect(),
            amd64_layer,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        sealift(&self.store, args)
    }

    /// Run, insist on success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sealift {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn blob_file(&self, d: &Digest) -> PathBuf {
        self.store.join("blobs/sha256").join(d.hex())
    }
}

/// Held while this process has a store open, and while spawning. A child forked by another
/// test in between would inherit the open LOCK file until it execs, and the next opener
/// (this process again, or a `sealift` run) would find the store "in use".
static SPAWN: Mutex<()> = Mutex::new(());

fn no_spawns() -> MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|p| p.into_inner())
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sealift"));
    c.arg("--store")
        .arg(store)
        .args(args)
        .env_remove("SEALIFT_LOG")
        .env_remove("SEALIFT_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Spawn while the caller holds [`no_spawns`] (its own store open on purpose).
fn spawn_held(store: &Path, args: &[&str], _held: &MutexGuard<'static, ()>) -> Child {
    // `spawn` returns once the child has exec'd, so it holds no inherited descriptor.
    command(store, args).spawn().unwrap()
}

fn spawn(store: &Path, args: &[&str]) -> Child {
    let held = no_spawns();
    spawn_held(store, args, &held)
}

fn sealift(store: &Path, args: &[&str]) -> Output {
    spawn(store, args).wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn refs(images: &Value) -> Vec<String> {
    images["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn images_lists_tags_with_digests_and_platforms() {
    let f = Fixture::new();
    let v = f.json(&["images"]);
    let images = v["images"].as_array().unwrap();
    assert_eq!(refs(&v), [MULTI, SINGLE]);

    let multi = &images[0];
    assert_eq!(multi["digest"], f.multi.to_string());
    assert_eq!(multi["media_type"], mt::OCI_INDEX);
    assert_eq!(
        multi["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"]),
        "attestation (unknown/unknown) is skipped"
    );
    assert_eq!(multi["status"], "ok");
    assert!(multi["size"].as_u64().unwrap() > 0);

    let single = &images[1];
    assert_eq!(single["digest"], f.single.to_string());
    assert_eq!(single["media_type"], mt::DOCKER_MANIFEST);
    assert_eq!(single["platforms"], serde_json::json!(["linux/arm/v7"]));
    let single_size: u64 = f
        .single_blobs
        .iter()
        .map(|d| std::fs::metadata(f.blob_file(d)).unwrap().len())
        .sum();
    assert_eq!(single["size"].as_u64().unwrap(), single_size);

    let table = f.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REF", "DIGEST", "MEDIA TYPE", "PLATFORMS", "SIZE", "STATUS"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(MULTI), "{row}");
    assert!(row.contains(&f.multi.hex()[..12]), "{row}");
    assert!(
        !row.contains(f.multi.hex()),
        "short digest in the table: {row}"
    );
    assert!(row.contains("oci index"), "{row}");
    assert!(row.contains("linux/amd64,linux/arm64/v8"), "{row}");
    assert!(row.trim_end().ends_with("ok"), "{row}");
    assert!(table.contains("docker manifest"), "{table}");
}

#[test]
fn inspect_shows_diff_ids_chain_ids_and_image_id() {
    let f = Fixture::new();
    let text = f.ok(&["inspect", MULTI]);
    assert!(text.contains(&f.multi.to_string()), "{text}");
    assert!(text.contains(&f.amd64.to_string()), "{text}");
    assert!(text.contains("attestation for"), "{text}");
    assert!(
        text.contains(&format!("Image ID:    {}", f.amd64_config)),
        "{text}"
    );
    for d in &f.amd64_diff_ids {
        assert!(text.contains(&d.to_string()), "DiffID {d} in\n{text}");
    }
    let chain = sealift_oci::diffid::chain_ids(&f.amd64_diff_ids);
    assert!(text.contains(&chain[1].to_string()), "{text}");
    assert!(text.contains("linux/arm64/v8"), "{text}");

    let v = f.json(&["inspect", MULTI]);
    assert_eq!(v["digest"], f.multi.to_string());
    assert_eq!(v["media_type"], mt::OCI_INDEX);
    assert_eq!(v["manifest"]["mediaType"], mt::OCI_INDEX);
    assert_eq!(v["graph"]["children"].as_array().unwrap().len(), 3);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "attestation is not an image: {v:#}");
    let amd = &images[0];
    assert_eq!(amd["platform"], "linux/amd64");
    assert_eq!(amd["manifest"], f.amd64.to_string());
    assert_eq!(amd["image_id"], f.amd64_config.to_string());
    let diff_ids: Vec<String> = f.amd64_diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(amd["diff_ids"], serde_json::json!(diff_ids));
    let chain: Vec<String> = chain.iter().map(|d| d.to_string()).collect();
    assert_eq!(amd["chain_ids"], serde_json::json!(chain));
    assert_eq!(amd["config"]["cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(amd["config"]["env_count"], 1);
}

#[test]
fn inspect_platform_picks_one_image() {
    let f = Fixture::new();
    let v = f.json(&["inspect", MULTI, "--platform", "linux/amd64"]);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["manifest"], f.amd64.to_string());
    // The amd64 manifest and the attestation describing it; not arm64.
    assert_eq!(v["graph"]["children"].as_array().unwrap().len(), 2);

    let by_digest = format!("sample/hello@{}", f.multi);
    let v = f.json(&["inspect", &by_digest, "--platform", "linux/arm64"]);
    assert_eq!(v["images"][0]["platform"], "linux/arm64/v8");

    let out = f.run(&["inspect", MULTI, "--platform", "linux/s390x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("linux/s390x") && err.contains(MULTI), "{err}");
    assert!(err.contains("linux/amd64, linux/arm64/v8"), "{err}");
}

#[test]
fn inspect_unknown_ref_names_it() {
    let f = Fixture::new();
    let out = f.run(&["inspect", "sample/hello:2.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: resolving sample/hello:2.0: sample/hello:2.0 is not in the store"
    );
}

#[test]
fn tag_then_rm() {
    let f = Fixture::new();
    f.ok(&["tag", MULTI, "other/name:v2"]);
    let by_digest = format!("sample/single@{}", f.single);
    f.ok(&["tag", &by_digest, "sample/single:again"]);
    let v = f.json(&["images"]);
    assert_eq!(
        refs(&v),
        [
            "other/name:v2",
            MULTI,
            "sample/single:again",
            "sample/single:latest"
        ]
    );
    assert_eq!(v["images"][0]["digest"], f.multi.to_string());

    f.ok(&["rm", "other/name:v2"]);
    // repo@digest removes every tag of that repo pointing there.
    let out = f.json(&["rm", &by_digest]);
    assert_eq!(out["removed"].as_array().unwrap().len(), 2);
    assert_eq!(refs(&f.json(&["images"])), [MULTI]);
}

#[test]
fn rm_unknown_ref_fails_naming_it() {
    let f = Fixture::new();
    let out = f.run(&["rm", "sample/nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sample/nope:1"), "{}", stderr(&out));

    let other = Digest::sha256(b"not here");
    let r = format!("sample/hello@{other}");
    let out = f.run(&["rm", &r]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&r), "{}", stderr(&out));
    assert_eq!(
        refs(&f.json(&["images"])),
        [MULTI, SINGLE],
        "nothing removed"
    );
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    for args in [
        &["tag", MULTI, "Bad:Name"][..],
        &["tag", MULTI, &format!("x/y@{}", f.multi)],
        &["gc", "--grace", "soon"],
        &["inspect", MULTI, "--platform", "linux"],
        &["frobnicate"],
    ] {
        let out = f.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn gc_dry_run_lists_then_gc_removes() {
    let f = Fixture::new();
    f.ok(&["rm", SINGLE]);

    let v = f.json(&["gc", "--dry-run", "--grace", "0"]);
    assert_eq!(v["dry_run"], true);
    let listed: BTreeSet<Digest> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(digest_of)
        .collect();
    assert_eq!(listed, f.single_blobs);
    let bytes: u64 = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    assert_eq!(v["bytes"].as_u64().unwrap(), bytes);
    for d in &f.single_blobs {
        assert!(f.blob_file(d).exists(), "dry run deleted {d}");
    }

    let text = f.ok(&["gc", "--dry-run", "--grace", "0"]);
    assert!(text.contains(&f.single.to_string()), "{text}");
    assert!(text.contains("docker manifest"), "{text}");
    assert!(text.contains("Would remove 3 items"), "{text}");

    let text = f.ok(&["gc", "--grace", "0"]);
    assert!(text.contains("Removed 3 items"), "{text}");
    for d in &f.single_blobs {
        assert!(!f.blob_file(d).exists(), "gc left {d}");
    }
    assert!(
        f.blob_file(&f.amd64_layer).exists(),
        "gc took a tagged image's layer"
    );
    f.ok(&["verify"]);
    assert_eq!(refs(&f.json(&["images"])), [MULTI]);
}

#[test]
fn verify_good_store_then_missing_blob() {
    let f = Fixture::new();
    let text = f.ok(&["verify", "--full"]);
    assert!(text.contains("no problems"), "{text}");

    std::fs::remove_file(f.blob_file(&f.amd64_layer)).unwrap();
    let out = f.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&f.amd64_layer.to_string()), "{text}");
    assert!(text.contains("2 problems"), "{text}");

    let v: Value = serde_json::from_slice(&f.run(&["--json", "verify"]).stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["problem"], "missing_file");
    assert_eq!(v["problems"][0]["digest"], f.amd64_layer.to_string());

    // Repair drops the record, but the manifest still misses its layer: still non-zero.
    let out = f.run(&["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("repaired: dropped record"), "{text}");
    assert!(text.contains("remains:"), "{text}");
    // With the record gone, the graph itself is incomplete.
    let images = f.json(&["images"]);
    assert_eq!(images["images"][0]["status"], "broken");
    assert_eq!(
        images["images"][0]["missing"][0]["child"],
        f.amd64_layer.to_string()
    );
}

#[test]
fn verify_repair_of_an_orphan_file_succeeds() {
    let f = Fixture::new();
    let orphan = Digest::sha256(b"orphan");
    std::fs::write(f.blob_file(&orphan), b"orphan").unwrap();
    let out = f.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = f.ok(&["verify", "--repair"]);
    assert!(text.contains("removed orphan file"), "{text}");
    assert!(text.contains("all repaired"), "{text}");
    assert!(!f.blob_file(&orphan).exists());
    f.ok(&["verify"]);
}

#[test]
fn du_reports_logical_and_physical() {
    let f = Fixture::new();
    f.ok(&["tag", MULTI, "sample/hello:copy"]);
    let images = f.json(&["images"]);
    let sizes: Vec<u64> = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .collect();
    let v = f.json(&["du"]);
    let logical = v["logical"].as_u64().unwrap();
    let physical = v["physical"].as_u64().unwrap();
    assert_eq!(logical, sizes.iter().sum::<u64>());
    let on_disk: u64 = std::fs::read_dir(f.store.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(physical, on_disk);
    assert_eq!(v["saving"].as_u64().unwrap(), logical - physical);
    let hello = v["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "sample/hello")
        .unwrap();
    assert_eq!(hello["tags"], 2);
    assert_eq!(hello["logical"].as_u64().unwrap(), 2 * sizes[0]);
    assert_eq!(hello["physical"].as_u64().unwrap(), sizes[0]);

    let text = f.ok(&["du"]);
    assert!(
        text.contains("Logical:") && text.contains("Physical:"),
        "{text}"
    );
    assert!(text.contains("sample/hello"), "{text}");
}

#[test]
fn second_process_is_refused_naming_the_holder() {
    let f = Fixture::new();
    let guard = no_spawns();
    let held = Store::open(&f.store).unwrap();
    let out = spawn_held(&f.store, &["images"], &guard)
        .wait_with_output()
        .unwrap();
    drop(held);
    drop(guard);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&std::process::id().to_string()), "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn export_then_import_into_another_store() {
    let f = Fixture::new();
    let layout = f._dir.path().join("out");
    let v = f.json(&["export", "-o", layout.to_str().unwrap(), MULTI, SINGLE]);
    assert_eq!(v["images"][0]["reference"], MULTI);
    assert_eq!(v["images"][0]["digest"], f.multi.to_string());
    assert!(layout.join("index.json").exists());

    let other = f._dir.path().join("other");
    let out = sealift(&other, &["--json", "import", layout.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sealift(&other, &["--json", "images"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(refs(&v), [MULTI, SINGLE]);
    assert_eq!(v["images"][0]["digest"], f.multi.to_string());
    assert_eq!(v["images"][1]["digest"], f.single.to_string());
}

#[test]
fn closed_stdout_is_not_an_error() {
    let f = Fixture::new();
    // Many tags so the output is larger than any pipe buffer.
    let guard = no_spawns();
    let store = Store::open(&f.store).unwrap();
    let repo = "many/tags".parse().unwrap();
    for i in 0..1000 {
        store
            .set_tag(&repo, &format!("t{i}").parse().unwrap(), &f.single)
            .unwrap();
    }
    drop(store);
    drop(guard);
    let mut child = spawn(&f.store, &["images"]);
    // Read nothing: close the pipe at once.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

//! Air-gapped bundles: many images selected by pattern in one tarball that skopeo and umoci
//! read image by image; delta bundles against a site inventory; split bundles; idempotent
//! and resumable import; `import --push` (Docker archives: docker_archive.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use super::crash::wait_for_progress;
use super::util::*;

/// The corpus imported, plus extra tags for pattern selection.
pub(super) fn corpus_store(env: &Env) -> sealift_fixtures::Layout {
    let (dir, layout) = corpus_dir(env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    env.ok(&["tag", "corpus:multi", "apps/web:v1.0"]);
    env.ok(&["tag", "corpus:shared", "apps/web:v1.1"]);
    env.ok(&["tag", "corpus:zstd", "apps/db:v1.2"]);
    env.ok(&["tag", "corpus:shared", "apps/db:v2.0"]);
    env.ok(&["tag", "corpus:shared", "apps/deep/api:v1.0"]);
    layout
}

/// Tar entries of a (plain) tarball: path → bytes.
pub(super) fn tar_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut b).unwrap();
        out.insert(p, b);
    }
    out
}

fn ref_names(index: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(index).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// Every file name under the store's blobs, and the image list: what "unchanged" means.
fn snapshot(env: &Env) -> (Vec<String>, Vec<(String, String)>) {
    let mut files: Vec<String> = std::fs::read_dir(env.store().join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    (files, env.images())
}

fn blob_count(env: &Env) -> u64 {
    json(&env.ok(&["--json", "du"]))["blobs"].as_u64().unwrap()
}

#[test]
fn selectors_put_many_images_in_one_reproducible_bundle_that_skopeo_and_umoci_read() {
    let env = Env::new();
    let layout = corpus_store(&env);
    let bundle = env.path("apps.tar");
    let out = json(&env.ok(&[
        "--json",
        "export",
        "-o",
        bundle.to_str().unwrap(),
        "apps/*:v1.*",
        "corpus:zstd",
        "apps/web:v1.0",
    ]));
    let names: Vec<&str> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    // Pattern matches sorted; `*` stays within one path component; each ref once.
    assert_eq!(
        names,
        [
            "apps/db:v1.2",
            "apps/web:v1.0",
            "apps/web:v1.1",
            "corpus:zstd"
        ]
    );
    let entries = tar_entries(&bundle);
    assert_eq!(ref_names(&entries["index.json"]), names);

    // skopeo and umoci read each image by its ref name; the manifest bytes are the source's.
    for (name, src) in [("apps/web:v1.1", "shared"), ("apps/db:v1.2", "zstd")] {
        let raw = tool_ok(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci-archive:{}:{name}", bundle.display()),
            ],
        );
        assert_eq!(raw, layout.blobs[&ref_digest(&layout, src)].bytes, "{name}");
        let copy = env.path(&format!("copy-{}", name.replace(['/', ':'], "-")));
        tool_ok(
            "skopeo",
            &[
                "copy",
                "-q",
                &format!("oci-archive:{}:{name}", bundle.display()),
                &format!("oci:{}:x", copy.display()),
            ],
        );
    }
    let unpacked = env.path("unpacked");
    let extracted = env.path("extracted");
    std::fs::create_dir(&extracted).unwrap();
    tool_ok(
        "tar",
        &[
            "-C",
            extracted.to_str().unwrap(),
            "-xf",
            bundle.to_str().unwrap(),
        ],
    );
    tool_ok(
        "umoci",
        &[
            "raw",
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:apps/web:v1.1", extracted.display()),
            unpacked.to_str().unwrap(),
        ],
    );
    assert!(unpacked.join("etc/os-release").is_file());

    // Same store and selectors: same bytes.
    let again = env.path("again.tar");
    env.ok(&[
        "export",
        "-o",
        again.to_str().unwrap(),
        "apps/*:v1.*",
        "corpus:zstd",
        "apps/web:v1.0",
    ]);
    assert_eq!(file_digest(&bundle), file_digest(&again));

    // `**` crosses components; a pattern without a tag takes every tag.
    let deep = env.path("deep.tar");
    env.ok(&[
        "export",
        "-o",
        deep.to_str().unwrap(),
        "apps/**:v1.0",
        "apps/d*",
    ]);
    assert_eq!(
        ref_names(&tar_entries(&deep)["index.json"]),
        [
            "apps/deep/api:v1.0",
            "apps/web:v1.0",
            "apps/db:v1.2",
            "apps/db:v2.0"
        ]
    );

    // A selector matching nothing names itself, and nothing is written.
    let none = env.path("none.tar");
    let err = env.fails(&["export", "-o", none.to_str().unwrap(), "apps/*", "ops/*:v9"]);
    assert!(
        err.contains("ops/*:v9") && err.contains("matches no image"),
        "{err}"
    );
    assert!(!none.exists() && !env.path("none.tar.partial").exists());

    // The bundle imports into another store with every name and digest.
    let other = Env::new();
    other.ok(&["import", bundle.to_str().unwrap()]);
    let want: Vec<(String, String)> = env
        .images()
        .into_iter()
        .filter(|(r, _)| names.contains(&r.as_str()))
        .collect();
    assert_eq!(other.images(), want);
    other.ok(&["verify", "--full"]);
}

/// Two versions of an app: same 512 KiB base layer, a different small app layer.
fn app_versions(env: &Env) -> (std::path::PathBuf, sealift_fixtures::Layout) {
    use sealift_fixtures::{image, layer_tar, pseudo_random, ImageSpec, LayerKind, Layout};
    let mut l = Layout::new();
    let base = layer_tar(&[("opt/base.bin", &pseudo_random(512 << 10, 7))]);
    for v in ["v1", "v2"] {
        let app = layer_tar(&[("opt/app.txt", format!("app {v}\n").as_bytes())]);
        let desc = image(
            &mut l,
            &ImageSpec {
                os: "linux",
                arch: "amd64",
                variant: None,
                layers: vec![(base.clone(), LayerKind::Gzip), (app, LayerKind::Gzip)],
                docker: false,
            },
        );
        l.add_ref(desc, Some(&format!("app:{v}")));
    }
    let dir = env.path("apps-layout");
    l.write_dir(&dir).unwrap();
    (dir, l)
}

#[test]
fn a_delta_bundle_carries_only_the_changed_layer_and_the_manifests() {
    let hq = Env::new();
    let (dir, layout) = app_versions(&hq);
    hq.ok(&["import", dir.to_str().unwrap()]);

    // The site has v1, from a full bundle.
    let site = Env::new();
    let v1_full = hq.path("v1.tar");
    hq.ok(&["export", "-o", v1_full.to_str().unwrap(), "app:v1"]);
    site.ok(&["import", v1_full.to_str().unwrap()]);
    let inv = site.path("site.inv");
    let inv_out = json(&site.ok(&["--json", "inventory", "-o", inv.to_str().unwrap()]));
    assert_eq!(inv_out["digests"], 4, "{inv_out}");
    assert_eq!(inv_out["manifests"], 1, "{inv_out}");
    // magic + version + count + 4 × (flags + sha256) + trailer
    assert_eq!(
        std::fs::metadata(&inv).unwrap().len(),
        18 + 1 + 8 + 4 * 33 + 32
    );

    // HQ makes the delta for v2.
    let delta = hq.path("v2-delta.tar");
    let full = hq.path("v2-full.tar");
    let rep = json(&hq.ok(&[
        "--json",
        "export",
        "-o",
        delta.to_str().unwrap(),
        "--base",
        inv.to_str().unwrap(),
        "app:v2",
    ]));
    hq.ok(&["export", "-o", full.to_str().unwrap(), "app:v2"]);

    let v2 = ref_digest(&layout, "app:v2");
    let manifest: Value = serde_json::from_slice(&layout.blobs[&v2].bytes).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let base_layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let new_layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let size = |d: &str| layout.blobs[d].bytes.len() as u64;
    let expected = size(&v2) + size(&config) + size(&new_layer);

    let entries = tar_entries(&delta);
    let blob_names: Vec<&String> = entries.keys().filter(|k| k.starts_with("blobs/")).collect();
    let blob_bytes: u64 = entries
        .iter()
        .filter(|(k, _)| k.starts_with("blobs/"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(blob_names.len(), 3, "{blob_names:?}");
    assert_eq!(blob_bytes, expected);
    assert_eq!(rep["bytes"], expected);
    assert_eq!(rep["omitted"], 1);
    assert_eq!(rep["omitted_bytes"], size(&base_layer));
    let index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
    assert_eq!(
        index["annotations"]["io.sealift.bundle.base"],
        file_digest(&inv).as_str(),
        "the delta records the inventory it was made against"
    );
    let (delta_len, full_len) = (
        std::fs::metadata(&delta).unwrap().len(),
        std::fs::metadata(&full).unwrap().len(),
    );
    eprintln!(
        "delta bundle: {delta_len} bytes ({blob_bytes} blob bytes); full bundle: {full_len} bytes"
    );
    assert!(delta_len * 10 < full_len, "{delta_len} vs {full_len}");

    // A site without the base layer: fails before tagging, naming the digest and the image.
    let stranger = Env::new();
    let err = stranger.fails(&["import", delta.to_str().unwrap()]);
    assert!(
        err.contains(&base_layer) && err.contains("app:v2") && err.contains(&file_digest(&inv)),
        "{err}"
    );
    assert!(
        !err.contains(&new_layer),
        "only missing digests are named: {err}"
    );
    assert!(stranger.images().is_empty());
    stranger.ok(&["verify"]);

    // The right site: succeeds, same digests, everything verifies.
    let report = json(&site.ok(&["--json", "import", delta.to_str().unwrap()]));
    assert_eq!(report["bytes_written"], expected);
    assert_eq!(
        site.images(),
        vec![
            ("app:v1".to_string(), ref_digest(&layout, "app:v1")),
            ("app:v2".to_string(), v2.clone())
        ]
    );
    site.ok(&["verify", "--full"]);

    // A damaged inventory is refused by name.
    let mut bytes = std::fs::read(&inv).unwrap();
    bytes[30] ^= 0xff;
    let bad = hq.path("bad.inv");
    std::fs::write(&bad, bytes).unwrap();
    let err = hq.fails(&[
        "export",
        "-o",
        hq.path("x.tar").to_str().unwrap(),
        "--base",
        bad.to_str().unwrap(),
        "app:v2",
    ]);
    assert!(err.contains("bad.inv") && err.contains("corrupt"), "{err}");
}

#[test]
fn split_bundles_check_every_part_then_stream_and_import_twice_changes_nothing() {
    let env = Env::new();
    corpus_store(&env);
    let (dir, _) = app_versions(&env);
    env.ok(&["import", dir.to_str().unwrap()]);
    let parts_dir = env.path("parts");
    std::fs::create_dir(&parts_dir).unwrap();
    let base = parts_dir.join("b.tar.zst");
    let out = json(&env.ok(&[
        "--json",
        "export",
        "--split",
        "128K",
        "-o",
        base.to_str().unwrap(),
        "app:*",
        "apps/**",
    ]));
    let parts = out["parts"].as_array().unwrap();
    assert!(parts.len() >= 3, "{out}");
    for (i, p) in parts.iter().enumerate() {
        let p = Path::new(p.as_str().unwrap());
        assert_eq!(p, parts_dir.join(format!("b.tar.zst.{i:03}")));
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len <= 128 << 10 && (i + 1 == parts.len() || len == 128 << 10));
    }
    // sha256sum -c accepts the checksum file as it is.
    let ok = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "b.tar.zst.sha256"])
        .current_dir(&parts_dir)
        .status()
        .unwrap();
    assert!(ok.success());
    // The concatenation is one zstd stream holding the layout.
    let mut joined = Vec::new();
    for p in parts {
        joined.extend(std::fs::read(p.as_str().unwrap()).unwrap());
    }
    assert_eq!(&joined[..4], &[0x28, 0xb5, 0x2f, 0xfd]);

    let want: Vec<(String, String)> = env
        .images()
        .into_iter()
        .filter(|(r, _)| r.starts_with("app:") || r.starts_with("apps/"))
        .collect();
    // From the first part, and from the folder.
    for from in [parts_dir.join("b.tar.zst.000"), parts_dir.clone()] {
        let site = Env::new();
        site.ok(&["import", from.to_str().unwrap()]);
        assert_eq!(site.images(), want);
        site.ok(&["verify", "--full"]);
        if from.is_dir() {
            // Again: nothing written, nothing changed, all reported present.
            let before = snapshot(&site);
            let files_before = std::fs::read_dir(site.store()).unwrap().count();
            let again = json(&site.ok(&["--json", "import", from.to_str().unwrap()]));
            assert_eq!(again["blobs_written"], 0, "{again}");
            assert_eq!(again["bytes_written"], 0, "{again}");
            assert_eq!(
                again["blobs_present"].as_u64().unwrap(),
                before.0.len() as u64
            );
            assert_eq!(snapshot(&site), before);
            assert_eq!(
                std::fs::read_dir(site.store()).unwrap().count(),
                files_before
            );
        }
    }
}

#[test]
fn killed_bundle_imports_resume_and_verify_clean() {
    let env = Env::new();
    let dir = env.path("big");
    let layers = 16;
    let digest = sealift_fixtures::big_layout_dir(&dir, layers, 2 << 20, 9).unwrap();
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "big:1"]);
    let base = env.path("big.tar.zst");
    env.ok(&[
        "export",
        "--split",
        "8M",
        "-o",
        base.to_str().unwrap(),
        "big:*",
    ]);
    let first = env.path("big.tar.zst.000");

    let site = Env::new();
    let mut resumed = 0;
    // Kill points chosen by progress: after k blob files are in the site's store.
    for after in [2, 7, 12] {
        let mut child = site
            .cmd()
            .args(["import", first.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_progress(&site, &mut child, after, after % 2 == 1);
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        }
        let _ = child.wait();
        site.ok(&["verify"]);
        let images = site.images();
        assert!(
            images.is_empty() || images == vec![("big:big".to_string(), digest.clone())],
            "after a kill at {after} blobs: {images:?}"
        );
        if killed {
            resumed += 1;
        }
    }
    assert!(resumed >= 2, "only {resumed} runs were killed mid-import");
    let before = blob_count(&site);
    assert!(before > 0, "the killed runs committed nothing");
    let report = json(&site.ok(&["--json", "import", first.to_str().unwrap()]));
    // Every blob the killed runs committed is kept and found present, not written again.
    assert_eq!(report["blobs_present"], before, "{report}");
    assert_eq!(
        report["blobs_written"].as_u64().unwrap() + report["blobs_present"].as_u64().unwrap(),
        layers as u64 + 2
    );
    assert_eq!(site.images(), vec![("big:big".to_string(), digest)]);
    site.ok(&["verify", "--full"]);
}

#[test]
fn import_push_round_trips_store_to_bundle_to_store_to_registry() {
    let a = Env::new();
    let layout = corpus_store(&a);
    let bundle = a.path("b.tar.gz");
    a.ok(&[
        "export",
        "--referrers",
        "-o",
        bundle.to_str().unwrap(),
        "corpus:multi",
        "corpus:zstd",
        "apps/db:*",
    ]);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let b = Env::new();
    let out = json(&b.ok(&[
        "--json",
        "import",
        bundle.to_str().unwrap(),
        "--push",
        &format!("docker://{h}/mirror"),
    ]));
    let pushed = out["pushed"].as_array().unwrap();
    assert_eq!(pushed.len(), 4, "{out}");
    b.ok(&["verify", "--full"]);
    for (name, src) in [
        ("corpus:multi", "multi"),
        ("corpus:zstd", "zstd"),
        ("apps/db:v1.2", "zstd"),
        ("apps/db:v2.0", "shared"),
    ] {
        let want = ref_digest(&layout, src);
        assert!(b.images().contains(&(name.to_string(), want.clone())));
        let raw = tool_ok(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{h}/mirror/{name}"),
            ],
        );
        assert_eq!(raw, layout.blobs[&want].bytes, "{name} in the registry");
    }
    // The zstd image's SBOM referrer went along (by the tag schema on distribution 2.8).
    let sbom = layout
        .index
        .iter()
        .find(|e| e.get("annotations").is_none())
        .and_then(|e| e["digest"].as_str())
        .unwrap()
        .to_string();
    let raw = tool_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/mirror/corpus@{sbom}"),
        ],
    );
    assert_eq!(file_digest_bytes(&raw), sbom);

    // A bad destination is refused before anything is imported.
    let c = Env::new();
    let err = c.fails(&["import", bundle.to_str().unwrap(), "--push", "ftp://x/y"]);
    assert!(err.contains("--push"), "{err}");
    assert!(c.images().is_empty());
}

fn file_digest_bytes(b: &[u8]) -> String {
    let p = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(p.path(), b).unwrap();
    file_digest(p.path())
}

//! What trying sealift with real clients and a real builder's formats found (issue 10, items
//! 7–10): a BuildKit attestation under `verify --full`, a registry that refuses sparse
//! indexes (distribution 2.8), TLS on a loopback address, completions and man pages.

use std::path::Path;
use std::process::{Child, Command};

use sealift_fixtures::{
    buildkit_image, gzip, layer_tar, sha256_digest, AttestationDiffIds, Blob, Layout,
};
use serde_json::{json, Value};

use super::util::*;

fn json_out(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Item 7: an image as `docker buildx build --provenance=true` pushes it verifies clean,
/// whichever way its attestation's (ignored) config lists DiffIDs; a wrong DiffID in a real
/// image is still found.
#[test]
fn verify_full_is_clean_on_buildkit_attestations_and_finds_a_wrong_diff_id() {
    let env = Env::new();
    let mut l = Layout::new();
    let empty = buildkit_image(&mut l, &[("app/one", b"one\n")], AttestationDiffIds::Empty);
    l.add_ref(empty.index.clone(), Some("buildx/app:empty"));
    let listed = buildkit_image(&mut l, &[("app/two", b"two\n")], AttestationDiffIds::Layers);
    l.add_ref(listed.index.clone(), Some("buildx/app:listed"));
    // The shape as BuildKit writes it: platform unknown/unknown, the two annotations, an
    // OCI config with no DiffIDs, an in-toto layer with its predicate type.
    let att: Value = serde_json::from_slice(
        l.blob_bytes(empty.attestation["digest"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(empty.attestation["platform"]["os"], "unknown");
    assert_eq!(
        empty.attestation["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        empty.attestation["annotations"]["vnd.docker.reference.digest"],
        empty.image["digest"]
    );
    assert_eq!(
        att["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        att["layers"][0]["mediaType"],
        "application/vnd.in-toto+json"
    );
    assert!(att["layers"][0]["annotations"]["in-toto.io/predicate-type"].is_string());
    let cfg: Value = serde_json::from_slice(
        l.blob_bytes(att["config"]["digest"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"], json!([]));

    let dir = env.path("buildx");
    l.write_dir(&dir).unwrap();
    env.ok(&["import", dir.to_str().unwrap()]);
    let report = json_out(&env.ok(&["--json", "verify", "--full"]));
    assert_eq!(report["problems"], json!([]), "{report}");

    // A plain image whose config names another DiffID than its layer's.
    let mut bad = Layout::new();
    let tar = layer_tar(&[("etc/motd", b"hello\n")]);
    let layer = bad.add(Blob::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        gzip(&tar),
    ));
    let wrong = sha256_digest(b"not the layer");
    let config = bad.add(Blob::json(
        "application/vnd.oci.image.config.v1+json",
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [wrong] },
        }),
    ));
    let manifest = bad.add(Blob::json(
        "application/vnd.oci.image.manifest.v1+json",
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [layer],
        }),
    ));
    bad.add_ref(manifest.clone(), Some("broken/app:1"));
    let bad_dir = env.path("broken");
    bad.write_dir(&bad_dir).unwrap();
    env.ok(&["import", bad_dir.to_str().unwrap()]);
    let out = env.run(&["--json", "verify", "--full"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_out(&String::from_utf8_lossy(&out.stdout));
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["problem"], "wrong_diff_id");
    assert_eq!(problems[0]["manifest"], manifest["digest"]);
    assert_eq!(problems[0]["layer"], layer["digest"]);
    assert_eq!(problems[0]["expected"], wrong.as_str());
    assert_eq!(problems[0]["actual"], sha256_digest(&tar).as_str());
}

/// The corpus in the store as `corpus:*`, and a distribution 2.8 registry.
fn corpus_and_registry() -> (Env, sealift_fixtures::Layout, sealift_testkit::Registry) {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    (env, layout, sealift_testkit::Registry::start())
}

/// Item 8: distribution 2.8 refuses an index whose entries are not all there. `copy
/// --platform` says so and what to do, instead of a bare HTTP 400.
#[test]
fn copy_platform_to_distribution_names_the_sparse_index_refusal_and_the_fix() {
    let (env, layout, reg) = corpus_and_registry();
    let dst = format!("docker://{}/x/multi:1", reg.host());
    let err = env.fails(&[
        "copy",
        "--platform",
        "linux/arm64",
        "store:corpus:multi",
        &dst,
    ]);
    let multi = ref_digest(&layout, "multi");
    for want in [
        "MANIFEST_BLOB_UNKNOWN",
        multi.as_str(),
        "requires every platform",
        "--rewrite-index",
        "copy all platforms",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    // The tag was never set.
    let out = tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &dst])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Doing what it says works: a rewritten index of arm64 alone.
    let r = json_out(&env.ok(&[
        "--json",
        "copy",
        "--platform",
        "linux/arm64",
        "--rewrite-index",
        "store:corpus:multi",
        &dst,
    ]));
    assert_eq!(r["filtered_index"], "rewritten");
    let raw = tool_ok("skopeo", &["inspect", "--raw", "--tls-verify=false", &dst]);
    assert_eq!(
        sha256_digest(&raw),
        r["destination_digest"].as_str().unwrap()
    );
    let idx: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(idx["manifests"][0]["platform"]["architecture"], "arm64");
}

/// Item 8 for sync jobs: each image of a job with `platforms` into distribution 2.8 fails
/// with the hint; `rewrite_index = "auto"` rewrites where refused and keeps the digest where
/// the destination takes the sparse index, and says which per image.
#[test]
fn sync_job_hints_per_image_and_auto_rewrites_only_where_refused() {
    let (env, layout, reg) = corpus_and_registry();
    let h = reg.host();
    let cfg = env.path("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[job]]
name = "plain"
source = "store:corpus"
destination = "docker://{h}/plain"
platforms = ["linux/amd64"]
[job.tags]
list = ["multi", "docker"]

[[job]]
name = "auto"
source = "store:corpus"
destination = "docker://{h}/auto"
platforms = ["linux/amd64"]
rewrite_index = "auto"
[job.tags]
list = ["multi", "docker"]

[[job]]
name = "local"
source = "store:corpus"
destination = "oci:local"
platforms = ["linux/amd64"]
rewrite_index = "auto"
[job.tags]
list = ["multi"]
"#
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();

    let out = env.run(&["--json", "sync", "--config", cfg, "--job", "plain"]);
    assert_eq!(out.status.code(), Some(1), "images failed");
    let reports = json_out(&String::from_utf8_lossy(&out.stdout));
    let failed = reports[0]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{reports}");
    for f in failed {
        let why = f["reason"].as_str().unwrap();
        assert!(
            why.contains("MANIFEST_BLOB_UNKNOWN")
                && why.contains("rewrite_index")
                && why.contains("copy all platforms"),
            "{why}"
        );
    }

    let reports = json_out(&env.ok(&["--json", "sync", "--config", cfg, "--job", "auto"]));
    let copied = reports[0]["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 2, "{reports}");
    for c in copied {
        let why = c["reason"].as_str().unwrap();
        assert!(
            why.contains("rewritten") && why.contains("refuses sparse indexes"),
            "{why}"
        );
        // The digest reported is the one the destination tag names, an index of amd64 only.
        let written = why.rsplit(' ').next().unwrap();
        let dst = c["destination"].as_str().unwrap();
        let raw = tool_ok("skopeo", &["inspect", "--raw", "--tls-verify=false", dst]);
        assert_eq!(sha256_digest(&raw), written, "{dst}");
        let idx: Value = serde_json::from_slice(&raw).unwrap();
        for e in idx["manifests"].as_array().unwrap() {
            let arch = e["platform"]["architecture"].as_str().unwrap();
            assert!(arch == "amd64" || arch == "unknown", "{idx}");
        }
    }

    // A destination that takes the sparse index keeps the digest, and says so.
    let reports = json_out(&env.ok(&["--json", "sync", "--config", cfg, "--job", "local"]));
    let copied = reports[0]["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{reports}");
    let why = copied[0]["reason"].as_str().unwrap();
    let multi = ref_digest(&layout, "multi");
    assert!(
        why.contains("sparse index kept") && why.ends_with(&multi),
        "{why}"
    );
}

/// `sealift serve` on `127.0.0.1:0` with `extra` arguments; its address and scheme.
struct Served {
    child: Child,
    addr: String,
    scheme: String,
}

impl Served {
    fn start(env: &Env, extra: &[&str]) -> Served {
        let mut cmd = env.cmd();
        cmd.args(["--json", "serve", "--addr", "127.0.0.1:0"])
            .args(extra);
        let (child, v) = super::serve::start_serve(cmd);
        Served {
            child,
            addr: v["address"].as_str().unwrap().to_string(),
            scheme: v["scheme"].as_str().unwrap().to_string(),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Item 9: a TLS registry on a loopback address (`sealift serve --tls-cert`) is spoken to
/// over HTTPS, with `--ca-file` or `--tls-verify=false`; a certificate that does not verify
/// is an error, never a quiet fall back to plain HTTP; a plain HTTP loopback registry still
/// works (fallback), unless `[[registry]] insecure = false` asks for HTTPS only.
#[test]
fn loopback_registries_over_tls_and_plain_http() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let (cert, key) = sealift_testkit::self_signed_cert(env.dir.path());
    let zstd = ref_digest(&layout, "zstd");
    let tls = Served::start(
        &env,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(tls.scheme, "https");
    let src = format!("docker://{}/corpus:zstd", tls.addr);

    let other = Env::new();
    let r = json_out(&other.ok(&[
        "--json",
        "copy",
        "--ca-file",
        cert.to_str().unwrap(),
        &src,
        "store:tls/zstd:1",
    ]));
    assert_eq!(r["source_digest"], zstd.as_str());
    other.ok(&[
        "copy",
        "--tls-verify=false",
        &format!("docker://{}/corpus:multi", tls.addr),
        "store:tls/multi:1",
    ]);
    assert_eq!(
        other.images(),
        vec![
            ("tls/multi:1".to_string(), ref_digest(&layout, "multi")),
            ("tls/zstd:1".to_string(), zstd.clone()),
        ]
    );
    other.ok(&["verify", "--full"]);

    // An untrusted certificate: said, not worked around over plain HTTP.
    let err = other.fails(&["copy", &src, "store:tls/zstd:2"]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A sync job with [[registry]] insecure = false and a ca_file: HTTPS only, verified.
    let cfg = other.path("tls.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registry]]\nhost = \"{a}\"\ninsecure = false\nca_file = \"{c}\"\n\n\
             [[job]]\nname = \"tls\"\nsource = \"docker://{a}/corpus\"\ndestination = \"store:job\"\n\
             [job.tags]\nlist = [\"shared\"]\n",
            a = tls.addr,
            c = cert.display()
        ),
    )
    .unwrap();
    let reports = json_out(&other.ok(&["--json", "sync", "--config", cfg.to_str().unwrap()]));
    assert_eq!(
        reports[0]["copied"].as_array().unwrap().len(),
        1,
        "{reports}"
    );
    drop(tls);

    // Plain HTTP on loopback: the TLS handshake is refused, plain HTTP is used.
    let plain = Served::start(&env, &[]);
    assert_eq!(plain.scheme, "http");
    let third = Env::new();
    third.ok(&[
        "copy",
        &format!("docker://{}/corpus:zstd", plain.addr),
        "store:plain/zstd:1",
    ]);
    assert_eq!(
        third.images(),
        vec![("plain/zstd:1".to_string(), zstd.clone())]
    );
    // …unless the config says HTTPS only.
    let cfg = third.path("https-only.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registry]]\nhost = \"{a}\"\ninsecure = false\n\n\
             [[job]]\nname = \"strict\"\nsource = \"docker://{a}/corpus\"\ndestination = \"store:strict\"\n\
             [job.tags]\nlist = [\"zstd\"]\n",
            a = plain.addr
        ),
    )
    .unwrap();
    let out = third.run(&["--json", "sync", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let reports = json_out(&String::from_utf8_lossy(&out.stdout));
    let failed = reports[0]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{reports}");
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("https://"),
        "{reports}"
    );
}

/// Item 10: completions bash sources, and man pages render.
#[test]
fn completions_and_man_pages() {
    let env = Env::new();
    let script = env.path("sealift.bash");
    std::fs::write(&script, env.ok(&["completions", "bash"])).unwrap();
    let out = tool("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p sealift",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("complete ") && said.trim_end().ends_with(" sealift"),
        "{said}"
    );
    // What bash would offer after `sealift co`.
    let out = tool("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(sealift co) COMP_CWORD=1 COMP_LINE='sealift co' COMP_POINT=10 \
             && _sealift sealift co sealift && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    assert!(
        offered.lines().any(|l| l == "copy") && offered.lines().any(|l| l == "completions"),
        "{offered}"
    );
    for shell in ["zsh", "fish"] {
        let s = env.ok(&["completions", shell]);
        assert!(
            s.contains("sealift") && s.contains("rewrite-index"),
            "{shell}"
        );
    }

    let man = env.path("man");
    let r = json_out(&env.ok(&["--json", "man", "-o", man.to_str().unwrap()]));
    let pages: Vec<String> = r["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for want in [
        "sealift.1",
        "sealift-copy.1",
        "sealift-sync.1",
        "sealift-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
    }
    for page in ["sealift.1", "sealift-copy.1"] {
        let path = man.join(page);
        // groff with every warning on (-k: the help texts are UTF-8, as man's preconv
        // reads them): a page that is not valid man(7) says so.
        let out = tool("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{page}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{page}");
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "{page}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
        if page == "sealift-copy.1" {
            assert!(text.contains("--rewrite-index"), "{text}");
        }
    }
    // One page to stdout.
    let page = env.ok(&["man", "sync", "status"]);
    assert!(page.contains(".TH sealift-sync-status"), "{page}");
    let err = env.fails(&["man", "nope"]);
    assert!(err.contains("\"nope\"") && err.contains("copy"), "{err}");
}

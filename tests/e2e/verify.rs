//! `pull --verify-key` against the real distribution registry: signatures made by real
//! tools (openssl for cosign's legacy `sha256-<hex>.sig` form, pushed with skopeo;
//! `@sigstore/sign` bundles attached as referrers by `@sigstore/oci`), admitted or refused
//! before anything is tagged.

use std::path::{Path, PathBuf};

use super::util::*;

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

pub(super) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A P-256 key pair made by openssl: (private PEM, public PEM).
pub(super) fn key(env: &Env, name: &str) -> (PathBuf, PathBuf) {
    let private = env.path(&format!("{name}.pem"));
    let public = env.path(&format!("{name}.pub"));
    tool_ok(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            s(&private),
        ],
    );
    tool_ok(
        "openssl",
        &["pkey", "-in", s(&private), "-pubout", "-out", s(&public)],
    );
    (private, public)
}

/// cosign's simple-signing payload for `digest`, and its signature by `private` (openssl,
/// ECDSA over SHA-256, base64).
pub(super) fn sign_payload(env: &Env, private: &Path, digest: &str) -> (Vec<u8>, String) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"x/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes();
    let file = env.path("payload.json");
    std::fs::write(&file, &payload).unwrap();
    let sig = tool_ok(
        "openssl",
        &["dgst", "-sha256", "-sign", s(private), s(&file)],
    );
    let sig_file = env.path("payload.sig");
    std::fs::write(&sig_file, sig).unwrap();
    let b64 = tool_ok("openssl", &["base64", "-A", "-in", s(&sig_file)]);
    (payload, String::from_utf8(b64).unwrap().trim().to_string())
}

/// A layout holding cosign's signature manifest (payload layer, signature annotation), as
/// `cosign sign` pushes it; returns its directory.
pub(super) fn signature_layout(env: &Env, name: &str, payload: &[u8], signature: &str) -> PathBuf {
    let dir = env.path(name);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sealift_oci::Digest::sha256(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        d.to_string()
    };
    let payload_digest = put(payload);
    let config = format!(
        r#"{{"architecture":"","config":{{}},"created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}}}}"#
    );
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": signature}
        }]
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "sig"}
        }]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir
}

/// Push a signature layout to `docker://HOST/REPO:sha256-<hex>.sig` with skopeo.
pub(super) fn push_sig(dir: &Path, host: &str, repo: &str, digest: &str) {
    let tag = format!("{}.sig", digest.replace(':', "-"));
    tool_ok(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:sig", dir.display()),
            &format!("docker://{host}/{repo}:{tag}"),
        ],
    );
}

/// cosign's legacy signature of `digest` by the key `private`, pushed as
/// `docker://HOST/REPO:sha256-<hex>.sig`.
pub(super) fn push_signed(env: &Env, private: &Path, digest: &str, host: &str, repo: &str) {
    let (payload, sig) = sign_payload(env, private, digest);
    let name = format!(
        "sig-{}-{}",
        repo.replace('/', "_"),
        digest.replace(':', "-")
    );
    push_sig(
        &signature_layout(env, &name, &payload, &sig),
        host,
        repo,
        digest,
    );
}

/// `node trust/tests/js/sign.js …` (scripts/setup.sh installs its packages).
pub(super) fn sign_js(args: &[&str]) -> Vec<u8> {
    let js = root().join("trust/tests/js");
    assert!(
        js.join("node_modules/@sigstore/oci").is_dir(),
        "@sigstore/oci is not installed in {}: run scripts/setup.sh",
        js.display()
    );
    let script = js.join("sign.js");
    let mut all = vec![s(&script)];
    all.extend_from_slice(args);
    tool_ok("node", &all)
}

/// The `kind` of the signature verdict `images --json` shows for `digest` in `env`'s store.
pub(super) fn signature_kind(env: &Env, digest: &str) -> serde_json::Value {
    let images: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "images"])).unwrap();
    images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not in {images}"))["signature"]["kind"]
        .clone()
}

/// Push `corpus:NAME` to `docker://HOST/REPO:1` for each `(NAME, REPO)`.
pub(super) fn push_corpus(env: &Env, h: &str, images: &[(&str, &str)]) {
    for (name, repo) in images {
        env.ok(&[
            "push",
            &format!("corpus:{name}"),
            &format!("docker://{h}/{repo}:1"),
        ]);
    }
}

#[test]
fn pull_verify_key_admits_signed_images_and_refuses_the_rest_untagged() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    // cosign signs the digest the user names: for a multi-platform image, its index.
    let multi = ref_digest(&layout, "multi");
    let shared = ref_digest(&layout, "shared");
    let zstd = ref_digest(&layout, "zstd");
    push_corpus(
        &env,
        &h,
        &[
            ("multi", "x/app"),
            ("shared", "x/tampered"),
            ("zstd", "x/unsigned"),
        ],
    );
    let (signer, signer_pub) = key(&env, "signer");
    let (_, other_pub) = key(&env, "other");

    push_signed(&env, &signer, &multi, &h, "x/app");
    // The registry holds a payload changed after it was signed (same signature).
    let (payload, sig) = sign_payload(&env, &signer, &shared);
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace("x/app", "x/evil")
        .into_bytes();
    push_sig(
        &signature_layout(&env, "sig-shared", &tampered, &sig),
        &h,
        "x/tampered",
        &shared,
    );

    let site = Env::new();
    let refused = |reference: &str, key: &Path, want: &str, digest: &str| {
        let out = site.run(&["pull", "--verify-key", s(key), reference]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{reference}: {err}");
        assert!(
            err.contains(want) && err.contains(digest),
            "{reference}: {err}"
        );
        assert!(
            site.images().is_empty(),
            "nothing tagged after refusing {reference}"
        );
    };
    // Another key: refused, nothing tagged.
    refused(
        &format!("{h}/x/app:1"),
        &other_pub,
        "signature does not verify with any of the 1 key(s)",
        &multi,
    );
    refused(
        &format!("{h}/x/tampered:1"),
        &signer_pub,
        "signature does not verify with any of the 1 key(s)",
        &shared,
    );
    refused(
        &format!("{h}/x/unsigned:1"),
        &signer_pub,
        "has no signature",
        &zstd,
    );

    // The signer's key (beside another: any one suffices): admitted, and the verdict kept.
    let out: serde_json::Value = serde_json::from_str(&site.ok(&[
        "--json",
        "pull",
        "--verify-key",
        s(&other_pub),
        "--verify-key",
        s(&signer_pub),
        &format!("{h}/x/app:1"),
    ]))
    .unwrap();
    assert_eq!(out["destination_digest"], multi.as_str());
    assert_eq!(out["verdict"]["kind"], "cosign-key", "{out}");
    assert_eq!(site.images(), vec![(format!("{h}/x/app:1"), multi.clone())]);
    let der = tool_ok(
        "openssl",
        &["pkey", "-pubin", "-in", s(&signer_pub), "-outform", "DER"],
    );
    let fingerprint = sealift_oci::Digest::sha256(&der).to_string();
    let images: serde_json::Value = serde_json::from_str(&site.ok(&["--json", "images"])).unwrap();
    let signature = &images["images"][0]["signature"];
    assert_eq!(
        signature["signer"]["fingerprint"],
        fingerprint.as_str(),
        "{images}"
    );
    assert_eq!(
        signature["signature"],
        format!("{}.sig", multi.replace(':', "-")).as_str()
    );
    let table = site.ok(&["images"]);
    assert!(
        table.contains("SIGNED") && table.contains(&fingerprint[..19]),
        "{table}"
    );
    let inspect = site.ok(&["inspect", &format!("{h}/x/app:1")]);
    assert!(
        inspect.contains(&format!("Signature:   cosign-key by key {fingerprint}")),
        "{inspect}"
    );
}

#[test]
fn pull_verify_key_reads_a_bundle_attached_by_sigstore_oci() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let shared = ref_digest(&layout, "shared");
    env.ok(&[
        "push",
        "corpus:shared",
        &format!("docker://{h}/x/bundled:1"),
    ]);
    let (signer, signer_pub) = key(&env, "signer");
    let (_, other_pub) = key(&env, "other");
    let manifest = env.path("manifest.json");
    std::fs::write(&manifest, &layout.blobs[&shared].bytes).unwrap();
    let bundle = env.path("bundle.json");
    sign_js(&[
        "key",
        s(&signer),
        s(&manifest),
        s(&bundle),
        s(&env.path("root.json")),
    ]);
    // @sigstore/oci speaks plain HTTP to 127.0.0.1 and falls back to the referrers tag
    // schema on distribution 2.8, which has no referrers API.
    sign_js(&["attach", &format!("{h}/x/bundled@{shared}"), s(&bundle)]);

    let site = Env::new();
    let err = site.fails(&[
        "pull",
        "--verify-key",
        s(&other_pub),
        &format!("{h}/x/bundled:1"),
    ]);
    assert!(
        err.contains("does not verify with any of the 1 key(s)"),
        "{err}"
    );
    assert!(site.images().is_empty());
    let out: serde_json::Value = serde_json::from_str(&site.ok(&[
        "--json",
        "pull",
        "--verify-key",
        s(&signer_pub),
        &format!("{h}/x/bundled:1"),
    ]))
    .unwrap();
    assert_eq!(out["verdict"]["kind"], "bundle-key", "{out}");
    assert!(
        out["verdict"]["signature"]
            .as_str()
            .unwrap()
            .starts_with("referrer sha256:"),
        "{out}"
    );
    assert_eq!(site.images(), vec![(format!("{h}/x/bundled:1"), shared)]);
}

/// The keyless signer's identity and issuer in [`keyless_signed`].
pub(super) const KEYLESS: (&str, &str) = ("ci@example.com", "https://issuer.example");

/// The corpus's `multi` pushed to `HOST/x/keyless:1` with a keyless bundle by [`KEYLESS`]
/// attached: its digest and the trusted root naming the signers (in `env`).
pub(super) fn keyless_signed(
    env: &Env,
    layout: &sealift_fixtures::Layout,
    h: &str,
) -> (String, PathBuf) {
    let multi = ref_digest(layout, "multi");
    env.ok(&["push", "corpus:multi", &format!("docker://{h}/x/keyless:1")]);
    let manifest = env.path("manifest.json");
    std::fs::write(&manifest, &layout.blobs[&multi].bytes).unwrap();
    let (bundle, root) = (env.path("bundle.json"), env.path("root.json"));
    // @sigstore/mock's Fulcio and Rekor answer @sigstore/sign in-process; root.json names them.
    let (id, issuer) = KEYLESS;
    sign_js(&["keyless", s(&manifest), s(&bundle), s(&root), id, issuer]);
    sign_js(&["attach", &format!("{h}/x/keyless@{multi}"), s(&bundle)]);
    (multi, root)
}

#[test]
fn pull_verifies_a_keyless_bundle_offline_against_a_trusted_root() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let (multi, root) = keyless_signed(&env, &layout, &h);
    let (id, issuer) = KEYLESS;

    let site = Env::new();
    let pull = |identity: &str| {
        site.run(&[
            "--json",
            "pull",
            "--verify-identity",
            identity,
            "--verify-issuer",
            issuer,
            "--trusted-root",
            s(&root),
            &format!("{h}/x/keyless:1"),
        ])
    };
    let out = pull("mallory@example.com");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("signed by ci@example.com") && err.contains(&multi),
        "{err}"
    );
    assert!(site.images().is_empty());

    let out = pull(id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["kind"], "bundle-keyless", "{report}");
    assert_eq!(report["verdict"]["signer"]["identity"], id);
    assert_eq!(report["verdict"]["signer"]["issuer"], issuer);
    assert!(
        report["verdict"]["signed_at"].as_i64().is_some(),
        "{report}"
    );
    let images: serde_json::Value = serde_json::from_str(&site.ok(&["--json", "images"])).unwrap();
    assert_eq!(images["images"][0]["digest"], multi.as_str());
    assert_eq!(images["images"][0]["signature"]["signer"]["identity"], id);
}

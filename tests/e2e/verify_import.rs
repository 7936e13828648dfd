//! The air-gap path of the signature policy: a connected side pulls images with their
//! signatures (`--referrers`: cosign `.sig` tags signed with openssl and pushed with
//! skopeo, Sigstore bundles attached by `@sigstore/oci`), exports them with `--referrers`,
//! and the site checks every image again at `import --verify-*` from what the bundle
//! carries, tagging only those admitted.

use std::path::Path;

use super::util::*;
use super::verify::{
    key, keyless_signed, push_corpus, push_signed, s, sign_js, signature_kind, KEYLESS,
};

/// The index.json ref names of a layout directory.
fn ref_names(dir: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn import_verify_key_tags_the_signed_images_of_a_bundle_and_refuses_the_rest() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let multi = ref_digest(&layout, "multi");
    let shared = ref_digest(&layout, "shared");
    let zstd = ref_digest(&layout, "zstd");
    let docker = ref_digest(&layout, "docker");
    push_corpus(
        &env,
        &h,
        &[
            ("multi", "x/app"),
            ("shared", "x/bundled"),
            ("zstd", "x/unsigned"),
            ("docker", "x/wrong"),
        ],
    );
    let (signer, signer_pub) = key(&env, "signer");
    let (other, _) = key(&env, "other");
    // x/app: cosign's .sig tag by the signer; x/wrong: by another key.
    push_signed(&env, &signer, &multi, &h, "x/app");
    push_signed(&env, &other, &docker, &h, "x/wrong");
    // x/bundled: a Sigstore bundle by the signer, attached as a referrer.
    let manifest = env.path("manifest.json");
    std::fs::write(&manifest, &layout.blobs[&shared].bytes).unwrap();
    let bundle = env.path("bundle.json");
    let root = env.path("root.json");
    sign_js(&["key", s(&signer), s(&manifest), s(&bundle), s(&root)]);
    sign_js(&["attach", &format!("{h}/x/bundled@{shared}"), s(&bundle)]);

    // The connected side: pulled with their signatures, exported with them.
    let connected = Env::new();
    let refs: Vec<String> = ["x/app", "x/bundled", "x/unsigned", "x/wrong"]
        .iter()
        .map(|r| format!("{h}/{r}:1"))
        .collect();
    for r in &refs {
        connected.ok(&["pull", "--referrers", r]);
    }
    let tarball = connected.path("bundle.tar");
    let dir = connected.path("bundle");
    for out in [&tarball, &dir] {
        let mut args = vec!["export", "--referrers", "-o", s(out)];
        args.extend(refs.iter().map(String::as_str));
        connected.ok(&args);
    }
    // export --referrers carries cosign's tags as entries of the same name.
    let app_sig = format!("{h}/x/app:{}.sig", multi.replace(':', "-"));
    let wrong_sig = format!("{h}/x/wrong:{}.sig", docker.replace(':', "-"));
    let names = ref_names(&dir);
    assert!(
        names.contains(&app_sig) && names.contains(&wrong_sig),
        "{names:?}"
    );

    // The site: one import, two refused, exit code 1, the others tagged with verdicts.
    let site = Env::new();
    let out = site.run(&["import", "--verify-key", s(&signer_pub), s(&tarball)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (image, digest, why) in [
        ("x/unsigned:1", &zstd, "has no signature"),
        (
            "x/wrong:1",
            &docker,
            "signature does not verify with any of the 1 key(s)",
        ),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{h}/{image} refused, not tagged")))
            .unwrap_or_else(|| panic!("no refusal of {image}: {err}"));
        assert!(
            line.contains(why) && line.contains(digest.as_str()),
            "{line}"
        );
    }
    assert_eq!(
        site.images(),
        vec![
            (format!("{h}/x/app:1"), multi.clone()),
            (app_sig.clone(), ref_digest_of_tag(&connected, &app_sig)),
            (format!("{h}/x/bundled:1"), shared.clone()),
        ]
    );
    assert_eq!(signature_kind(&site, &multi), "cosign-key");
    assert_eq!(signature_kind(&site, &shared), "bundle-key");
    let inspect = site.ok(&["inspect", &format!("{h}/x/bundled:1")]);
    assert!(
        inspect.contains("Signature:   bundle-key by key sha256:"),
        "{inspect}"
    );
    // Importing again changes nothing and refuses the same two.
    let again = site.run(&["import", "--verify-key", s(&signer_pub), s(&tarball)]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(site.images().len(), 3);

    // The layout itself as a copy source finds the .sig entries and bundle referrers.
    let copied = Env::new();
    let out: serde_json::Value = serde_json::from_str(&copied.ok(&[
        "--json",
        "copy",
        "--verify-key",
        s(&signer_pub),
        &format!("oci:{}:{h}/x/app:1", dir.display()),
        "store:copied/app:1",
    ]))
    .unwrap();
    assert_eq!(out["verdict"]["kind"], "cosign-key", "{out}");
    let err = copied.fails(&[
        "copy",
        "--verify-key",
        s(&signer_pub),
        &format!("oci-archive:{}:{h}/x/wrong:1", tarball.display()),
        "store:copied/wrong:1",
    ]);
    assert!(
        err.contains("does not verify with any of the 1 key(s)") && err.contains(&docker),
        "{err}"
    );
    copied.ok(&[
        "copy",
        "--verify-key",
        s(&signer_pub),
        &format!("oci-archive:{}:{h}/x/bundled:1", tarball.display()),
        "store:copied/bundled:1",
    ]);
    assert_eq!(
        copied.images(),
        vec![
            ("copied/app:1".to_string(), multi),
            ("copied/bundled:1".to_string(), shared),
        ]
    );
}

/// The digest a tag names in `env`'s store.
fn ref_digest_of_tag(env: &Env, reference: &str) -> String {
    env.images()
        .into_iter()
        .find(|(r, _)| r == reference)
        .unwrap_or_else(|| panic!("{reference} not in the store"))
        .1
}

#[test]
fn a_keyless_bundle_travels_through_export_and_import() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let (multi, root) = keyless_signed(&env, &layout, &h);
    let (id, issuer) = KEYLESS;

    let connected = Env::new();
    let image = format!("{h}/x/keyless:1");
    let keyless = |env: &Env, identity: &str, rest: &[&str]| {
        let mut args = vec![
            "--json",
            rest[0],
            "--verify-identity",
            identity,
            "--verify-issuer",
            issuer,
            "--trusted-root",
            s(&root),
        ];
        args.extend_from_slice(&rest[1..]);
        env.run(&args)
    };
    let out = keyless(&connected, id, &["pull", "--referrers", &image]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = connected.path("keyless.tar.zst");
    connected.ok(&["export", "--referrers", "-o", s(&tarball), &image]);

    // Another identity: refused, exit code 1, nothing tagged.
    let site = Env::new();
    let out = keyless(&site, "mallory@example.com", &["import", s(&tarball)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{image} refused, not tagged"))
            && err.contains("signed by ci@example.com")
            && err.contains(&multi),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["refused"][0]["image"], image.as_str(), "{report}");
    assert!(site.images().is_empty());

    // The signer's identity: admitted offline, the verdict kept and shown.
    let out = keyless(&site, id, &["import", s(&tarball)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdict = &report["images"][0]["verdict"];
    assert_eq!(verdict["kind"], "bundle-keyless", "{report}");
    assert_eq!(verdict["signer"]["identity"], id);
    assert!(verdict["signed_at"].as_i64().is_some(), "{report}");
    assert_eq!(site.images(), vec![(image.clone(), multi.clone())]);
    let images: serde_json::Value = serde_json::from_str(&site.ok(&["--json", "images"])).unwrap();
    assert_eq!(images["images"][0]["signature"]["signer"]["identity"], id);
    let inspect = site.ok(&["inspect", &image]);
    assert!(
        inspect.contains(&format!(
            "Signature:   bundle-keyless by {id} (issuer {issuer})"
        )),
        "{inspect}"
    );
}

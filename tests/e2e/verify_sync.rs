//! `[job.verify]`: a sync job against the real distribution registry copies only the images
//! whose signatures (cosign `.sig` tags signed with openssl, pushed with skopeo) satisfy
//! its keys; a refused image is reported by name, not tagged, and checked again on the
//! next run.

use super::util::*;
use super::verify::{key, push_corpus, push_signed, s, signature_kind};

#[test]
fn sync_job_verify_copies_the_signed_and_refuses_the_unsigned_until_it_is_signed() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let multi = ref_digest(&layout, "multi");
    let zstd = ref_digest(&layout, "zstd");
    push_corpus(&env, &h, &[("multi", "x/signed"), ("zstd", "x/unsigned")]);
    let (signer, _) = key(&env, "signer");
    push_signed(&env, &signer, &multi, &h, "x/signed");

    // The key is named relative to the config file.
    let site = Env::new();
    std::fs::copy(env.path("signer.pub"), site.path("signer.pub")).unwrap();
    let cfg = site.path("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[job]]\nname = \"signed-only\"\nsource = \"docker://{h}\"\ndestination = \"store:\"\n\
             referrers = true\n[job.repositories]\nallow = [\"x/*\"]\n[job.verify]\nkeys = [\"signer.pub\"]\n"
        ),
    )
    .unwrap();
    let run = || {
        let out = site.run(&["--json", "sync", "--config", s(&cfg)]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report[0].clone())
    };
    let unsigned = |r: &serde_json::Value| {
        let refused = r["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{r}");
        assert!(
            refused[0]["source"]
                .as_str()
                .unwrap()
                .ends_with("x/unsigned:1"),
            "{r}"
        );
        let reason = refused[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("has no signature") && reason.contains(&zstd),
            "{reason}"
        );
    };
    let (code, r) = run();
    assert_eq!(code, Some(1), "{r}");
    unsigned(&r);
    // The signed image is copied; its cosign tag travels with it, not as an image checked
    // on its own.
    let copied = r["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{r}");
    assert!(
        copied[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("x/signed:1"),
        "{r}"
    );
    assert_eq!(copied[0]["digest"], multi.as_str());
    let tagged = site.images();
    assert!(
        tagged.iter().any(|(_, d)| d == &multi) && !tagged.iter().any(|(_, d)| d == &zstd),
        "{tagged:?}"
    );
    assert_eq!(signature_kind(&site, &multi), "cosign-key");

    // Run again: still refused (no state was recorded for it), the signed one skipped.
    let (code, r) = run();
    assert_eq!(code, Some(1), "{r}");
    unsigned(&r);
    assert!(r["copied"].as_array().unwrap().is_empty(), "{r}");
    let status = site.ok(&["sync", "status", "--config", s(&cfg)]);
    assert!(
        status.contains("signed-only: refused") && status.contains("x/unsigned:1"),
        "{status}"
    );

    // A job that gains [job.verify] checks again what it copied without one: the unsigned
    // image is refused rather than skipped as unchanged, the signed one admitted (its
    // verdict recorded though nothing moves).
    let plain = Env::new();
    std::fs::copy(env.path("signer.pub"), plain.path("signer.pub")).unwrap();
    let plain_cfg = plain.path("sync.toml");
    let job = format!(
        "[[job]]\nname = \"mirror\"\nsource = \"docker://{h}\"\ndestination = \"store:\"\n\
         [job.repositories]\nallow = [\"x/*\"]\n"
    );
    std::fs::write(&plain_cfg, &job).unwrap();
    plain.ok(&["sync", "--config", s(&plain_cfg)]);
    std::fs::write(
        &plain_cfg,
        format!("{job}[job.verify]\nkeys = [\"signer.pub\"]\n"),
    )
    .unwrap();
    let out = plain.run(&["--json", "sync", "--config", s(&plain_cfg)]);
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    unsigned(&r[0]);
    assert_eq!(signature_kind(&plain, &multi), "cosign-key");

    // Signed at the source: the next run copies it.
    push_signed(&env, &signer, &zstd, &h, "x/unsigned");
    let (code, r) = run();
    assert_eq!(code, Some(0), "{r}");
    assert!(r["refused"].as_array().unwrap().is_empty(), "{r}");
    let copied = r["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{r}");
    assert_eq!(copied[0]["digest"], zstd.as_str());
    assert!(site.images().iter().any(|(_, d)| d == &zstd));
}

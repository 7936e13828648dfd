//! Round trips through layouts and tarballs keep every digest; exports are reproducible.

use std::os::unix::fs::MetadataExt;

use super::util::*;

fn import_corpus(env: &Env) -> sealift_fixtures::Layout {
    let (dir, layout) = corpus_dir(env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    layout
}

fn all_refs() -> Vec<String> {
    sealift_fixtures::CORPUS_REFS
        .iter()
        .map(|n| format!("corpus:{n}"))
        .collect()
}

#[test]
fn corpus_imports_with_every_ref_and_verifies() {
    let env = Env::new();
    let layout = import_corpus(&env);
    let images = env.images();
    for name in sealift_fixtures::CORPUS_REFS {
        let want = (format!("corpus:{name}"), ref_digest(&layout, name));
        assert!(images.contains(&want), "{want:?} missing from {images:?}");
    }
    env.ok(&["verify", "--full"]);
}

#[test]
fn tarballs_round_trip_and_are_reproducible() {
    let env = Env::new();
    import_corpus(&env);
    let before = env.images();
    for ext in ["tar", "tar.gz", "tar.zst"] {
        let a = env.path(&format!("a.{ext}"));
        let b = env.path(&format!("b.{ext}"));
        let mut args = vec!["export".to_string(), "--referrers".into(), "-o".into()];
        args.push(a.display().to_string());
        args.extend(all_refs());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&argv);
        let mut args_b = argv.clone();
        let bs = b.display().to_string();
        args_b[3] = &bs;
        env.ok(&args_b);
        assert_eq!(
            file_digest(&a),
            file_digest(&b),
            "{ext} export is not reproducible"
        );

        let other = Env::new();
        other.ok(&["import", a.to_str().unwrap()]);
        assert_eq!(
            other.images(),
            before,
            "{ext} round trip changed refs or digests"
        );
        other.ok(&["verify", "--full"]);
        // Exporting again from the second store gives the same bytes.
        let c = other.path(&format!("c.{ext}"));
        let mut args_c = argv.clone();
        let cs = c.display().to_string();
        args_c[3] = &cs;
        other.ok(&args_c);
        assert_eq!(
            file_digest(&a),
            file_digest(&c),
            "{ext} differs after a round trip"
        );
    }
}

#[test]
fn referrers_travel_with_their_subject() {
    let env = Env::new();
    let layout = import_corpus(&env);
    let out = env.path("out.tar");
    env.ok(&[
        "export",
        "--referrers",
        "-o",
        out.to_str().unwrap(),
        "corpus:zstd",
    ]);
    let other = Env::new();
    other.ok(&["import", out.to_str().unwrap()]);
    let store = sealift_store::Store::open(other.store()).unwrap();
    let subject: sealift_oci::Digest = ref_digest(&layout, "zstd").parse().unwrap();
    let referrers = store.referrers(&subject).unwrap();
    assert_eq!(referrers.len(), 1, "the SBOM should have come along");
    let (_, view) = store.manifest(&referrers[0]).unwrap();
    assert_eq!(view.artifact_type.as_deref(), Some("application/spdx+json"));
    assert_eq!(view.subject.unwrap().digest, subject);
    // Without --referrers it stays behind.
    let plain = env.path("plain.tar");
    drop(store);
    env.ok(&["export", "-o", plain.to_str().unwrap(), "corpus:zstd"]);
    let third = Env::new();
    third.ok(&["import", plain.to_str().unwrap()]);
    let store = sealift_store::Store::open(third.store()).unwrap();
    assert!(store.referrers(&subject).unwrap().is_empty());
}

#[test]
fn directory_export_hard_links_blobs_from_the_store() {
    let env = Env::new();
    let layout = import_corpus(&env);
    let out = env.path("out");
    env.ok(&["export", "-o", out.to_str().unwrap(), "corpus:shared"]);
    let d = ref_digest(&layout, "shared");
    let hex = d.trim_start_matches("sha256:");
    let exported = std::fs::metadata(out.join("blobs/sha256").join(hex)).unwrap();
    let stored = std::fs::metadata(env.store().join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        exported.ino(),
        stored.ino(),
        "expected a hard link into the store"
    );
    assert_eq!(
        std::fs::read(out.join("blobs/sha256").join(hex)).unwrap(),
        layout.blobs[&d].bytes
    );
}

#[test]
fn shared_layers_are_stored_once() {
    let env = Env::new();
    import_corpus(&env);
    // Only tagged images, no referrers: then physical = logical - what sharing saves.
    let tar = env.path("three.tar");
    env.ok(&[
        "export",
        "-o",
        tar.to_str().unwrap(),
        "corpus:multi",
        "corpus:docker",
        "corpus:shared",
    ]);
    let other = Env::new();
    other.ok(&["import", tar.to_str().unwrap()]);
    let du: serde_json::Value = serde_json::from_str(&other.ok(&["--json", "du"])).unwrap();
    let logical = du["logical"].as_u64().unwrap();
    let physical = du["physical"].as_u64().unwrap();
    let shared = du["shared"].as_array().unwrap();
    let saved: u64 = shared
        .iter()
        .map(|s| (s["images"].as_u64().unwrap() - 1) * s["size"].as_u64().unwrap())
        .sum();
    assert!(saved > 0);
    assert_eq!(physical, logical - saved, "{du:#}");
    assert!(
        shared.iter().any(|s| s["images"].as_u64().unwrap() == 3),
        "the base layer is in 3 images: {shared:?}"
    );
}

#[test]
fn non_distributable_layers_may_be_absent() {
    let env = Env::new();
    let layout = import_corpus(&env);
    let out = env.path("nd.tar");
    env.ok(&[
        "export",
        "-o",
        out.to_str().unwrap(),
        "corpus:nondist",
        "corpus:foreign",
    ]);
    let other = Env::new();
    other.ok(&["import", out.to_str().unwrap()]);
    let images = other.images();
    assert!(images.contains(&("corpus:nondist".into(), ref_digest(&layout, "nondist"))));
    assert!(images.contains(&("corpus:foreign".into(), ref_digest(&layout, "foreign"))));
    other.ok(&["verify"]);
}

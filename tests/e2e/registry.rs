//! `sealift push`, `pull` and `copy` against the real distribution registry, checked with
//! skopeo.

use super::util::*;

#[test]
fn push_pull_and_copy_keep_digests() {
    let env = Env::new();
    let layout = imported_corpus(&env);
    let reg = sealift_testkit::Registry::start();
    let h = reg.host();
    let multi = ref_digest(&layout, "multi");

    let out: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "push",
        "corpus:multi",
        &format!("docker://{h}/x/multi:1"),
    ]))
    .unwrap();
    assert_eq!(out["destination_digest"], multi.as_str());
    assert!(out["bytes_moved"].as_u64().unwrap() > 0);
    let raw = tool_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/x/multi:1"),
        ],
    );
    assert_eq!(raw, layout.blobs[&multi].bytes);

    // Pull into a second store: named by its full reference.
    let other = Env::new();
    other.ok(&["pull", &format!("{h}/x/multi:1")]);
    assert_eq!(
        other.images(),
        vec![(format!("{h}/x/multi:1"), multi.clone())]
    );
    other.ok(&["verify", "--full"]);
    // Pulling again moves nothing.
    let again: serde_json::Value =
        serde_json::from_str(&other.ok(&["--json", "pull", &format!("{h}/x/multi:1")])).unwrap();
    assert_eq!(again["up_to_date"], true, "{again}");

    // Registry -> layout with one platform: the index bytes are kept (sparse).
    let out_dir = env.path("arm64");
    env.ok(&[
        "copy",
        "--platform",
        "linux/arm64",
        &format!("docker://{h}/x/multi:1"),
        &format!("oci:{}:m", out_dir.display()),
    ]);
    let raw = tool_ok(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:m", out_dir.display())],
    );
    assert_eq!(raw, layout.blobs[&multi].bytes);

    // Errors name what was wrong and leave nothing behind.
    let err = other.fails(&["pull", &format!("{h}/x/nothing:1")]);
    assert!(err.contains("x/nothing"), "{err}");
    assert_eq!(other.images().len(), 1);
}

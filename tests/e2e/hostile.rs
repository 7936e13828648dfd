//! Hostile inputs: each gets a clear error naming what was wrong, and the store is left as
//! it was (same images, verify clean).

use std::path::{Path, PathBuf};

use super::util::*;

/// Append an entry with a raw name (bypassing the tar crate's own path checks, which would
/// refuse the very names these tests need).
fn raw_entry(
    b: &mut tar::Builder<std::fs::File>,
    name: &str,
    data: &[u8],
    kind: tar::EntryType,
    link: Option<&str>,
) {
    let mut h = tar::Header::new_old();
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    if let Some(l) = link {
        let lb = l.as_bytes();
        h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A tarball of the "shared" image's layout, with `extra` entries first.
fn tar_with(env: &Env, name: &str, extra: &dyn Fn(&mut tar::Builder<std::fs::File>)) -> PathBuf {
    let layout = sealift_fixtures::corpus();
    let path = env.path(name);
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    extra(&mut b);
    let mut one = sealift_fixtures::Layout::new();
    let shared = ref_digest(&layout, "shared");
    for d in graph(&layout, &shared) {
        one.add(layout.blobs[&d].clone());
    }
    let entry = layout
        .index
        .iter()
        .find(|e| e["digest"].as_str() == Some(shared.as_str()))
        .unwrap()
        .clone();
    one.index.push(entry);
    for (d, blob) in &one.blobs {
        raw_entry(
            &mut b,
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            &blob.bytes,
            tar::EntryType::Regular,
            None,
        );
    }
    raw_entry(
        &mut b,
        "oci-layout",
        sealift_fixtures::OCI_LAYOUT_BYTES,
        tar::EntryType::Regular,
        None,
    );
    raw_entry(
        &mut b,
        "index.json",
        &one.index_json(),
        tar::EntryType::Regular,
        None,
    );
    b.finish().unwrap();
    path
}

/// Digests reachable from a manifest in a fixture layout.
fn graph(layout: &sealift_fixtures::Layout, root: &str) -> Vec<String> {
    let mut out = vec![root.to_string()];
    let v: serde_json::Value = serde_json::from_slice(&layout.blobs[root].bytes).unwrap();
    for key in ["manifests", "layers"] {
        for d in v[key].as_array().into_iter().flatten() {
            let d = d["digest"].as_str().unwrap().to_string();
            if layout.blobs.contains_key(&d) {
                out.extend(graph_or_leaf(layout, &d));
            }
        }
    }
    if let Some(c) = v["config"]["digest"].as_str() {
        out.push(c.to_string());
    }
    out
}

fn graph_or_leaf(layout: &sealift_fixtures::Layout, d: &str) -> Vec<String> {
    let b = &layout.blobs[d];
    if b.media_type.contains("manifest") || b.media_type.contains("index") {
        graph(layout, d)
    } else {
        vec![d.to_string()]
    }
}

/// Import must fail with `needle` in the message, and leave the store as it was.
fn refused(env: &Env, path: &Path, needle: &str) {
    let before = env.images();
    let err = env.fails(&["import", path.to_str().unwrap(), "--tag", "bad:x"]);
    assert!(
        err.contains(needle),
        "error should mention {needle:?}:\n{err}"
    );
    assert_eq!(
        env.images(),
        before,
        "a refused import changed the store's images"
    );
    env.ok(&["verify"]);
}

fn baseline(env: &Env) {
    let (dir, _) = corpus_dir(env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
}

#[test]
fn a_good_tar_from_this_helper_imports() {
    let env = Env::new();
    let p = tar_with(&env, "good.tar", &|_| {});
    env.ok(&["import", p.to_str().unwrap(), "--tag", "good:x"]);
    // The entry's ref name is the bare tag "shared": it takes --tag's repository.
    assert!(
        env.images().iter().any(|(r, _)| r == "good:shared"),
        "{:?}",
        env.images()
    );
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    let env = Env::new();
    baseline(&env);
    let p = tar_with(&env, "dotdot.tar", &|b| {
        raw_entry(b, "../../evil", b"x", tar::EntryType::Regular, None)
    });
    refused(&env, &p, "../../evil");
    let p = tar_with(&env, "abs.tar", &|b| {
        raw_entry(b, "/tmp/evil", b"x", tar::EntryType::Regular, None)
    });
    refused(&env, &p, "/tmp/evil");
    assert!(!Path::new("/tmp/evil").exists() || std::fs::read("/tmp/evil").unwrap() != b"x");
}

#[test]
fn symlinks_and_hard_links_are_refused() {
    let env = Env::new();
    baseline(&env);
    let p = tar_with(&env, "sym.tar", &|b| {
        raw_entry(
            b,
            "blobs/sha256/link",
            b"",
            tar::EntryType::Symlink,
            Some("/etc/passwd"),
        )
    });
    refused(&env, &p, "symlink");
    let p = tar_with(&env, "hard.tar", &|b| {
        raw_entry(
            b,
            "index.json",
            b"",
            tar::EntryType::Link,
            Some("/etc/passwd"),
        )
    });
    refused(&env, &p, "hard link");
}

#[test]
fn a_blob_that_does_not_match_its_name_is_refused() {
    let env = Env::new();
    baseline(&env);
    let fake = format!("{:064x}", 7);
    let p = tar_with(&env, "wrong.tar", &|b| {
        raw_entry(
            b,
            &format!("blobs/sha256/{fake}"),
            b"not what the name says",
            tar::EntryType::Regular,
            None,
        )
    });
    refused(&env, &p, &fake);
}

#[test]
fn truncated_tarballs_are_refused() {
    let env = Env::new();
    baseline(&env);
    let p = tar_with(&env, "full.tar", &|_| {});
    let bytes = std::fs::read(&p).unwrap();
    // Cuts inside entries (a cut that only drops the end-of-archive blocks leaves every
    // entry whole, and is imported: each blob is still verified by its digest).
    for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() * 2 / 3] {
        let t = env.path(&format!("cut-{cut}.tar"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let before = env.images();
        let err = env.fails(&["import", t.to_str().unwrap(), "--tag", "bad:x"]);
        assert!(!err.trim().is_empty());
        assert_eq!(env.images(), before);
        env.ok(&["verify"]);
    }
}

#[test]
fn missing_index_json_is_refused() {
    let env = Env::new();
    baseline(&env);
    let path = env.path("noindex.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    raw_entry(
        &mut b,
        "oci-layout",
        sealift_fixtures::OCI_LAYOUT_BYTES,
        tar::EntryType::Regular,
        None,
    );
    b.finish().unwrap();
    refused(&env, &path, "index.json");
    let dir = env.path("noindex-dir");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    refused(&env, &dir, "index.json");
}

#[test]
fn manifests_over_4_mib_are_refused() {
    let env = Env::new();
    baseline(&env);
    let mut layout = sealift_fixtures::Layout::new();
    let mut big = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    big.extend(br#""}}"#);
    let desc = layout.add(sealift_fixtures::Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        big,
    ));
    let digest = desc["digest"].as_str().unwrap().to_string();
    layout.add_ref(desc, Some("big"));
    let path = env.path("big.tar");
    layout
        .write_tar(&path, sealift_fixtures::TarCompression::None)
        .unwrap();
    let before = env.images();
    let err = env.fails(&["import", path.to_str().unwrap(), "--tag", "bad:x"]);
    assert!(err.contains(&digest) && err.contains("4 MiB"), "{err}");
    assert_eq!(env.images(), before);
}

#[test]
fn symlinked_blobs_in_a_layout_dir_are_refused() {
    let env = Env::new();
    baseline(&env);
    let scratch = Env::new();
    let (dir, layout) = corpus_dir(&scratch);
    let shared = ref_digest(&layout, "shared");
    let v: serde_json::Value = serde_json::from_slice(&layout.blobs[&shared].bytes).unwrap();
    let layer = v["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let p = dir.join("blobs/sha256").join(&layer);
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
    refused(&env, &dir, "symlink");
}

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
        let ingest = std::fs::read_dir(env.store().join("ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0);
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

/// A split bundle of the corpus in its own folder: (folder, parts, checksum file), in a
/// store that is then emptied so "nothing imported" is visible as zero blobs.
fn split_bundle(env: &Env) -> (PathBuf, Vec<PathBuf>, PathBuf) {
    let src = Env::new();
    baseline(&src);
    let dir = env.path("split");
    std::fs::create_dir(&dir).unwrap();
    let base = dir.join("b.tar");
    let out: serde_json::Value = serde_json::from_str(&src.ok(&[
        "--json",
        "export",
        "--split",
        "8K",
        "-o",
        base.to_str().unwrap(),
        "corpus:multi",
        "corpus:shared",
    ]))
    .unwrap();
    let parts: Vec<PathBuf> = out["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    assert!(parts.len() >= 3, "{out}");
    (dir, parts, base.with_extension("tar.sha256"))
}

/// Import of the split bundle at `first` fails naming `needle`; the store stays empty.
fn split_refused(env: &Env, first: &Path, needle: &str) {
    let err = env.fails(&["import", first.to_str().unwrap()]);
    assert!(
        err.contains(needle),
        "error should mention {needle:?}:\n{err}"
    );
    assert!(env.images().is_empty());
    let du: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "du"])).unwrap();
    assert_eq!(
        du["blobs"], 0,
        "parts are checked before anything is imported: {du}"
    );
}

#[test]
fn damaged_split_bundles_are_refused_before_anything_is_imported() {
    let env = Env::new();
    let (dir, parts, sums) = split_bundle(&env);
    let good = std::fs::read(&parts[1]).unwrap();

    // Truncated part.
    std::fs::write(&parts[1], &good[..good.len() / 2]).unwrap();
    split_refused(&env, &parts[0], "b.tar.001");
    // Same length, one byte changed.
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    std::fs::write(&parts[1], &flipped).unwrap();
    split_refused(&env, &parts[0], "b.tar.001");
    std::fs::write(&parts[1], &good).unwrap();

    // Missing part.
    let last = parts.last().unwrap();
    let kept = std::fs::read(last).unwrap();
    std::fs::remove_file(last).unwrap();
    split_refused(&env, &dir, "missing");
    std::fs::write(last, &kept).unwrap();

    // A part replaced by a symlink to a file with the right bytes is still refused.
    let elsewhere = env.path("elsewhere");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::remove_file(&parts[1]).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &parts[1]).unwrap();
    split_refused(&env, &parts[0], "not a regular file");
    std::fs::remove_file(&parts[1]).unwrap();
    std::fs::write(&parts[1], &good).unwrap();

    // A checksum file naming a part elsewhere (traversal), or out of order.
    let text = std::fs::read_to_string(&sums).unwrap();
    std::fs::write(&sums, text.replacen("b.tar.000", "../b.tar.000", 1)).unwrap();
    split_refused(&env, &parts[0], "../b.tar.000");
    std::fs::write(&sums, text.replacen("b.tar.001", "b.tar.002", 1)).unwrap();
    split_refused(&env, &parts[0], "expected part");
    // A wrong checksum.
    let bad = format!("{:064x}", 1);
    let first_hex = text.split_whitespace().next().unwrap();
    std::fs::write(&sums, text.replacen(first_hex, &bad, 1)).unwrap();
    split_refused(&env, &parts[0], &bad);
    // No checksum file at all: the first part alone is not trusted.
    std::fs::remove_file(&sums).unwrap();
    split_refused(&env, &parts[0], "b.tar.sha256");

    // Restored, it imports.
    std::fs::write(&sums, &text).unwrap();
    env.ok(&["import", parts[0].to_str().unwrap()]);
    assert_eq!(env.images().len(), 2);
    env.ok(&["verify", "--full"]);
}

#[test]
fn damaged_inventories_are_refused_by_name() {
    let env = Env::new();
    baseline(&env);
    let inv = env.path("site.inv");
    env.ok(&["inventory", "-o", inv.to_str().unwrap()]);
    let good = std::fs::read(&inv).unwrap();
    let out = env.path("x.tar");
    let export = |bytes: &[u8], needle: &str| {
        std::fs::write(&inv, bytes).unwrap();
        let err = env.fails(&[
            "export",
            "--base",
            inv.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "corpus:shared",
        ]);
        assert!(
            err.contains("site.inv") && err.contains(needle),
            "{needle}: {err}"
        );
        assert!(!out.exists());
    };
    export(&good[..good.len() - 1], "corrupt");
    export(b"", "too short");
    export(&[b"x".repeat(100).as_slice()].concat(), "magic");
    let mut v2 = good.clone();
    v2[18] = 2;
    export(&v2, "version 2");
    // An inventory with a digest left out of order but a trailer recomputed to match.
    let mut swapped = good[..good.len() - 32].to_vec();
    let (a, b) = (27, 27 + 33);
    let first: Vec<u8> = swapped[a..b].to_vec();
    let second: Vec<u8> = swapped[b..b + 33].to_vec();
    swapped[a..b].copy_from_slice(&second);
    swapped[b..b + 33].copy_from_slice(&first);
    use sha2::Digest;
    let trailer = sha2::Sha256::digest(&swapped);
    swapped.extend_from_slice(&trailer);
    export(&swapped, "sorted");
}

/// One image, `deep/chain:1`, an index chain `depth` manifests deep: as a `.tar.gz` and as a
/// directory. Returns both and the top digest.
fn deep_layout(env: &Env, depth: usize) -> (PathBuf, PathBuf, String) {
    let mut layout = sealift_fixtures::Layout::new();
    let top = sealift_fixtures::deep_chain(&mut layout, depth);
    let digest = top["digest"].as_str().unwrap().to_string();
    layout.add_ref(top, Some("deep/chain:1"));
    let tar = env.path(&format!("deep-{depth}.tar.gz"));
    layout
        .write_tar(&tar, sealift_fixtures::TarCompression::Gzip)
        .unwrap();
    let dir = env.path(&format!("deep-{depth}"));
    layout.write_dir(&dir).unwrap();
    (tar, dir, digest)
}

#[test]
fn deep_index_chains_are_an_error_not_an_abort() {
    let env = Env::new();
    baseline(&env);
    let (tar, dir, top) = deep_layout(&env, 10_000);
    for p in [&tar, &dir] {
        let before = env.images();
        let out = env.run(&["import", p.to_str().unwrap()]);
        // A stack overflow is SIGABRT: no exit code at all.
        assert_eq!(out.status.code(), Some(1), "{}: {:?}", p.display(), out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nests more than 16 manifests deep (sha256:"),
            "{err}"
        );
        if p == &dir {
            // Walked from index.json: named by image and root.
            assert!(
                err.contains("image deep/chain:1") && err.contains(&top),
                "{err}"
            );
        } else {
            // Streamed in any order: refused by the entry that made a chain too deep, once
            // 17 of its manifests are in, not after 10,000.
            assert!(err.contains("blobs/sha256/"), "{err}");
        }
        assert_eq!(env.images(), before);
        env.ok(&["verify"]);
    }
    // The limit itself is fine.
    let (tar, _, top) = deep_layout(&env, 16);
    env.ok(&["import", tar.to_str().unwrap()]);
    assert!(env
        .images()
        .contains(&("deep/chain:1".to_string(), top.clone())));
    env.ok(&["inspect", "deep/chain:1"]);
    env.ok(&["verify"]);
}

#[test]
fn an_error_names_its_cause_once() {
    let env = Env::new();
    let mut index = br#"{"schemaVersion":2,"manifests":[],"annotations":{"x":""#.to_vec();
    index.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    index.extend(br#""}}"#);
    let path = env.path("bigindex.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    raw_entry(&mut b, "index.json", &index, tar::EntryType::Regular, None);
    b.finish().unwrap();
    let err = env.fails(&["import", path.to_str().unwrap()]);
    assert_eq!(err.matches("over the 4 MiB limit").count(), 1, "{err}");
    assert!(err.contains("index.json"), "{err}");
}

#[test]
fn a_directory_import_does_not_speak_of_tar_entries() {
    let env = Env::new();
    let scratch = Env::new();
    let (dir, layout) = corpus_dir(&scratch);
    let shared = ref_digest(&layout, "shared");
    let p = dir
        .join("blobs/sha256")
        .join(shared.trim_start_matches("sha256:"));
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
    let err = env.fails(&["import", dir.to_str().unwrap(), "--tag", "bad:x"]);
    assert!(
        err.contains("symlink") && err.contains(p.to_str().unwrap()),
        "{err}"
    );
    assert!(!err.contains("tar entry"), "{err}");
}

#[test]
fn a_closed_stdout_is_success() {
    let env = Env::new();
    let sample = root().join("examples/sample-layout");
    let config = env.path("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"sample\"\nsource = \"oci:{}\"\ndestination = \"store:\"\n",
            sample.display()
        ),
    )
    .unwrap();
    for _ in 0..30 {
        env.ok(&["sync", "--config", config.to_str().unwrap()]);
    }
    // More than stdout's buffer (8 KiB), so the pipe breaks in the middle of the document.
    let history = env.ok(&["--json", "sync", "history", "-n", "50"]);
    assert!(history.len() > 16 << 10, "{} bytes", history.len());
    // A pipe whose reader is gone before anything is written: every write is EPIPE, as
    // for `| head -c1` once head has exited, without a race.
    for args in [
        &["--json", "sync", "history", "-n", "50"][..],
        &["--json", "images"][..],
        &["images"][..],
    ] {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { libc::close(fds[0]) };
        let writer = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        let out = env
            .cmd()
            .args(args)
            .stdout(writer)
            .output()
            .expect("running sealift");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}: {err}", out.status);
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn an_inflated_blob_entry_is_refused_before_it_is_written() {
    let env = Env::new();
    baseline(&env);
    // Blob entry after index.json and its manifest (refused at its header) and before them
    // (held back, then refused once the manifest has declared its size): 1 GiB of zeros
    // claimed, about 1 MiB of .tar.gz.
    for blob_first in [false, true] {
        let (mut stream, entry) = sealift_fixtures::inflated_layer_tar(1 << 30, blob_first);
        let path = env.path(&format!("inflated-{blob_first}.tar.gz"));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut stream, &mut gz).unwrap();
        gz.finish().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 16 << 20);
        let before = env.images();
        let err = env.fails(&["import", path.to_str().unwrap()]);
        assert!(
            err.contains(&entry)
                && err.contains("is 1073741824 bytes")
                && err.contains("declares 1024")
                && err.contains("before writing any of it"),
            "{err}"
        );
        assert_eq!(env.images(), before);
        let ingest = std::fs::read_dir(env.store().join("ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0);
        env.ok(&["verify"]);
    }
}

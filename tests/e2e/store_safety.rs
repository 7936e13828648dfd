//! The store survives kills during GC, a full disk, sled's unfinished snapshots, and keeps
//! credentials out of its directory (issue 9, items 1, 2, 3 and 8).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::util::*;

fn import_corpus(env: &Env, dir: &Path) {
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
}

/// Every tag with its status from `images --json`.
fn statuses(env: &Env) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "images"])).unwrap();
    let mut out: Vec<(String, String)> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn all_ok(env: &Env) -> bool {
    statuses(env).iter().all(|(_, s)| s == "ok")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A store with the corpus imported and every other tag removed: what GC then collects.
fn half_removed(env: &Env, corpus: &Path) -> usize {
    import_corpus(env, corpus);
    let refs: Vec<String> = env.images().into_iter().map(|(r, _)| r).collect();
    for r in refs.iter().step_by(2) {
        env.ok(&["rm", r]);
    }
    let dry: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "gc", "--dry-run", "--grace", "0"])).unwrap();
    dry["removed"].as_array().unwrap().len()
}

/// Item 1: kill -9 at chosen points of GC (by progress: the n-th deletion or unlink), then
/// verify and re-import. Every point leaves a verify-clean store and the re-import
/// completes with every image ok.
#[test]
fn gc_killed_at_every_step_leaves_a_clean_store() {
    let scratch = Env::new();
    let (corpus, layout) = corpus_dir(&scratch);
    let removed = half_removed(&Env::new(), &corpus);
    assert!(removed >= 8, "GC would remove only {removed} items");
    let mut kills = 0;
    for point in ["gc.after_delete", "gc.before_unlink", "gc.after_unlink"] {
        for n in 1..=removed {
            let env = Env::new();
            assert_eq!(half_removed(&env, &corpus), removed);
            let out = env
                .cmd()
                .args(["gc", "--grace", "0"])
                .env("SEALIFT_FAULT", format!("{point}:{n}"))
                .output()
                .unwrap();
            assert_eq!(
                out.status.signal(),
                Some(9),
                "gc with SEALIFT_FAULT={point}:{n} was not killed: {}",
                text(&out)
            );
            kills += 1;
            let v = env.run(&["verify"]);
            assert!(
                v.status.success(),
                "verify after a kill at {point}:{n}: {}",
                text(&v)
            );
            assert!(all_ok(&env), "{point}:{n}: {:?}", statuses(&env));
            import_corpus(&env, &corpus);
            assert!(all_ok(&env), "{point}:{n}: {:?}", statuses(&env));
            for name in sealift_fixtures::CORPUS_REFS {
                let want = (format!("corpus:{name}"), ref_digest(&layout, name));
                assert!(
                    env.images().contains(&want),
                    "{point}:{n}: {want:?} missing"
                );
            }
            let v = env.run(&["verify", "--full"]);
            assert!(
                v.status.success(),
                "verify --full after re-import ({point}:{n}): {}",
                text(&v)
            );
            // The next GC finishes the job: nothing but the live images is left.
            env.ok(&["gc", "--grace", "0"]);
            env.ok(&["verify"]);
        }
    }
    eprintln!("{kills} kills at 3 points x {removed} deletions: all verify-clean");
}

/// The SEALIFT_FAULT hook only fires for a named point and a count >= 1: a stray value
/// does nothing.
#[test]
fn a_malformed_fault_variable_kills_nothing() {
    let scratch = Env::new();
    let (corpus, _) = corpus_dir(&scratch);
    for v in [
        "gc.after_delete",
        "gc.after_delete:0",
        "gc.nowhere:1",
        "1",
        "",
    ] {
        let env = Env::new();
        half_removed(&env, &corpus);
        let out = env
            .cmd()
            .args(["gc", "--grace", "0"])
            .env("SEALIFT_FAULT", v)
            .output()
            .unwrap();
        assert!(out.status.success(), "SEALIFT_FAULT={v:?}: {}", text(&out));
    }
}

/// Deletes the file of the first layer blob of `corpus:multi` (as a crash of an older GC, or
/// a hand, would leave it) and returns its digest.
fn delete_a_layer_file(env: &Env) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "inspect", "corpus:zstd"])).unwrap();
    let layer = find_layer(&v).unwrap_or_else(|| panic!("no layer digest in {v}"));
    let path = env
        .store()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    std::fs::remove_file(&path).unwrap();
    layer
}

fn find_layer(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(mt), Some(d)) = (m.get("mediaType"), m.get("digest")) {
                if mt.as_str().is_some_and(|m| m.contains("layer")) {
                    return d.as_str().map(str::to_string);
                }
            }
            m.values().find_map(find_layer)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_layer),
        _ => None,
    }
}

/// Items 1 and 3: a record whose file is gone shows as broken in `images`, and a re-import
/// writes the file again instead of skipping it.
#[test]
fn a_missing_file_shows_broken_and_a_reimport_repairs_it() {
    let env = Env::new();
    let (corpus, _) = corpus_dir(&env);
    import_corpus(&env, &corpus);
    let layer = delete_a_layer_file(&env);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "images"])).unwrap();
    let zstd = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "corpus:zstd")
        .unwrap();
    assert_eq!(zstd["status"], "broken", "{zstd}");
    assert_eq!(zstd["missing_files"], serde_json::json!([layer]), "{zstd}");
    let table = env.ok(&["images"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("corpus:zstd"))
        .unwrap();
    assert!(line.ends_with("broken"), "{table}");
    // verify agrees.
    let out = env.run(&["verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&layer),
        "{}",
        text(&out)
    );

    let out = env.run(&["import", corpus.to_str().unwrap(), "--tag", "corpus:latest"]);
    assert!(out.status.success(), "re-import: {}", text(&out));
    assert!(all_ok(&env), "{:?}", statuses(&env));
    env.ok(&["verify", "--full"]);
}

/// Item 1: after a crash, opening the store finds records whose file is gone and drops
/// them, so the images needing them show as broken and a re-import fetches them again.
#[test]
fn recovery_after_a_crash_drops_records_without_files() {
    let env = Env::new();
    let (corpus, _) = corpus_dir(&env);
    half_removed(&env, &corpus);
    import_corpus(&env, &corpus);
    // Remove one tag again so the GC below has something to delete (and a point to die at).
    env.ok(&["rm", "corpus:multi"]);
    let layer = delete_a_layer_file(&env);
    let out = env
        .cmd()
        .args(["gc", "--grace", "0"])
        .env("SEALIFT_FAULT", "gc.after_delete:1")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out));
    // The crash marker is set: this open recovers, finding the record without a file.
    let st = statuses(&env);
    assert!(
        st.contains(&("corpus:zstd".into(), "broken".into())),
        "{st:?}"
    );
    let out = env.run(&["--json", "verify"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .all(|p| p["problem"] != "missing_file" && p["problem"] != "orphan_file"),
        "recovery left {problems:?}"
    );
    assert!(
        problems.iter().any(|p| p["child"] == layer.as_str()),
        "{problems:?}"
    );
    import_corpus(&env, &corpus);
    assert!(all_ok(&env), "{:?}", statuses(&env));
    env.ok(&["verify", "--full"]);
}

/// Item 2: an empty `snap.<lsn>.generating`, as sled 0.34 leaves it when killed or out of
/// space between creating the file and renaming it, does not stop a store of format 1
/// (sled) from opening: the first command upgrades it to format 2 with nothing lost.
/// The store is a real one written by sealift before format 2 (see the store crate's
/// `tests/store/upgrade.rs`).
#[test]
fn an_unfinished_sled_snapshot_does_not_stop_open() {
    let env = Env::new();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../store/tests/store/format1.tar.gz"
    );
    let f = std::fs::File::open(fixture).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(env.store())
        .unwrap();
    let leftover = sealift_testkit::leave_unfinished_sled_snapshot(&env.store());
    let out = env.run(&["images"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!leftover.exists());
    let images = env.images();
    assert_eq!(images.len(), 7, "{images:?}");
    assert!(images.contains(&(
        "corpus:multi".into(),
        "sha256:2bbec0344d5a356f37a887f191bf1b87800c08350da5a8ba03ec76b394fecd99".into()
    )));
    assert!(images.contains(&(
        "other/repo:v1".into(),
        "sha256:9b23c202a208dbe9a61db96ddb05d130f6e476ff4a3eb8f187192ff64355f83b".into()
    )));
    env.ok(&["verify", "--full"]);
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            text(&out)
        );
        Tmpfs { dir }
    }

    /// Fill the file system to the last byte.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let buf = vec![0x5a_u8; 64 * 1024];
        let mut chunk = buf.len();
        // Halve the chunk at each ENOSPC until not even one byte fits.
        while chunk > 0 {
            use std::io::Write;
            if f.write_all(&buf[..chunk]).is_err() {
                chunk /= 2;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn store_listing(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if e.path() != root.join("meta.redb") {
                out.push((e.path().display().to_string(), m.len()));
            }
        }
    }
    out.sort();
    out
}

/// Item 2: on a 100% full disk, read-only commands open the store and answer; nothing is
/// damaged; an import that runs out of space fails cleanly; and once space is back the store
/// is verify-clean with the same images.
#[test]
fn a_full_disk_neither_stops_reads_nor_damages_the_store() {
    let fs = Tmpfs::new("24m");
    let env = Env {
        dir: tempfile::tempdir_in(fs.dir.path()).unwrap(),
        setup: None,
    };
    let scratch = Env::new();
    let (corpus, _) = corpus_dir(&scratch);
    import_corpus(&env, &corpus);
    let images = env.images();
    let inspect_before = env.ok(&["--json", "inspect", "corpus:multi"]);
    let files_before = store_listing(&env.store());
    let filler = fs.fill();

    for round in 0..6 {
        for args in [
            &["--json", "images"][..],
            &["--json", "inspect", "corpus:multi"],
            &["verify"],
            &["du"],
        ] {
            let out = env.run(args);
            assert!(
                out.status.success(),
                "round {round}: {args:?} on a full disk: {}",
                text(&out)
            );
        }
        assert_eq!(env.images(), images, "round {round}");
        assert_eq!(
            env.ok(&["--json", "inspect", "corpus:multi"]),
            inspect_before
        );
    }
    // A write that cannot fit fails with an error, not a damaged store.
    let big = scratch.path("big");
    sealift_fixtures::big_layout_dir(&big, 4, 1 << 20, 7).unwrap();
    let out = env.run(&["import", big.to_str().unwrap(), "--tag", "big:1"]);
    assert!(
        !out.status.success(),
        "import on a full disk: {}",
        text(&out)
    );
    let v = env.run(&["verify"]);
    assert!(
        v.status.success(),
        "verify on a full disk after a failed import: {}",
        text(&v)
    );
    assert_eq!(env.images(), images);

    std::fs::remove_file(filler).unwrap();
    env.ok(&["verify", "--full"]);
    assert_eq!(env.images(), images);
    let blobs = |l: &[(String, u64)]| -> Vec<(String, u64)> {
        l.iter()
            .filter(|(p, _)| p.contains("/blobs/"))
            .cloned()
            .collect()
    };
    assert_eq!(blobs(&store_listing(&env.store())), blobs(&files_before));
}

/// Item 8: credentials given on the command line never reach the store directory nor the
/// "in use" error another user sees, and LOCK is the owner's alone.
#[test]
fn credentials_stay_out_of_the_store_and_the_in_use_error() {
    let env = Env::new();
    let (corpus, _) = corpus_dir(&env);
    import_corpus(&env, &corpus);
    let src = format!("oci:{}:multi", corpus.display());
    env.ok(&["copy", "--src-creds", "alice:s3cret", &src, "store:a:1"]);
    env.ok(&["copy", "--creds=bob:hunter2", &src, "store:b:1"]);

    // A registry that accepts connections and never answers keeps a copy holding the store.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = env
        .cmd()
        .args([
            "copy",
            "--dest-creds",
            "carol:pa55",
            "--src-creds=alice:s3cret",
            &format!("docker://127.0.0.1:{port}/x/y:1"),
            "store:c:1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = env.store().join("LOCK");
    let pid = child.id().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .starts_with(&pid)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "copy never took the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = env.fails(&["images"]);
    let _ = child.kill();
    let _ = child.wait();
    drop(listener);
    assert!(err.contains("in use by process"), "{err}");
    assert!(err.contains("--src-creds=alice:***"), "{err}");
    assert!(err.contains("--dest-creds carol:***"), "{err}");
    for secret in ["s3cret", "hunter2", "pa55"] {
        assert!(!err.contains(secret), "{err}");
    }

    let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "LOCK mode {mode:o}");
    let mut stack = vec![env.store()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            files += 1;
            let bytes = std::fs::read(e.path()).unwrap();
            for secret in ["s3cret", "hunter2", "pa55"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in {}",
                    e.path().display()
                );
            }
        }
    }
    assert!(files > 10);
}

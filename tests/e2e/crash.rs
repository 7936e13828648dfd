//! Crash safety: SIGKILL a large import at many points; the store always opens, verifies
//! clean, never shows a partial image, and the import completes when run again.

use std::path::Path;
use std::process::Child;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::util::*;

#[test]
fn killed_imports_leave_a_clean_store_and_resume() {
    let env = Env::new();
    let dir = env.path("big");
    let layers = 24;
    let layer_size = 4 << 20;
    let digest = sealift_fixtures::big_layout_dir(&dir, layers, layer_size, 42).unwrap();
    let tarball = env.path("big.tar");
    // The same layout as a tarball, to exercise the streaming path.
    let status = std::process::Command::new("tar")
        .args([
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    sealift_bin();

    // Kill points are chosen by progress, not by time, so they land mid-import on a fast
    // machine as on a slow one: after the k-th blob file appears in the store, and in half
    // the rounds only once the next blob's partial ingest file exists too.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    for round in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = (x % 20) as usize;
        let mid_blob = round % 2 == 1;
        let mut child = env
            .cmd()
            .args(["import", tarball.to_str().unwrap(), "--tag", "big:1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_progress(&env, &mut child, after, mid_blob);
        if child.try_wait().unwrap().is_none() {
            // Child::kill sends SIGKILL on Unix.
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
        let at = format!(
            "{after} blobs{}",
            if mid_blob { " + a partial one" } else { "" }
        );
        // The store opens and is consistent after every kill.
        let out = env.run(&["verify"]);
        assert!(
            out.status.success(),
            "round {round}: verify after kill at {at} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Either the image is complete and tagged, or it is not tagged at all.
        let images = env.images();
        assert!(
            images.is_empty() || images == vec![("big:big".to_string(), digest.clone())],
            "round {round}: unexpected images {images:?}"
        );
        if !images.is_empty() {
            env.ok(&["rm", "big:big"]);
        }
        // Start over so every kill lands mid-import; this also shows GC collects what a
        // killed import left (its lease died with it).
        env.ok(&["gc", "--grace", "0"]);
        let left: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "du"])).unwrap();
        assert_eq!(left["blobs"], 0, "round {round}: GC left {left}");
    }
    // 24 layers and at most 20 blobs before the kill: every run is still importing.
    assert_eq!(kills, 10, "only {kills} of 10 runs were killed mid-import");

    // Kill once more halfway, then re-run: it resumes, keeping what was committed.
    let mut child = env
        .cmd()
        .args(["import", tarball.to_str().unwrap(), "--tag", "big:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_progress(&env, &mut child, layers / 2, false);
    // A blob file is renamed in before its record commits; give that commit a moment.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let _ = child.wait();
    let report: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "import",
        tarball.to_str().unwrap(),
        "--tag",
        "big:1",
    ]))
    .unwrap();
    assert!(
        report["blobs_present"].as_u64().unwrap() > 0,
        "the re-run should keep what the killed run committed: {report}"
    );
    assert_eq!(env.images(), vec![("big:big".to_string(), digest)]);
    env.ok(&["verify", "--full"]);
}

/// Number of files directly in `dir` (0 if it does not exist yet).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits until the import in `child` has at least `blobs` blob files in the store (and, with
/// `partial`, a partial ingest file beside them), or until it exits. Panics after 2 minutes.
pub(super) fn wait_for_progress(env: &Env, child: &mut Child, blobs: usize, partial: bool) {
    let store = env.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        let done = count(&store.join("blobs/sha256")) >= blobs;
        let part = !partial || count(&store.join("ingest")) > 0;
        if done && part {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "import made no progress in 2 minutes"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A closed stderr (a log reader that went away) must not crash or hang sealift: logging
/// at trace level with nobody reading, an import still completes and the store is clean.
#[test]
fn a_closed_stderr_neither_crashes_nor_hangs() {
    let env = Env::new();
    let sample = root().join("examples/sample-layout");
    let mut child = env
        .cmd()
        .args(["import", sample.to_str().unwrap()])
        .env("SEALIFT_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: every log line now fails to write.
    drop(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("sealift hung with its stderr closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "import with a closed stderr: {status}");
    assert_eq!(env.images().len(), 2);
    env.ok(&["verify"]);
}

//! Crash safety: SIGKILL a large import at many points; the store always opens, verifies
//! clean, never shows a partial image, and the import completes when run again.

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

    // How long a full import takes here, to spread the kills over it (the binary is built
    // first so the build is not timed).
    sealift_bin();
    let probe = Env::new();
    let t0 = Instant::now();
    probe.ok(&["import", tarball.to_str().unwrap(), "--tag", "big:1"]);
    let full = t0.elapsed();
    drop(probe);

    // A deterministic spread of kill points over the import (xorshift, fixed seed).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut kills = 0;
    for round in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Between 2% and 90% of a full import.
        let at = full
            .mul_f64(0.02 + (x % 880) as f64 / 1000.0)
            .max(Duration::from_millis(5));
        let mut child = env
            .cmd()
            .args(["import", tarball.to_str().unwrap(), "--tag", "big:1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            // Child::kill sends SIGKILL on Unix.
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
        // The store opens and is consistent after every kill.
        let out = env.run(&["verify"]);
        assert!(
            out.status.success(),
            "round {round}: verify after kill at {at:?} failed:\n{}{}",
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
    assert!(kills >= 8, "only {kills} of 10 runs were killed mid-import");

    // Kill once more halfway, then re-run: it resumes, keeping what was committed.
    let mut child = env
        .cmd()
        .args(["import", tarball.to_str().unwrap(), "--tag", "big:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(full / 2);
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

//! `sealift sync --daemon`: jobs run at start, read-only commands answer through the control
//! socket while the daemon holds the store, the config reloads when edited, the inbox imports
//! dropped tarballs once, and SIGTERM stops it cleanly.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::util::*;

/// Poll `check` until it returns `Some`, or panic with `what` after 60 s.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the daemon if the test panics, so it never outlives the test.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(path: &Path, jobs: &[(&str, &Path)], inbox: &Path) {
    let mut text = format!(
        "[inbox]\npath = {:?}\nsettle = \"1s\"\n\n[serve]\naddr = \"127.0.0.1:0\"\n",
        inbox.to_str().unwrap()
    );
    for (name, layout) in jobs {
        text.push_str(&format!(
            "\n[[job]]\nname = {name:?}\nsource = {:?}\ndestination = \"store:\"\nschedule = \"1h\"\n",
            format!("oci:{}", layout.display())
        ));
    }
    // Write and rename, as editors do, so the daemon never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn refs(env: &Env) -> Vec<String> {
    env.images().into_iter().map(|(r, _)| r).collect()
}

#[test]
fn daemon_runs_jobs_answers_commands_reloads_and_watches_the_inbox() {
    let env = Env::new();
    let sample = root().join("examples/sample-layout");
    let (corpus, _) = corpus_dir(&env);
    let inbox = env.path("inbox");
    let config = env.path("sync.toml");
    write_config(&config, &[("sample", &sample)], &inbox);

    let mut daemon = Daemon(
        env.cmd()
            .args(["sync", "--config", config.to_str().unwrap(), "--daemon"])
            .env("SEALIFT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // Its log names the address `[serve]` bound (port 0: a free one).
    let stderr = daemon.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.split("serving the store on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon logs the address it serves on");

    // The job runs at start, and `images` answers through the daemon.
    let socket = env.store().join("daemon.sock");
    wait_for("the control socket", || socket.exists().then_some(()));
    let first = wait_for("the sample images", || {
        let r = refs(&env);
        (r.len() == 2).then_some(r)
    });
    assert_eq!(first, ["sample/hello:1.0", "sample/tools:1.0"]);
    env.ok(&["du"]);
    env.ok(&["inspect", "sample/hello:1.0"]);
    // The same process serves the store read-only.
    let tags = tool_ok(
        "curl",
        &["-fsS", &format!("http://{addr}/v2/sample/hello/tags/list")],
    );
    let tags: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1.0"]));
    env.ok(&["sync", "status"]);
    env.ok(&["verify"]);
    // GC runs inside the daemon, next to its jobs; it keeps the tagged images.
    env.ok(&["gc", "--grace", "0"]);
    assert_eq!(refs(&env), first);
    // A command that needs the store for itself names the daemon that holds it.
    let err = env.fails(&["import", sample.to_str().unwrap()]);
    let pid = daemon.0.id().to_string();
    assert!(err.contains(&pid), "{err}");

    // A config broken by an edit is not loaded: the daemon keeps the old one and runs on.
    std::fs::write(&config, "[[job]]\nname = \"broken\"\nsource = 42\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "a bad config stopped the daemon"
    );
    assert_eq!(refs(&env), first);

    // Reload: a second job appears in the config and runs.
    write_config(&config, &[("sample", &sample), ("corpus", &corpus)], &inbox);
    wait_for("the corpus job after reload", || {
        refs(&env)
            .iter()
            .any(|r| r.starts_with("corpus:"))
            .then_some(())
    });

    // Inbox: a tarball renamed into place is imported and moved to done/.
    let tarball = env.path("drop.tar");
    tool_ok(
        "tar",
        &[
            "-C",
            sample.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    env.ok(&["rm", "sample/hello:1.0", "sample/tools:1.0"]);
    std::fs::copy(&tarball, inbox.join("one.tar.part")).unwrap();
    std::fs::rename(inbox.join("one.tar.part"), inbox.join("one.tar")).unwrap();
    wait_for("one.tar in done/", || {
        inbox.join("done/one.tar").exists().then_some(())
    });
    assert!(refs(&env).contains(&"sample/hello:1.0".to_string()));

    // The same bytes again, under another name: moved to done/ but not imported again
    // (the tag removed since stays removed).
    env.ok(&["rm", "sample/hello:1.0"]);
    std::fs::copy(&tarball, inbox.join("again.tar")).unwrap();
    wait_for("again.tar in done/", || {
        inbox.join("done/again.tar").exists().then_some(())
    });
    assert!(!refs(&env).contains(&"sample/hello:1.0".to_string()));

    // Not a layout: moved to failed/ with the reason beside it.
    std::fs::write(inbox.join("bad.tar"), b"this is not a tarball").unwrap();
    let reason = wait_for("bad.tar in failed/", || {
        std::fs::read_to_string(inbox.join("failed/bad.tar.reason")).ok()
    });
    assert!(inbox.join("failed/bad.tar").exists());
    assert!(!inbox.join("bad.tar").exists());
    assert!(reason.contains("bad.tar"), "{reason}");

    // SIGTERM: the daemon stops, exits 0 and gives the store back.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for("the daemon to exit", || daemon.0.try_wait().unwrap());
    assert!(exit.success(), "daemon exited with {exit}");
    assert!(!socket.exists(), "the socket is removed on the way out");
    // The store opens directly now, and is clean.
    env.ok(&["import", sample.to_str().unwrap()]);
    env.ok(&["verify"]);
}

#[test]
fn a_deep_index_chain_fails_its_image_and_the_daemon_runs_on() {
    let env = Env::new();
    let sample = root().join("examples/sample-layout");
    let deep = env.path("deep");
    let mut layout = sealift_fixtures::Layout::new();
    let chain = sealift_fixtures::deep_chain(&mut layout, 10_000);
    let top = chain["digest"].as_str().unwrap().to_string();
    layout.add_ref(chain, Some("deep/chain:1"));
    layout.write_dir(&deep).unwrap();
    let inbox = env.path("inbox");
    let config = env.path("sync.toml");
    write_config(&config, &[("deep", &deep), ("sample", &sample)], &inbox);

    let mut daemon = Daemon(
        env.cmd()
            .args(["sync", "--config", config.to_str().unwrap(), "--daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = env.store().join("daemon.sock");
    wait_for("the control socket", || socket.exists().then_some(()));
    // Both jobs ran at start: the deep one failed its image, the other copied its own.
    let history = wait_for("both jobs' reports", || {
        let out = env.run(&["--json", "sync", "history"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v.as_array()?.len() == 2).then_some(v)
    });
    let deep_report = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["job"] == "deep")
        .unwrap();
    let failed = &deep_report["failed"][0];
    assert!(
        failed["source"].as_str().unwrap().ends_with("deep/chain:1"),
        "{deep_report}"
    );
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains(&top) && reason.contains("nests more than 16 manifests deep"),
        "{reason}"
    );
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the daemon died of a deep chain"
    );
    assert_eq!(refs(&env), ["sample/hello:1.0", "sample/tools:1.0"]);
    env.ok(&["inspect", "sample/hello:1.0"]);

    let pid = daemon.0.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for("the daemon to exit", || daemon.0.try_wait().unwrap());
    assert!(exit.success(), "daemon exited with {exit}");
}

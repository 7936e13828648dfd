//! `sealift sync`: a run killed with SIGKILL mid-copy resumes without fetching again what it
//! had committed; config errors stop it before any I/O with exit code 1.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sealift_fixtures::{mirror_corpus, mirror_repo};
use sealift_store::Store;
use sealift_testkit::{Fault, FaultProxy, Registry};

use super::util::Env;

fn blob_files(store: &Path) -> usize {
    std::fs::read_dir(store.join("blobs/sha256")).map_or(0, |d| d.count())
}

#[test]
fn killed_sync_resumes_without_refetching_committed_blobs() {
    let env = Env::new();
    let tags = ["1.0", "1.1", "1.2"];
    let layout = mirror_corpus(4, &tags, 64 * 1024);
    layout.write_dir(&env.path("corpus")).unwrap();
    let src = Registry::start();
    std::fs::write(
        env.path("seed.toml"),
        format!(
            "[[job]]\nname = \"seed\"\nsource = \"oci:corpus\"\ndestination = \"docker://{}\"\n",
            src.host()
        ),
    )
    .unwrap();
    let seed = env.path("seed.toml");
    env.ok(&["sync", "--config", seed.to_str().unwrap()]);

    // The last image's own layer stalls: the run is stuck there with the others done.
    let last = format!("{}:1.2", mirror_repo(3));
    let m = layout.find_ref(&last).unwrap()["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(layout.blob_bytes(m).unwrap()).unwrap();
    let stalled = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = FaultProxy::start(&src.host());
    proxy.push(Fault::Stall {
        path: stalled.clone(),
        after: 1024,
        stall: Duration::from_secs(300),
        times: 1,
    });
    let cfg = env.path("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[job]]\nname = \"mirror\"\nsource = \"docker://{}\"\ndestination = \"store:\"\n[job.repositories]\nallow = [\"mirror/*\"]\n",
            proxy.host()
        ),
    )
    .unwrap();
    let mut child = env
        .cmd()
        .args(["sync", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the stall is reached and most images are committed (progress, not time).
    let store_dir = env.store();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sync ended ({status}) before the kill point");
        }
        if proxy.pending() == 0 && blob_files(&store_dir) >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let committed: HashSet<String> = {
        let store = Store::open(&store_dir).unwrap();
        store.records().map(|r| r.unwrap().0.to_string()).collect()
    };
    assert!(committed.len() >= 20);
    assert!(!committed.contains(&stalled));

    proxy.clear();
    let out = env.ok(&["--json", "sync", "--config", cfg.to_str().unwrap()]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reports[0]["failed"].as_array().unwrap().is_empty(), "{out}");
    let fetched: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.method == "GET" && q.path.contains("/blobs/"))
        .map(|q| q.path)
        .collect();
    assert!(
        fetched.iter().any(|p| p.contains(&stalled)),
        "the stalled blob is fetched on resume"
    );
    for p in &fetched {
        let d = p.rsplit('/').next().unwrap();
        assert!(
            !committed.contains(d),
            "{d} was committed before the kill but fetched again"
        );
    }
    // Every image is there and whole.
    let images = env.images();
    assert_eq!(images.len(), 12, "{images:?}");
    env.ok(&["verify", "--full"]);
    let status = env.ok(&["sync", "status"]);
    assert!(status.contains("mirror"), "{status}");
    // Nothing changed: the next run copies nothing.
    let out = env.ok(&["--json", "sync", "--config", cfg.to_str().unwrap()]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reports[0]["copied"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(reports[0]["skipped"].as_array().unwrap().len(), 12);
}

#[test]
fn bad_config_fails_before_any_io_naming_line_and_key() {
    let env = Env::new();
    let cfg = env.path("bad.toml");
    std::fs::write(
        &cfg,
        "[[job]]\nname = \"a\"\nsource = \"oci:nowhere\"\ndestination = \"store:\"\n[job.tags]\nlatest = 0\n",
    )
    .unwrap();
    let err = env.fails(&["sync", "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("job[0].tags.latest"), "{err}");
    assert!(!env.store().exists(), "no store was created");
    let err = env.fails(&[
        "sync",
        "--config",
        env.path("missing.toml").to_str().unwrap(),
    ]);
    assert!(err.contains("missing.toml"), "{err}");
}

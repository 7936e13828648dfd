//! `sealift serve` as a process: the address it prints, pulls through it, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::*;

#[test]
fn serve_prints_its_address_serves_pulls_and_stops_on_sigterm() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let mut child = env
        .cmd()
        .args(["--json", "serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sealift serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("serve printed {line:?}, not JSON: {e}"));
    assert_eq!(v["scheme"], "http");
    let addr = v["address"].as_str().unwrap().to_string();

    // skopeo reads the stored bytes; a second store pulls through it with sealift.
    let raw = tool_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{addr}/corpus:multi"),
        ],
    );
    let multi = ref_digest(&layout, "multi");
    assert_eq!(raw, layout.blobs[&multi].bytes);
    let other = Env::new();
    other.ok(&["pull", "--referrers", &format!("{addr}/corpus:zstd")]);
    assert_eq!(
        other.images(),
        vec![(format!("{addr}/corpus:zstd"), ref_digest(&layout, "zstd"))]
    );
    other.ok(&["verify", "--full"]);

    // SIGTERM: a clean exit, and the store is free again.
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "serve exited with {status}");
    assert_eq!(env.images().len(), layout.index.len() - 1);
}

#[test]
fn serve_refuses_plain_http_beyond_loopback_and_half_tls() {
    let env = Env::new();
    let err = env.fails(&["serve", "--addr", "0.0.0.0:0"]);
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure-plain-http"),
        "{err}"
    );
    let out = env.run(&["serve", "--tls-cert", "cert.pem"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

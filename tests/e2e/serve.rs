//! `sealift serve` as a process: the address it prints, pulls through it, SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::util::*;

/// Spawn `sealift … --json serve …` and read the line it prints once listening.
pub(crate) fn start_serve(mut cmd: Command) -> (std::process::Child, serde_json::Value) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sealift serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("serve printed {line:?}, not JSON: {e}"));
    (child, v)
}

#[test]
fn serve_prints_its_address_serves_pulls_and_stops_on_sigterm() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let mut cmd = env.cmd();
    cmd.args(["--json", "serve", "--addr", "127.0.0.1:0"]);
    let (mut child, v) = start_serve(cmd);
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

// issue 9: started with the usual soft limit of 1,024 descriptors, `sealift serve` used to
// stop answering once 1,100 idle connections held them all. Now it raises the soft limit
// to the hard one, and closes idle connections (nothing sent, or only the HTTP/2 preface)
// after --idle-timeout.
#[test]
fn serve_outlasts_two_thousand_idle_connections_under_a_1024_descriptor_limit() {
    let env = Env::new();
    let (dir, layout) = corpus_dir(&env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$0\" \"$@\"")
        .arg(sealift_bin())
        .arg("--store")
        .arg(env.store())
        .args(["--json", "serve", "--addr", "127.0.0.1:0"])
        .args(["--idle-timeout", "20"])
        .env_remove("SEALIFT_STORE");
    let (mut child, v) = start_serve(cmd);
    let addr = v["address"].as_str().unwrap().to_string();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|n| n.to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        open_files[0], open_files[1],
        "soft limit not raised: {open_files:?}"
    );

    let mut idle = Vec::new();
    for i in 0..2000 {
        let mut c = TcpStream::connect(&addr).unwrap();
        if i % 2 == 1 {
            c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        }
        idle.push(c);
    }
    let other = Env::new();
    other.ok(&["pull", &format!("{addr}/corpus:zstd")]);
    assert_eq!(
        other.images(),
        vec![(format!("{addr}/corpus:zstd"), ref_digest(&layout, "zstd"))]
    );
    other.ok(&["verify", "--full"]);
    // Every idle connection is closed by the server (EOF, or a reset).
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("an idle connection is still open after 120 s")
                }
                Err(_) => break,
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
}

//! Issue 14, part 3: `mirror-config`'s files used by the real clients: containerd's `ctr`
//! pulling through `sealift serve` with the written `certs.d` (plain HTTP, and TLS with the
//! copied CA), skopeo and podman with the written `registries.conf`. No network: every
//! image comes from sealift, under a Docker Hub name that exists nowhere else.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealift_fixtures::{mirror_corpus, mirror_repo};

use super::serve::start_serve;
use super::util::*;

/// A store holding the corpus's amd64 image `mirror/r01:1.0` as Docker Hub's
/// `docker.io/library/sealift-fixture:1.0` (as `pull` would file it) and an imported
/// `apps/web:1` (no registry host: not mapped); `mirror-config ARGS` run on it (before
/// serve, which holds the store), then the store served over plain HTTP on loopback at the
/// address the configuration names.
struct Served {
    /// The store's directory (kept for the server).
    env: Env,
    child: Child,
    out: std::path::PathBuf,
    printed: String,
    digest: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn served(format: &str, selectors: &[&str]) -> Served {
    served_with(format, selectors, false)
}

/// As [`served`]; with `tls`, served over HTTPS with a self-signed certificate for
/// 127.0.0.1, which `mirror-config --ca` copies beside the configuration.
fn served_with(format: &str, selectors: &[&str], tls: bool) -> Served {
    let env = Env::new();
    let layout = mirror_corpus(2, &["1.0"], 4096);
    let dir = env.path("corpus");
    layout.write_dir(&dir).unwrap();
    let src = format!("oci:{}:{}:1.0", dir.display(), mirror_repo(1));
    env.ok(&["copy", &src, "store:docker.io/library/sealift-fixture:1.0"]);
    env.ok(&["copy", &src, "store:apps/web:1"]);
    // A free port now, for the server started after mirror-config.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = env.path("nodes");
    let (cert, key) = sealift_testkit::self_signed_cert(env.dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut args = vec![
        "mirror-config",
        "--server",
        &addr,
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
    ];
    if tls {
        args.extend(["--ca", cert]);
    } else {
        args.push("--insecure");
    }
    args.extend(selectors);
    let printed = env.ok(&args);
    let mut cmd = env.cmd();
    cmd.args(["--json", "serve", "--addr", &addr]);
    if tls {
        cmd.args(["--tls-cert", cert, "--tls-key", key]);
    }
    let (child, v) = start_serve(cmd);
    assert_eq!(v["address"].as_str(), Some(addr.as_str()));
    Served {
        digest: ref_digest(&layout, &format!("{}:1.0", mirror_repo(1))),
        out,
        printed,
        child,
        env,
    }
}

/// containerd with its own root, state, socket and config in `dir` (run as root, as CI
/// does); stopped on drop.
struct Containerd {
    child: Child,
    socket: String,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn containerd(dir: &Path) -> Containerd {
    let config = dir.join("config.toml");
    // Only what a pull needs: no CRI plugin (it would want a CNI setup) and no TCP listener.
    std::fs::write(
        &config,
        "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
    )
    .unwrap();
    let socket = dir.join("containerd.sock").to_str().unwrap().to_string();
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let child = tool("containerd")
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--address")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting containerd");
    let mut c = Containerd { child, socket };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = Command::new("ctr")
            .args(["--address", &c.socket, "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            return c;
        }
        if let Some(s) = c.child.try_wait().unwrap() {
            panic!(
                "containerd exited ({s}): {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "containerd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ctr images pull --hosts-dir DIR IMAGE` on `c`: its output and whether it worked.
fn ctr_pull(c: &Containerd, hosts_dir: &Path, image: &str) -> (bool, String) {
    let pull = tool("ctr")
        .args([
            "--address",
            &c.socket,
            "images",
            "pull",
            "--platform",
            "linux/amd64",
        ])
        .arg("--hosts-dir")
        .arg(hosts_dir)
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&pull.stdout),
        String::from_utf8_lossy(&pull.stderr)
    );
    (pull.status.success(), text)
}

/// The digest `ctr images ls` gives `image`.
fn ctr_digest(c: &Containerd, image: &str) -> String {
    let listed = tool_ok("ctr", &["--address", &c.socket, "images", "ls"]);
    let listed = String::from_utf8_lossy(&listed);
    let line = listed
        .lines()
        .find(|l| l.starts_with(image))
        .unwrap_or_else(|| panic!("{image} not in ctr images ls:\n{listed}"));
    line.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in {line}"))
        .to_string()
}

const FIXTURE: &str = "docker.io/library/sealift-fixture:1.0";

#[test]
fn containerd_pulls_a_docker_hub_name_through_serve_with_the_written_hosts_toml() {
    let s = served("containerd", &[]);
    let (out, printed) = (&s.out, &s.printed);
    assert!(
        printed.contains("certs.d/docker.io/hosts.toml"),
        "{printed}"
    );
    assert!(
        printed.contains("apps/web"),
        "the host-less repository is named: {printed}"
    );
    assert!(!out.join("certs.d/apps").exists());

    let tmp = tempfile::tempdir().unwrap();
    let c = containerd(tmp.path());
    let (ok, text) = ctr_pull(&c, &out.join("certs.d"), FIXTURE);
    assert!(ok, "ctr pull failed:\n{text}");
    assert_eq!(ctr_digest(&c, FIXTURE), s.digest);
}

#[test]
fn containerd_checks_the_served_certificate_against_the_copied_ca() {
    let s = served_with("containerd", &[], true);
    let hosts_dir = s.out.join("certs.d");
    let toml = std::fs::read_to_string(hosts_dir.join("docker.io/hosts.toml")).unwrap();
    assert!(toml.contains("[host.\"https://127.0.0.1:"), "{toml}");
    assert!(hosts_dir.join("docker.io/sealift-ca.crt").is_file());

    let tmp = tempfile::tempdir().unwrap();
    let c = containerd(tmp.path());
    // Without the CA the server's certificate does not verify: the pull fails.
    let bare = tmp.path().join("bare/docker.io");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::write(
        bare.join("hosts.toml"),
        toml.lines()
            .filter(|l| !l.contains("ca ="))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let (ok, text) = ctr_pull(&c, &tmp.path().join("bare"), FIXTURE);
    assert!(
        !ok && text.contains("certificate"),
        "pulled without the CA:\n{text}"
    );
    // With it (named relative to hosts.toml, as written), the pull works.
    let (ok, text) = ctr_pull(&c, &hosts_dir, FIXTURE);
    assert!(ok, "ctr pull failed:\n{text}");
    assert_eq!(ctr_digest(&c, FIXTURE), s.digest);
}

#[test]
fn skopeo_and_podman_pull_through_serve_with_the_written_registries_conf() {
    let s = served("registries-conf", &["docker.io/**"]);
    assert!(
        !s.printed.contains("apps/web"),
        "the selector leaves it out: {}",
        s.printed
    );
    let conf = s.out.join("registries.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(text.matches("[[registry]]").count(), 1, "{text}");
    // While serve holds the store, the same file comes from the server's catalog.
    let addr = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("location = \"")?
                .strip_suffix("/docker.io\"")
        })
        .unwrap()
        .to_string();
    let again = s.env.path("again");
    let printed = s.env.ok(&[
        "mirror-config",
        "--from-server",
        "--server",
        &addr,
        "--format",
        "registries-conf",
        "--insecure",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(printed.contains("apps/web"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(again.join("registries.conf")).unwrap(),
        text
    );
    let raw = tool("skopeo")
        .arg("--registries-conf")
        .arg(&conf)
        .args([
            "inspect",
            "--raw",
            "docker://docker.io/library/sealift-fixture:1.0",
        ])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(sha256_hex(&raw.stdout), s.digest);

    let tmp = tempfile::tempdir().unwrap();
    let podman = tool("podman")
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .arg("--root")
        .arg(tmp.path().join("root"))
        .arg("--runroot")
        .arg(tmp.path().join("runroot"))
        .args(PODMAN_FLAGS)
        .args(["pull", "-q", "docker.io/library/sealift-fixture:1.0"])
        .output()
        .unwrap();
    assert!(
        podman.status.success(),
        "podman pull failed: {}",
        String::from_utf8_lossy(&podman.stderr)
    );
    let digest = tool("podman")
        .arg("--root")
        .arg(tmp.path().join("root"))
        .arg("--runroot")
        .arg(tmp.path().join("runroot"))
        .args(PODMAN_FLAGS)
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Digest}}",
            "docker.io/library/sealift-fixture:1.0",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&digest.stdout).trim(), s.digest);
}

/// podman as a test runs it: vfs storage (no overlay mount needed), no systemd.
const PODMAN_FLAGS: [&str; 6] = [
    "--storage-driver",
    "vfs",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "none",
];

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

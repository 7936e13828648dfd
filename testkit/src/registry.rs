//! The real distribution registry (`docker-registry` 2.8) on a free loopback port.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::token::{TokenAuthOptions, TokenServer};

/// How long a registry may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many ports are tried when another process takes the chosen one first.
const BIND_ATTEMPTS: usize = 5;

/// What the registry requires and allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Basic auth with this one `(user, password)` (an htpasswd file, bcrypt cost 5).
    pub htpasswd: Option<(String, String)>,
    /// Bearer-token auth through a [`TokenServer`] the registry starts and owns
    /// (see [`Registry::token_server`]). Takes precedence over `htpasswd` if both are set.
    pub token: Option<TokenAuthOptions>,
    /// `storage.delete.enabled`: whether manifests and blobs may be deleted.
    pub delete_enabled: bool,
}

/// A distribution registry serving plain HTTP on `127.0.0.1`, with filesystem storage in a
/// temporary directory. Dropping it kills the process and removes the directory.
///
/// The binary is `$SEALIFT_REGISTRY_BIN`, else `/usr/bin/docker-registry`, else
/// `docker-registry` on `PATH`; if none exists, starting panics with an install hint.
/// The registry's own log goes to a file in the temp dir ([`Registry::log`]).
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    credentials: Option<(String, String)>,
    // Dropped after the child is killed (see `Drop`): the registry reads its certificate.
    token: Option<TokenServer>,
    dir: TempDir,
}

impl Registry {
    /// An anonymous registry (no auth), deletes disabled.
    pub fn start() -> Registry {
        Registry::start_with(RegistryOptions::default())
    }

    /// A registry configured by `opts`. Waits (up to 10 s) until `GET /v2/` answers 200 or
    /// 401; panics with the registry's log otherwise.
    pub fn start_with(opts: RegistryOptions) -> Registry {
        let bin = registry_binary();
        let dir = tempfile::Builder::new()
            .prefix("sealift-registry-")
            .tempdir()
            .unwrap_or_else(|e| panic!("registry: creating a temp dir: {e}"));
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("registry: creating {}: {e}", data_dir.display()));

        let (auth, credentials, token) = if let Some(token_opts) = opts.token.clone() {
            let credentials = Some((token_opts.user.clone(), token_opts.password.clone()));
            let server = TokenServer::start(token_opts);
            let auth = format!(
                "auth:\n  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: \"{}\"\n",
                server.realm(),
                server.service(),
                server.issuer(),
                server.cert_path().display()
            );
            (auth, credentials, Some(server))
        } else if let Some((user, password)) = opts.htpasswd.clone() {
            let htpasswd = dir.path().join("htpasswd");
            let hash = bcrypt::hash(&password, 5)
                .unwrap_or_else(|e| panic!("registry: bcrypt-hashing the password: {e}"));
            fs::write(&htpasswd, format!("{user}:{hash}\n"))
                .unwrap_or_else(|e| panic!("registry: writing {}: {e}", htpasswd.display()));
            let auth = format!(
                "auth:\n  htpasswd:\n    realm: sealift-testkit\n    path: \"{}\"\n",
                htpasswd.display()
            );
            (auth, Some((user, password)), None)
        } else {
            (String::new(), None, None)
        };

        let config_path = dir.path().join("config.yml");
        let log_path = dir.path().join("registry.log");
        let mut last_log = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = crate::free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // Sent back on every response: tells our registry from whatever else might have
            // taken the port between `free_port` and the registry's bind.
            let nonce = format!("{:016x}", rand::random::<u64>());
            let config = config_yaml(addr, &data_dir, opts.delete_enabled, &nonce, &auth);
            fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("registry: writing {}: {e}", config_path.display()));
            let log = fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("registry: creating {}: {e}", log_path.display()));
            let log_err = log
                .try_clone()
                .unwrap_or_else(|e| panic!("registry: duplicating the log file handle: {e}"));
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("registry: running {}: {e}", bin.display()));
            match wait_ready(&mut child, addr, &nonce) {
                Ready::Yes => {
                    return Registry {
                        child,
                        addr,
                        data_dir,
                        log_path,
                        credentials,
                        token,
                        dir,
                    }
                }
                Ready::PortTaken => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = crate::read_for_message(&log_path);
                }
                Ready::Exited(status) => {
                    last_log = crate::read_for_message(&log_path);
                    if last_log.contains("address already in use") {
                        continue;
                    }
                    panic!(
                        "registry {} exited ({status}) before answering on {addr}; its log:\n{}",
                        bin.display(),
                        crate::read_for_message(&log_path)
                    );
                }
                Ready::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "registry {} did not answer GET /v2/ on {addr} within {READY_TIMEOUT:?}; its log:\n{}",
                        bin.display(),
                        crate::read_for_message(&log_path)
                    );
                }
            }
        }
        panic!("registry: no free port after {BIND_ATTEMPTS} attempts; last log:\n{last_log}");
    }

    /// `"127.0.0.1:PORT"`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `"http://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The storage root directory (`storage.filesystem.rootdirectory`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `(user, password)` the registry accepts, for htpasswd or token auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The token server in front of a token-auth registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The path of the registry's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// What the registry has logged so far (level warn and above).
    pub fn log(&self) -> String {
        crate::read_for_message(&self.log_path)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `token` and `dir` are dropped after this, in field order.
    }
}

fn registry_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SEALIFT_REGISTRY_BIN") {
        let bin = PathBuf::from(bin);
        if let Some(found) = crate::find_tool(&bin.to_string_lossy()) {
            return found;
        }
        panic!(
            "docker-registry not found: SEALIFT_REGISTRY_BIN={} is not a file",
            bin.display()
        );
    }
    let default = Path::new("/usr/bin/docker-registry");
    if default.is_file() {
        return default.to_owned();
    }
    crate::find_tool("docker-registry").unwrap_or_else(|| {
        panic!(
            "docker-registry not found: install it with `apt-get install docker-registry` (scripts/setup.sh does)"
        )
    })
}

fn config_yaml(addr: SocketAddr, data_dir: &Path, delete: bool, nonce: &str, auth: &str) -> String {
    format!(
        r#"version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: "{data}"
  delete:
    enabled: {delete}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "{addr}"
  secret: sealift-testkit-secret
  headers:
    X-Sealift-Testkit: ["{nonce}"]
health:
  storagedriver:
    enabled: false
{auth}"#,
        data = data_dir.display()
    )
}

enum Ready {
    Yes,
    PortTaken,
    Exited(std::process::ExitStatus),
    TimedOut,
}

fn wait_ready(child: &mut Child, addr: SocketAddr, nonce: &str) -> Ready {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Ready::Exited(status);
        }
        if let Some(head) = crate::http::get_head(addr, "/v2/", Duration::from_millis(500)) {
            if head.header("x-sealift-testkit") == Some(nonce) && matches!(head.status, 200 | 401) {
                return Ready::Yes;
            }
            if head.header("x-sealift-testkit") != Some(nonce) {
                // Someone else answers on the port: ours cannot bind it.
                return Ready::PortTaken;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ready::TimedOut
}

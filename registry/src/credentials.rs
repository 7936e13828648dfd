//! Credentials: given explicitly, or looked up the way podman and docker do.
//!
//! Search order when none are given (the first file with an entry for the host wins):
//! 1. `$REGISTRY_AUTH_FILE`
//! 2. `$XDG_RUNTIME_DIR/containers/auth.json`
//! 3. `~/.config/containers/auth.json`
//! 4. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
//!
//! Each file is read with the `docker_credential` crate: `auths` entries (base64 `auth`
//! of `user:pass`, `username`/`password`, or `identitytoken`), then `credHelpers` and
//! `credsStore` (running `docker-credential-<name> get`). Secrets never appear in `Debug`
//! output, errors or logs.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::error::RegistryError;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// User name and password (or a personal access token used as one).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token ("identity token"), exchanged at the token server.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Parse `user:pass` (the `--creds` form). The password may contain `:`.
    pub fn from_user_pass(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        if u.is_empty() {
            return None;
        }
        Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

/// The environment the lookup depends on, so the search order is testable without touching
/// the process environment.
#[derive(Clone, Debug, Default)]
pub struct AuthEnv {
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`.
    pub docker_config: Option<PathBuf>,
}

impl AuthEnv {
    /// Read the variables from the process environment (empty values count as unset).
    pub fn from_process() -> AuthEnv {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        AuthEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            home: var("HOME"),
            docker_config: var("DOCKER_CONFIG"),
        }
    }

    /// The auth files to look in, in order (whether or not they exist).
    pub fn auth_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(p) = &self.registry_auth_file {
            out.push(p.clone());
        }
        if let Some(d) = &self.xdg_runtime_dir {
            out.push(d.join("containers/auth.json"));
        }
        if let Some(h) = &self.home {
            out.push(h.join(".config/containers/auth.json"));
        }
        match (&self.docker_config, &self.home) {
            (Some(d), _) => out.push(d.join("config.json")),
            (None, Some(h)) => out.push(h.join(".docker/config.json")),
            (None, None) => {}
        }
        out
    }
}

/// The keys an auth file may use for `host`: the host itself, and for Docker Hub the
/// legacy `https://index.docker.io/v1/` key docker login writes.
fn server_keys(host: &str) -> Vec<&str> {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["https://index.docker.io/v1/", "docker.io"]
        }
        h => vec![h],
    }
}

/// Credentials for `host` from one auth file's contents (docker config.json or podman
/// auth.json). `Ok(None)` when the file has nothing for the host. May run a credential
/// helper named by the file.
pub fn from_auth_config(
    contents: &[u8],
    host: &str,
    file: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    for key in server_keys(host) {
        match docker_credential::get_credential_from_reader(Cursor::new(contents), key) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                return Ok(Some(Credentials::Basic { username, password }))
            }
            Ok(DockerCredential::IdentityToken(t)) => {
                return Ok(Some(Credentials::IdentityToken(t)))
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
            Err(CredentialRetrievalError::HelperFailure { helper, stdout, .. })
                if stdout.contains("credentials not found") =>
            {
                // The helper knows nothing about this host: the same as no entry.
                tracing::debug!(%helper, host, "credential helper has no entry");
                continue;
            }
            Err(CredentialRetrievalError::HelperFailure { helper, stderr, .. }) => {
                // stdout may echo secrets; the first line of stderr says what went wrong.
                let why = stderr.lines().next().unwrap_or("").trim().to_string();
                return Err(RegistryError::Credentials {
                    host: host.to_string(),
                    detail: format!("{helper} (named in {}) failed: {why}", file.display()),
                });
            }
            Err(CredentialRetrievalError::ConfigReadError) => {
                tracing::warn!(file = %file.display(), "auth file is not valid JSON; ignored");
                return Ok(None);
            }
            Err(e) => {
                return Err(RegistryError::Credentials {
                    host: host.to_string(),
                    detail: format!("{}: {e}", file.display()),
                })
            }
        }
    }
    Ok(None)
}

/// Look up credentials for `host` in the auth files `env` names, in order.
pub fn lookup(host: &str, env: &AuthEnv) -> Result<Option<Credentials>, RegistryError> {
    for file in env.auth_files() {
        let contents = match std::fs::read(&file) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read auth file; skipped");
                continue;
            }
        };
        if let Some(c) = from_auth_config(&contents, host, &file)? {
            tracing::debug!(host, file = %file.display(), "using credentials from auth file");
            return Ok(Some(c));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn search_order() {
        let env = AuthEnv {
            registry_auth_file: Some("/a/auth.json".into()),
            xdg_runtime_dir: Some("/run/user/1".into()),
            home: Some("/home/u".into()),
            docker_config: None,
        };
        assert_eq!(
            env.auth_files(),
            vec![
                PathBuf::from("/a/auth.json"),
                PathBuf::from("/run/user/1/containers/auth.json"),
                PathBuf::from("/home/u/.config/containers/auth.json"),
                PathBuf::from("/home/u/.docker/config.json"),
            ]
        );
        let env = AuthEnv {
            docker_config: Some("/dc".into()),
            ..AuthEnv::default()
        };
        assert_eq!(env.auth_files(), vec![PathBuf::from("/dc/config.json")]);
    }

    #[test]
    fn auths_entries() {
        let cfg = format!(
            r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}},"tok.example":{{"identitytoken":"rt-123"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("alice:pa:ss"),
            b64("hub:secret")
        );
        let f = Path::new("config.json");
        assert_eq!(
            from_auth_config(cfg.as_bytes(), "reg.example:5000", f).unwrap(),
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            from_auth_config(cfg.as_bytes(), "tok.example", f).unwrap(),
            Some(Credentials::IdentityToken("rt-123".into()))
        );
        assert_eq!(
            from_auth_config(cfg.as_bytes(), "docker.io", f).unwrap(),
            Some(Credentials::Basic {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            from_auth_config(cfg.as_bytes(), "other.example", f).unwrap(),
            None
        );
        // Broken JSON is ignored rather than blocking anonymous access.
        assert_eq!(from_auth_config(b"{nope", "x", f).unwrap(), None);
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let cfg = br#"{"credHelpers":{"reg.example":"sealift-test-no-such-helper"}}"#;
        let err = from_auth_config(cfg, "reg.example", Path::new("c.json")).unwrap_err();
        assert!(matches!(err, RegistryError::Credentials { .. }), "{err}");
        assert!(err.to_string().contains("reg.example"), "{err}");
    }

    #[test]
    fn lookup_walks_files_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let podman = tmp.path().join("run/containers/auth.json");
        std::fs::create_dir_all(podman.parent().unwrap()).unwrap();
        std::fs::write(
            &podman,
            format!(r#"{{"auths":{{"a.example":{{"auth":"{}"}}}}}}"#, b64("p:1")),
        )
        .unwrap();
        let docker = tmp.path().join("docker/config.json");
        std::fs::create_dir_all(docker.parent().unwrap()).unwrap();
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"a.example":{{"auth":"{}"}},"b.example":{{"auth":"{}"}}}}}}"#,
                b64("d:1"),
                b64("d:2")
            ),
        )
        .unwrap();
        let env = AuthEnv {
            registry_auth_file: Some(tmp.path().join("missing.json")),
            xdg_runtime_dir: Some(tmp.path().join("run")),
            home: Some(tmp.path().join("home")),
            docker_config: Some(tmp.path().join("docker")),
        };
        assert_eq!(
            lookup("a.example", &env).unwrap(),
            Credentials::from_user_pass("p:1")
        );
        assert_eq!(
            lookup("b.example", &env).unwrap(),
            Credentials::from_user_pass("d:2")
        );
        assert_eq!(lookup("c.example", &env).unwrap(), None);
    }

    #[test]
    fn debug_redacts() {
        let c = Credentials::from_user_pass("u:hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credentials::IdentityToken("tok".into());
        assert!(!format!("{t:?}").contains("tok"));
        assert_eq!(Credentials::from_user_pass("nocolon"), None);
    }
}

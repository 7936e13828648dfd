//! One pool of registry clients, passed to everything that reaches registries (opening a
//! copy's source and sink, a sync job's places): one [`Registry`] per host, so its
//! concurrency limit, request rate and token cache are shared by every copy and job using
//! the pool. Who owns the pool decides how far the sharing goes: the CLI builds one per
//! command, the daemon one per loaded config (every job run shares it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sealift_registry::{Credentials, Registry, RegistryConfig};

use crate::transport::error::TransportError;

/// Options for opening registries from the command line.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `--creds user:pass`, applied to the registries named on the command line.
    pub credentials: Option<Credentials>,
    /// `--tls-verify=false`.
    pub tls_verify: Option<bool>,
    /// Custom CA bundle.
    pub ca_file: Option<std::path::PathBuf>,
}

impl OpenOptions {
    /// The client settings these options give `host`.
    pub fn settings(&self, host: &str) -> RegistryConfig {
        let mut cfg = RegistryConfig::new(host);
        cfg.credentials = self.credentials.clone();
        if let Some(v) = self.tls_verify {
            cfg.tls_verify = v;
        }
        cfg.ca_file = self.ca_file.clone();
        cfg
    }

    /// Whether two sets of options build the same clients (compared field by field:
    /// `Credentials`' Debug hides the secret).
    fn same_as(&self, other: &OpenOptions) -> bool {
        let creds = match (&self.credentials, &other.credentials) {
            (None, None) => true,
            (
                Some(Credentials::Basic {
                    username: a,
                    password: p,
                }),
                Some(Credentials::Basic {
                    username: b,
                    password: q,
                }),
            ) => a == b && p == q,
            (Some(Credentials::IdentityToken(a)), Some(Credentials::IdentityToken(b))) => a == b,
            _ => false,
        };
        creds && self.tls_verify == other.tls_verify && self.ca_file == other.ca_file
    }
}

/// How a pool learns a host's settings (read once per host, when its client is built).
type Settings = dyn Fn(&str) -> Result<RegistryConfig, TransportError> + Send + Sync;

/// Registry clients, one per host, built from settings on first use and kept.
pub struct Clients {
    settings: Box<Settings>,
    built: Mutex<HashMap<String, Registry>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        f.debug_struct("Clients").field("hosts", &hosts).finish()
    }
}

impl Default for Clients {
    /// Default settings for every host (credentials from auth files, TLS verified).
    fn default() -> Clients {
        Clients::from_options(&OpenOptions::default())
    }
}

impl Clients {
    /// A pool whose clients take their settings from `settings` (called once per host;
    /// an error, such as an unreadable password file, is returned by [`Clients::get`] and
    /// asked again on the next call).
    pub fn new(
        settings: impl Fn(&str) -> Result<RegistryConfig, TransportError> + Send + Sync + 'static,
    ) -> Clients {
        Clients {
            settings: Box::new(settings),
            built: Mutex::new(HashMap::new()),
        }
    }

    /// A pool applying the command line's options to every host.
    pub fn from_options(opts: &OpenOptions) -> Clients {
        let opts = opts.clone();
        Clients::new(move |host| Ok(opts.settings(host)))
    }

    /// Pools for a copy's source and destination: one pool when both sides have the same
    /// options, so a registry on both ends has one client (one request limit, whose half
    /// a registry sink takes, see `RegistrySink::parallelism`); two when their
    /// credentials differ.
    pub fn for_copy(src: &OpenOptions, dst: &OpenOptions) -> (Arc<Clients>, Arc<Clients>) {
        let s = Arc::new(Clients::from_options(src));
        let d = if src.same_as(dst) {
            s.clone()
        } else {
            Arc::new(Clients::from_options(dst))
        };
        (s, d)
    }

    /// The client of `host`, built on first use.
    pub fn get(&self, host: &str) -> Result<Registry, TransportError> {
        if let Some(r) = self.lock().get(host) {
            return Ok(r.clone());
        }
        // Built outside the lock (settings may read files); a racing build of the same host
        // loses to the first one stored, so every user shares one client.
        let r = Registry::new((self.settings)(host)?)?;
        Ok(self.lock().entry(host.to_string()).or_insert(r).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registry>> {
        self.built.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_host_and_shared_pools_for_equal_options() {
        let c = Clients::default();
        let a = c.get("127.0.0.1:1").unwrap();
        let b = c.get("127.0.0.1:1").unwrap();
        assert_eq!(a.host(), b.host());
        assert_eq!(format!("{c:?}"), "Clients { hosts: [\"127.0.0.1:1\"] }");

        let plain = OpenOptions::default();
        let (s, d) = Clients::for_copy(&plain, &plain);
        assert!(Arc::ptr_eq(&s, &d));
        let creds = OpenOptions {
            credentials: Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            }),
            ..Default::default()
        };
        let other = OpenOptions {
            credentials: Some(Credentials::Basic {
                username: "u".into(),
                password: "q".into(),
            }),
            ..Default::default()
        };
        let (s, d) = Clients::for_copy(&creds, &other);
        assert!(
            !Arc::ptr_eq(&s, &d),
            "a different password is another client"
        );
        let (s, d) = Clients::for_copy(&creds, &creds.clone());
        assert!(Arc::ptr_eq(&s, &d));
    }

    #[test]
    fn a_settings_error_is_returned_and_asked_again() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = calls.clone();
        let c = Clients::new(move |host| {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(TransportError::Credentials {
                host: host.to_string(),
                reason: "environment variable X is not set".into(),
            })
        });
        let e = c.get("r.example").unwrap_err().to_string();
        assert_eq!(
            e,
            "credentials for r.example: environment variable X is not set"
        );
        assert!(c.get("r.example").is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}

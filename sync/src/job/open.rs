//! The one place where a job's config meets the backends: its registry client pool, its
//! source and destination opened as [`Place`]s, and how source repositories are named at
//! the destination. Everything else in a run asks the opened places.

use std::sync::Arc;
use std::time::Duration;

use sealift_copy::place::{LayoutDirPlace, LayoutTarPlace, Place, RegistryPlace, StorePlace};
use sealift_copy::transport::TransportError;
use sealift_copy::Clients;
use sealift_registry::{Credentials, RegistryConfig};
use sealift_store::Store;

use crate::config::{
    self, place_repo, Config, CredentialSource, JobConfig, RegistrySection, SecretSource,
};

/// How long a store destination keeps what an unfinished copy wrote, for a resume.
pub const RESUME_TTL: Duration = Duration::from_secs(24 * 3600);

/// The registry client pool of `config`: each host's `[[registry]]` settings (TLS,
/// request limits, credentials read when its client is first built). Share one pool
/// between runs (the daemon keeps one per loaded config) so a `[[registry]]`'s
/// concurrency and rate limits hold over every job.
pub fn clients(config: &Config) -> Clients {
    let sections = config.registries.clone();
    Clients::new(move |host| settings(sections.iter().find(|r| r.host == host), host))
}

fn settings(
    section: Option<&RegistrySection>,
    host: &str,
) -> Result<RegistryConfig, TransportError> {
    let mut cfg = RegistryConfig::new(host);
    let Some(s) = section else { return Ok(cfg) };
    if let Some(i) = s.insecure {
        // Said either way: plain HTTP only, or HTTPS only (no fallback, even on loopback).
        cfg.insecure = i;
        cfg.http_fallback = false;
    }
    cfg.tls_verify = s.tls_verify;
    cfg.ca_file = s.ca_file.clone();
    cfg.max_concurrent = s.max_concurrent;
    cfg.requests_per_second = s.requests_per_second;
    cfg.rate_limit_headers = s.rate_limit_headers;
    if let CredentialSource::Basic { username, password } = &s.credentials {
        let err = |reason: String| TransportError::Credentials {
            host: host.to_string(),
            reason,
        };
        let password = match password {
            SecretSource::Env(v) => {
                std::env::var(v).map_err(|_| err(format!("environment variable {v} is not set")))?
            }
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| err(format!("reading {}: {e}", p.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        cfg.credentials = Some(Credentials::Basic {
            username: username.clone(),
            password,
        });
    }
    Ok(cfg)
}

/// A job's places, opened once at its start (opening asks nothing of them).
pub(crate) struct Places {
    /// Where images come from.
    pub source: Arc<dyn Place>,
    /// Where they go.
    pub destination: Arc<dyn Place>,
    /// The repository the source names, if it names one (else its catalog is listed).
    pub source_repo: Option<String>,
    naming: Naming,
}

/// How a source repository is named at the destination.
struct Naming {
    /// The destination names a repository...
    into: Option<String>,
    /// ...which is the source's one repository (else a prefix to each source repository).
    single: bool,
    /// Prefixed to each source repository when the destination names none (registry
    /// images keep their host in the store, as `pull` does).
    qualify: Option<String>,
}

impl Places {
    /// The destination repository for a source repository.
    pub fn dest_repo(&self, src_repo: &str) -> String {
        let n = &self.naming;
        match (&n.into, &n.qualify) {
            (Some(d), _) if n.single => d.clone(),
            (Some(d), _) => format!("{d}/{src_repo}"),
            (None, Some(host)) => format!("{host}/{src_repo}"),
            (None, None) => src_repo.to_string(),
        }
    }
}

/// Open a job's source and destination.
pub(crate) fn places(store: &Arc<Store>, clients: &Arc<Clients>, job: &JobConfig) -> Places {
    // A read replica follows its writer under the writer's own names (its nodes pull the
    // same references from any replica), so the writer's host is not prefixed.
    let qualify = match (&job.destination, &job.source) {
        (config::Place::Store { .. }, config::Place::Registry { host, .. })
            if !store.is_replica() =>
        {
            Some(host.clone())
        }
        _ => None,
    };
    Places {
        source: open(&job.source, store, clients),
        destination: open(&job.destination, store, clients),
        source_repo: place_repo(&job.source).map(str::to_string),
        naming: Naming {
            into: place_repo(&job.destination).map(str::to_string),
            single: place_repo(&job.source).is_some(),
            qualify,
        },
    }
}

fn open(place: &config::Place, store: &Arc<Store>, clients: &Arc<Clients>) -> Arc<dyn Place> {
    match place {
        config::Place::Registry { host, .. } => Arc::new(RegistryPlace::new(clients.clone(), host)),
        config::Place::Store { .. } => {
            Arc::new(StorePlace::new(store.clone()).with_lease_ttl(RESUME_TTL))
        }
        config::Place::LayoutDir { path } => Arc::new(LayoutDirPlace::new(path.clone())),
        config::Place::LayoutTar { path } => Arc::new(LayoutTarPlace::new(path.clone())),
    }
}

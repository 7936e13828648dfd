//! `[[registry]]`: how to reach one registry host (TLS, credentials, limits), shared by every
//! job touching it.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Cx};
use super::place::check_host;

/// How to reach one registry; shared by every job touching its host.
#[derive(Clone, Debug)]
pub struct RegistrySection {
    /// `host[:port]` as jobs write it.
    pub host: String,
    /// `true`: plain HTTP; `false`: HTTPS only. Unset: HTTPS, except that loopback hosts
    /// fall back to plain HTTP when they refuse the TLS handshake.
    pub insecure: Option<bool>,
    /// Verify TLS certificates (default true).
    pub tls_verify: bool,
    /// Extra PEM root certificates.
    pub ca_file: Option<PathBuf>,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Requests in flight at once (default 8).
    pub max_concurrent: usize,
    /// Requests started per second, over every job (default: unlimited).
    pub requests_per_second: Option<f64>,
    /// Slow down when the registry's `RateLimit-Remaining` header runs low (Docker Hub).
    pub rate_limit_headers: bool,
}

/// Where a registry's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// podman/docker auth files and credential helpers, as `sealift copy` does.
    Auto,
    /// A user name, with the password read from an environment variable or a file when
    /// the job runs (never stored in the config).
    Basic {
        /// User name.
        username: String,
        /// Where the password is.
        password: SecretSource,
    },
}

/// Where a secret is read from, at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file (its content, trailing newline removed).
    File(PathBuf),
}

/// Check every `[[registry]]` section, in file order.
pub(crate) fn parse(
    cx: &Cx<'_>,
    raw: Vec<RawRegistry>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<RegistrySection>, ConfigError> {
    let mut registries: Vec<RegistrySection> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let k = |f: &str| format!("registry[{i}].{f}");
        let host = r.host.get_ref().trim().to_string();
        check_host(&host).map_err(|m| cx.at(&r.host, &k("host"), m))?;
        if registries.iter().any(|x| x.host == host) {
            return Err(cx.at(&r.host, &k("host"), format!("{host} is configured twice")));
        }
        let credentials = match (r.username, r.password_env, r.password_file) {
            (None, None, None) => CredentialSource::Auto,
            (Some(u), Some(env), None) => CredentialSource::Basic {
                username: u.into_inner(),
                password: SecretSource::Env(env.into_inner()),
            },
            (Some(u), None, Some(f)) => CredentialSource::Basic {
                username: u.into_inner(),
                password: SecretSource::File(resolve(f.get_ref())),
            },
            (Some(u), None, None) => return Err(cx.at(
                &u,
                &k("username"),
                "needs password_env or password_file (passwords are never written in the config)"
                    .into(),
            )),
            (_, Some(e), Some(_)) => {
                return Err(cx.at(
                    &e,
                    &k("password_env"),
                    "give password_env or password_file, not both".into(),
                ))
            }
            (None, Some(e), None) => {
                return Err(cx.at(&e, &k("password_env"), "needs username".into()))
            }
            (None, None, Some(f)) => {
                return Err(cx.at(&f, &k("password_file"), "needs username".into()))
            }
        };
        let max_concurrent = match r.max_concurrent {
            Some(m) if *m.get_ref() == 0 || *m.get_ref() > 256 => {
                return Err(cx.at(&m, &k("max_concurrent"), "must be 1 to 256".into()))
            }
            Some(m) => m.into_inner(),
            None => 8,
        };
        let requests_per_second = match r.requests_per_second {
            Some(q) if !(q.get_ref().is_finite() && *q.get_ref() > 0.0) => {
                return Err(cx.at(
                    &q,
                    &k("requests_per_second"),
                    "must be a number above 0".into(),
                ))
            }
            q => q.map(Spanned::into_inner),
        };
        registries.push(RegistrySection {
            host,
            insecure: r.insecure,
            tls_verify: r.tls_verify.unwrap_or(true),
            ca_file: r.ca_file.map(|p| resolve(p.get_ref())),
            credentials,
            max_concurrent,
            requests_per_second,
            rate_limit_headers: r.rate_limit_headers.unwrap_or(true),
        });
    }
    Ok(registries)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    host: Spanned<String>,
    insecure: Option<bool>,
    tls_verify: Option<bool>,
    ca_file: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<usize>>,
    requests_per_second: Option<Spanned<f64>>,
    rate_limit_headers: Option<bool>,
}

//! `[serve]`: `sealift serve` in the daemon's process, checked with the rest of the file so
//! that a bad value stops `sealift sync --daemon` at load with `file:line:col: serve.KEY`,
//! not when the server binds. The keys are the fields of `sealift_serve::ServeOptions`
//! (sealift-serve depends on this crate, not the other way round, so the section is its own
//! type and the CLI turns it into serve's options). What needs I/O (the htpasswd file, the
//! certificate and key, the port being free) is still checked when the server binds.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::error::{ConfigError, Cx};

/// `[serve]` as checked. A key left out is `None`: serve's own default applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeSection {
    /// `addr`: where to listen (`127.0.0.1:5000`; port 0 picks a free port).
    pub addr: Option<SocketAddr>,
    /// `htpasswd`: bcrypt htpasswd file; every request then needs basic auth.
    pub htpasswd: Option<PathBuf>,
    /// `tls_cert`: PEM certificate chain for HTTPS (given with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`: PEM private key for HTTPS (given with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// `insecure_plain_http`: allow plain HTTP on an address other than loopback.
    pub insecure_plain_http: Option<bool>,
    /// `shutdown_grace_secs`: how long a graceful stop waits for requests in flight.
    pub shutdown_grace_secs: Option<u64>,
    /// `idle_timeout_secs`: close connections idle this long (at least 1).
    pub idle_timeout_secs: Option<u64>,
    /// `max_connections`: connections open at once.
    pub max_connections: Option<usize>,
    /// `redirect_blobs`: answer blob GETs with a redirect to a presigned object-store URL.
    pub redirect_blobs: Option<bool>,
    /// `redirect_ttl_secs`: lifetime of those URLs (1 to 3600 seconds).
    pub redirect_ttl_secs: Option<u64>,
}

/// `[serve]` as written. Values are kept as TOML values with their spans so that a value of
/// the wrong type is reported at its key (`serve.max_connections`), which serde's own error
/// (pointing at the value, naming no key) would not do.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServe {
    addr: Option<Spanned<Value>>,
    htpasswd: Option<Spanned<Value>>,
    tls_cert: Option<Spanned<Value>>,
    tls_key: Option<Spanned<Value>>,
    insecure_plain_http: Option<Spanned<Value>>,
    shutdown_grace_secs: Option<Spanned<Value>>,
    idle_timeout_secs: Option<Spanned<Value>>,
    max_connections: Option<Spanned<Value>>,
    redirect_blobs: Option<Spanned<Value>>,
    redirect_ttl_secs: Option<Spanned<Value>>,
}

/// Check `[serve]`; relative paths resolve with `resolve` (against the config's directory).
pub(crate) fn parse(
    cx: &Cx<'_>,
    raw: RawServe,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ServeSection, ConfigError> {
    let addr = match &raw.addr {
        None => None,
        Some(v) => {
            let s = string(cx, v, "addr")?;
            Some(s.parse::<SocketAddr>().map_err(|_| {
                cx.at(
                    v,
                    "serve.addr",
                    format!("{s:?} is not an address with a port (127.0.0.1:5000, [::1]:5000)"),
                )
            })?)
        }
    };
    let path = |v: &Option<Spanned<Value>>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => match string(cx, v, key)? {
                "" => Err(cx.at(v, &format!("serve.{key}"), "empty path".into())),
                s => Ok(Some(resolve(s))),
            },
        }
    };
    let section = ServeSection {
        addr,
        htpasswd: path(&raw.htpasswd, "htpasswd")?,
        tls_cert: path(&raw.tls_cert, "tls_cert")?,
        tls_key: path(&raw.tls_key, "tls_key")?,
        insecure_plain_http: raw
            .insecure_plain_http
            .as_ref()
            .map(|v| boolean(cx, v, "insecure_plain_http"))
            .transpose()?,
        shutdown_grace_secs: count(cx, &raw.shutdown_grace_secs, "shutdown_grace_secs", 0)?,
        idle_timeout_secs: count(cx, &raw.idle_timeout_secs, "idle_timeout_secs", 1)?,
        max_connections: count(cx, &raw.max_connections, "max_connections", 0)?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        redirect_blobs: raw
            .redirect_blobs
            .as_ref()
            .map(|v| boolean(cx, v, "redirect_blobs"))
            .transpose()?,
        redirect_ttl_secs: count(cx, &raw.redirect_ttl_secs, "redirect_ttl_secs", 1)?,
    };
    if let (Some(n), Some(v)) = (section.redirect_ttl_secs, &raw.redirect_ttl_secs) {
        // sealift_serve::MAX_REDIRECT_TTL_SECS (serve depends on this crate, not back).
        if n > 3600 {
            return Err(cx.at(
                v,
                "serve.redirect_ttl_secs",
                format!("must be at most 3600 (1 h), not {n}"),
            ));
        }
    }
    // The checks `sealift_serve::bind` makes before any I/O, made here with a place to point at.
    match (&raw.tls_cert, &raw.tls_key) {
        (Some(v), None) => return Err(cx.at(v, "serve.tls_cert", "needs tls_key".into())),
        (None, Some(v)) => return Err(cx.at(v, "serve.tls_key", "needs tls_cert".into())),
        _ => {}
    }
    if let (Some(a), Some(v)) = (section.addr, &raw.addr) {
        if section.tls_cert.is_none()
            && !a.ip().is_loopback()
            && section.insecure_plain_http != Some(true)
        {
            return Err(cx.at(
                v,
                "serve.addr",
                format!(
                    "{a} is not loopback: serving it needs tls_cert and tls_key, or \
                     insecure_plain_http = true (passwords and content would cross the network \
                     in clear)"
                ),
            ));
        }
    }
    Ok(section)
}

/// The error for a value of the wrong type.
fn wrong_type(cx: &Cx<'_>, v: &Spanned<Value>, key: &str, expected: &str) -> ConfigError {
    cx.at(
        v,
        &format!("serve.{key}"),
        format!("expected {expected}, found {}", v.get_ref().type_str()),
    )
}

fn string<'v>(cx: &Cx<'_>, v: &'v Spanned<Value>, key: &str) -> Result<&'v str, ConfigError> {
    v.get_ref()
        .as_str()
        .ok_or_else(|| wrong_type(cx, v, key, "a string"))
}

fn boolean(cx: &Cx<'_>, v: &Spanned<Value>, key: &str) -> Result<bool, ConfigError> {
    v.get_ref()
        .as_bool()
        .ok_or_else(|| wrong_type(cx, v, key, "true or false"))
}

/// A whole number of at least `min`, if given.
fn count(
    cx: &Cx<'_>,
    v: &Option<Spanned<Value>>,
    key: &str,
    min: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let n = v
        .get_ref()
        .as_integer()
        .ok_or_else(|| wrong_type(cx, v, key, "a whole number"))?;
    match u64::try_from(n) {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(cx.at(
            v,
            &format!("serve.{key}"),
            format!("must be at least {min}, not {n}"),
        )),
    }
}

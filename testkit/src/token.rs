//! A Docker token server for the distribution registry's `auth: token:` mode.
//!
//! Tokens are JWTs signed with ES256 by the `openssl` CLI (one `openssl dgst` per token),
//! carrying the signing certificate in the `x5c` header; the registry trusts that certificate
//! through `rootcertbundle`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::server::{full, Body, ServerThread};

/// The `service` the token server issues tokens for (the registry's `auth.token.service`).
pub const SERVICE: &str = "sealift-testkit-registry";

/// The `iss` of issued tokens (the registry's `auth.token.issuer`).
pub const ISSUER: &str = "sealift-testkit-token-server";

/// Who may have tokens from a [`TokenServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuthOptions {
    /// The one user name accepted.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Whether a token request without credentials is granted `pull` (it is otherwise granted
    /// a token with no access, as Docker Hub does for a private repository).
    pub anonymous_pull: bool,
}

/// A token server on `127.0.0.1` implementing the Docker registry token flow:
///
/// - `GET /token?service=..&scope=..` with optional basic auth returns
///   `{"token","access_token","expires_in","issued_at"}`, plus `"refresh_token"` when
///   `offline_token=true` and the credentials were right;
/// - `POST /token` with a form `grant_type=password` (`username`, `password`) or
///   `grant_type=refresh_token` (`refresh_token`), and `scope` (space-separated), returns
///   `{"access_token","token","expires_in","issued_at","refresh_token","scope"}`.
///
/// Right credentials are granted every action asked for in each `scope`; wrong credentials or
/// an unknown refresh token get 401. Stops when dropped.
pub struct TokenServer {
    state: Arc<State>,
    // Dropped before `_dir`, which holds the signing key it reads.
    server: ServerThread,
    cert_path: PathBuf,
    _dir: TempDir,
}

struct State {
    opts: TokenAuthOptions,
    openssl: PathBuf,
    key_path: PathBuf,
    /// The signing certificate, base64 (standard) DER, for the `x5c` header.
    cert_b64: String,
    requests: AtomicUsize,
    expires_in: AtomicU64,
    /// Refresh token → user name.
    refresh_tokens: Mutex<HashMap<String, String>>,
}

impl TokenServer {
    /// Generates an EC P-256 key and self-signed certificate with `openssl` and starts serving
    /// on a free loopback port. Panics (with an install hint) if `openssl` is missing.
    pub fn start(opts: TokenAuthOptions) -> TokenServer {
        let openssl = crate::require_tool("openssl");
        let dir = tempfile::Builder::new()
            .prefix("sealift-token-")
            .tempdir()
            .unwrap_or_else(|e| panic!("token server: creating a temp dir: {e}"));
        let key_path = dir.path().join("key.pem");
        let cert_path = dir.path().join("cert.pem");
        generate_key_and_cert(&openssl, &key_path, &cert_path);
        let cert_b64 = pem_body(&crate::read_for_message(&cert_path));
        let state = Arc::new(State {
            opts,
            openssl,
            key_path,
            cert_b64,
            requests: AtomicUsize::new(0),
            expires_in: AtomicU64::new(300),
            refresh_tokens: Mutex::new(HashMap::new()),
        });
        let handler_state = state.clone();
        let server = ServerThread::spawn("sealift-token-server", move |req| {
            let state = handler_state.clone();
            async move { handle(&state, req).await }
        });
        TokenServer {
            state,
            server,
            cert_path,
            _dir: dir,
        }
    }

    /// `"http://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The token endpoint, `"http://127.0.0.1:PORT/token"` (the registry's `auth.token.realm`).
    pub fn realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The `service` tokens are issued for ([`SERVICE`]).
    pub fn service(&self) -> &str {
        SERVICE
    }

    /// The `iss` of issued tokens ([`ISSUER`]).
    pub fn issuer(&self) -> &str {
        ISSUER
    }

    /// The PEM certificate whose key signs the tokens (the registry's `rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The options the server was started with.
    pub fn options(&self) -> &TokenAuthOptions {
        &self.state.opts
    }

    /// How many HTTP requests the server has answered (any path, any outcome), so tests can
    /// check that a client caches its tokens.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Sets the lifetime of tokens issued from now on (default 300 s); the `exp` claim and
    /// `expires_in` follow it. Note the registry itself allows some clock leeway on `exp`.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }
}

fn generate_key_and_cert(openssl: &Path, key: &Path, cert: &Path) {
    let output = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-sha256", "-days", "3650"])
        .args(["-subj", "/CN=sealift-testkit-token-server"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", openssl.display()));
    assert!(
        output.status.success(),
        "openssl req failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The base64 body of the first PEM block in `pem`, on one line.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect()
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if req.uri().path() != "/token" {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"}));
    }
    let result = match *req.method() {
        Method::GET => handle_get(state, req).await,
        Method::POST => handle_post(state, req).await,
        _ => Err(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        )),
    };
    result.unwrap_or_else(|response| response)
}

async fn handle_get(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let params = form_params(req.uri().query().unwrap_or(""));
    let subject = match basic_credentials(&req) {
        Some((user, password)) => {
            if user == state.opts.user && password == state.opts.password {
                Some(user)
            } else {
                return Err(unauthorized("wrong user name or password"));
            }
        }
        None => None,
    };
    let scopes = scopes(&params);
    let token = issue(state, subject.as_deref(), &scopes).await?;
    let mut body = json!({
        "token": token.jwt,
        "access_token": token.jwt,
        "expires_in": token.expires_in,
        "issued_at": token.issued_at,
    });
    let offline = params
        .iter()
        .any(|(k, v)| k == "offline_token" && v == "true");
    if let (true, Some(user)) = (offline, subject) {
        body["refresh_token"] = Value::from(new_refresh_token(state, user));
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn handle_post(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let body = req.into_body().collect().await.map_err(|e| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": e.to_string()}),
        )
    })?;
    let params = form_params(&String::from_utf8_lossy(&body.to_bytes()));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (user, refresh_token) = match param("grant_type") {
        Some("password") => {
            let user = param("username").unwrap_or("");
            if user != state.opts.user || param("password") != Some(state.opts.password.as_str()) {
                return Err(unauthorized("wrong user name or password"));
            }
            (user.to_owned(), new_refresh_token(state, user.to_owned()))
        }
        Some("refresh_token") => {
            let given = param("refresh_token").unwrap_or("");
            let user = lock(&state.refresh_tokens).get(given).cloned();
            match user {
                Some(user) => (user, given.to_owned()),
                None => return Err(unauthorized("unknown refresh token")),
            }
        }
        other => {
            return Err(json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "error": "unsupported_grant_type",
                    "error_description": format!("grant_type {other:?} is not supported"),
                }),
            ))
        }
    };
    let scopes = scopes(&params);
    let token = issue(state, Some(&user), &scopes).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "access_token": token.jwt,
            "token": token.jwt,
            "expires_in": token.expires_in,
            "issued_at": token.issued_at,
            "refresh_token": refresh_token,
            "scope": scopes.join(" "),
        }),
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-updated: keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn new_refresh_token(state: &State, user: String) -> String {
    let token = random_id();
    lock(&state.refresh_tokens).insert(token.clone(), user);
    token
}

fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

/// Decoded `application/x-www-form-urlencoded` pairs.
fn form_params(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Every `scope` value, split on spaces (POST sends them space-separated; GET repeats them).
fn scopes(params: &[(String, String)]) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// What `subject` (None: anonymous) gets for `scopes` (`type:name:action,action`; the name
/// may itself hold colons, as in `registry:catalog:*` or a host with a port).
fn grants(opts: &TokenAuthOptions, subject: Option<&str>, scopes: &[String]) -> Vec<Value> {
    let mut access = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .filter(|a| {
                subject.is_some() || (opts.anonymous_pull && kind == "repository" && *a == "pull")
            })
            .collect();
        if !granted.is_empty() {
            access.push(json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    access
}

struct Issued {
    jwt: String,
    expires_in: u64,
    issued_at: String,
}

async fn issue(
    state: &State,
    subject: Option<&str>,
    scopes: &[String],
) -> Result<Issued, Response<Body>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires_in = state.expires_in.load(Ordering::SeqCst);
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [state.cert_b64]});
    let claims = json!({
        "iss": ISSUER,
        "sub": subject.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": random_id(),
        "access": grants(&state.opts, subject, scopes),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign_es256(state, signing_input.as_bytes())
        .await
        .map_err(|e| {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "server_error", "error_description": e}),
            )
        })?;
    Ok(Issued {
        jwt: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
        expires_in,
        issued_at: rfc3339(now),
    })
}

/// Signs with `openssl dgst -sha256 -sign` and converts its DER ECDSA signature to JWS's
/// fixed-width `r || s`.
async fn sign_es256(state: &State, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = tokio::process::Command::new(&state.openssl)
        .args(["dgst", "-sha256", "-sign"])
        .arg(&state.key_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running openssl: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("openssl has no stdin")?;
    stdin
        .write_all(input)
        .await
        .map_err(|e| format!("writing to openssl: {e}"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for openssl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl dgst failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    der_signature_to_raw(&output.stdout, 32).ok_or_else(|| {
        format!(
            "openssl gave a malformed ECDSA signature: {:?}",
            output.stdout
        )
    })
}

/// `SEQUENCE { INTEGER r, INTEGER s }` → `r || s`, each left-padded to `width` bytes.
fn der_signature_to_raw(der: &[u8], width: usize) -> Option<Vec<u8>> {
    fn take_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
        let (&first, rest) = bytes.split_first()?;
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        Some((len, &rest[n..]))
    }
    fn take_integer(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        if tag != 0x02 {
            return None;
        }
        let (len, rest) = take_len(rest)?;
        if rest.len() < len {
            return None;
        }
        Some((&rest[..len], &rest[len..]))
    }
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, rest) = take_len(rest)?;
    let body = rest.get(..len)?;
    let (r, body) = take_integer(body)?;
    let (s, _) = take_integer(body)?;
    let mut out = Vec::with_capacity(2 * width);
    for int in [r, s] {
        let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
        let digits = &int[start..];
        if digits.len() > width {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, width - digits.len()));
        out.extend_from_slice(digits);
    }
    Some(out)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unauthorized(message: &str) -> Response<Body> {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sealift-testkit-token-server\""),
    );
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn der_signature_is_padded_and_unpadded() {
        // r has a leading 0x00 (high bit set), s is short.
        let mut der = vec![0x30, 0];
        der.extend([0x02, 33, 0x00]);
        der.extend([0x80; 32]);
        der.extend([0x02, 2, 0x01, 0x02]);
        der[1] = (der.len() - 2) as u8;
        let raw = der_signature_to_raw(&der, 32).expect("valid DER");
        assert_eq!(raw.len(), 64);
        assert_eq!(&raw[..32], &[0x80; 32]);
        assert_eq!(&raw[32..62], &[0; 30]);
        assert_eq!(&raw[62..], &[1, 2]);
        assert!(der_signature_to_raw(&[0x31, 0], 32).is_none());
    }

    #[test]
    fn scopes_are_granted_by_credentials() {
        let opts = TokenAuthOptions {
            user: "u".into(),
            password: "p".into(),
            anonymous_pull: true,
        };
        let scopes = vec![
            "repository:foo/bar:pull,push".to_owned(),
            "repository:127.0.0.1:5000/x:pull".to_owned(),
            "registry:catalog:*".to_owned(),
        ];
        let user = grants(&opts, Some("u"), &scopes);
        assert_eq!(
            user[0],
            json!({"type": "repository", "name": "foo/bar", "actions": ["pull", "push"]})
        );
        assert_eq!(user[1]["name"], "127.0.0.1:5000/x");
        assert_eq!(
            user[2],
            json!({"type": "registry", "name": "catalog", "actions": ["*"]})
        );
        let anonymous = grants(&opts, None, &scopes);
        assert_eq!(anonymous.len(), 2);
        assert_eq!(anonymous[0]["actions"], json!(["pull"]));
        let closed = TokenAuthOptions {
            anonymous_pull: false,
            ..opts
        };
        assert!(grants(&closed, None, &scopes).is_empty());
    }
}

//! A fault-injecting HTTP/1.1 reverse proxy for failure tests.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::server::{full, Body, BoxError, ServerThread};

/// A fault to inject into requests whose path (with query) contains `path`, `times` times.
///
/// Rules are tried in the order they were pushed; a request gets the first rule that matches
/// and still has uses left. `TooMany`, `Status` and `Redirect` answer at once, without asking
/// the upstream, whatever the method. `DropAfter`, `Corrupt` and `Stall` change a response
/// body: they match `GET` requests only, and are used up only by an upstream answer in 2xx
/// (so a 401 before authentication, or a `HEAD`, leaves them for the real download).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Drop the connection after sending `after` bytes of the response body, for matching
    /// requests (path contains `path`), `times` times. The headers (with the full
    /// `Content-Length`) are sent, so the client sees a short body.
    DropAfter {
        /// Substring of the request path.
        path: String,
        /// Body bytes sent before the connection is closed.
        after: u64,
        /// How many requests get this fault.
        times: usize,
    },
    /// Answer 429 with `Retry-After: retry_after` (seconds) and a registry error body.
    TooMany {
        /// Substring of the request path.
        path: String,
        /// The `Retry-After` value, in seconds.
        retry_after: u64,
        /// How many requests get this fault.
        times: usize,
    },
    /// Answer `status` (e.g. 503) with a registry error body.
    Status {
        /// Substring of the request path.
        path: String,
        /// The status code to answer with.
        status: u16,
        /// How many requests get this fault.
        times: usize,
    },
    /// Send the upstream's response with every body byte flipped (`b ^ 0xff`): wrong content
    /// of the right length.
    Corrupt {
        /// Substring of the request path.
        path: String,
        /// How many requests get this fault.
        times: usize,
    },
    /// Send `after` bytes of the body, then send nothing (keeping the connection open) for
    /// `stall`, then send the rest.
    Stall {
        /// Substring of the request path.
        path: String,
        /// Body bytes sent before stalling.
        after: u64,
        /// How long to send nothing.
        stall: Duration,
        /// How many requests get this fault.
        times: usize,
    },
    /// Answer `307 Temporary Redirect` with `Location: {location_base}{path and query}`,
    /// e.g. with `location_base` the [`FaultProxy::url`] of another proxy ("another host").
    Redirect {
        /// Substring of the request path.
        path: String,
        /// Scheme and authority to redirect to, e.g. `"http://127.0.0.1:PORT"`.
        location_base: String,
        /// How many requests get this fault.
        times: usize,
    },
}

impl Fault {
    fn path(&self) -> &str {
        match self {
            Fault::DropAfter { path, .. }
            | Fault::TooMany { path, .. }
            | Fault::Status { path, .. }
            | Fault::Corrupt { path, .. }
            | Fault::Stall { path, .. }
            | Fault::Redirect { path, .. } => path,
        }
    }

    fn times(&self) -> usize {
        match self {
            Fault::DropAfter { times, .. }
            | Fault::TooMany { times, .. }
            | Fault::Status { times, .. }
            | Fault::Corrupt { times, .. }
            | Fault::Stall { times, .. }
            | Fault::Redirect { times, .. } => *times,
        }
    }

    /// Whether the fault rewrites a body the upstream sends (versus answering by itself).
    fn is_body_fault(&self) -> bool {
        matches!(
            self,
            Fault::DropAfter { .. } | Fault::Corrupt { .. } | Fault::Stall { .. }
        )
    }

    /// The variant's name, as logged in [`RequestLog::fault`].
    pub fn name(&self) -> &'static str {
        match self {
            Fault::DropAfter { .. } => "DropAfter",
            Fault::TooMany { .. } => "TooMany",
            Fault::Status { .. } => "Status",
            Fault::Corrupt { .. } => "Corrupt",
            Fault::Stall { .. } => "Stall",
            Fault::Redirect { .. } => "Redirect",
        }
    }
}

/// One request the proxy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// `GET`, `HEAD`, `PUT`...
    pub method: String,
    /// Path and query, as requested.
    pub path: String,
    /// The status sent to the client (the upstream's, or the fault's; 502 if the upstream
    /// could not be reached).
    pub status: u16,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// The request's `Range` header.
    pub range: Option<String>,
    /// The name of the fault applied ([`Fault::name`]), if any.
    pub fault: Option<&'static str>,
}

/// An HTTP/1.1 reverse proxy on `127.0.0.1` in front of `upstream` that injects [`Fault`]s.
///
/// Everything else is forwarded as is: method, path and query, headers (`Host`,
/// `Authorization` and `Range` included; hop-by-hop headers excepted) and both bodies,
/// streamed, never buffered. `Location` headers naming the upstream are rewritten to the
/// proxy, and since `Host` is forwarded the registry's upload URLs already point back at the
/// proxy. Stops when dropped.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    server: ServerThread,
}

struct ProxyState {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<RequestLog>>,
    next_id: Mutex<u64>,
    client: Client<HttpConnector, Incoming>,
}

struct Rule {
    id: u64,
    fault: Fault,
    remaining: usize,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`"127.0.0.1:PORT"`).
    pub fn start(upstream: &str) -> FaultProxy {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            client,
        });
        let handler_state = state.clone();
        let server = ServerThread::spawn("sealift-fault-proxy", move |req| {
            let state = handler_state.clone();
            let own_host = req
                .headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned);
            async move { handle(&state, own_host, req).await }
        });
        FaultProxy { state, server }
    }

    /// `"127.0.0.1:PORT"` of the proxy.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `"http://127.0.0.1:PORT"` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Adds a fault rule after those already pushed. A rule with `times: 0` never applies.
    pub fn push(&self, rule: Fault) {
        let id = {
            let mut next = lock(&self.state.next_id);
            *next += 1;
            *next
        };
        let remaining = rule.times();
        lock(&self.state.rules).push(Rule {
            id,
            fault: rule,
            remaining,
        });
    }

    /// How many fault applications are left, over all rules (0 once every rule is used up).
    pub fn pending(&self) -> usize {
        lock(&self.state.rules).iter().map(|r| r.remaining).sum()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.state.log).clone()
    }

    /// Forgets the remaining fault rules and the request log.
    pub fn clear(&self) {
        lock(&self.state.rules).clear();
        lock(&self.state.log).clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stay consistent across a panicking holder: keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // A client's `Expect: 100-continue` was answered by our server already.
    headers.remove(hyper::header::EXPECT);
}

impl ProxyState {
    /// The first rule that applies to `method path`: an answering rule is used up now, a
    /// body rule only once the upstream's answer is known ([`ProxyState::consume`]).
    fn pick(&self, method: &Method, path: &str) -> Option<(u64, Fault)> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|r| {
            r.remaining > 0
                && path.contains(r.fault.path())
                && (!r.fault.is_body_fault() || method == Method::GET)
        })?;
        let rule = &mut rules[index];
        if !rule.fault.is_body_fault() {
            rule.remaining -= 1;
        }
        Some((rule.id, rule.fault.clone()))
    }

    /// Uses up one application of rule `id`; false if a concurrent request took the last.
    fn consume(&self, id: u64) -> bool {
        let mut rules = lock(&self.rules);
        match rules.iter_mut().find(|r| r.id == id && r.remaining > 0) {
            Some(rule) => {
                rule.remaining -= 1;
                true
            }
            None => false,
        }
    }

    fn record(&self, entry: RequestLog) {
        lock(&self.log).push(entry);
    }
}

async fn handle(
    state: &ProxyState,
    own_host: Option<String>,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let authorization = req.headers().contains_key(hyper::header::AUTHORIZATION);
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut entry = RequestLog {
        method: method.to_string(),
        path: path.clone(),
        status: 0,
        authorization,
        range,
        fault: None,
    };

    let picked = state.pick(&method, &path);
    if let Some((_, fault)) = &picked {
        if let Some(response) = answer_without_upstream(fault, &path) {
            entry.status = response.status().as_u16();
            entry.fault = Some(fault.name());
            state.record(entry);
            return response;
        }
    }

    let response = match forward(state, req, &path).await {
        Ok(response) => response,
        Err(message) => {
            let response = registry_error(StatusCode::BAD_GATEWAY, "UNAVAILABLE", &message);
            entry.status = response.status().as_u16();
            state.record(entry);
            return response;
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(own_host) = &own_host {
        rewrite_location(&mut parts.headers, &state.upstream, own_host);
    }
    entry.status = parts.status.as_u16();

    let body = match picked {
        Some((id, fault)) if parts.status.is_success() && state.consume(id) => {
            entry.fault = Some(fault.name());
            faulty_body(body, &fault)
        }
        _ => body.map_err(BoxError::from).boxed(),
    };
    state.record(entry);
    Response::from_parts(parts, body)
}

/// The response for a fault that answers by itself; `None` for body faults.
fn answer_without_upstream(fault: &Fault, path: &str) -> Option<Response<Body>> {
    match fault {
        Fault::TooMany { retry_after, .. } => {
            let mut response = registry_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "too many requests (injected by sealift-testkit)",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after));
            Some(response)
        }
        Fault::Status { status, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status {
                StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
                StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
                StatusCode::FORBIDDEN => "DENIED",
                StatusCode::TOO_MANY_REQUESTS => "TOOMANYREQUESTS",
                _ => "UNKNOWN",
            };
            Some(registry_error(
                status,
                code,
                "status injected by sealift-testkit",
            ))
        }
        Fault::Redirect { location_base, .. } => {
            let location = format!("{}{path}", location_base.trim_end_matches('/'));
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            match HeaderValue::try_from(location) {
                Ok(value) => {
                    response.headers_mut().insert(LOCATION, value);
                    Some(response)
                }
                Err(e) => Some(registry_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    &format!("sealift-testkit: bad Redirect location_base {location_base:?}: {e}"),
                )),
            }
        }
        Fault::DropAfter { .. } | Fault::Corrupt { .. } | Fault::Stall { .. } => None,
    }
}

/// A body in the registry API's error format.
fn registry_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn forward(
    state: &ProxyState,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Incoming>, String> {
    let (mut parts, body) = req.into_parts();
    let uri: Uri = format!("http://{}{path}", state.upstream)
        .parse()
        .map_err(|e| format!("sealift-testkit proxy: bad upstream URI: {e}"))?;
    parts.uri = uri;
    parts.version = hyper::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // `Host` stays the proxy's, so the registry builds its Location URLs for the proxy.
    state
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| format!("sealift-testkit proxy: upstream {}: {e}", state.upstream))
}

/// Points `Location: http://{upstream}/...` at the proxy.
fn rewrite_location(headers: &mut HeaderMap, upstream: &str, own_host: &str) {
    let name = HeaderName::from_static("location");
    let Some(location) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let prefix = format!("http://{upstream}");
    if let Some(rest) = location.strip_prefix(&prefix) {
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            if let Ok(value) = HeaderValue::try_from(format!("http://{own_host}{rest}")) {
                headers.insert(name, value);
            }
        }
    }
}

/// How a body fault rewrites the stream.
enum Mode {
    Drop { after: u64 },
    Corrupt,
    Stall { after: u64, stall: Duration },
}

struct FaultStream {
    body: Incoming,
    mode: Mode,
    sent: u64,
    /// Bytes held back by a stall, sent once it is over.
    held: Option<Bytes>,
    /// Set once a `Drop` has sent its bytes: the next poll ends the connection.
    dropping: bool,
    /// Set once the drop's error was returned.
    finished: bool,
    stalled: bool,
}

fn faulty_body(body: Incoming, fault: &Fault) -> Body {
    let mode = match fault {
        Fault::DropAfter { after, .. } => Mode::Drop { after: *after },
        Fault::Stall { after, stall, .. } => Mode::Stall {
            after: *after,
            stall: *stall,
        },
        _ => Mode::Corrupt,
    };
    let state = FaultStream {
        body,
        mode,
        sent: 0,
        held: None,
        dropping: false,
        finished: false,
        stalled: false,
    };
    let frames = stream::unfold(state, |mut s| async move {
        let frame = next_frame(&mut s).await?;
        Some((frame, s))
    });
    StreamBody::new(frames).boxed()
}

async fn next_frame(s: &mut FaultStream) -> Option<Result<Frame<Bytes>, BoxError>> {
    if s.finished {
        return None;
    }
    if s.dropping {
        // Let the bytes already queued reach the socket before the connection goes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.dropping = false;
        s.finished = true;
        return Some(Err(
            "connection dropped (injected by sealift-testkit)".into()
        ));
    }
    if let Some(held) = s.held.take() {
        if let Mode::Stall { stall, .. } = s.mode {
            tokio::time::sleep(stall).await;
        }
        s.sent += held.len() as u64;
        return Some(Ok(Frame::data(held)));
    }
    loop {
        if let Mode::Drop { after } = s.mode {
            if s.sent >= after {
                s.dropping = true;
                return Box::pin(next_frame(s)).await;
            }
        }
        let frame = match s.body.frame().await? {
            Ok(frame) => frame,
            Err(e) => return Some(Err(e.into())),
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => return Some(Ok(frame)),
        };
        if data.is_empty() {
            continue;
        }
        let len = data.len() as u64;
        match s.mode {
            Mode::Corrupt => {
                s.sent += len;
                let flipped: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
                return Some(Ok(Frame::data(Bytes::from(flipped))));
            }
            Mode::Drop { after } => {
                let room = after - s.sent;
                if len <= room {
                    s.sent += len;
                    return Some(Ok(Frame::data(data)));
                }
                s.sent = after;
                s.dropping = true;
                // `room` < `len` fits in usize.
                return Some(Ok(Frame::data(data.slice(..room as usize))));
            }
            Mode::Stall { after, .. } => {
                if s.stalled || s.sent + len <= after {
                    s.sent += len;
                    return Some(Ok(Frame::data(data)));
                }
                s.stalled = true;
                let room = (after - s.sent) as usize;
                s.held = Some(data.slice(room..));
                s.sent += room as u64;
                if room > 0 {
                    return Some(Ok(Frame::data(data.slice(..room))));
                }
                return Box::pin(next_frame(s)).await;
            }
        }
    }
}

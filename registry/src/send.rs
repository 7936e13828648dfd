//! The path every registry request takes: the rate limit, then one try with authentication
//! (`auth/flow.rs`, on top of `redirect.rs`), then retries with backoff and jitter on
//! connection errors, timeouts, 429 (honouring `Retry-After`) and 5xx, never on other 4xx.
//! Operations (`blob.rs`, `manifest.rs`, ...) build on [`Registry::send`].

use reqwest::StatusCode;

use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{read_limited, redact, ReadResp, Req, Resp};
use crate::retry::parse_retry_after;

impl Registry {
    /// Send a request: permits, auth, redirects, retries. Returns whatever status the
    /// last try got (429/5xx only once retries are spent); callers decide what is an
    /// error.
    pub(crate) async fn send(&self, req: &Req) -> Result<Resp, RegistryError> {
        let policy = &self.inner.cfg.retry;
        let mut tried = 0u32;
        loop {
            tried += 1;
            self.inner.limiter.wait().await;
            let outcome = self.send_authed(req).await;
            if let Ok(r) = &outcome {
                if self.inner.cfg.rate_limit_headers {
                    self.inner
                        .limiter
                        .observe(&self.inner.cfg.host, r.header("ratelimit-remaining"))
                        .await;
                }
            }
            let (retry_after, why) = match &outcome {
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    (
                        r.header(reqwest::header::RETRY_AFTER)
                            .and_then(parse_retry_after),
                        format!("HTTP {}", r.status().as_u16()),
                    )
                }
                Err(e) if e.is_transient() => (None, e.to_string()),
                _ => return outcome,
            };
            if !policy.may_retry(tried) {
                return outcome;
            }
            drop(outcome);
            let delay = policy.delay(tried, retry_after);
            tracing::warn!(
                method = %req.method,
                url = %redact(&req.url),
                attempt = tried,
                delay_ms = delay.as_millis() as u64,
                error = %why,
                "registry request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Send and read a small body fully, retrying the whole request when the body breaks
    /// off. A non-success status comes back unread as `Err(resp)` for the caller to map;
    /// the body is `None` when it is over `limit`.
    pub(crate) async fn send_read(
        &self,
        req: &Req,
        limit: u64,
    ) -> Result<Result<(ReadResp, Option<Vec<u8>>), Resp>, RegistryError> {
        let policy = &self.inner.cfg.retry;
        let mut tried = 0;
        loop {
            tried += 1;
            let resp = self.send(req).await?;
            if !resp.status().is_success() {
                return Ok(Err(resp));
            }
            let meta = ReadResp {
                status: resp.status(),
                headers: resp.resp.headers().clone(),
                url: resp.url.clone(),
            };
            match read_limited(resp, limit, self.timeout()).await {
                Ok(body) => return Ok(Ok((meta, body))),
                Err(e) if e.is_transient() && policy.may_retry(tried) => {
                    tracing::warn!(url = %redact(&req.url), error = %e, "response body broke off; retrying");
                    tokio::time::sleep(policy.delay(tried, None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

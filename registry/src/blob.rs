//! Blobs: HEAD, verified and resumable GET, monolithic and chunked upload, cross-repo mount.
//!
//! Long file: just over 600 lines; the blob API area and `BlobReader` (hash while reading,
//! refuse bytes past the size, resume with `Range`) share the request helpers kept here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use sealift_oci::digest::Hasher;
use sealift_oci::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::io::StreamReader;
use url::Url;

use crate::auth::challenge::{merge_scopes, Scope};
use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{redact, Req, Resp};
use crate::name::check_repo;

/// Progress made since the last failure that earns a blob read a fresh set of resume tries.
const RESUME_PROGRESS: u64 = 1024 * 1024;

impl Registry {
    fn blob_url(&self, repo: &str, digest: &Digest) -> Result<Url, RegistryError> {
        check_repo(repo)?;
        self.url(&format!("v2/{repo}/blobs/{digest}"))
    }

    /// The size of a blob, or `None` when the repository does not have it.
    pub async fn blob_head(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let req = Req::new(
            Method::HEAD,
            self.blob_url(repo, digest)?,
            vec![Scope::pull(repo)],
        );
        let resp = self.send(&req).await?;
        match resp.status() {
            s if s.is_success() => {
                resp.content_length()
                    .map(Some)
                    .ok_or_else(|| RegistryError::BadResponse {
                        url: redact(&resp.url),
                        detail: "blob HEAD without Content-Length".into(),
                    })
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(resp.into_error(self.timeout()).await),
        }
    }

    /// Read a blob of the given size. The reader verifies size and digest as it goes and
    /// resumes with `Range` when the connection breaks; see [`BlobReader`].
    pub async fn blob_get(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader, RegistryError> {
        self.blob_get_with(repo, digest, size, true).await
    }

    /// [`Registry::blob_get`] without the digest check: the size is still bounded (a byte
    /// past `size` is an error, an early end resumes or fails), but the bytes are not
    /// hashed. Only for a consumer that hashes every byte itself and refuses a mismatch
    /// before anything becomes visible (the store's ingest, [`Registry::blob_put`]), so
    /// that a pulled blob is hashed once, not twice.
    pub async fn blob_get_unhashed(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader, RegistryError> {
        self.blob_get_with(repo, digest, size, false).await
    }

    async fn blob_get_with(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        hash: bool,
    ) -> Result<BlobReader, RegistryError> {
        let url = self.blob_url(repo, digest)?;
        let mut state = BlobState {
            reg: self.clone(),
            repo: repo.to_string(),
            url,
            digest: digest.clone(),
            size,
            offset: 0,
            hasher: hash.then(|| Hasher::new(digest.algorithm())),
            body: None,
            skip: 0,
            failures: 0,
            progress_since_failure: 0,
            done: false,
        };
        // Open eagerly so that 404 and auth errors come from blob_get, not the first read.
        state.open().await?;
        let stream: BoxStream<'static, io::Result<Bytes>> =
            futures_util::stream::unfold(state, |mut s| async move {
                let item = s.next_chunk().await?;
                Some((item, s))
            })
            .boxed();
        Ok(BlobReader {
            digest: digest.clone(),
            size,
            inner: StreamReader::new(stream),
        })
    }

    /// Upload a blob of `size` bytes with `digest`, reading `body`. Blobs up to
    /// `chunk_size` go in one PUT; bigger ones in PATCH chunks of `chunk_size`. The body is
    /// hashed as it is read: if it is longer or shorter than `size` or does not match
    /// `digest`, the upload is cancelled and an error returned. Each request carries a
    /// buffered body, so a transient failure retries that request, not the whole upload.
    pub async fn blob_put(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut body: impl AsyncRead + Send + Unpin + 'static,
    ) -> Result<(), RegistryError> {
        check_repo(repo)?;
        let chunk_size = self.config().chunk_size.max(1) as u64;
        let mut hasher = Hasher::new(digest.algorithm());
        if size <= chunk_size {
            // Small: verify everything before touching the registry.
            let data = read_part(&mut body, size as usize, 0, digest, size).await?;
            hasher.update(&data);
            check_end(&mut body, digest, size, hasher).await?;
            let location = self.upload_start(repo).await?;
            return match self
                .upload_finish(repo, &location, digest, size, data)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.upload_cancel(repo, &location).await;
                    Err(e)
                }
            };
        }
        let mut location = self.upload_start(repo).await?;
        let result: Result<(), RegistryError> = async {
            let mut offset = 0u64;
            while offset < size {
                let n = (size - offset).min(chunk_size) as usize;
                let data = read_part(&mut body, n, offset, digest, size).await?;
                hasher.update(&data);
                location = self.upload_chunk(repo, &location, offset, data).await?;
                offset += n as u64;
            }
            check_end(&mut body, digest, size, hasher).await?;
            self.upload_finish(repo, &location, digest, size, Bytes::new())
                .await
        }
        .await;
        if result.is_err() {
            self.upload_cancel(repo, &location).await;
        }
        result
    }

    /// Start an upload session; the Location to send data to.
    async fn upload_start(&self, repo: &str) -> Result<Url, RegistryError> {
        let req = Req::new(
            Method::POST,
            self.url(&format!("v2/{repo}/blobs/uploads/"))?,
            vec![Scope::push(repo)],
        );
        let resp = self.send(&req).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(resp.into_error(self.timeout()).await);
        }
        location_of(&resp)
    }

    /// Send one chunk at `offset`; the Location for the next request.
    async fn upload_chunk(
        &self,
        repo: &str,
        location: &Url,
        offset: u64,
        data: Bytes,
    ) -> Result<Url, RegistryError> {
        let end = offset + data.len() as u64 - 1;
        let req = Req::new(Method::PATCH, location.clone(), vec![Scope::push(repo)])
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, &format!("{offset}-{end}"))
            .body(data);
        let resp = self.send(&req).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(resp.into_error(self.timeout()).await);
        }
        location_of(&resp)
    }

    /// Close an upload with its digest, sending the last bytes (or none).
    async fn upload_finish(
        &self,
        repo: &str,
        location: &Url,
        digest: &Digest,
        size: u64,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut req = Req::new(Method::PUT, url, vec![Scope::push(repo)])
            .header(CONTENT_TYPE, "application/octet-stream");
        if !data.is_empty() {
            req = req.header(CONTENT_LENGTH, &data.len().to_string());
        }
        let req = req.body(data);
        let resp = self.send(&req).await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            // A retried PUT whose first try went through finds its session gone: the blob
            // is there, which is all that was asked.
            StatusCode::NOT_FOUND
                if self.blob_head(repo, digest).await.ok().flatten() == Some(size) =>
            {
                Ok(())
            }
            _ => Err(resp.into_error(self.timeout()).await),
        }
    }

    /// Best-effort DELETE of an upload session that will not be finished.
    async fn upload_cancel(&self, repo: &str, location: &Url) {
        let req = Req::new(Method::DELETE, location.clone(), vec![Scope::push(repo)]);
        if let Err(e) = self.send(&req).await {
            tracing::debug!(url = %redact(location), error = %e, "cancelling upload failed");
        }
    }

    /// Mount a blob from another repository of this registry. `true` when mounted;
    /// `false` when the registry started an ordinary upload instead (that session is
    /// cancelled; the caller uploads).
    pub async fn blob_mount(
        &self,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        check_repo(repo)?;
        check_repo(from_repo)?;
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from_repo);
        let scopes = merge_scopes([Scope::push(repo), Scope::pull(from_repo)]);
        let resp = self.send(&Req::new(Method::POST, url, scopes)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = location_of(&resp) {
                    drop(resp);
                    self.upload_cancel(repo, &loc).await;
                }
                Ok(false)
            }
            _ => Err(resp.into_error(self.timeout()).await),
        }
    }
}

/// The Location of an upload response, resolved against the URL that answered.
fn location_of(resp: &Resp) -> Result<Url, RegistryError> {
    let loc = resp
        .header(LOCATION)
        .ok_or_else(|| RegistryError::BadResponse {
            url: redact(&resp.url),
            detail: format!("{} without Location", resp.status().as_u16()),
        })?;
    resp.url.join(loc).map_err(|e| RegistryError::BadResponse {
        url: redact(&resp.url),
        detail: format!("unparsable upload Location: {e}"),
    })
}

/// Read exactly `n` bytes of an upload body that started at `offset` of `size`.
async fn read_part(
    body: &mut (impl AsyncRead + Unpin),
    n: usize,
    offset: u64,
    digest: &Digest,
    size: u64,
) -> Result<Bytes, RegistryError> {
    let mut buf = BytesMut::zeroed(n);
    let mut got = 0;
    while got < n {
        let r = body.read(&mut buf[got..]).await?;
        if r == 0 {
            return Err(RegistryError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: offset + got as u64,
            });
        }
        got += r;
    }
    Ok(buf.freeze())
}

/// After `size` bytes: the body must end, and the bytes must hash to `digest`.
async fn check_end(
    body: &mut (impl AsyncRead + Unpin),
    digest: &Digest,
    size: u64,
    hasher: Hasher,
) -> Result<(), RegistryError> {
    let mut probe = [0u8; 1];
    if body.read(&mut probe).await? != 0 {
        return Err(RegistryError::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            actual: size + 1,
        });
    }
    let actual = hasher.finish();
    if &actual != digest {
        return Err(RegistryError::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// A blob body being read: verifies as it goes and resumes broken connections.
///
/// Every byte is hashed (unless opened by [`Registry::blob_get_unhashed`], for a consumer
/// that hashes itself); bytes past `size` are refused (an error, not a silent truncation);
/// at the end the size and digest are checked. Errors come out as [`io::Error`]s wrapping
/// a [`RegistryError`] (see [`RegistryError::from_io`]): `DigestMismatch`, `SizeMismatch`,
/// or the last transport error. When the connection drops, stalls longer than the
/// configured timeout, or ends early, the reader asks again with `Range: bytes=N-`
/// (skipping the first N bytes itself if the server ignores the range), up to the retry
/// policy's attempts without progress. It holds one of the registry's concurrency permits
/// while a response is open.
pub struct BlobReader {
    digest: Digest,
    size: u64,
    inner: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    /// The digest being read.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The expected size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl RegistryError {
    /// The registry error inside an [`io::Error`] from a [`BlobReader`], if it is one.
    pub fn from_io(e: &io::Error) -> Option<&RegistryError> {
        e.get_ref()?.downcast_ref::<RegistryError>()
    }
}

fn io_err(e: RegistryError) -> io::Error {
    let kind = match &e {
        RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => {
            io::ErrorKind::InvalidData
        }
        RegistryError::Timeout { .. } => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct BlobState {
    reg: Registry,
    repo: String,
    url: Url,
    digest: Digest,
    size: u64,
    /// Bytes verified and handed out.
    offset: u64,
    hasher: Option<Hasher>,
    /// The open response body and the permit it holds.
    body: Option<(Body, OwnedSemaphorePermit)>,
    /// Bytes still to drop from the current body (a server that ignored Range).
    skip: u64,
    failures: u32,
    progress_since_failure: u64,
    done: bool,
}

impl BlobState {
    /// GET the blob from `offset` on.
    async fn open(&mut self) -> Result<(), RegistryError> {
        let mut req = Req::new(Method::GET, self.url.clone(), vec![Scope::pull(&self.repo)]);
        if self.offset > 0 {
            req = req.header(RANGE, &format!("bytes={}-", self.offset));
        }
        let resp = self.reg.send(&req).await?;
        let shown = redact(&resp.url);
        let status = resp.status();
        let skip = match status {
            StatusCode::OK => {
                if let Some(len) = resp.content_length() {
                    if len != self.size {
                        return Err(RegistryError::SizeMismatch {
                            digest: self.digest.clone(),
                            expected: self.size,
                            actual: len,
                        });
                    }
                }
                self.offset
            }
            StatusCode::PARTIAL_CONTENT if self.offset > 0 => {
                let start = resp
                    .header(CONTENT_RANGE)
                    .and_then(parse_content_range_start)
                    .ok_or_else(|| RegistryError::BadResponse {
                        url: shown.clone(),
                        detail: "206 without a usable Content-Range".into(),
                    })?;
                if start > self.offset {
                    return Err(RegistryError::BadResponse {
                        url: shown,
                        detail: format!(
                            "asked for bytes from {} and got bytes from {start}",
                            self.offset
                        ),
                    });
                }
                self.offset - start
            }
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::NotFound {
                    host: self.reg.host().to_string(),
                    repo: self.repo.clone(),
                    reference: self.digest.to_string(),
                })
            }
            _ => return Err(resp.into_error(self.reg.timeout()).await),
        };
        if self.offset > 0 {
            tracing::info!(url = %shown, offset = self.offset, status = status.as_u16(), "resumed blob download");
        }
        self.skip = skip;
        let Resp { resp, permit, .. } = resp;
        self.body = Some((Box::pin(resp.bytes_stream()), permit));
        Ok(())
    }

    /// The next verified chunk, an error, or `None` at the (verified) end.
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            let Some((body, _permit)) = self.body.as_mut() else {
                if let Err(e) = self.open().await {
                    if e.is_transient() {
                        if let Some(wait) = self.note_failure(&e) {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    self.done = true;
                    return Some(Err(io_err(e)));
                }
                continue;
            };
            let timeout = self.reg.timeout();
            let failure = match tokio::time::timeout(timeout, body.next()).await {
                Err(_) => RegistryError::Timeout {
                    method: "GET".into(),
                    url: redact(&self.url),
                    after: timeout,
                },
                Ok(Some(Err(e))) => RegistryError::Transport {
                    method: "GET".into(),
                    url: redact(&self.url),
                    source: e.without_url(),
                },
                Ok(None) if self.offset < self.size => RegistryError::BadResponse {
                    url: redact(&self.url),
                    detail: format!("body ended at byte {} of {}", self.offset, self.size),
                },
                Ok(None) => {
                    self.body = None;
                    self.done = true;
                    let actual = self.hasher.take().map(Hasher::finish);
                    return match actual {
                        Some(a) if a == self.digest => None,
                        Some(actual) => Some(Err(io_err(RegistryError::DigestMismatch {
                            expected: self.digest.clone(),
                            actual,
                        }))),
                        None => None,
                    };
                }
                Ok(Some(Ok(mut chunk))) => {
                    if self.skip > 0 {
                        let drop_n = self.skip.min(chunk.len() as u64) as usize;
                        let _ = chunk.split_to(drop_n);
                        self.skip -= drop_n as u64;
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    if self.offset + chunk.len() as u64 > self.size {
                        self.body = None;
                        self.done = true;
                        return Some(Err(io_err(RegistryError::SizeMismatch {
                            digest: self.digest.clone(),
                            expected: self.size,
                            actual: self.offset + chunk.len() as u64,
                        })));
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    self.offset += chunk.len() as u64;
                    self.progress_since_failure += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
            };
            // The body broke: drop it (and its permit) and resume after a pause.
            self.body = None;
            match self.note_failure(&failure) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    self.done = true;
                    return Some(Err(io_err(failure)));
                }
            }
        }
    }

    /// Count a failure; the pause before resuming, or `None` when out of tries.
    fn note_failure(&mut self, e: &RegistryError) -> Option<std::time::Duration> {
        if self.progress_since_failure >= RESUME_PROGRESS {
            self.failures = 0;
        }
        self.progress_since_failure = 0;
        self.failures += 1;
        let policy = &self.reg.config().retry;
        if !policy.may_retry(self.failures) {
            tracing::warn!(digest = %self.digest, offset = self.offset, error = %e, "blob download failed; out of tries");
            return None;
        }
        tracing::warn!(digest = %self.digest, offset = self.offset, error = %e, "blob download broke off; resuming");
        Some(policy.delay(self.failures, None))
    }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` value.
pub fn parse_content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("bytes */200"), None);
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
    }

    #[tokio::test]
    async fn upload_body_checks() {
        let d = Digest::sha256(b"hello");
        let mut r: &[u8] = b"hel";
        let e = read_part(&mut r, 5, 0, &d, 5).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::SizeMismatch { actual: 3, .. }),
            "{e}"
        );
        let mut r: &[u8] = b"hello!";
        let data = read_part(&mut r, 5, 0, &d, 5).await.unwrap();
        let mut h = Hasher::new(d.algorithm());
        h.update(&data);
        let e = check_end(&mut r, &d, 5, h).await.unwrap_err();
        assert!(matches!(e, RegistryError::SizeMismatch { .. }), "{e}");
        let mut r: &[u8] = b"";
        let mut h = Hasher::new(d.algorithm());
        h.update(b"hellO");
        let e = check_end(&mut r, &d, 5, h).await.unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    }
}

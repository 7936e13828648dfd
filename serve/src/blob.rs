//! `GET`/`HEAD /v2/<name>/blobs/<digest>`: streamed from the blob's backend (a local file
//! or an object store), with `Range`, or (`redirect_blobs`) a GET redirected to a presigned
//! URL of the blob's object. HEAD is always answered from the record.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::TryStreamExt;
use sealift_oci::{Digest, Repo};
use sealift_store::{BlobReader, ChunkStream};

use crate::error::{ApiError, Code};
use crate::range::{self, Span};
use crate::state::{etag, not_modified, with_digest, State};

/// Bytes read from the blob file at a time. Each read is one hand-off to tokio's blocking
/// pool, so small reads cost CPU per byte; 1 MiB keeps that negligible while a slow client
/// holds at most a few MiB per connection (hyper applies back-pressure).
pub const CHUNK: usize = 1024 * 1024;

/// The body: `len` bytes of `reader` from its current position.
fn stream(reader: BlobReader, len: u64, digest: Digest) -> Body {
    match reader {
        BlobReader::File(f) => stream_file(f, len, digest),
        BlobReader::Stream(s) => stream_chunks(s, len, digest),
    }
}

/// A local file's body, read a chunk at a time on the blocking pool straight into the
/// buffer that becomes the chunk (tokio's `File` would read into its own buffer and copy).
/// No thread is held while the client is slow: the next read starts only when hyper asks
/// for the next chunk.
fn stream_file(file: std::fs::File, len: u64, digest: Digest) -> Body {
    let chunks = futures_util::stream::try_unfold((file, len), move |(file, left)| {
        let digest = digest.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            let n = left.min(CHUNK as u64);
            let (file, buf) = tokio::task::spawn_blocking(move || {
                let mut file = file;
                let mut buf = Vec::with_capacity(n as usize);
                (&mut file)
                    .take(n)
                    .read_to_end(&mut buf)
                    .map(|_| (file, buf))
            })
            .await
            .map_err(std::io::Error::other)??;
            if buf.len() as u64 != n {
                return Err(ended_early(&digest, left - buf.len() as u64));
            }
            Ok(Some((Bytes::from(buf), (file, left - n))))
        }
    });
    Body::from_stream(chunks)
}

/// An object store's body, passed on as its chunks arrive (no copy): each turn on the
/// blocking pool (the chunks come over a blocking channel from the store's own runtime)
/// takes chunks until about [`CHUNK`] bytes, then hyper sends them. A body that ends
/// before `len` fails, as a short file does.
fn stream_chunks(reader: Box<dyn ChunkStream>, len: u64, digest: Digest) -> Body {
    let turns = futures_util::stream::try_unfold((reader, len), move |(reader, left)| {
        let digest = digest.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            let (reader, got) = tokio::task::spawn_blocking(move || {
                let mut reader = reader;
                let mut got: Vec<Bytes> = Vec::new();
                let mut n = 0u64;
                while n < left.min(CHUNK as u64) {
                    let want = (left - n).min(CHUNK as u64) as usize;
                    match reader.next_chunk(want) {
                        Ok(Some(b)) => {
                            n += b.len() as u64;
                            got.push(b);
                        }
                        Ok(None) => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok((reader, got))
            })
            .await
            .map_err(std::io::Error::other)??;
            let n: u64 = got.iter().map(|b| b.len() as u64).sum();
            if n == 0 {
                return Err(ended_early(&digest, left));
            }
            let items = futures_util::stream::iter(got.into_iter().map(Ok::<_, std::io::Error>));
            Ok(Some((items, (reader, left - n))))
        }
    });
    Body::from_stream(turns.try_flatten())
}

/// A body shorter than its record (truncated under us, or an object store's response cut
/// short): the body fails rather than let the client see a clean end.
fn ended_early(digest: &Digest, short: u64) -> std::io::Error {
    tracing::error!("blob {digest} ended {short} bytes early");
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("blob {digest} is shorter than its record"),
    )
}

/// Open `d` at `start`; for a local file, check first that it still has the recorded size
/// (an object store's stream is checked as it is read: a short one fails the body).
fn open_checked(s: &State, d: &Digest, start: u64, size: u64) -> Result<BlobReader, ApiError> {
    let reader = match s.store.open_blob_at(d, start) {
        Ok(r) => r,
        Err(sealift_store::Error::NotFound(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                Code::BlobUnknown,
                format!("blob {d} is not in the store"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if let BlobReader::File(f) = &reader {
        let len = f
            .metadata()
            .map_err(|e| ApiError::store(&format!("blob {d}"), &e))?
            .len();
        if len != size {
            return Err(ApiError::store(
                &format!("blob {d}"),
                &format!(
                    "its file holds {len} bytes, the record says {size} (run `sealift verify`)"
                ),
            ));
        }
    }
    Ok(reader)
}

/// A presigned URL of the blob's object, valid for `ttl`, as a `Location` header; `None`
/// when the backend hands out no URL (the blob is then streamed). The URL is a bearer
/// credential for the blob: it is never logged.
async fn presigned(
    state: &Arc<State>,
    digest: &Digest,
    ttl: std::time::Duration,
) -> Result<Option<HeaderValue>, ApiError> {
    let d = digest.clone();
    let url = state
        .blocking(move |s| Ok(s.store.backend().presign(&d, ttl)?))
        .await?;
    url.map(|u| {
        HeaderValue::from_str(&u)
            .map_err(|e| ApiError::store(&format!("presigning blob {digest}"), &e))
    })
    .transpose()
}

/// Answer a blob request.
pub async fn get(
    state: &Arc<State>,
    repo: Repo,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let d = digest.clone();
    let (size, wanted) = state
        .blocking(move |s| {
            let unknown = |what: String| {
                s.unknown(
                    &repo,
                    ApiError::new(StatusCode::NOT_FOUND, Code::BlobUnknown, what),
                )
            };
            if !s.reach.contains(&s.store, &repo, &d)? {
                return Err(unknown(format!("blob {d} is not in repository {repo}")));
            }
            let Some(rec) = s.store.record(&d)? else {
                return Err(unknown(format!("blob {d} is not in the store")));
            };
            if head {
                return Ok((rec.size, None));
            }
            Ok((rec.size, Some(())))
        })
        .await?;

    let tag = etag(&digest);
    let resp = with_digest(Response::builder(), &digest)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if not_modified(headers, &tag) {
        return resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::store("building a response", &e));
    }
    // Redirected: the client sends its `Range` to the object store, which answers it.
    if let (Some(ttl), Some(())) = (state.redirect, wanted) {
        if let Some(location) = presigned(state, &digest, ttl).await? {
            return resp
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, location)
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .map_err(|e| ApiError::store("building a response", &e));
        }
    }
    // A range for another version of the content (If-Range) means: send it all.
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .is_none_or(|v| v.as_bytes() == tag.as_bytes())
        });
    let (resp, start, len) = match range::span(range, size) {
        Span::Full => (resp.status(StatusCode::OK), 0, size),
        Span::Part { start, end } => (
            resp.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
            start,
            end - start + 1,
        ),
        Span::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::Unsupported,
                format!(
                    "range {:?} is invalid or outside blob {digest} ({size} bytes)",
                    range.unwrap_or("")
                ),
            )
            .with_header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            ))
        }
    };
    let resp = resp.header(header::CONTENT_LENGTH, len);
    let body = match wanted {
        None => Body::empty(),
        Some(()) => {
            let d = digest.clone();
            let reader = state
                .blocking(move |s| open_checked(s, &d, start, size))
                .await?;
            stream(reader, len, digest)
        }
    };
    resp.body(body)
        .map_err(|e| ApiError::store("building a response", &e))
}

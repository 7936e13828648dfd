//! A staged write to the bucket: buffered up to one part and PUT at publish, or a multipart
//! upload to the final key whose parts go up as they fill (two in flight at most) and which
//! only `complete` at publish makes visible. Abort, drop, and [`discard`] of the recorded
//! name (which carries the upload ID) abort it.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::ObjectStore;

use super::s3_client::Shared;
use super::Staged;
use crate::error::{Error, Result};
use sealift_oci::digest::Digest;

/// Size of a multipart part, and the largest blob sent as one PUT (S3 wants parts of at
/// least 5 MiB except the last).
pub const PART: usize = 8 << 20;
/// Parts uploading at once per staged write: memory stays at `(1 + IN_FLIGHT) * PART`.
const IN_FLIGHT: usize = 2;

/// A write in progress: buffered (one part at most), or a multipart upload.
pub(super) struct S3Staged {
    shared: Arc<Shared>,
    name: String,
    path: Path,
    declared: u64,
    written: u64,
    buf: Vec<u8>,
    upload: Option<Upload>,
    done: bool,
}

struct Upload {
    id: String,
    parts: Vec<Option<PartId>>,
    in_flight: VecDeque<(usize, Receiver<object_store::Result<PartId>>)>,
}

impl S3Staged {
    /// Start a write of `size` bytes for `d`: a multipart upload when it is over one part.
    pub(super) fn begin(
        shared: &Arc<Shared>,
        d: &Digest,
        size: u64,
        unique: &str,
    ) -> Result<S3Staged> {
        let path = shared.path(d);
        let alg = d.algorithm().as_str();
        let (name, upload, buf) = if size <= PART as u64 {
            let name = format!("{BUFFERED}{alg}:{}:{unique}", d.hex());
            (name, None, Vec::with_capacity(size as usize))
        } else {
            let (client, p) = (shared.client.clone(), path.clone());
            let id = shared.run("starting upload of", &shared.key(d), async move {
                client.create_multipart(&p).await
            })?;
            let name = format!("{MULTIPART}{alg}:{}:{id}", d.hex());
            let upload = Upload {
                id,
                parts: Vec::new(),
                in_flight: VecDeque::new(),
            };
            (name, Some(upload), Vec::with_capacity(PART))
        };
        Ok(S3Staged {
            shared: shared.clone(),
            name,
            path,
            declared: size,
            written: 0,
            buf,
            upload,
            done: false,
        })
    }

    fn key(&self) -> String {
        self.path.to_string()
    }

    /// Send the buffer as the next part, first waiting for the oldest part when
    /// [`IN_FLIGHT`] are uploading.
    fn send_part(&mut self) -> Result<()> {
        let Some(up) = self.upload.as_mut() else {
            return Ok(());
        };
        if up.in_flight.len() >= IN_FLIGHT {
            wait_part(&self.shared, &self.path, up)?;
        }
        let body = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PART)));
        let idx = up.parts.len();
        up.parts.push(None);
        let (client, path, id) = (self.shared.client.clone(), self.path.clone(), up.id.clone());
        let rx = self
            .shared
            .spawn(async move { client.put_part(&path, &id, idx, body.into()).await });
        up.in_flight.push_back((idx, rx));
        Ok(())
    }

    /// Abort the multipart upload (after its parts in flight settle, or S3 may keep a part
    /// that landed after the abort).
    fn abort_upload(&mut self) {
        self.done = true;
        let Some(mut up) = self.upload.take() else {
            return;
        };
        for (_, rx) in up.in_flight.drain(..) {
            let _ = rx.recv();
        }
        let (client, path) = (self.shared.client.clone(), self.path.clone());
        let key = self.key();
        let r = self.shared.run("aborting upload of", &key, async move {
            client.abort_multipart(&path, &up.id).await
        });
        if let Err(e) = r {
            tracing::warn!("{e} (GC aborts it later through the ingest record)");
        }
    }
}

fn wait_part(shared: &Shared, path: &Path, up: &mut Upload) -> Result<()> {
    if let Some((idx, rx)) = up.in_flight.pop_front() {
        let key = path.to_string();
        let part = rx
            .recv()
            .map_err(|_| shared.stopped("uploading a part of", &key))?
            .map_err(|e| shared.error("uploading a part of", &key, e))?;
        up.parts[idx] = Some(part);
    }
    Ok(())
}

impl Staged for S3Staged {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs_durable_record(&self) -> bool {
        self.name.starts_with(MULTIPART)
    }

    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if self.written + data.len() as u64 > self.declared {
            return Err(Error::Backend {
                location: self.shared.location.to_string(),
                action: "writing",
                target: self.key(),
                reason: format!("more than the {} bytes declared", self.declared),
            });
        }
        self.written += data.len() as u64;
        if self.upload.is_none() {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let n = data.len().min(PART - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == PART {
                self.send_part()?;
            }
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        if self.upload.is_none() {
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        if let Some(up) = self.upload.as_mut() {
            while !up.in_flight.is_empty() {
                wait_part(&self.shared, &self.path, up)?;
            }
        }
        Ok(())
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        let key = self.key();
        let (client, path) = (self.shared.client.clone(), self.path.clone());
        if self.upload.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            self.shared.run("uploading", &key, async move {
                client.put(&path, body.into()).await
            })?;
            self.done = true;
            return Ok(());
        }
        self.seal()?;
        let up = self.upload.as_ref().expect("multipart upload");
        let parts: Option<Vec<PartId>> = up.parts.iter().cloned().collect();
        let (parts, id) = (
            parts.expect("every part uploaded after seal"),
            up.id.clone(),
        );
        self.shared.run("completing upload of", &key, async move {
            client.complete_multipart(&path, &id, parts).await
        })?;
        self.upload = None;
        self.done = true;
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.abort_upload();
    }
}

impl Drop for S3Staged {
    fn drop(&mut self) {
        if !self.done {
            self.abort_upload();
        }
    }
}

/// Staged names: `put:<alg>:<hex>:<unique>` for a buffered write (nothing to clean up),
/// `mpu:<alg>:<hex>:<upload id>` for a multipart upload (aborted by discard).
const BUFFERED: &str = "put:";
const MULTIPART: &str = "mpu:";

/// Abort the multipart upload a staged write recorded as `name` (nothing to do for a
/// buffered write, which sends nothing before publish).
pub(super) fn discard(shared: &Shared, name: &str) -> Result<()> {
    // A buffered write never sent anything before publish.
    let Some(rest) = name.strip_prefix(MULTIPART) else {
        return Ok(());
    };
    let mut fields = rest.splitn(3, ':');
    let (Some(alg), Some(hex), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
        return Ok(());
    };
    let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
        return Ok(());
    };
    let (client, path, id) = (shared.client.clone(), shared.path(&d), id.to_string());
    shared.run("aborting upload of", &shared.key(&d), async move {
        match client.abort_multipart(&path, &id).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            r => r,
        }
    })
}

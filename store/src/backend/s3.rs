//! Blobs as objects in an S3-compatible bucket: `PREFIX/blobs/<alg>/<hex>`, through Apache
//! Arrow's `object_store` (path-style requests, so on-prem endpoints such as Ceph RGW, MinIO
//! or SeaweedFS work as well as AWS).
//!
//! Nothing becomes visible before the store has verified it: a blob of up to one part is
//! buffered and PUT at publish; a larger one goes up as a multipart upload to its final key
//! (parts sent as they fill, two in flight at most) that only `complete` at publish makes
//! visible, and that abort, drop, or [`Backend::discard`] of its recorded name (which
//! carries the upload ID) removes. A completed PUT is durable, so `sync` has nothing to do.
//!
//! Every call blocks. The backend owns a small tokio runtime and waits for its futures on a
//! std channel, so it works from plain threads, from tokio's blocking pool and even from
//! inside an async task (where `Runtime::block_on` would panic).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, RetryConfig,
};

use super::aws_config::S3Settings;
use super::s3_client::{ObjectReader, Shared};
use super::s3_staged::{self, S3Staged};
use super::{Backend, BlobReader, Listed, Location, Staged};
use crate::error::{Error, Result};
use sealift_oci::digest::Digest;

/// Blobs in a bucket.
pub struct S3Blobs {
    shared: Arc<Shared>,
}

impl S3Blobs {
    /// A client for `bucket` under `prefix`. No request is made yet.
    pub fn connect(bucket: &str, prefix: &str, settings: &S3Settings) -> Result<S3Blobs> {
        let location = Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        };
        let fail = |reason: String| Error::Backend {
            location: location.to_string(),
            action: "connecting to",
            target: settings.endpoint.clone().unwrap_or_else(|| "AWS S3".into()),
            reason,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                ClientOptions::new()
                    // Blob bodies stream for as long as they take; only connecting is timed.
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(10)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
            });
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let client = builder.build().map_err(|e| fail(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealift-s3")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("starting its I/O runtime: {e}")))?;
        let key_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Blobs {
            shared: Arc::new(Shared {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
                client: Arc::new(client),
                bucket: bucket.to_string(),
                blobs_root: format!("{key_prefix}blobs"),
                key_prefix,
                endpoint: settings
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("AWS S3 {}", settings.region)),
                location,
            }),
        })
    }
}

impl Backend for S3Blobs {
    fn describe(&self) -> String {
        format!("{} at {}", self.shared.location, self.shared.endpoint)
    }

    fn location(&self) -> Location {
        self.shared.location.clone()
    }

    fn stat(&self, d: &Digest) -> Result<Option<u64>> {
        let (client, path) = (self.shared.client.clone(), self.shared.path(d));
        let r = self
            .shared
            .run("checking", &self.shared.key(d), async move {
                match client.head(&path).await {
                    Ok(m) => Ok(Some(m.size)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })?;
        Ok(r)
    }

    fn open(&self, d: &Digest, offset: u64) -> Result<BlobReader> {
        let (client, path) = (self.shared.client.clone(), self.shared.path(d));
        let key = self.shared.key(d);
        if offset > 0 {
            // S3 refuses a range starting at or past the end; a local file reads empty.
            match self.stat(d)? {
                Some(size) if offset >= size => {
                    return Ok(BlobReader::Stream(Box::new(io::empty())));
                }
                _ => {}
            }
        }
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let got = self.shared.run("reading", &key, async move {
            client.get_opts(&path, options).await
        })?;
        let left = got.range.end - got.range.start;
        let chunks = self.shared.bridge(got.into_stream());
        Ok(BlobReader::Stream(Box::new(ObjectReader {
            chunks,
            current: Bytes::new(),
            left,
            key,
        })))
    }

    fn local_path(&self, _d: &Digest) -> Option<PathBuf> {
        None
    }

    fn stage(&self, d: &Digest, size: u64, unique: &str) -> Result<Box<dyn Staged>> {
        Ok(Box::new(S3Staged::begin(&self.shared, d, size, unique)?))
    }

    fn discard(&self, name: &str) -> Result<()> {
        s3_staged::discard(&self.shared, name)
    }

    fn staged_names(&self) -> Result<Vec<String>> {
        // Uploads in progress are found through the store's ingest records instead.
        Ok(Vec::new())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn delete(&self, d: &Digest) -> Result<()> {
        self.delete_key(self.shared.key(d))
    }

    fn delete_listed(&self, item: &Listed) -> Result<()> {
        let key = item
            .name
            .strip_prefix(&format!("s3://{}/", self.shared.bucket))
            .filter(|k| k.starts_with(&format!("{}/", self.shared.blobs_root)));
        match key {
            Some(k) => self.delete_key(k.to_string()),
            None => Err(Error::Backend {
                location: self.shared.location.to_string(),
                action: "deleting",
                target: item.name.clone(),
                reason: "not an object under the store's prefix".into(),
            }),
        }
    }

    fn list(&self, visit: &mut dyn FnMut(Listed) -> Result<bool>) -> Result<()> {
        let root = Path::from(self.shared.blobs_root.as_str());
        let mut items = self.shared.bridge(self.shared.client.list(Some(&root)));
        while let Some(item) = items.next() {
            let meta = item.map_err(|reason| Error::Backend {
                location: self.shared.location.to_string(),
                action: "listing",
                target: format!("{}/", self.shared.blobs_root),
                reason,
            })?;
            if !visit(self.listed(meta))? {
                break;
            }
        }
        Ok(())
    }

    fn presign(&self, d: &Digest, ttl: Duration) -> Result<Option<String>> {
        let (client, path) = (self.shared.client.clone(), self.shared.path(d));
        let url = self
            .shared
            .run("signing a URL for", &self.shared.key(d), async move {
                client.signed_url(http::Method::GET, &path, ttl).await
            })?;
        Ok(Some(url.to_string()))
    }

    fn check_records_after_crash(&self) -> bool {
        false
    }
}

impl S3Blobs {
    fn delete_key(&self, key: String) -> Result<()> {
        let client = self.shared.client.clone();
        let path = Path::parse(&key).unwrap_or_else(|_| Path::from(key.as_str()));
        self.shared.run("deleting", &key, async move {
            match client.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                r => r,
            }
        })
    }

    fn listed(&self, meta: ObjectMeta) -> Listed {
        let key = meta.location.to_string();
        let digest = key
            .strip_prefix(&self.shared.blobs_root)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
            // Only the exact spelling `blob_key` gives names the digest.
            .filter(|d| self.shared.key(d) == key);
        Listed {
            digest,
            name: format!("s3://{}/{key}", self.shared.bucket),
            modified: Some(meta.last_modified.into()),
            size: Some(meta.size),
        }
    }
}

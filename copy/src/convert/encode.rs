//! Running the re-encodings a conversion decided: each layer streamed from the source
//! through its decoder and the target encoder (sealift-oci's codecs, on tokio's blocking
//! pool over a [`SyncIoBridge`] of the source stream) into a temporary file, several at once.

use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::path::PathBuf;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use sealift_oci::compression::{recompress, Recompressed};
use sealift_oci::Digest;
use tokio_util::io::SyncIoBridge;

use super::decide::{Job, JobKey};
use crate::plan::LocalBlobs;
use crate::transport::{Source, TransportError};

/// Re-encode each job once, in parallel, into files of a new temporary directory. Returns
/// the files (as the blobs the copy reads locally) and what each job produced.
pub(crate) async fn encode_all(
    src: &dyn Source,
    jobs: &HashMap<JobKey, Job>,
) -> Result<(LocalBlobs, HashMap<JobKey, Encoded>), TransportError> {
    if jobs.is_empty() {
        return Ok((LocalBlobs::default(), HashMap::new()));
    }
    let dir = tempfile::Builder::new()
        .prefix("sealift-convert-")
        .tempdir()
        .map_err(|source| TransportError::Io {
            what: format!(
                "creating a temporary directory in {}",
                std::env::temp_dir().display()
            ),
            source,
        })?;
    let base = dir.path().to_path_buf();
    let encoded: HashMap<JobKey, Encoded> = stream::iter(jobs.iter().enumerate())
        .map(|(n, (key, job))| {
            let path = base.join(format!("layer-{n}"));
            async move { Ok::<_, TransportError>((key.clone(), encode(src, job, path).await?)) }
        })
        .buffer_unordered(parallelism())
        .try_collect()
        .await?;
    let files = encoded
        .values()
        .map(|e| (e.digest.clone(), e.path.clone()))
        .collect();
    Ok((LocalBlobs::in_dir(dir, files), encoded))
}

/// A re-encoded layer in a temporary file.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) diff_id: Digest,
    pub(crate) path: PathBuf,
}

async fn encode(src: &dyn Source, job: &Job, path: PathBuf) -> Result<Encoded, TransportError> {
    let what = format!(
        "converting layer {} ({} to {})",
        job.desc.digest,
        job.from.name(),
        job.to.name()
    );
    let body = src
        .blob(&job.desc)
        .await
        .map_err(|e| e.during(format!("reading layer {}", job.desc.digest)))?;
    let (from, to, p) = (job.from, job.to, path.clone());
    let result = tokio::task::spawn_blocking(move || -> io::Result<Recompressed> {
        let reader = SyncIoBridge::new(body);
        let file = std::fs::File::create(&p)?;
        let (r, out) = recompress(reader, from, to, BufWriter::with_capacity(1 << 20, file))?;
        out.into_inner().map_err(|e| e.into_error())?;
        Ok(r)
    })
    .await?
    .map_err(|source| TransportError::Io {
        what: what.clone(),
        source,
    })?;
    tracing::debug!(
        "{what}: {} -> {} ({} bytes)",
        job.desc.digest,
        result.digest,
        result.size
    );
    Ok(Encoded {
        digest: result.digest,
        size: result.size,
        diff_id: result.diff_id,
        path,
    })
}

/// How many layers to re-encode at once: codecs are CPU-bound, sources may be slow.
fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

//! `sealift images`: every tag with its digest, kind, platforms, size and completeness.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_oci::Digest;
use sealift_store::image::{MissingEdge, Presence};
use sealift_store::{Store, TagEntry};
use sealift_trust::{Signer, Verdict};
use serde::Serialize;

use crate::context::{Context, Status};
use crate::output::{self, human_bytes, short_digest, short_media_type, Table};

/// One tagged image.
#[derive(Clone, Debug, Serialize)]
struct ImageRow {
    /// `repo:tag`.
    reference: String,
    repo: String,
    tag: String,
    digest: Digest,
    media_type: String,
    platforms: Vec<String>,
    /// Sum of the sizes of every node of the graph that is present.
    size: u64,
    /// `ok`, or `broken` when a required node is absent or a node's file is missing.
    status: &'static str,
    /// Required (parent, child) edges whose child is absent.
    missing: Vec<MissingEdge>,
    /// Nodes recorded in the store whose file is missing or of the wrong size (what
    /// `verify` reports as a missing file; found with a stat, not a hash).
    missing_files: Vec<Digest>,
    /// The signature policy's verdict when the image was admitted with one (`--verify-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<Verdict>,
}

#[derive(Serialize)]
struct ImagesDoc {
    images: Vec<ImageRow>,
}

/// What is the same for every tag pointing at one digest.
#[derive(Clone)]
struct Summary {
    media_type: String,
    platforms: Vec<String>,
    size: u64,
    missing: Vec<MissingEdge>,
    missing_files: Vec<Digest>,
    present: bool,
    signature: Option<Verdict>,
}

/// The verdict recorded when `digest` was admitted by a signature policy, if it was.
pub(crate) fn verdict(store: &Store, digest: &Digest) -> Result<Option<Verdict>> {
    Ok(store.state_get(
        sealift_trust::STATE_NAMESPACE,
        digest.to_string().as_bytes(),
    )?)
}

/// A verdict in a table cell: who signed, briefly.
fn signed_cell(v: Option<&Verdict>) -> String {
    match v.map(|v| &v.signer) {
        None => "-".to_string(),
        Some(Signer::Key { fingerprint, .. }) => {
            format!("key {}", &fingerprint[..fingerprint.len().min(19)])
        }
        Some(Signer::Identity { identity, .. }) => identity.clone(),
    }
}

pub fn run(ctx: &Context, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let mut rows = Vec::new();
    let tags = store.tags().context("listing tags")?;
    let presence = store
        .presence_for(tags.len())
        .context("listing the blob store")?;
    let cache = summarize_all(&store, &tags, &presence)?;
    for t in tags {
        let reference = format!("{}:{}", t.repo, t.tag);
        let s = cache[&t.digest].clone();
        rows.push(ImageRow {
            reference,
            repo: t.repo.to_string(),
            tag: t.tag.to_string(),
            digest: t.digest,
            media_type: s.media_type,
            platforms: s.platforms,
            size: s.size,
            status: if s.present && s.missing.is_empty() && s.missing_files.is_empty() {
                "ok"
            } else {
                "broken"
            },
            missing: s.missing,
            missing_files: s.missing_files,
            signature: s.signature,
        });
    }

    if ctx.json {
        output::json(out, &ImagesDoc { images: rows })?;
    } else if ctx.quiet {
        for r in &rows {
            writeln!(out, "{}", r.reference)?;
        }
    } else {
        let mut table = Table::new(&[
            "REF",
            "DIGEST",
            "MEDIA TYPE",
            "PLATFORMS",
            "SIZE",
            // Before STATUS, which stays last (scripts read the row's end).
            "SIGNED",
            "STATUS",
        ]);
        for r in rows {
            table.row(vec![
                r.reference,
                short_digest(&r.digest),
                short_media_type(&r.media_type),
                if r.platforms.is_empty() {
                    "-".to_string()
                } else {
                    r.platforms.join(",")
                },
                human_bytes(r.size),
                signed_cell(r.signature.as_ref()),
                r.status.to_string(),
            ]);
        }
        table.write(out)?;
    }
    Ok(Status::Success)
}

/// Threads summarising at once: a summary is lookups and a stat per node, and with 10k
/// tags they are most of the command's time, so the cores share them.
const MAX_THREADS: usize = 4;

/// The summary of every distinct digest the tags name, on up to [`MAX_THREADS`] threads;
/// an error names the first tag that failed.
fn summarize_all(
    store: &Store,
    tags: &[TagEntry],
    presence: &Presence,
) -> Result<HashMap<Digest, Summary>> {
    let mut seen = HashSet::new();
    let roots: Vec<&TagEntry> = tags.iter().filter(|t| seen.insert(&t.digest)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS);
    let per = roots.len().div_ceil(threads).max(1);
    let work = |run: &[&TagEntry]| -> Result<Vec<(Digest, Summary)>> {
        run.iter()
            .map(|t| {
                summarize(store, &t.digest, presence)
                    .with_context(|| format!("reading {}:{} ({})", t.repo, t.tag, t.digest))
                    .map(|s| (t.digest.clone(), s))
            })
            .collect()
    };
    let done: Vec<Result<Vec<(Digest, Summary)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = roots
            .chunks(per)
            .map(|run| scope.spawn(move || work(run)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = HashMap::with_capacity(roots.len());
    for run in done {
        out.extend(run?);
    }
    Ok(out)
}

fn summarize(store: &Store, digest: &Digest, presence: &Presence) -> Result<Summary> {
    let Some(g) = store.image_summary_with(digest, presence)? else {
        // A tag whose target is gone: `verify` reports it as a dangling tag.
        return Ok(Summary {
            media_type: String::new(),
            platforms: Vec::new(),
            size: 0,
            missing: Vec::new(),
            missing_files: Vec::new(),
            present: false,
            signature: None,
        });
    };
    let platforms = if g.manifest {
        match store.platforms(digest) {
            Ok(p) => p,
            Err(e) => {
                // The listing is still useful without this column; say why it is empty.
                tracing::warn!("platforms of {digest}: {e:#}");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    Ok(Summary {
        media_type: g.media_type,
        platforms,
        size: g.size,
        missing_files: g.missing_files,
        missing: g.missing,
        present: true,
        signature: verdict(store, digest)?,
    })
}

//! `sealift init`: create the store with its blobs in local files or an S3 bucket. The
//! store remembers the location; running init again with it changes nothing, and another
//! one is refused (moving blobs is `sealift migrate`'s work).

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_store::{Location, Store};
use serde::Serialize;

use crate::cli::InitArgs;
use crate::context::{Context, Status};
use crate::output;

#[derive(Serialize)]
struct InitDoc {
    store: String,
    blobs: String,
    /// Where the bytes are, with the endpoint for a bucket.
    backend: String,
    created: bool,
    /// A read replica of the bucket's writer (`--replica`).
    replica: bool,
}

pub fn run(ctx: &Context, a: &InitArgs, out: &mut dyn Write) -> Result<Status> {
    let path = &ctx.store_path;
    let existed = path.join("VERSION").exists();
    // Refused before anything is created: a replica shares a writer's bucket.
    if a.replica && a.blobs == Location::Local {
        anyhow::bail!(
            "--replica needs --blobs s3://BUCKET/PREFIX (the writer's bucket and prefix)"
        );
    }
    let store = Store::init(path, &a.blobs).with_context(|| {
        format!(
            "initialising store {} with blobs at {}",
            path.display(),
            a.blobs
        )
    })?;
    if a.replica {
        store
            .mark_replica()
            .context("marking the store a replica")?;
    }
    let doc = InitDoc {
        store: path.display().to_string(),
        blobs: store.blob_location().to_string(),
        backend: store.backend().describe(),
        created: !existed,
        replica: store.is_replica(),
    };
    if ctx.json {
        output::json(out, &doc)?;
    } else if !ctx.quiet {
        let verb = if doc.created { "Created" } else { "Store" };
        let role = if doc.replica { " (read replica)" } else { "" };
        writeln!(out, "{verb} {}: blobs in {}{role}", doc.store, doc.backend)?;
    }
    Ok(Status::Success)
}

//! `sealift tag SRC DST` and `sealift rm REF...`: naming and un-naming images. Content is
//! never deleted here; `sealift gc` collects what no tag reaches any more.

use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_oci::{Digest, StoreRef};
use serde::Serialize;

use crate::cli::{RmArgs, TagArgs};
use crate::context::{Context, Status};
use crate::output;

#[derive(Serialize)]
struct TagDoc {
    source: String,
    target: String,
    digest: Digest,
}

pub fn tag(ctx: &Context, args: &TagArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let source = args.source.to_string();
    let digest = store
        .resolve(&args.source)
        .with_context(|| format!("resolving {source}"))?;
    store
        .set_tag(&args.target.repo, &args.target.tag, &digest)
        .with_context(|| format!("tagging {} as {}", source, args.target))?;
    let doc = TagDoc {
        source,
        target: args.target.to_string(),
        digest,
    };
    if ctx.json {
        output::json(out, &doc)?;
    } else if !ctx.quiet {
        writeln!(out, "Tagged {} ({})", doc.target, doc.digest)?;
    }
    Ok(Status::Success)
}

#[derive(Serialize)]
struct Removed {
    reference: String,
    digest: Digest,
}

#[derive(Serialize)]
struct RmDoc {
    removed: Vec<Removed>,
    /// References that matched no tag.
    unmatched: Vec<String>,
}

pub fn rm(ctx: &Context, args: &RmArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let mut doc = RmDoc {
        removed: Vec::new(),
        unmatched: Vec::new(),
    };
    let mut failures = Vec::new();
    for r in &args.references {
        let name = r.to_string();
        let targets = matching_tags(&store, r).with_context(|| format!("removing {name}"))?;
        if targets.is_empty() {
            let why = match (&r.tag, &r.digest) {
                (_, None) => "no such tag".to_string(),
                (None, Some(d)) => format!("no tag of {} points at {d}", r.repo),
                (Some(t), Some(d)) => format!("{}:{t} does not point at {d}", r.repo),
            };
            failures.push(format!("removing {name}: {why}"));
            doc.unmatched.push(name);
            continue;
        }
        for (tag, digest) in targets {
            let reference = format!("{}:{tag}", r.repo);
            let existed = store
                .remove_tag(&r.repo, &tag)
                .with_context(|| format!("removing {reference}"))?;
            if existed {
                if !ctx.json && !ctx.quiet {
                    writeln!(out, "Untagged {reference} ({digest})")?;
                }
                doc.removed.push(Removed { reference, digest });
            }
        }
    }
    if ctx.json {
        output::json(out, &doc)?;
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(Status::Success)
}

/// Tags a reference names: `repo:tag` that one (if it exists, and points at the digest
/// when one is given too); `repo@digest` every tag of `repo` pointing at the digest.
fn matching_tags(
    store: &sealift_store::Store,
    r: &StoreRef,
) -> Result<Vec<(sealift_oci::Tag, Digest)>> {
    let mut out = Vec::new();
    for t in store.tags()? {
        if t.repo != r.repo {
            continue;
        }
        let tag_ok = r.tag.as_ref().is_none_or(|want| &t.tag == want);
        let digest_ok = r.digest.as_ref().is_none_or(|want| &t.digest == want);
        if tag_ok && digest_ok {
            out.push((t.tag, t.digest));
        }
    }
    Ok(out)
}

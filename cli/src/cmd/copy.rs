//! `sealift copy SRC DST`, `sealift pull REF`, `sealift push STORE-REF DST`: move an image
//! between any two places it can live.

use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_copy::convert::{Convert, Format};
use sealift_copy::copy::{copy, CopyOptions, CopyReport};
use sealift_copy::location::Location;
use sealift_copy::transport::{open_sink, open_source, OpenOptions};
use sealift_copy::Clients;
use sealift_oci::media_type::Compression;
use sealift_oci::{Repo, StoreRef, Tag};
use sealift_registry::Credentials;

use crate::cli::{
    CopyArgs, CopyFlags, DestCompress, ManifestFormat, PullArgs, PushArgs, VerifyFlags,
};
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural, short_digest};
use crate::progress::byte_callback;

fn parse_creds(s: &str) -> Result<Credentials> {
    let (u, p) = s
        .split_once(':')
        .with_context(|| "--creds takes USER:PASSWORD".to_string())?;
    Ok(Credentials::Basic {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// `--dest-compress` and `--format`, checked before anything is opened.
fn convert_opts(flags: &CopyFlags) -> Result<Option<Convert>> {
    let c = Convert {
        compression: flags.dest_compress.map(|c| match c {
            DestCompress::Gzip => Compression::Gzip,
            DestCompress::Zstd => Compression::Zstd,
            DestCompress::None => Compression::None,
        }),
        format: flags.format.map(|f| match f {
            ManifestFormat::Oci => Format::Oci,
            ManifestFormat::Docker => Format::Docker,
        }),
    };
    if c.is_noop() {
        return Ok(None);
    }
    c.validate()?;
    Ok(Some(c))
}

/// The signature policy the flags ask for, read and checked before anything is opened.
pub(crate) fn policy_opts(flags: &VerifyFlags) -> Result<Option<sealift_trust::Policy>> {
    let spec = sealift_trust::PolicySpec {
        keys: flags.verify_key.clone(),
        identity: flags.verify_identity.clone(),
        issuer: flags.verify_issuer.clone(),
        trusted_root: flags.trusted_root.clone(),
    };
    if spec.is_empty() {
        return Ok(None);
    }
    Ok(Some(sealift_trust::Policy::from_spec(&spec)?))
}

fn open_opts(creds: &Option<String>, flags: &CopyFlags) -> Result<OpenOptions> {
    Ok(OpenOptions {
        credentials: creds.as_deref().map(parse_creds).transpose()?,
        tls_verify: flags.tls_verify,
        ca_file: flags.ca_file.clone(),
    })
}

/// Where `sealift pull` puts a registry image in the store: its full name (`host/repo`).
fn store_ref_for(loc: &Location) -> Result<StoreRef> {
    let Location::Registry {
        host,
        repo,
        tag,
        digest,
    } = loc
    else {
        bail!("{loc} is not a registry reference");
    };
    let repo: Repo = format!("{host}/{repo}")
        .to_lowercase()
        .parse()
        .with_context(|| format!("{host}/{repo} cannot name a store repository"))?;
    let tag: Option<Tag> = tag.as_deref().map(str::parse).transpose()?;
    Ok(StoreRef {
        repo,
        tag,
        digest: digest.clone(),
    })
}

fn run_copy(
    ctx: &Context,
    src: &Location,
    dst: &Location,
    flags: &CopyFlags,
    out: &mut dyn Write,
) -> Result<Status> {
    let convert = convert_opts(flags)?;
    let verify = policy_opts(&flags.verify)?;
    let needs_store = matches!(src, Location::Store(_)) || matches!(dst, Location::Store(_));
    let store = if needs_store {
        Some(ctx.open_store()?)
    } else {
        None
    };
    let src_opts = open_opts(
        &flags.src_creds.clone().or_else(|| flags.creds.clone()),
        flags,
    )?;
    let dst_opts = open_opts(
        &flags.dest_creds.clone().or_else(|| flags.creds.clone()),
        flags,
    )?;
    let bar = ctx.progress.bytes(format!("copying {src}"));
    let opts = CopyOptions {
        platforms: flags.platform.clone(),
        rewrite_index: flags.rewrite_index,
        rewrite_refused_index: false,
        referrers: flags.referrers,
        include_nondistributable: flags.include_nondistributable,
        dry_run: flags.dry_run,
        progress: Some(byte_callback(&bar)),
        blob_progress: Some(crate::progress::per_blob(&bar)),
        convert,
        verify,
    };
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
    let report = rt.block_on(async {
        let (src_clients, dst_clients) = Clients::for_copy(&src_opts, &dst_opts);
        let source = open_source(src, store.as_ref(), &src_clients)?;
        let sink = open_sink(dst, store.as_ref(), &dst_clients)?;
        copy(source, sink, &opts).await
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("copying {src} to {dst}"))?;
    if ctx.json {
        output::json(out, &report)?;
    } else if !ctx.quiet {
        write_report(out, &report)?;
    }
    Ok(Status::Success)
}

fn write_report(out: &mut dyn Write, r: &CopyReport) -> Result<()> {
    let digest = r
        .destination_digest
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    if r.up_to_date {
        writeln!(out, "{} is up to date ({digest})", r.destination)?;
        return Ok(());
    }
    let verb = if r.dry_run { "Would copy" } else { "Copied" };
    writeln!(out, "{verb} {} -> {} ({digest})", r.source, r.destination)?;
    if !r.converted.is_empty() {
        writeln!(
            out,
            "  converted {}:",
            plural(r.converted.len(), "manifest", "manifests")
        )?;
        for (old, new) in &r.converted {
            writeln!(out, "    {old} -> {new}")?;
        }
    } else if r.source_digest != r.destination_digest {
        if let Some(s) = &r.source_digest {
            writeln!(
                out,
                "  index rewritten: source {} -> destination {}",
                short_digest(s),
                digest
            )?;
        }
    }
    if !r.platforms.is_empty() {
        writeln!(out, "  platforms: {}", r.platforms.join(", "))?;
    }
    writeln!(
        out,
        "  {} {} ({}), {} skipped ({}){}, {}",
        plural(r.blobs_moved, "blob", "blobs"),
        if r.dry_run { "to move" } else { "moved" },
        human_bytes(r.bytes_moved),
        r.blobs_skipped,
        human_bytes(r.bytes_skipped),
        if r.blobs_mounted > 0 {
            format!(", {} mounted", r.blobs_mounted)
        } else {
            String::new()
        },
        plural(r.manifests_written, "manifest", "manifests")
    )?;
    if let Some(v) = &r.verdict {
        writeln!(
            out,
            "  signature: {} by {} ({})",
            v.kind, v.signer, v.signature
        )?;
    }
    if r.referrers > 0 {
        writeln!(
            out,
            "  {} copied",
            plural(r.referrers, "referrer", "referrers")
        )?;
    }
    Ok(())
}

pub fn copy_cmd(ctx: &Context, args: &CopyArgs, out: &mut dyn Write) -> Result<Status> {
    run_copy(ctx, &args.source, &args.destination, &args.flags, out)
}

pub fn pull(ctx: &Context, args: &PullArgs, out: &mut dyn Write) -> Result<Status> {
    let dst = Location::Store(store_ref_for(&args.reference)?);
    run_copy(ctx, &args.reference, &dst, &args.flags, out)
}

pub fn push(ctx: &Context, args: &PushArgs, out: &mut dyn Write) -> Result<Status> {
    let src = Location::Store(args.source.clone());
    run_copy(ctx, &src, &args.destination, &args.flags, out)
}

//! `sealift mirror-config --server HOST:PORT --format containerd|registries-conf|k3s -o DIR
//! [SELECTOR...]`: client configuration mapping the registry hosts of the store's images
//! to `sealift serve`. The files are `sealift_serve::mirror`'s; this chooses the hosts and
//! prints what was written.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_layout::select;
use sealift_registry::{Registry, RegistryConfig};
use sealift_serve::mirror::{self, MirrorOptions, MirrorTls};

use crate::cli::{MirrorConfigArgs, MirrorFormat};
use crate::context::{Context, Status};
use crate::output;

pub fn run(ctx: &Context, args: &MirrorConfigArgs, out: &mut dyn Write) -> Result<Status> {
    let format = match args.format {
        MirrorFormat::Containerd => mirror::MirrorFormat::Containerd,
        MirrorFormat::RegistriesConf => mirror::MirrorFormat::RegistriesConf,
        MirrorFormat::K3s => mirror::MirrorFormat::K3s,
    };
    let auth = match (&args.username, &args.password_env) {
        (Some(user), Some(var)) => {
            let password = std::env::var(var)
                .with_context(|| format!("--password-env {var}: the variable is not set"))?;
            Some((user.clone(), password))
        }
        _ => None,
    };
    if auth.is_some() && format != mirror::MirrorFormat::K3s {
        bail!("--username/--password-env go into k3s's registries.yaml only; containerd and podman nodes log in themselves");
    }
    let (mut hosts, unmapped) = if let (Some(config), Some(job)) = (&args.config, &args.job) {
        job_hosts(config, job)?
    } else if args.from_server {
        server_hosts(args)?
    } else {
        store_hosts(ctx, args)?
    };
    hosts.extend(args.hosts.iter().cloned());
    let opts = MirrorOptions {
        server: args.server.clone(),
        format,
        tls: if args.insecure {
            MirrorTls::PlainHttp
        } else {
            MirrorTls::Https {
                ca: args.ca.clone(),
            }
        },
        auth,
        hosts: hosts.clone(),
    };
    let files = mirror::render(&opts)?;
    let written = mirror::write(&args.output, &files)?;
    if ctx.json {
        output::json(
            out,
            &serde_json::json!({
                "written": written,
                "hosts": hosts,
                "unmapped_repositories": unmapped,
            }),
        )?;
        return Ok(Status::Success);
    }
    for p in &written {
        writeln!(out, "Wrote {}", p.display())?;
    }
    if !ctx.quiet {
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        writeln!(out, "Mapped {} to {}", hosts.join(", "), args.server)?;
        if !unmapped.is_empty() {
            let u: Vec<&str> = unmapped.iter().map(String::as_str).collect();
            writeln!(
                out,
                "Not mapped (no registry host in the name; pull them as {}/REPO): {}",
                args.server,
                u.join(", ")
            )?;
        }
    }
    Ok(Status::Success)
}

type Hosts = (BTreeSet<String>, BTreeSet<String>);

/// The hosts of the images the store holds (of those the selectors name, if any).
fn store_hosts(ctx: &Context, args: &MirrorConfigArgs) -> Result<Hosts> {
    let store = ctx.open_store()?;
    let chosen: Option<BTreeSet<(String, String)>> = if args.selectors.is_empty() {
        None
    } else {
        let refs = select::resolve(&store, &args.selectors).context("selecting images")?;
        Some(
            refs.iter()
                .map(|r| {
                    let tag = r.tag.as_ref().map(ToString::to_string).unwrap_or_default();
                    (r.repo.to_string(), tag)
                })
                .collect(),
        )
    };
    let keep = |repo: &str, tag: &str| {
        chosen.as_ref().is_none_or(|c| {
            c.contains(&(repo.to_string(), tag.to_string()))
                // A selector by digest names no tag: every tag of its repository counts.
                || c.contains(&(repo.to_string(), String::new()))
        })
    };
    Ok(mirror::held_hosts(&store, &keep)?)
}

/// The hosts of the repositories the running server's catalog lists.
fn server_hosts(args: &MirrorConfigArgs) -> Result<Hosts> {
    let mut cfg = RegistryConfig::new(&args.server);
    cfg.insecure = args.insecure;
    cfg.http_fallback = false;
    cfg.ca_file = args.ca.clone();
    let client = Registry::new(cfg).with_context(|| format!("reaching {}", args.server))?;
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
    let repos = rt
        .block_on(client.catalog())
        .with_context(|| format!("reading the catalog of {}", args.server))?;
    Ok(mirror::hosts_of(repos.iter().map(String::as_str)))
}

/// The hosts sync job `name` of `config` fetches from.
fn job_hosts(config: &std::path::Path, name: &str) -> Result<Hosts> {
    let config = sealift_sync::config::Config::load(config)?;
    let job = config
        .job(name)
        .with_context(|| format!("{}: no job {name:?}", config.path.display()))?;
    let hosts = match (&job.images_from, &job.source) {
        (Some(from), _) => from
            .hosts()
            .map_err(|e| anyhow::anyhow!("job {name}: {e}"))?,
        (None, sealift_sync::config::Place::Registry { host, .. }) => {
            [host.clone()].into_iter().collect()
        }
        (None, source) => bail!(
            "job {name} fetches from {source}, no registry: name its images' hosts with --host, or run without --job"
        ),
    };
    Ok((hosts, BTreeSet::new()))
}

//! `scale`: how sealift-store behaves with many blobs, manifests and tags.
//!
//! Long file: the build and every measured step in one place, so one run measures a store
//! built one way.
//!
//! Builds a store of `--manifests M` image manifests (default 10,000), each with a config and
//! `BLOBS / M - 1` tiny, unique layers (default 9, so `--blobs` 100,000 blobs in all), every
//! manifest tagged (spread over 100 repositories), through the public `Store` API exactly as
//! an import does it: one lease, an ingest batch (`IngestBatch::put_blob`, `put_manifest`,
//! a flush every `IMAGES_PER_FLUSH` images), then `set_tag` for each image flushed
//! (`--unbatched`: a lone `put_blob` and `put_manifest` per item, as before group commit).
//! Then measures:
//!
//! - the build, per phase (blobs, manifests, tags), and store reopen;
//! - `Store::gc` with nothing collectable, and after removing half the tags (grace 0);
//! - what `sealift images` does (list the tags; per digest, walk the graph for its size and
//!   read the config for the platform), in process, and the real CLI
//!   (`sealift --store DIR --json images`, plus `du` and `verify`) when it is built, under
//!   `/usr/bin/time` for its peak RSS;
//! - releasing a lease that holds every blob (its peak memory above the RSS before it);
//! - this process's peak RSS (VmHWM) and the store's size on disk.
//!
//! Each measured step after the build resets this process's peak RSS first (Linux
//! `/proc/self/clear_refs`), so its "peak above start" is its own. Figures the table
//! names are also printed as `metric NAME VALUE` lines (benches/scale.sh reads them).
//!
//! Options: `--blobs N` `--manifests M` `--dir PATH` (kept afterwards; default a temp dir
//! under /var/tmp, removed) `--repos R` (default 100) `--threads T` (images put
//! concurrently during the build; default 1, as `sealift import` does) `--sealift PATH`
//! (default: the `sealift` next to this binary) `--no-cli` (skip the CLI steps) `--unbatched`
//! `--build-only` (stop after the build and reopen; use with `--dir`) `--prebuilt` (skip the
//! build: `--dir` holds a store a `--build-only` run made with the same shape options).
//!
//! `cargo build --release -p sealift -p sealift-benches && target/release/scale`; or
//! benches/scale.sh for the issue-13 table.

use sealift_benches::report::{disk_usage, mib, per_sec, status_kib, Report};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealift_oci::media_type::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use sealift_oci::{Digest, Repo, Tag};
use sealift_store::gc::GcOptions;
use sealift_store::{ManifestOptions, Store};
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    blobs: usize,
    manifests: usize,
    repos: usize,
    threads: usize,
    dir: Option<PathBuf>,
    sealift: Option<PathBuf>,
    no_cli: bool,
    unbatched: bool,
    build_only: bool,
    prebuilt: bool,
}

const USAGE: &str =
    "usage: scale [--blobs N] [--manifests M] [--repos R] [--threads T] [--dir PATH] [--sealift PATH | --no-cli] [--unbatched] [--build-only | --prebuilt]";

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        blobs: 100_000,
        manifests: 10_000,
        repos: 100,
        threads: 1,
        dir: None,
        sealift: None,
        no_cli: false,
        unbatched: false,
        build_only: false,
        prebuilt: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        if flag == "--no-cli" {
            a.no_cli = true;
            continue;
        }
        if flag == "--unbatched" {
            a.unbatched = true;
            continue;
        }
        if flag == "--build-only" || flag == "--prebuilt" {
            a.build_only |= flag == "--build-only";
            a.prebuilt |= flag == "--prebuilt";
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = || {
            value
                .replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--blobs" => a.blobs = num()?,
            "--manifests" => a.manifests = num()?,
            "--repos" => a.repos = num()?.max(1),
            "--threads" => a.threads = num()?.max(1),
            "--dir" => a.dir = Some(PathBuf::from(&value)),
            "--sealift" => a.sealift = Some(PathBuf::from(&value)),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if let Some(p) = a.sealift.as_ref().filter(|p| !p.is_file()) {
        return Err(format!("--sealift {}: no such file", p.display()));
    }
    if (a.build_only || a.prebuilt) && a.dir.is_none() {
        return Err(format!("--build-only and --prebuilt need --dir\n{USAGE}"));
    }
    if a.manifests == 0 || a.blobs < a.manifests {
        return Err(format!(
            "need 0 < --manifests <= --blobs (each manifest has a config)\n{USAGE}"
        ));
    }
    Ok(a)
}

/// One image's blobs and manifest, made when it is put, so memory does not grow with M.
struct Image {
    blobs: Vec<(Digest, Vec<u8>, &'static str)>,
    manifest: Vec<u8>,
    digest: Digest,
}

impl Image {
    /// How its manifest is put: digest and media type checked.
    fn options(&self) -> ManifestOptions<'_> {
        ManifestOptions {
            expected: Some(&self.digest),
            media_type: Some(OCI_MANIFEST),
            sparse: false,
        }
    }
}

fn make_image(m: usize, layers: usize) -> Image {
    let mut blobs = Vec::with_capacity(layers + 1);
    let mut layer_descs = Vec::with_capacity(layers);
    let mut diff_ids = Vec::with_capacity(layers);
    for l in 0..layers {
        let bytes = format!("sealift scale image {m} layer {l}\n").into_bytes();
        let d = Digest::sha256(&bytes);
        layer_descs.push(
            json!({ "mediaType": OCI_LAYER_TAR, "digest": d.to_string(), "size": bytes.len() }),
        );
        diff_ids.push(Value::from(d.to_string()));
        blobs.push((d, bytes, OCI_LAYER_TAR));
    }
    let config = serde_json::to_vec(&json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": { "image": m.to_string() } },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("JSON to memory");
    let config_digest = Digest::sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len() },
        "layers": layer_descs,
    }))
    .expect("JSON to memory");
    blobs.push((config_digest, config, OCI_CONFIG));
    let digest = Digest::sha256(&manifest);
    Image {
        blobs,
        manifest,
        digest,
    }
}

fn repo_tag(m: usize, repos: usize) -> (Repo, Tag) {
    let repo = format!("scale/repo-{:03}", m % repos)
        .parse()
        .expect("valid repo");
    let tag = format!("v{m}").parse().expect("valid tag");
    (repo, tag)
}

/// Time spent per build phase (summed over threads).
#[derive(Clone, Copy, Default)]
struct PhaseTimes {
    blobs: Duration,
    manifests: Duration,
    /// Batched: the flushes (seal, publish, sync, one transaction and flush per batch).
    flushes: Duration,
    tags: Duration,
    nblobs: usize,
}

/// Put image `m`: its blobs, its manifest, its tag.
fn put_image(
    store: &Store,
    lease: &sealift_store::Lease,
    a: &Args,
    m: usize,
    layers: usize,
    times: &mut PhaseTimes,
) -> Result<()> {
    let img = make_image(m, layers);
    let t = Instant::now();
    for (d, bytes, media_type) in &img.blobs {
        store.put_blob(lease, d, bytes.len() as u64, media_type, &mut &bytes[..])?;
    }
    times.nblobs += img.blobs.len();
    let t2 = Instant::now();
    times.blobs += t2 - t;
    store.put_manifest(lease, &img.manifest, img.options())?;
    let t3 = Instant::now();
    times.manifests += t3 - t2;
    let (repo, tag) = repo_tag(m, a.repos);
    store.set_tag(&repo, &tag, &img.digest)?;
    times.tags += t3.elapsed();
    Ok(())
}

/// Images a batched build puts between flushes (6 items each by default: under the batch's
/// own limit of 512, so each flush is one the build chose).
const IMAGES_PER_FLUSH: usize = 80;

/// Put images `ms` through one ingest batch, flush it, then tag them.
fn put_images_batched(
    store: &Store,
    lease: &sealift_store::Lease,
    a: &Args,
    ms: std::ops::Range<usize>,
    layers: usize,
    times: &mut PhaseTimes,
) -> Result<()> {
    let mut batch = store.batch(lease);
    let mut tagged = Vec::with_capacity(ms.len());
    for m in ms {
        let img = make_image(m, layers);
        let t = Instant::now();
        for (d, bytes, media_type) in &img.blobs {
            batch.put_blob(d, bytes.len() as u64, media_type, &mut &bytes[..])?;
        }
        times.nblobs += img.blobs.len();
        let t2 = Instant::now();
        times.blobs += t2 - t;
        batch.put_manifest(&img.manifest, img.options())?;
        times.manifests += t2.elapsed();
        tagged.push((m, img.digest));
    }
    let t = Instant::now();
    batch.finish()?;
    times.flushes += t.elapsed();
    let t = Instant::now();
    for (m, d) in tagged {
        let (repo, tag) = repo_tag(m, a.repos);
        store.set_tag(&repo, &tag, &d)?;
    }
    times.tags += t.elapsed();
    Ok(())
}

/// Build the store, `--threads` images at a time. Returns the number of blobs written.
fn build(store: &Store, a: &Args, report: &mut Report) -> Result<usize> {
    let per_image = a.blobs / a.manifests;
    let layers = per_image - 1;
    let lease = store.lease("scale build", None)?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    let step = (a.manifests / 20).max(1);
    let worker = || -> std::result::Result<PhaseTimes, String> {
        let mut times = PhaseTimes::default();
        let chunk = if a.unbatched { 1 } else { IMAGES_PER_FLUSH };
        loop {
            let m = next.fetch_add(chunk, Ordering::Relaxed);
            if m >= a.manifests {
                return Ok(times);
            }
            let ms = m..(m + chunk).min(a.manifests);
            let k = ms.len();
            if a.unbatched {
                put_image(store, &lease, a, m, layers, &mut times).map_err(|e| e.to_string())?;
            } else {
                put_images_batched(store, &lease, a, ms, layers, &mut times)
                    .map_err(|e| e.to_string())?;
            }
            let n = done.fetch_add(k, Ordering::Relaxed) + k;
            if n / step > (n - k) / step {
                let el = start.elapsed();
                eprintln!(
                    "  built {n}/{} images ({} blobs) in {:.1} s, {}",
                    a.manifests,
                    n * per_image,
                    el.as_secs_f64(),
                    per_sec(n * per_image, el).replace("/s", " blobs/s"),
                );
            }
        }
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("build thread panicked".into()))
            })
            .collect()
    });
    let total = start.elapsed();
    let mut t = PhaseTimes::default();
    for r in results {
        let r = r?;
        t.blobs += r.blobs;
        t.manifests += r.manifests;
        t.flushes += r.flushes;
        t.tags += r.tags;
        t.nblobs += r.nblobs;
    }
    // With several threads the phase times are thread-seconds: scale the rates to wall time.
    let th = a.threads as u32;
    let nblobs = t.nblobs;
    // Blobs per second of ingest (blobs and manifests, durable and recorded): the same
    // work either way, so batched and unbatched builds compare.
    let ingest = (t.blobs + t.manifests + t.flushes) / th;
    metric("ingest_blobs_per_s", nblobs as f64 / ingest.as_secs_f64());
    if a.unbatched {
        report.add(
            format!("build: {nblobs} blobs (put_blob)"),
            Some(t.blobs / th),
            per_sec(nblobs, t.blobs / th),
        );
        report.add(
            format!("build: {} manifests (put_manifest)", a.manifests),
            Some(t.manifests / th),
            per_sec(a.manifests, t.manifests / th),
        );
    } else {
        report.add(
            format!(
                "build: {nblobs} blobs + {} manifests (batched, {IMAGES_PER_FLUSH} images a flush)",
                a.manifests
            ),
            Some(ingest),
            per_sec(nblobs, ingest).replace("/s", " blobs/s"),
        );
        report.add(
            "build: of which flushes",
            Some(t.flushes / th),
            per_sec(a.manifests.div_ceil(IMAGES_PER_FLUSH), t.flushes / th)
                .replace("/s", " flushes/s"),
        );
    }
    report.add(
        format!("build: {} tags (set_tag)", a.manifests),
        Some(t.tags / th),
        per_sec(a.manifests, t.tags / th),
    );
    report.add(
        "build: total",
        Some(total),
        format!(
            "{} ({per_image} blobs + 1 manifest per image, {} repos, {} thread{})",
            per_sec(a.manifests, total).replace("/s", " images/s"),
            a.repos,
            a.threads,
            if a.threads == 1 { "" } else { "s" },
        ),
    );
    let t = Instant::now();
    drop(lease);
    report.add(
        "release the build lease",
        Some(t.elapsed()),
        format!("{} holds", nblobs + a.manifests),
    );
    Ok(nblobs)
}

/// What `sealift images` computes, through the library: per tag, the graph's size and
/// whether it is complete, and the platform from the config (once per digest).
fn images_in_process(store: &Store, report: &mut Report) -> Result<()> {
    let t = Instant::now();
    let tags = store.tags()?;
    report.add(
        format!("images, in process: list {} tags", tags.len()),
        Some(t.elapsed()),
        "Store::tags",
    );
    let t = Instant::now();
    let mut cache: HashMap<Digest, (u64, String)> = HashMap::new();
    let mut total = 0u64;
    let mut broken = 0usize;
    for tag in &tags {
        if let Some((size, _)) = cache.get(&tag.digest) {
            total += size;
            continue;
        }
        let (nodes, missing) = store.walk(&tag.digest)?;
        broken += usize::from(!missing.is_empty());
        let size: u64 = nodes.iter().map(|(_, r)| r.size).sum();
        let (_, view) = store.manifest(&tag.digest)?;
        let platform = match &view.config {
            Some(c) => {
                let cfg: Value = serde_json::from_slice(&store.read_small(&c.digest, 1 << 24)?)?;
                format!(
                    "{}/{}",
                    cfg["os"].as_str().unwrap_or(""),
                    cfg["architecture"].as_str().unwrap_or("")
                )
            }
            None => String::new(),
        };
        total += size;
        cache.insert(tag.digest.clone(), (size, platform));
    }
    let d = t.elapsed();
    report.add(
        format!("images, in process: resolve {} tags", tags.len()),
        Some(d),
        format!(
            "walk + manifest + config per tag, {}; {} total, {broken} broken",
            per_sec(tags.len(), d),
            mib(total)
        ),
    );
    Ok(())
}

/// Reset this process's peak RSS (VmHWM) to its current RSS, so the next reading is the
/// peak of one step. Returns the RSS (KiB) it starts from. Linux only; elsewhere the peak
/// stays the process's.
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:").unwrap_or(0)
}

/// MiB the peak RSS rose above `start` (KiB) since [`reset_peak`].
fn peak_above(start: u64) -> f64 {
    status_kib("VmHWM:").unwrap_or(0).saturating_sub(start) as f64 / 1024.0
}

/// A figure benches/scale.sh puts in the table.
fn metric(name: &str, value: f64) {
    println!("metric {name} {value:.3}");
}

/// Hold every blob with one lease, then release it: the release's time and peak memory.
fn lease_release(store: &Store, report: &mut Report) -> Result<()> {
    let lease = store.lease_detached("scale release", None)?;
    let t = Instant::now();
    let mut held = 0usize;
    for item in store.records() {
        let (d, _) = item?;
        held += usize::from(store.hold(&lease, &d)?.is_some());
    }
    let d = t.elapsed();
    report.add(
        format!("hold {held} blobs with one lease"),
        Some(d),
        format!(
            "{} (what a no-op copy does per blob)",
            per_sec(held, d).replace("/s", " holds/s")
        ),
    );
    let start = reset_peak();
    let t = Instant::now();
    store.release(lease)?;
    let d = t.elapsed();
    let peak = peak_above(start);
    report.add(
        format!("release a lease holding {held} blobs"),
        Some(d),
        format!("peak {peak:.1} MiB above start"),
    );
    metric("release_peak_mib", peak);
    metric("release_s", d.as_secs_f64());
    Ok(())
}

/// The metadata's files (format 2: `meta.redb`; format 1, an older build's: sled's
/// `db/`): a row, and the per-100k-blobs metric.
fn db_size(dir: &Path, nblobs: usize, when: &str, report: &mut Report) {
    use std::os::unix::fs::MetadataExt;
    let (what, (files, apparent, allocated)) = match std::fs::metadata(dir.join("meta.redb")) {
        Ok(m) => ("meta.redb (redb)", (1, m.len(), m.blocks() * 512)),
        Err(_) => ("db/ (sled)", disk_usage(&dir.join("db"))),
    };
    report.add(
        format!("disk: {what}, {when}"),
        None,
        format!(
            "{files} files, {} apparent, {} allocated",
            mib(apparent),
            mib(allocated)
        ),
    );
    if when == "built" {
        let per = allocated as f64 / 1e6 * 100_000.0 / nblobs.max(1) as f64;
        metric("db_mb_per_100k", per);
    }
}

fn find_sealift(a: &Args) -> Option<PathBuf> {
    if a.no_cli {
        return None;
    }
    if let Some(p) = &a.sealift {
        return Some(p.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("sealift");
    p.is_file().then_some(p)
}

/// Run `sealift --store DIR --json ARGS`, under /usr/bin/time when present.
/// Returns (wall time, peak RSS KiB if known, stdout).
fn run_cli(
    sealift: &Path,
    store: &Path,
    args: &[&str],
) -> Result<(Duration, Option<u64>, Vec<u8>)> {
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new()?;
    let mut cmd = if time.is_file() {
        let mut c = Command::new(time);
        c.arg("-o")
            .arg(rss_file.path())
            .args(["-f", "%e %M"])
            .arg(sealift);
        c
    } else {
        Command::new(sealift)
    };
    cmd.arg("--store")
        .arg(store)
        .arg("--json")
        .arg("--quiet")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let t = Instant::now();
    let out = cmd.output()?;
    let wall = t.elapsed();
    // `verify` exits 1 when it finds problems; anything else is a failure.
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(format!("sealift {}: {}", args.join(" "), out.status).into());
    }
    let rss = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last()?.split_whitespace().nth(1)?.parse().ok());
    Ok((wall, rss, out.stdout))
}

fn cli_steps(sealift: &Path, dir: &Path, report: &mut Report) -> Result<()> {
    let rss = |k: Option<u64>| {
        k.map_or("peak RSS ?".to_string(), |k| {
            format!("peak RSS {}", mib(k * 1024))
        })
    };
    let (wall, kib, out) = run_cli(sealift, dir, &["images"])?;
    let doc: Value = serde_json::from_slice(&out)?;
    let n = doc["images"].as_array().map_or(0, Vec::len);
    report.add(
        "images, CLI: sealift --json images",
        Some(wall),
        format!(
            "{}, {n} images, {} of JSON",
            rss(kib),
            mib(out.len() as u64)
        ),
    );
    metric("images_cli_s", wall.as_secs_f64());
    metric("images_cli_mib", kib.unwrap_or(0) as f64 / 1024.0);
    let (wall, kib, _) = run_cli(sealift, dir, &["du"])?;
    report.add("du, CLI: sealift --json du", Some(wall), rss(kib));
    metric("du_cli_s", wall.as_secs_f64());
    metric("du_cli_mib", kib.unwrap_or(0) as f64 / 1024.0);
    let (wall, kib, out) = run_cli(sealift, dir, &["verify"])?;
    let ok = serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|v| v.get("ok").cloned())
        .map_or(String::new(), |v| format!(", ok: {v}"));
    report.add(
        "verify, CLI: sealift --json verify",
        Some(wall),
        format!("{}{ok}", rss(kib)),
    );
    Ok(())
}

fn run(a: &Args) -> Result<()> {
    let (_tmp, dir) = match &a.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new()
                .prefix("sealift-scale-")
                .tempdir_in("/var/tmp")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    eprintln!(
        "scale: {} blobs in {} images under {} (dir: {})",
        a.blobs / a.manifests * a.manifests,
        a.manifests,
        a.repos,
        dir.display()
    );
    let mut report = Report::default();

    if !a.prebuilt {
        let t = Instant::now();
        let store = Store::open(&dir)?;
        report.add("open empty store", Some(t.elapsed()), "");
        build(&store, a, &mut report)?;
        let t = Instant::now();
        drop(store);
        report.add("close store", Some(t.elapsed()), "");
    }
    let t = Instant::now();
    let store = Store::open(&dir)?;
    report.add("open the built store", Some(t.elapsed()), "");
    let nblobs = store.records().count();
    db_size(&dir, nblobs, "built", &mut report);
    if a.build_only {
        println!();
        report.print();
        return Ok(());
    }

    let start = reset_peak();
    let t = Instant::now();
    let r = store.gc(&GcOptions {
        dry_run: false,
        grace: Duration::from_secs(3600),
    })?;
    let d = t.elapsed();
    report.add(
        "gc, nothing collectable",
        Some(d),
        format!(
            "live {}, removed {}, orphan files {}, peak {:.1} MiB above start",
            r.live,
            r.removed.len(),
            r.orphan_files,
            peak_above(start)
        ),
    );
    metric("gc_noop_s", d.as_secs_f64());

    images_in_process(&store, &mut report)?;
    lease_release(&store, &mut report)?;
    drop(store);
    match find_sealift(a) {
        Some(s) => cli_steps(&s, &dir, &mut report)?,
        None => report.add(
            "images, CLI",
            None,
            "skipped: --no-cli, or no sealift binary (cargo build --release -p sealift; --sealift PATH)",
        ),
    }

    let store = Store::open(&dir)?;
    let t = Instant::now();
    let mut removed = 0;
    for m in (0..a.manifests).step_by(2) {
        let (repo, tag) = repo_tag(m, a.repos);
        removed += usize::from(store.remove_tag(&repo, &tag)?);
    }
    let d = t.elapsed();
    report.add(
        format!("remove {removed} tags"),
        Some(d),
        per_sec(removed, d),
    );
    let start = reset_peak();
    let t = Instant::now();
    let r = store.gc(&GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    })?;
    let d = t.elapsed();
    let peak = peak_above(start);
    report.add(
        "gc grace 0, half the tags removed",
        Some(d),
        format!(
            "removed {} ({}), live {}, {}, peak {peak:.1} MiB above start",
            r.removed.len(),
            mib(r.bytes),
            r.live,
            per_sec(r.removed.len(), d).replace("/s", " removed/s")
        ),
    );
    metric("gc_removed", r.removed.len() as f64);
    metric("gc_remove_s", d.as_secs_f64());
    metric("gc_remove_peak_mib", peak);
    drop(store);

    db_size(&dir, nblobs, "after gc", &mut report);
    let (files, apparent, allocated) = disk_usage(&dir.join("blobs"));
    report.add(
        "disk: blobs/",
        None,
        format!(
            "{files} files, {} apparent, {} allocated",
            mib(apparent),
            mib(allocated)
        ),
    );
    println!();
    report.print();
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

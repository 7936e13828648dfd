//! The sync configuration file (TOML): where the store is, how to reach each registry,
//! and the jobs. Everything is checked when the file is loaded, before any I/O, and every
//! error names the file, the line and column, the key and what was wrong.
//!
//! See `config.example.toml` at the root of the repository for every key.

mod error;
pub mod schedule;
pub mod select;
mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use sealift_oci::Platform;

pub use error::ConfigError;
pub use schedule::Schedule;
pub use select::{NameFilter, TagSelection};
pub use serve::ServeSection;

use error::Cx;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (relative paths in it resolve against its directory).
    pub path: PathBuf,
    /// `[store] path`; `None`: the default store (or `--store`).
    pub store: Option<PathBuf>,
    /// `[[registry]]` sections.
    pub registries: Vec<RegistrySection>,
    /// `[[job]]` sections, in file order.
    pub jobs: Vec<JobConfig>,
    /// `[inbox]`: a directory watched for OCI layout tarballs (the daemon's).
    pub inbox: Option<InboxSection>,
    /// `[serve]`: `sealift serve` in the daemon's process.
    pub serve: Option<ServeSection>,
}

/// How to reach one registry; shared by every job touching its host.
#[derive(Clone, Debug)]
pub struct RegistrySection {
    /// `host[:port]` as jobs write it.
    pub host: String,
    /// `true`: plain HTTP; `false`: HTTPS only. Unset: HTTPS, except that loopback hosts
    /// fall back to plain HTTP when they refuse the TLS handshake.
    pub insecure: Option<bool>,
    /// Verify TLS certificates (default true).
    pub tls_verify: bool,
    /// Extra PEM root certificates.
    pub ca_file: Option<PathBuf>,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Requests in flight at once (default 8).
    pub max_concurrent: usize,
    /// Requests started per second, over every job (default: unlimited).
    pub requests_per_second: Option<f64>,
    /// Slow down when the registry's `RateLimit-Remaining` header runs low (Docker Hub).
    pub rate_limit_headers: bool,
}

/// Where a registry's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// podman/docker auth files and credential helpers, as `sealift copy` does.
    Auto,
    /// A user name, with the password read from an environment variable or a file when
    /// the job runs (never stored in the config).
    Basic {
        /// User name.
        username: String,
        /// Where the password is.
        password: SecretSource,
    },
}

/// Where a secret is read from, at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file (its content, trailing newline removed).
    File(PathBuf),
}

/// `[inbox]`: tarballs dropped in `path` are imported once complete (the daemon's job).
#[derive(Clone, Debug)]
pub struct InboxSection {
    /// The watched directory.
    pub path: PathBuf,
    /// How long a file must stay unchanged before it counts as complete (default 5 s).
    pub settle: Duration,
    /// A job to run on what was imported.
    pub job: Option<String>,
}

/// A place images are read from or written to by a job. Unlike a copy's
/// [`Location`](sealift_copy::location::Location), it names repositories, not one image: tags
/// come from the job's selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// `docker://host` (every repository, through the catalog) or `docker://host/repo`.
    Registry {
        /// `host[:port]`.
        host: String,
        /// One repository (source), or the prefix repositories go under (destination).
        repo: Option<String>,
    },
    /// `store:` or `store:repo`.
    Store {
        /// One repository (source), or a prefix (destination).
        repo: Option<String>,
    },
    /// `oci:DIR`: images are its index.json entries named `repo:tag`.
    LayoutDir {
        /// The directory.
        path: PathBuf,
    },
    /// `oci-archive:FILE`.
    LayoutTar {
        /// The tarball.
        path: PathBuf,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Registry { host, repo: None } => write!(f, "docker://{host}"),
            Place::Registry {
                host,
                repo: Some(r),
            } => write!(f, "docker://{host}/{r}"),
            Place::Store { repo: None } => write!(f, "store:"),
            Place::Store { repo: Some(r) } => write!(f, "store:{r}"),
            Place::LayoutDir { path } => write!(f, "oci:{}", path.display()),
            Place::LayoutTar { path } => write!(f, "oci-archive:{}", path.display()),
        }
    }
}

/// Destination retention.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// Keep only the N newest tags this job wrote per destination repository (by version
    /// when the tags are versions, else by when they were first copied).
    pub keep_last: Option<usize>,
    /// Remove destination tags this job wrote whose source tag is gone.
    pub prune_gone: bool,
}

/// `rewrite_index`: how a job writes an index it copies only some platforms of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RewriteIndex {
    /// `false`: the original index over the chosen entries (sparse; the digest is kept).
    #[default]
    Never,
    /// `true`: a new index of the chosen entries (a new digest).
    Always,
    /// `"auto"`: sparse where the destination accepts it, rewritten where it refuses it
    /// (registries that check every entry of an index); each image's report says which.
    Auto,
}

/// One `[[job]]`.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Unique name (`[A-Za-z0-9._-]`).
    pub name: String,
    /// Where from.
    pub source: Place,
    /// Where to.
    pub destination: Place,
    /// Which repositories, when the source names none (catalog, store, layout).
    pub repositories: NameFilter,
    /// Which tags.
    pub tags: TagSelection,
    /// Keep only these platforms of an index (empty: all).
    pub platforms: Vec<Platform>,
    /// With `platforms`: whether to write a new index holding only those (new digest).
    pub rewrite_index: RewriteIndex,
    /// Copy referrers (signatures, SBOMs, attestations) too.
    pub referrers: bool,
    /// Tags that never change once copied: never checked again (`None`: no such tags).
    pub immutable_tags: Option<NameFilter>,
    /// When the daemon runs it; `None`: only on demand.
    pub schedule: Option<Schedule>,
    /// What to remove at the destination.
    pub retention: Retention,
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Check a configuration's text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Cx { text, file: path };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let found = text.get(span.clone()).unwrap_or("").trim();
            let key = if !found.is_empty() && found.len() <= 60 && !found.contains('\n') {
                found.to_string()
            } else {
                "syntax".to_string()
            };
            cx.err(span.start, key, e.message().trim().to_string())
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let store = match raw.store.and_then(|s| s.path) {
            Some(p) if p.get_ref().is_empty() => {
                return Err(cx.at(&p, "store.path", "empty path".into()))
            }
            Some(p) => Some(resolve(p.get_ref())),
            None => None,
        };

        let mut registries: Vec<RegistrySection> = Vec::new();
        for (i, r) in raw.registry.into_iter().enumerate() {
            let k = |f: &str| format!("registry[{i}].{f}");
            let host = r.host.get_ref().trim().to_string();
            check_host(&host).map_err(|m| cx.at(&r.host, &k("host"), m))?;
            if registries.iter().any(|x| x.host == host) {
                return Err(cx.at(&r.host, &k("host"), format!("{host} is configured twice")));
            }
            let credentials = match (r.username, r.password_env, r.password_file) {
                (None, None, None) => CredentialSource::Auto,
                (Some(u), Some(env), None) => CredentialSource::Basic {
                    username: u.into_inner(),
                    password: SecretSource::Env(env.into_inner()),
                },
                (Some(u), None, Some(f)) => CredentialSource::Basic {
                    username: u.into_inner(),
                    password: SecretSource::File(resolve(f.get_ref())),
                },
                (Some(u), None, None) => {
                    return Err(cx.at(
                        &u,
                        &k("username"),
                        "needs password_env or password_file (passwords are never written in the config)".into(),
                    ))
                }
                (_, Some(e), Some(_)) => {
                    return Err(cx.at(
                        &e,
                        &k("password_env"),
                        "give password_env or password_file, not both".into(),
                    ))
                }
                (None, Some(e), None) => {
                    return Err(cx.at(&e, &k("password_env"), "needs username".into()))
                }
                (None, None, Some(f)) => {
                    return Err(cx.at(&f, &k("password_file"), "needs username".into()))
                }
            };
            let max_concurrent = match r.max_concurrent {
                Some(m) if *m.get_ref() == 0 || *m.get_ref() > 256 => {
                    return Err(cx.at(&m, &k("max_concurrent"), "must be 1 to 256".into()))
                }
                Some(m) => m.into_inner(),
                None => 8,
            };
            let requests_per_second = match r.requests_per_second {
                Some(q) if !(q.get_ref().is_finite() && *q.get_ref() > 0.0) => {
                    return Err(cx.at(
                        &q,
                        &k("requests_per_second"),
                        "must be a number above 0".into(),
                    ))
                }
                q => q.map(Spanned::into_inner),
            };
            registries.push(RegistrySection {
                host,
                insecure: r.insecure,
                tls_verify: r.tls_verify.unwrap_or(true),
                ca_file: r.ca_file.map(|p| resolve(p.get_ref())),
                credentials,
                max_concurrent,
                requests_per_second,
                rate_limit_headers: r.rate_limit_headers.unwrap_or(true),
            });
        }

        let mut jobs: Vec<JobConfig> = Vec::new();
        for (i, j) in raw.job.into_iter().enumerate() {
            let k = |f: &str| format!("job[{i}].{f}");
            let name = j.name.get_ref().clone();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(cx.at(
                    &j.name,
                    &k("name"),
                    format!("{name:?}: use letters, digits, '.', '_' and '-'"),
                ));
            }
            if jobs.iter().any(|x| x.name == name) {
                return Err(cx.at(
                    &j.name,
                    &k("name"),
                    format!("job {name:?} is defined twice"),
                ));
            }
            let source = parse_place(j.source.get_ref(), &resolve)
                .map_err(|m| cx.at(&j.source, &k("source"), m))?;
            let destination = parse_place(j.destination.get_ref(), &resolve)
                .map_err(|m| cx.at(&j.destination, &k("destination"), m))?;
            if let Place::LayoutTar { .. } = destination {
                if !matches!(source, Place::Store { .. }) {
                    return Err(cx.at(
                        &j.destination,
                        &k("destination"),
                        "an oci-archive: destination (a bundle) takes a store: source; sync into the store in an earlier job".into(),
                    ));
                }
            }
            if source == destination {
                return Err(cx.at(
                    &j.destination,
                    &k("destination"),
                    "is the same place as the source".into(),
                ));
            }
            let repositories = filter(&cx, j.repositories.unwrap_or_default(), &k("repositories"))?;
            if !repositories.is_empty() && place_repo(&source).is_some() {
                return Err(cx.at(
                    &j.source,
                    &k("repositories"),
                    "the source names one repository; repository filters apply to a whole registry, store or layout".into(),
                ));
            }
            let t = j.tags.unwrap_or_default();
            let semver = match &t.semver {
                None => None,
                Some(s) => Some(
                    semver::VersionReq::parse(s.get_ref().trim_start_matches('v')).map_err(
                        |e| {
                            cx.at(
                                s,
                                &k("tags.semver"),
                                format!("bad semver range {:?}: {e}", s.get_ref()),
                            )
                        },
                    )?,
                ),
            };
            let latest = match &t.latest {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(cx.at(n, &k("tags.latest"), "must be at least 1".into()))
                }
                n => n.as_ref().map(|n| *n.get_ref()),
            };
            let tag_filter = filter(
                &cx,
                RawFilter {
                    allow: t.allow,
                    deny: t.deny,
                    allow_regex: t.allow_regex,
                    deny_regex: t.deny_regex,
                },
                &k("tags"),
            )?;
            for tag in &t.list {
                if sealift_registry::client::check_reference(tag.get_ref()).is_err()
                    || tag.get_ref().starts_with("sha")
                        && tag.get_ref().parse::<sealift_oci::Digest>().is_ok()
                {
                    return Err(cx.at(
                        tag,
                        &k("tags.list"),
                        format!("{:?} is not a tag", tag.get_ref()),
                    ));
                }
            }
            let tags = TagSelection {
                list: t.list.into_iter().map(Spanned::into_inner).collect(),
                filter: tag_filter,
                semver,
                latest,
            };
            let mut platforms = Vec::new();
            for p in j.platforms.unwrap_or_default() {
                platforms.push(
                    p.get_ref().parse::<Platform>().map_err(|e| {
                        cx.at(&p, &k("platforms"), format!("{:?}: {e}", p.get_ref()))
                    })?,
                );
            }
            let mut immutable = Vec::new();
            for p in j.immutable_tags.unwrap_or_default() {
                select::glob(p.get_ref()).map_err(|m| cx.at(&p, &k("immutable_tags"), m))?;
                immutable.push(p.into_inner());
            }
            let immutable_tags = if immutable.is_empty() {
                None
            } else {
                Some(
                    NameFilter::new(&immutable, &[], &[], &[])
                        .map_err(|(_, m)| cx.err(0, k("immutable_tags"), m))?,
                )
            };
            let schedule = match &j.schedule {
                None => None,
                Some(s) => {
                    Some(Schedule::parse(s.get_ref()).map_err(|m| cx.at(s, &k("schedule"), m))?)
                }
            };
            let r = j.retention.unwrap_or_default();
            let keep_last = match &r.keep_last {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(cx.at(n, &k("retention.keep_last"), "must be at least 1".into()))
                }
                n => n.as_ref().map(|n| *n.get_ref()),
            };
            let retention = Retention {
                keep_last,
                prune_gone: r.prune_gone.unwrap_or(false),
            };
            if (retention.keep_last.is_some() || retention.prune_gone)
                && matches!(
                    destination,
                    Place::LayoutDir { .. } | Place::LayoutTar { .. }
                )
            {
                return Err(cx.at(
                    &j.destination,
                    &k("retention"),
                    "retention applies to registry and store destinations".into(),
                ));
            }
            jobs.push(JobConfig {
                name,
                source,
                destination,
                repositories,
                tags,
                platforms,
                rewrite_index: match &j.rewrite_index {
                    None => RewriteIndex::Never,
                    Some(v) => match v.get_ref() {
                        toml::Value::Boolean(false) => RewriteIndex::Never,
                        toml::Value::Boolean(true) => RewriteIndex::Always,
                        toml::Value::String(s) if s == "auto" => RewriteIndex::Auto,
                        other => {
                            return Err(cx.at(
                                v,
                                &k("rewrite_index"),
                                format!("{other} is not true, false or \"auto\""),
                            ))
                        }
                    },
                },
                referrers: j.referrers.unwrap_or(false),
                immutable_tags,
                schedule,
                retention,
            });
        }

        let inbox = match raw.inbox {
            None => None,
            Some(b) => {
                let settle = match &b.settle {
                    None => Duration::from_secs(5),
                    Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
                        cx.at(
                            s,
                            "inbox.settle",
                            format!("{:?} is not a duration: {e}", s.get_ref()),
                        )
                    })?,
                };
                if let Some(job) = &b.job {
                    if !jobs.iter().any(|x| &x.name == job.get_ref()) {
                        return Err(cx.at(
                            job,
                            "inbox.job",
                            format!("no [[job]] is named {:?}", job.get_ref()),
                        ));
                    }
                }
                if b.path.get_ref().is_empty() {
                    return Err(cx.at(&b.path, "inbox.path", "empty path".into()));
                }
                Some(InboxSection {
                    path: resolve(b.path.get_ref()),
                    settle,
                    job: b.job.map(Spanned::into_inner),
                })
            }
        };
        let serve = raw
            .serve
            .map(|s| serve::parse(&cx, s, &resolve))
            .transpose()?;
        Ok(Config {
            path: path.to_path_buf(),
            store,
            registries,
            jobs,
            inbox,
            serve,
        })
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The `[[registry]]` section for `host`, if any.
    pub fn registry(&self, host: &str) -> Option<&RegistrySection> {
        self.registries.iter().find(|r| r.host == host)
    }
}

/// The repository a place names, if any.
pub fn place_repo(p: &Place) -> Option<&str> {
    match p {
        Place::Registry { repo, .. } | Place::Store { repo } => repo.as_deref(),
        _ => None,
    }
}

fn filter(cx: &Cx<'_>, f: RawFilter, key: &str) -> Result<NameFilter, ConfigError> {
    let lists = [&f.allow, &f.deny, &f.allow_regex, &f.deny_regex];
    let plain = |l: &Vec<Spanned<String>>| -> Vec<String> {
        l.iter().map(|s| s.get_ref().clone()).collect()
    };
    NameFilter::new(
        &plain(&f.allow),
        &plain(&f.deny),
        &plain(&f.allow_regex),
        &plain(&f.deny_regex),
    )
    .map_err(|(i, m)| {
        let names = ["allow", "deny", "allow_regex", "deny_regex"];
        // Point at the first pattern of the list that fails.
        let bad = lists[i].iter().find(|p| {
            if i < 2 {
                select::glob(p.get_ref()).is_err()
            } else {
                select::regex(p.get_ref()).is_err()
            }
        });
        match bad {
            Some(p) => cx.at(p, &format!("{key}.{}", names[i]), m),
            None => cx.err(0, format!("{key}.{}", names[i]), m),
        }
    })
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && !host.contains('/')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not host[:port]"))
    }
}

fn check_repo_path(repo: &str) -> Result<(), String> {
    sealift_registry::client::check_repo(repo).map_err(|e| e.to_string())
}

fn parse_place(s: &str, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Place, String> {
    let no_ref = |r: &str| -> Result<(), String> {
        if r.contains('@') || r.contains(':') {
            return Err(format!(
                "{s:?} names a tag or digest; a job's source and destination name repositories, tags go in [job.tags]"
            ));
        }
        check_repo_path(r)
    };
    if let Some(rest) = s.strip_prefix("docker://") {
        let (host, repo) = match rest.split_once('/') {
            Some((h, r)) => (h, Some(r.trim_end_matches('/'))),
            None => (rest, None),
        };
        check_host(host)?;
        let repo = repo.filter(|r| !r.is_empty());
        if let Some(r) = repo {
            no_ref(r)?;
        }
        return Ok(Place::Registry {
            host: host.to_string(),
            repo: repo.map(str::to_string),
        });
    }
    if let Some(rest) = s.strip_prefix("store:") {
        let repo = Some(rest.trim_end_matches('/')).filter(|r| !r.is_empty());
        if let Some(r) = repo {
            no_ref(r)?;
        }
        return Ok(Place::Store {
            repo: repo.map(str::to_string),
        });
    }
    for (prefix, tar) in [("oci-archive:", true), ("oci:", false)] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.is_empty() {
                return Err(format!("{s:?} names no path"));
            }
            let path = resolve(rest);
            return Ok(if tar {
                Place::LayoutTar { path }
            } else {
                Place::LayoutDir { path }
            });
        }
    }
    Err(format!(
        "{s:?}: unknown transport (use docker://HOST[/REPO], store:[REPO], oci:DIR or oci-archive:FILE)"
    ))
}

// ---- the file as written ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    store: Option<RawStore>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
    #[serde(default)]
    job: Vec<RawJob>,
    inbox: Option<RawInbox>,
    serve: Option<serve::RawServe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    host: Spanned<String>,
    insecure: Option<bool>,
    tls_verify: Option<bool>,
    ca_file: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<usize>>,
    requests_per_second: Option<Spanned<f64>>,
    rate_limit_headers: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    allow_regex: Vec<Spanned<String>>,
    #[serde(default)]
    deny_regex: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTags {
    #[serde(default)]
    list: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    allow_regex: Vec<Spanned<String>>,
    #[serde(default)]
    deny_regex: Vec<Spanned<String>>,
    semver: Option<Spanned<String>>,
    latest: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<Spanned<usize>>,
    prune_gone: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    source: Spanned<String>,
    destination: Spanned<String>,
    repositories: Option<RawFilter>,
    tags: Option<RawTags>,
    platforms: Option<Vec<Spanned<String>>>,
    rewrite_index: Option<Spanned<toml::Value>>,
    referrers: Option<bool>,
    immutable_tags: Option<Vec<Spanned<String>>>,
    schedule: Option<Spanned<String>>,
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    path: Spanned<String>,
    settle: Option<Spanned<String>>,
    job: Option<Spanned<String>>,
}

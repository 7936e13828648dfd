//! `[[job]]`: what a sync job copies from where to where (places, repository and tag
//! selection, platforms, referrers, schedule, retention, the signature policy of
//! `verify.rs`).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use sealift_oci::Platform;

use super::error::{ConfigError, Cx};
use super::images_from::{self, ImagesFrom};
use super::place::{parse_place, place_repo, Place};
use super::schedule::Schedule;
use super::select::{self, NameFilter, TagSelection};
use super::verify;

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
    /// `images_from`: the images to copy, from Kubernetes manifests or text lists, instead
    /// of the source's repositories and tags.
    pub images_from: Option<ImagesFrom>,
    /// `[job.verify]`: copy only images whose signatures at the source satisfy this policy
    /// (keys and trusted root read and checked at load).
    pub verify: Option<sealift_trust::Policy>,
}

/// Check every `[[job]]`, in file order.
pub(crate) fn parse(
    cx: &Cx<'_>,
    raw: Vec<RawJob>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<JobConfig>, ConfigError> {
    let mut jobs: Vec<JobConfig> = Vec::new();
    for (i, j) in raw.into_iter().enumerate() {
        let job = parse_job(cx, &format!("job[{i}]"), j, &jobs, resolve)?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// One `[[job]]` (`at`: `job[N]`, naming it in errors); `earlier`: the jobs before it.
fn parse_job(
    cx: &Cx<'_>,
    at: &str,
    j: RawJob,
    earlier: &[JobConfig],
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<JobConfig, ConfigError> {
    let k = |f: &str| format!("{at}.{f}");
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
    if earlier.iter().any(|x| x.name == name) {
        return Err(cx.at(
            &j.name,
            &k("name"),
            format!("job {name:?} is defined twice"),
        ));
    }
    let (source, destination) = places(cx, &j, &k, resolve)?;
    let repositories = filter(cx, j.repositories.unwrap_or_default(), &k("repositories"))?;
    if !repositories.is_empty() && place_repo(&source).is_some() {
        return Err(cx.at(
            &j.source,
            &k("repositories"),
            "the source names one repository; repository filters apply to a whole registry, store or layout".into(),
        ));
    }
    let images_from = images_from::parse(
        cx,
        &k("images_from"),
        j.images_from.as_ref(),
        &source,
        resolve,
    )?;
    if let (Some(_), Some(f)) = (&images_from, &j.images_from) {
        if j.tags.is_some() || !repositories.is_empty() {
            return Err(cx.at(
                f,
                &k("images_from"),
                "the lists name repositories and tags: drop [job.tags] and repositories".into(),
            ));
        }
    }
    let tags = tags(cx, j.tags.unwrap_or_default(), &k)?;
    let mut platforms = Vec::new();
    for p in j.platforms.unwrap_or_default() {
        platforms.push(
            p.get_ref()
                .parse::<Platform>()
                .map_err(|e| cx.at(&p, &k("platforms"), format!("{:?}: {e}", p.get_ref())))?,
        );
    }
    let immutable_tags = immutable_tags(
        cx,
        j.immutable_tags.unwrap_or_default(),
        &k("immutable_tags"),
    )?;
    let schedule = match &j.schedule {
        None => None,
        Some(s) => Some(Schedule::parse(s.get_ref()).map_err(|m| cx.at(s, &k("schedule"), m))?),
    };
    let retention = retention(cx, j.retention.unwrap_or_default(), &k("retention"))?;
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
    let verify = match j.verify {
        None => None,
        Some(v) => {
            if matches!(destination, Place::LayoutTar { .. }) {
                return Err(cx.at(
                    &v,
                    &k("verify"),
                    "a bundle destination writes images already in the store; verify them where they are copied in".into(),
                ));
            }
            Some(verify::parse(cx, v, &k("verify"), resolve)?)
        }
    };
    Ok(JobConfig {
        name,
        source,
        destination,
        repositories,
        tags,
        platforms,
        rewrite_index: rewrite_index(cx, j.rewrite_index.as_ref(), &k("rewrite_index"))?,
        referrers: j.referrers.unwrap_or(false),
        immutable_tags,
        schedule,
        retention,
        images_from,
        verify,
    })
}

/// A job's source and destination, and the rules between them.
fn places(
    cx: &Cx<'_>,
    j: &RawJob,
    k: &dyn Fn(&str) -> String,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<(Place, Place), ConfigError> {
    let source =
        parse_place(j.source.get_ref(), resolve).map_err(|m| cx.at(&j.source, &k("source"), m))?;
    let destination = parse_place(j.destination.get_ref(), resolve)
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
    Ok((source, destination))
}

/// `[job.tags]`.
fn tags(cx: &Cx<'_>, t: RawTags, k: &dyn Fn(&str) -> String) -> Result<TagSelection, ConfigError> {
    let semver = match &t.semver {
        None => None,
        Some(s) => Some(
            semver::VersionReq::parse(s.get_ref().trim_start_matches('v')).map_err(|e| {
                cx.at(
                    s,
                    &k("tags.semver"),
                    format!("bad semver range {:?}: {e}", s.get_ref()),
                )
            })?,
        ),
    };
    let latest = match &t.latest {
        Some(n) if *n.get_ref() == 0 => {
            return Err(cx.at(n, &k("tags.latest"), "must be at least 1".into()))
        }
        n => n.as_ref().map(|n| *n.get_ref()),
    };
    let tag_filter = filter(
        cx,
        RawFilter {
            allow: t.allow,
            deny: t.deny,
            allow_regex: t.allow_regex,
            deny_regex: t.deny_regex,
        },
        &k("tags"),
    )?;
    for tag in &t.list {
        if sealift_oci::reference::check_reference(tag.get_ref()).is_err()
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
    Ok(TagSelection {
        list: t.list.into_iter().map(Spanned::into_inner).collect(),
        filter: tag_filter,
        semver,
        latest,
    })
}

/// `immutable_tags`: globs; `None` when empty.
fn immutable_tags(
    cx: &Cx<'_>,
    globs: Vec<Spanned<String>>,
    key: &str,
) -> Result<Option<NameFilter>, ConfigError> {
    let mut immutable = Vec::new();
    for p in globs {
        select::glob(p.get_ref()).map_err(|m| cx.at(&p, key, m))?;
        immutable.push(p.into_inner());
    }
    if immutable.is_empty() {
        return Ok(None);
    }
    NameFilter::new(&immutable, &[], &[], &[])
        .map(Some)
        .map_err(|(_, m)| cx.err(0, key, m))
}

/// `[job.retention]`.
fn retention(cx: &Cx<'_>, r: RawRetention, key: &str) -> Result<Retention, ConfigError> {
    let keep_last = match &r.keep_last {
        Some(n) if *n.get_ref() == 0 => {
            return Err(cx.at(n, &format!("{key}.keep_last"), "must be at least 1".into()))
        }
        n => n.as_ref().map(|n| *n.get_ref()),
    };
    Ok(Retention {
        keep_last,
        prune_gone: r.prune_gone.unwrap_or(false),
    })
}

/// `rewrite_index`: `true`, `false` or `"auto"`.
fn rewrite_index(
    cx: &Cx<'_>,
    v: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<RewriteIndex, ConfigError> {
    let Some(v) = v else {
        return Ok(RewriteIndex::Never);
    };
    match v.get_ref() {
        toml::Value::Boolean(false) => Ok(RewriteIndex::Never),
        toml::Value::Boolean(true) => Ok(RewriteIndex::Always),
        toml::Value::String(s) if s == "auto" => Ok(RewriteIndex::Auto),
        other => Err(cx.at(v, key, format!("{other} is not true, false or \"auto\""))),
    }
}

/// A name filter (`repositories`, `[job.tags]`), its errors pointing at the first pattern
/// that fails.
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

// ---- as written ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
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
pub(crate) struct RawTags {
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
pub(crate) struct RawRetention {
    keep_last: Option<Spanned<usize>>,
    prune_gone: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
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
    images_from: Option<Spanned<Vec<Spanned<String>>>>,
    verify: Option<Spanned<verify::RawVerify>>,
}

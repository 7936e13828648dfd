//! Image lists: which images a set of Kubernetes workloads need, read from their manifests
//! (multi-document YAML, `kubectl get -o yaml` `List`s, `helm template` output) or from a
//! plain text list (one reference per line, `#` comments), normalised as docker does
//! ([`ImageRef`]); and the same list pinned to the digests the store holds.
//!
//! YAML: each document's pod spec is read where its kind keeps it (`Pod`: `spec`;
//! `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `ReplicationController`, `Job`:
//! `spec.template.spec`; `CronJob`: `spec.jobTemplate.spec.template.spec`; `PodTemplate`:
//! `template.spec`), and in it the `image` of every `containers`, `initContainers` and
//! `ephemeralContainers` entry. Other kinds are ignored; `List` kinds (`kind: List`,
//! `DeploymentList`, …) are read item by item. A file is YAML when its name ends in
//! `.yaml`, `.yml` or `.json`, or, for any other name, when a line starts with `kind:` or
//! `apiVersion:` or it opens with `{` (JSON, which is YAML); otherwise it is a text list.
//!
//! Bounds: a file is read up to [`MAX_LIST_SIZE`] (more is refused before parsing); YAML
//! aliases are expanded by the parser under its repetition limit (an alias bomb is an
//! error, not a memory blow-up); `List`s nest at most [`MAX_LIST_DEPTH`] deep.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use sealift_oci::{Digest, ImageRef};
use sealift_store::Store;
use serde::Deserialize;
use yaml_serde::Value;

use crate::error::LayoutError;
use crate::select::Selector;

/// The largest image list or manifest file read (16 MiB; rendered charts are a few MiB at
/// most).
pub const MAX_LIST_SIZE: u64 = 16 << 20;

/// How deep `List`s may nest in a manifest.
pub const MAX_LIST_DEPTH: usize = 4;

/// Why an image list could not be read. Each names the file and the document or line.
#[derive(Debug, thiserror::Error)]
pub enum ImageListError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_LIST_SIZE`].
    #[error("{path} is larger than {limit} bytes; refusing to read it as an image list")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A YAML document does not parse.
    #[error("{path}: document {document}{at}: {reason}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Which document of the stream (from 1).
        document: usize,
        /// ` (line L, column C)` when the parser knows where.
        at: String,
        /// The parser's message.
        reason: String,
    },
    /// A workload's image, or a line of a text list, is not an image reference.
    #[error("{path}: {at}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// `line N`, or `document N (Kind name): spec….image`.
        at: String,
        /// Why.
        reason: String,
    },
    /// A pinned entry's tag names another digest in the store now.
    #[error("{image} (from {file}): the store's tag now names {held}; pin the list again or pull that digest")]
    Moved {
        /// The pinned entry.
        image: String,
        /// The list it came from.
        file: PathBuf,
        /// What the store's tag names.
        held: Digest,
    },
    /// An image to pin is not in the store.
    #[error("{image} is not in the store (as {store_ref}); pull or sync it first: {reason}")]
    NotHeld {
        /// The image.
        image: String,
        /// The store reference it was looked up as.
        store_ref: String,
        /// The store's answer.
        reason: String,
    },
}

/// One image found, with where it was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    /// The normalised reference.
    pub image: ImageRef,
    /// The file it was first found in.
    pub file: PathBuf,
}

/// Read image lists and manifests, in order; each image once, in first-seen order.
pub fn read_lists(paths: &[PathBuf]) -> Result<Vec<ListedImage>, ImageListError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in paths {
        for image in read_list(p)? {
            if seen.insert(image.to_string()) {
                out.push(ListedImage {
                    image,
                    file: p.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Read one image list or manifest file (each image once, in first-seen order).
pub fn read_list(path: &Path) -> Result<Vec<ImageRef>, ImageListError> {
    let read_err = |source| ImageListError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_LIST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_LIST_SIZE {
        return Err(ImageListError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_LIST_SIZE,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })?;
    parse_list(&text, path)
}

/// Whether a file is read as YAML: by its name, else by its content.
fn is_yaml(text: &str, path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml" | "json") => true,
        _ => {
            text.trim_start().starts_with('{')
                || text
                    .lines()
                    .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"))
        }
    }
}

/// Parse a list's text; `path` names it in errors and chooses the format.
pub fn parse_list(text: &str, path: &Path) -> Result<Vec<ImageRef>, ImageListError> {
    let found = if is_yaml(text, path) {
        parse_yaml(text, path)?
    } else {
        parse_text(text, path)?
    };
    let mut seen = HashSet::new();
    Ok(found
        .into_iter()
        .filter(|i| seen.insert(i.to_string()))
        .collect())
}

fn parse_text(text: &str, path: &Path) -> Result<Vec<ImageRef>, ImageListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // No reference holds a '#', so one starts a comment wherever it is.
        let line = match line.find('#') {
            Some(at) => &line[..at],
            None => line,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ImageListError::Image {
            path: path.to_path_buf(),
            at: format!("line {}", i + 1),
            reason,
        };
        if line.contains(char::is_whitespace) {
            return Err(err(format!(
                "{line:?}: one image reference per line (a '#' starts a comment)"
            )));
        }
        out.push(line.parse::<ImageRef>().map_err(|e| err(e.to_string()))?);
    }
    Ok(out)
}

fn parse_yaml(text: &str, path: &Path) -> Result<Vec<ImageRef>, ImageListError> {
    let mut out = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ImageListError::Yaml {
            path: path.to_path_buf(),
            document,
            // The parser's message usually says where already.
            at: match e.location() {
                Some(l) if !e.to_string().contains(" line ") => {
                    format!(" (line {}, column {})", l.line(), l.column())
                }
                _ => String::new(),
            },
            reason: e.to_string(),
        })?;
        let mut cx = Walk {
            path,
            at: format!("document {document}"),
            out: &mut out,
        };
        cx.object(&value, 0)?;
    }
    Ok(out)
}

/// Where the walk of one document is, for errors.
struct Walk<'a> {
    path: &'a Path,
    at: String,
    out: &'a mut Vec<ImageRef>,
}

fn field<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

impl Walk<'_> {
    fn err(&self, field: &str, reason: String) -> ImageListError {
        ImageListError::Image {
            path: self.path.to_path_buf(),
            at: format!("{}: {field}", self.at),
            reason,
        }
    }

    /// One Kubernetes object (a document, or an item of a `List`).
    fn object(&mut self, v: &Value, depth: usize) -> Result<(), ImageListError> {
        let Some(kind) = v.get("kind").and_then(Value::as_str) else {
            return Ok(());
        };
        if kind == "List" || kind.ends_with("List") {
            if depth >= MAX_LIST_DEPTH {
                return Err(self.err(
                    "items",
                    format!("Lists nest more than {MAX_LIST_DEPTH} deep"),
                ));
            }
            let Some(items) = v.get("items").and_then(Value::as_sequence) else {
                return Ok(());
            };
            let outer = self.at.clone();
            for (i, item) in items.iter().enumerate() {
                self.at = format!("{outer} items[{i}]");
                self.object(item, depth + 1)?;
            }
            self.at = outer;
            return Ok(());
        }
        let spec_path: &[&str] = match kind {
            "Pod" => &["spec"],
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "ReplicationController"
            | "Job" => &["spec", "template", "spec"],
            "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
            "PodTemplate" => &["template", "spec"],
            _ => return Ok(()),
        };
        let name = field(v, &["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let outer = self.at.clone();
        self.at = format!("{outer} ({kind} {name})");
        let r = match field(v, spec_path) {
            Some(spec) => self.pod_spec(spec, &spec_path.join(".")),
            None => Ok(()),
        };
        self.at = outer;
        r
    }

    fn pod_spec(&mut self, spec: &Value, at: &str) -> Result<(), ImageListError> {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(containers) = spec.get(list) else {
                continue;
            };
            let Some(containers) = containers.as_sequence() else {
                return Err(self.err(&format!("{at}.{list}"), "is not a list".into()));
            };
            for (i, c) in containers.iter().enumerate() {
                let field = format!("{at}.{list}[{i}].image");
                let image = match c.get("image") {
                    Some(Value::String(s)) => s,
                    Some(_) => return Err(self.err(&field, "is not a string".into())),
                    None => {
                        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                        return Err(self.err(&field, format!("container {name:?} has no image")));
                    }
                };
                let image = image
                    .trim()
                    .parse::<ImageRef>()
                    .map_err(|e| self.err(&field, e.to_string()))?;
                self.out.push(image);
            }
        }
        Ok(())
    }
}

/// `images` pinned to the digests the store holds: a tag is resolved to its digest (filed
/// as `pull` files it, `HOST/REPO:TAG`), a digest is kept once the store is found to hold
/// it. An image the store does not hold is an error naming it: a pinned list is for an
/// air-gapped site, where a missing image is found too late.
pub fn pin(store: &Store, images: &[ImageRef]) -> Result<Vec<ImageRef>, ImageListError> {
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        let not_held = |store_ref: String, reason: String| ImageListError::NotHeld {
            image: image.to_string(),
            store_ref,
            reason,
        };
        let sr = image
            .store_ref()
            .map_err(|e| not_held(image.to_string(), e.to_string()))?;
        let digest: Digest = store
            .resolve(&sr)
            .map_err(|e| not_held(sr.to_string(), e.to_string()))?;
        out.push(image.pinned(digest));
    }
    Ok(out)
}

/// The store selectors of `images` (as `pull` files them: `HOST/REPO:TAG`), for
/// [`select::resolve`](crate::select::resolve) and export. A pinned entry
/// (`REPO:TAG@DIGEST`) is checked now: its tag must still name that digest in the store
/// (else [`ImageListError::Moved`]), and it is selected by its tag, so a bundle names it
/// `REPO:TAG` as any other.
pub fn selectors(store: &Store, images: &[ListedImage]) -> Result<Vec<Selector>, ImageListError> {
    let mut out = Vec::with_capacity(images.len());
    for l in images {
        let mut sr = l.image.store_ref().map_err(|e| ImageListError::Image {
            path: l.file.clone(),
            at: l.image.to_string(),
            reason: e.to_string(),
        })?;
        if let (Some(_), Some(pinned)) = (&sr.tag, sr.digest.clone()) {
            sr.digest = None;
            let held = store.resolve(&sr).map_err(|e| ImageListError::NotHeld {
                image: l.image.to_string(),
                store_ref: sr.to_string(),
                reason: e.to_string(),
            })?;
            if held != pinned {
                return Err(ImageListError::Moved {
                    image: l.image.to_string(),
                    file: l.file.clone(),
                    held,
                });
            }
        }
        out.push(Selector::Ref(sr));
    }
    Ok(out)
}

/// `images` as a text list (one reference per line, a comment first), which
/// [`read_list`] reads back.
pub fn to_text(images: &[ImageRef], comment: &str) -> String {
    let mut s = String::new();
    for line in comment.lines() {
        s.push_str("# ");
        s.push_str(line);
        s.push('\n');
    }
    for i in images {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s
}

/// Write `text` to `path` atomically (through `PATH.partial`, synced, renamed).
pub fn write_list(path: &Path, text: &str) -> Result<(), LayoutError> {
    crate::format::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
#[path = "image_list_tests.rs"]
mod tests;

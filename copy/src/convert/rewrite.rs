//! Writing the converted manifests: image manifests with their new layer descriptors and
//! media types, then indexes over them; a manifest that does not change keeps its exact
//! bytes. Re-serialised JSON keeps the key order, unknown fields and annotations.

use std::collections::{HashMap, HashSet};

use sealift_oci::manifest::ManifestKind;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView};
use serde_json::{Map, Value};

use super::check::{Check, Checks, LayerOutcome};
use super::decide::{inconsistent, ImageWork, JobKey, LayerPlan};
use super::encode::Encoded;
use super::format::{Convert, Format};
use crate::plan::Node;
use crate::transport::TransportError;

/// The manifests to write after a conversion, in the walked order (children first).
pub(crate) struct Rewritten {
    /// Every manifest of the walk but those dropped, converted or as it was.
    pub(crate) manifests: Vec<Node>,
    /// `(source digest, written digest)` of every manifest that changed, children first.
    pub(crate) converted: Vec<(Digest, Digest)>,
    /// What each converted image manifest must satisfy.
    pub(crate) checks: Checks,
}

/// New manifests, children first (the walk's order), then indexes over them. `walked` and
/// `views` are the walk's manifests and their parsed views, `images` the per-image
/// decisions by index into them.
pub(crate) fn rewrite_manifests(
    walked: &[Node],
    views: &[ManifestView],
    images: &HashMap<usize, ImageWork>,
    encoded: &HashMap<JobKey, Encoded>,
    conv: &Convert,
) -> Result<Rewritten, TransportError> {
    let in_plan: HashSet<Digest> = walked.iter().map(|n| n.desc.digest.clone()).collect();
    let mut renamed: HashMap<Digest, Descriptor> = HashMap::new();
    let mut converted = Vec::new();
    let mut checks = Vec::new();
    let mut dropped: HashSet<Digest> = HashSet::new();
    let mut manifests = Vec::with_capacity(walked.len());
    for (i, (node, view)) in walked.iter().zip(views).enumerate() {
        let old = node.desc.clone();
        let bytes = &node.bytes;
        let unchanged = || Node {
            desc: node.desc.clone(),
            bytes: node.bytes.clone(),
            sparse: node.sparse,
        };
        let (media_type, new_bytes, check) = if let Some(w) = images.get(&i) {
            match image_manifest(bytes, &old, view, w, encoded)? {
                Some((m, b, layers)) => (
                    m,
                    b,
                    Some((w.config.digest.clone(), w.diff_ids.clone(), layers)),
                ),
                None => {
                    manifests.push(unchanged());
                    continue;
                }
            }
        } else if view.kind == ManifestKind::Index {
            match index_manifest(bytes, &old, view, conv, &renamed, &in_plan, &mut dropped)? {
                Some((m, b)) => (m, b, None),
                None => {
                    manifests.push(unchanged());
                    continue;
                }
            }
        } else {
            manifests.push(unchanged());
            continue;
        };
        let digest = Digest::of(old.digest.algorithm(), &new_bytes);
        if digest == old.digest {
            manifests.push(unchanged());
            continue;
        }
        let mut desc = old.clone();
        desc.media_type = media_type.to_string();
        desc.digest = digest.clone();
        desc.size = new_bytes.len() as u64;
        if let Some((config, diff_ids, layers)) = check {
            checks.push(Check {
                desc: desc.clone(),
                bytes: new_bytes.clone(),
                config,
                diff_ids,
                layers,
            });
        }
        manifests.push(Node {
            desc: desc.clone(),
            bytes: new_bytes,
            sparse: false,
        });
        converted.push((old.digest.clone(), digest));
        renamed.insert(old.digest, desc);
    }
    manifests.retain(|n| !dropped.contains(&n.desc.digest));
    Ok(Rewritten {
        manifests,
        converted,
        checks: Checks(checks),
    })
}

/// Set a descriptor object's mediaType, digest and size in place (keys keep their places).
fn set_descriptor(v: &mut Value, media_type: &str, digest: &Digest, size: u64) {
    if let Value::Object(m) = v {
        m.insert("mediaType".into(), media_type.into());
        m.insert("digest".into(), digest.to_string().into());
        m.insert("size".into(), size.into());
    }
}

/// Annotations that describe the compressed bytes of a layer and are wrong once it is
/// re-encoded (eStargz and zstd:chunked tables of contents).
fn describes_compressed_bytes(key: &str) -> bool {
    key.starts_with("containerd.io/snapshot/stargz/")
        || key.contains("zstd-chunked")
        || key.contains("estargz")
}

/// A re-encoded layer's descriptor: the source's, with new mediaType/digest/size, without
/// `urls` (they serve the old bytes) and annotations about the old compressed bytes.
fn reencoded_layer(v: &Value, media_type: &str, digest: &Digest, size: u64) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        match k.as_str() {
            "urls" => {}
            "annotations" => {
                if let Value::Object(a) = val {
                    let kept: Map<String, Value> = a
                        .iter()
                        .filter(|(k, _)| !describes_compressed_bytes(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k.clone(), Value::Object(kept));
                    }
                } else {
                    out.insert(k.clone(), val.clone());
                }
            }
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    let mut out = Value::Object(out);
    set_descriptor(&mut out, media_type, digest, size);
    out
}

/// Re-serialise a manifest or index object with the top-level keys in the usual order:
/// schemaVersion, mediaType, artifactType, `body` (config+layers, or manifests), subject,
/// annotations, then any unknown fields in their original order.
fn reserialise(
    orig: &Map<String, Value>,
    media_type: &str,
    body: Vec<(&str, Value)>,
) -> Result<Vec<u8>, TransportError> {
    let mut out = Map::new();
    out.insert(
        "schemaVersion".into(),
        orig.get("schemaVersion").cloned().unwrap_or(2.into()),
    );
    out.insert("mediaType".into(), media_type.into());
    if let Some(a) = orig.get("artifactType") {
        out.insert("artifactType".into(), a.clone());
    }
    let body_keys: Vec<&str> = body.iter().map(|(k, _)| *k).collect();
    for (k, v) in body {
        out.insert(k.into(), v);
    }
    for k in ["subject", "annotations"] {
        if let Some(v) = orig.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for (k, v) in orig {
        let known = matches!(
            k.as_str(),
            "schemaVersion" | "mediaType" | "artifactType" | "subject" | "annotations"
        ) || body_keys.contains(&k.as_str());
        if !known {
            out.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&Value::Object(out))
        .map_err(|e| TransportError::Unsupported(format!("serialising a converted manifest: {e}")))
}

fn object(bytes: &[u8], digest: &Digest) -> Result<Map<String, Value>, TransportError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TransportError::Unsupported(format!(
            "manifest {digest} is not a JSON object"
        ))),
    }
}

/// A converted image manifest: media type, bytes, what became of each layer.
type ConvertedImage = (&'static str, Vec<u8>, Vec<LayerOutcome>);

/// The converted image manifest, or `None` when nothing changes (its bytes are kept).
fn image_manifest(
    bytes: &[u8],
    desc: &Descriptor,
    view: &ManifestView,
    w: &ImageWork,
    encoded: &HashMap<JobKey, Encoded>,
) -> Result<Option<ConvertedImage>, TransportError> {
    let orig = object(bytes, &desc.digest)?;
    let orig_layers: Vec<Value> = orig
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if orig_layers.len() != view.layers.len() {
        return Err(inconsistent(format!(
            "manifest {}: layers do not parse",
            desc.digest
        )));
    }
    // A manifest whose layers and media types all stay keeps its exact bytes.
    let mut changed =
        view.media_type != w.format.manifest() || w.config.media_type != w.format.config();
    let mut layers = Vec::with_capacity(orig_layers.len());
    let mut outcomes = Vec::with_capacity(orig_layers.len());
    for (i, ((lp, layer), raw)) in w
        .layers
        .iter()
        .zip(&view.layers)
        .zip(&orig_layers)
        .enumerate()
    {
        match lp {
            LayerPlan::Keep => {
                layers.push(raw.clone());
                outcomes.push(LayerOutcome::Same(layer.digest.clone()));
            }
            LayerPlan::Same { media_type } => {
                let mut v = raw.clone();
                if layer.media_type != *media_type {
                    changed = true;
                    set_descriptor(&mut v, media_type, &layer.digest, layer.size);
                }
                layers.push(v);
                outcomes.push(LayerOutcome::Same(layer.digest.clone()));
            }
            LayerPlan::Reencode { key, media_type } => {
                let e = encoded.get(key).ok_or_else(|| {
                    TransportError::Join(format!("layer {} was not converted", layer.digest))
                })?;
                let expected = &w.diff_ids[i];
                if &e.diff_id != expected {
                    return Err(TransportError::Store(sealift_store::Error::DigestMismatch {
                        expected: expected.clone(),
                        actual: e.diff_id.clone(),
                    })
                    .during(format!(
                        "converting layer {i} ({}) of manifest {}: its uncompressed content \
                         does not match the config's rootfs.diff_ids[{i}] (the source is \
                         inconsistent)",
                        layer.digest, desc.digest
                    )));
                }
                changed = true;
                layers.push(reencoded_layer(raw, media_type, &e.digest, e.size));
                outcomes.push(LayerOutcome::Reencoded {
                    digest: e.digest.clone(),
                    diff_id: e.diff_id.clone(),
                });
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let mut config = orig.get("config").cloned().unwrap_or(Value::Null);
    set_descriptor(
        &mut config,
        w.format.config(),
        &w.config.digest,
        w.config.size,
    );
    let media_type = w.format.manifest();
    let out = reserialise(
        &orig,
        media_type,
        vec![("config", config), ("layers", Value::Array(layers))],
    )?;
    Ok(Some((media_type, out, outcomes)))
}

/// The converted bytes of an index, or `None` when none of its entries changed.
fn index_manifest(
    bytes: &[u8],
    desc: &Descriptor,
    view: &ManifestView,
    conv: &Convert,
    renamed: &HashMap<Digest, Descriptor>,
    in_plan: &HashSet<Digest>,
    dropped: &mut HashSet<Digest>,
) -> Result<Option<(&'static str, Vec<u8>)>, TransportError> {
    let media_type: &'static str = match conv.format {
        Some(f) => f.index(),
        None if Format::of(&view.media_type) == Format::Docker => mt::DOCKER_MANIFEST_LIST,
        None => mt::OCI_INDEX,
    };
    let to_docker = conv.format == Some(Format::Docker);
    let changed = view.media_type != media_type
        || view.manifests.iter().any(|e| {
            renamed.contains_key(&e.digest)
                || e.attests()
                    .is_some_and(|a| to_docker || renamed.contains_key(&a))
        });
    if !changed {
        return Ok(None);
    }
    let orig = object(bytes, &desc.digest)?;
    let entries: Vec<Value> = orig
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.len() != view.manifests.len() {
        return Err(inconsistent(format!(
            "index {}: entries do not parse",
            desc.digest
        )));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (mut raw, entry) in entries.into_iter().zip(&view.manifests) {
        if !in_plan.contains(&entry.digest) {
            // Filtered out by --platform: the rewritten index holds only what is copied.
            continue;
        }
        if let Some(subject) = entry.attests() {
            if to_docker {
                tracing::warn!(
                    "dropping attestation manifest {} (for {subject}) from {}: Docker manifest \
                     lists cannot carry attestations",
                    entry.digest,
                    desc.digest
                );
                dropped.insert(entry.digest.clone());
                continue;
            }
            if let Some(new) = renamed.get(&subject) {
                if let Some(Value::Object(a)) = raw.get_mut("annotations") {
                    a.insert(
                        mt::ANNOTATION_DOCKER_REF_DIGEST.into(),
                        new.digest.to_string().into(),
                    );
                }
            }
        }
        if let Some(new) = renamed.get(&entry.digest) {
            set_descriptor(&mut raw, &new.media_type, &new.digest, new.size);
        } else if to_docker
            && mt::kind(&entry.media_type) != mt::Kind::Index
            && entry.media_type != mt::DOCKER_MANIFEST
        {
            tracing::warn!(
                "{} in {} is not an image ({}); a Docker manifest list carries it as it is",
                entry.digest,
                desc.digest,
                entry.media_type
            );
        }
        out.push(raw);
    }
    let bytes = reserialise(&orig, media_type, vec![("manifests", Value::Array(out))])?;
    Ok(Some((media_type, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserialise_orders_keys_and_keeps_unknown_fields() {
        let orig: Map<String, Value> = serde_json::from_str(
            r#"{"x-unknown":1,"annotations":{"a":"b"},"layers":[],"config":{},"schemaVersion":2,"subject":{"s":1}}"#,
        )
        .unwrap();
        let out = reserialise(
            &orig,
            mt::OCI_MANIFEST,
            vec![("config", Value::Null), ("layers", Value::Array(vec![]))],
        )
        .unwrap();
        let keys: Vec<String> = serde_json::from_slice::<Map<String, Value>>(&out)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "schemaVersion",
                "mediaType",
                "config",
                "layers",
                "subject",
                "annotations",
                "x-unknown"
            ]
        );
    }

    #[test]
    fn reencoded_layers_lose_compressed_byte_annotations_and_urls() {
        let d = Digest::sha256(b"x");
        let raw: Value = serde_json::json!({
            "mediaType": mt::OCI_LAYER_GZIP,
            "digest": Digest::sha256(b"y").to_string(),
            "size": 3,
            "urls": ["https://example.invalid"],
            "annotations": {"containerd.io/snapshot/stargz/toc.digest": "sha256:00", "keep": "me"}
        });
        let v = reencoded_layer(&raw, mt::OCI_LAYER_ZSTD, &d, 9);
        assert_eq!(v["mediaType"], mt::OCI_LAYER_ZSTD);
        assert_eq!(v["digest"], d.to_string());
        assert_eq!(v["size"], 9);
        assert!(v.get("urls").is_none());
        assert_eq!(v["annotations"], serde_json::json!({"keep": "me"}));
    }
}

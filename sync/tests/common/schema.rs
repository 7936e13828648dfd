//! The OCI JSON schemas (as fixtures/tests/schema.rs uses them: `$ref`s inlined by file
//! name), for checking what a conversion writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jsonschema::{Draft, JSONSchema};
use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use serde_json::Value;

fn schema_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/oci-image-spec-schema"
    ))
}

fn load_schema(file: &str) -> Value {
    let path = schema_dir().join(file);
    let text =
        std::fs::read(&path).unwrap_or_else(|e| panic!("OCI schema {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

fn inline(value: &Value, file: &str, cache: &mut BTreeMap<String, Value>, depth: usize) -> Value {
    assert!(depth < 64, "$ref cycle at {file}");
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let (target, frag) = r.split_once('#').unwrap_or((r.as_str(), ""));
                let target = if target.is_empty() {
                    file.to_owned()
                } else {
                    target.rsplit('/').next().unwrap_or(target).to_owned()
                };
                let doc = cache
                    .entry(target.clone())
                    .or_insert_with(|| load_schema(&target))
                    .clone();
                let sub = if frag.is_empty() {
                    doc
                } else {
                    doc.pointer(frag).unwrap().clone()
                };
                return inline(&sub, &target, cache, depth + 1);
            }
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if (k == "id" && v.is_string()) || k == "$schema" {
                    continue;
                }
                out.insert(k.clone(), inline(v, file, cache, depth + 1));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, file, cache, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub struct Schemas {
    manifest: JSONSchema,
    index: JSONSchema,
    config: JSONSchema,
}

fn compile(file: &str) -> JSONSchema {
    let schema = inline(&load_schema(file), file, &mut BTreeMap::new(), 0);
    JSONSchema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .compile(&schema)
        .unwrap_or_else(|e| panic!("compiling {file}: {e}"))
}

pub fn schemas() -> Schemas {
    Schemas {
        manifest: compile("image-manifest-schema.json"),
        index: compile("image-index-schema.json"),
        config: compile("config-schema.json"),
    }
}

pub fn check_schema(schema: &JSONSchema, what: &str, bytes: &[u8]) {
    let value = serde_json::from_slice::<Value>(bytes).unwrap();
    if let Err(errors) = schema.validate(&value) {
        let msgs: Vec<String> = errors
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        panic!(
            "{what} fails its OCI schema:\n  {}\n{value:#}",
            msgs.join("\n  ")
        );
    };
}

/// Validates an OCI manifest or index graph read through `read`; returns how many
/// (indexes, manifests, configs) were checked.
pub fn validate_graph(
    s: &Schemas,
    root: &Digest,
    read: &dyn Fn(&Digest) -> Vec<u8>,
) -> (usize, usize, usize) {
    let bytes = read(root);
    let v = serde_json::from_slice::<Value>(&bytes).unwrap();
    match v["mediaType"].as_str() {
        Some(mt::OCI_INDEX) => {
            check_schema(&s.index, &format!("index {root}"), &bytes);
            let mut n = (1, 0, 0);
            for e in v["manifests"].as_array().unwrap() {
                let d: Digest = e["digest"].as_str().unwrap().parse().unwrap();
                let (a, b, c) = validate_graph(s, &d, read);
                n = (n.0 + a, n.1 + b, n.2 + c);
            }
            n
        }
        Some(mt::OCI_MANIFEST) => {
            check_schema(&s.manifest, &format!("manifest {root}"), &bytes);
            if v["config"]["mediaType"] == mt::OCI_CONFIG {
                let d: Digest = v["config"]["digest"].as_str().unwrap().parse().unwrap();
                check_schema(&s.config, &format!("config {d}"), &read(&d));
                (0, 1, 1)
            } else {
                (0, 1, 0)
            }
        }
        other => panic!("{root} is not OCI: {other:?}"),
    }
}

//! The official OCI image-spec JSON schemas, compiled for tests: every `$ref` inlined by file
//! name, so the validator needs no resolver. Shared by the fixtures' own tests and the copy
//! and conversion tests, which check what sealift writes against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonschema::{Draft, JSONSchema};
use serde_json::Value;

/// Where the official OCI image-spec JSON schemas are: `shared/oci-image-spec-schema` beside
/// the repository.
pub fn schema_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/oci-image-spec-schema"
    ))
    .to_path_buf()
}

fn load(file: &str) -> Value {
    let dir = schema_dir();
    let path = dir.join(file);
    let text = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read OCI schema {} ({e}); the schemas are expected in {} \
             (shared/oci-image-spec-schema beside the repository)",
            path.display(),
            dir.display()
        )
    });
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Follows a JSON pointer fragment (`/definitions/x`) into `doc`.
fn pointer<'a>(doc: &'a Value, frag: &str, file: &str) -> &'a Value {
    if frag.is_empty() {
        return doc;
    }
    doc.pointer(frag)
        .unwrap_or_else(|| panic!("{file}: no {frag} in schema"))
}

/// Replaces every `$ref` (to a sibling file, or within `file`) with the schema it names,
/// recursively, and drops `id`s, so the result needs no resolver. The OCI schemas' nested
/// `id`s give their relative `$ref`s different base URIs; every one names a file in the
/// schema folder, so resolving by file name is what their authors meant.
fn inline(value: &Value, file: &str, cache: &mut BTreeMap<String, Value>, depth: usize) -> Value {
    assert!(depth < 64, "$ref cycle in the OCI schemas at {file}");
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let (target_file, frag) = match r.split_once('#') {
                    Some((f, frag)) => (f, frag),
                    None => (r.as_str(), ""),
                };
                let target_file = if target_file.is_empty() {
                    file.to_owned()
                } else {
                    target_file
                        .rsplit('/')
                        .next()
                        .unwrap_or(target_file)
                        .to_owned()
                };
                let doc = cache
                    .entry(target_file.clone())
                    .or_insert_with(|| load(&target_file))
                    .clone();
                let target = pointer(&doc, frag, &target_file).clone();
                return inline(&target, &target_file, cache, depth + 1);
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

/// One OCI schema file, its `$ref`s inlined, compiled for Draft 4 with formats checked.
pub fn compile(file: &str) -> JSONSchema {
    let mut cache = BTreeMap::new();
    let schema = inline(&load(file), file, &mut cache, 0);
    JSONSchema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .compile(&schema)
        .unwrap_or_else(|e| panic!("compiling {file}: {e}"))
}

/// Validate `bytes` (named `what` in the panic) against `schema`, panicking with every error
/// and the document when it fails.
pub fn check(schema: &JSONSchema, what: &str, bytes: &[u8]) {
    let value: Value =
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"));
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

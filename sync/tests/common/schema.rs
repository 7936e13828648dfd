//! The OCI JSON schemas (as fixtures/tests/schema.rs uses them: `$ref`s inlined by file
//! name), for checking what a conversion writes.

use jsonschema::JSONSchema;
use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use sealift_testkit::schema::{check, compile};
use serde_json::Value;

pub struct Schemas {
    manifest: JSONSchema,
    index: JSONSchema,
    config: JSONSchema,
}

pub fn schemas() -> Schemas {
    Schemas {
        manifest: compile("image-manifest-schema.json"),
        index: compile("image-index-schema.json"),
        config: compile("config-schema.json"),
    }
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
            check(&s.index, &format!("index {root}"), &bytes);
            let mut n = (1, 0, 0);
            for e in v["manifests"].as_array().unwrap() {
                let d: Digest = e["digest"].as_str().unwrap().parse().unwrap();
                let (a, b, c) = validate_graph(s, &d, read);
                n = (n.0 + a, n.1 + b, n.2 + c);
            }
            n
        }
        Some(mt::OCI_MANIFEST) => {
            check(&s.manifest, &format!("manifest {root}"), &bytes);
            if v["config"]["mediaType"] == mt::OCI_CONFIG {
                let d: Digest = v["config"]["digest"].as_str().unwrap().parse().unwrap();
                check(&s.config, &format!("config {d}"), &read(&d));
                (0, 1, 1)
            } else {
                (0, 1, 0)
            }
        }
        other => panic!("{root} is not OCI: {other:?}"),
    }
}

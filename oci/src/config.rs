//! A read-only view over the bytes of an image config (OCI `config.v1+json` or Docker
//! `container.image.v1+json`: the same JSON), the one parser every crate uses.
//!
//! Like [`ManifestView`](crate::ManifestView), the bytes are the truth: the view is never
//! serialised back (a conversion that changes the manifest format keeps the config bytes).
//! The view is lenient per field: a field of the wrong type reads as absent, as an unknown
//! field does, so one odd field (a number for `architecture`) neither hides the DiffIDs
//! from `verify` nor stops `inspect`. Only `rootfs.diff_ids` has a strict reading
//! ([`ImageConfig::diff_ids`]), because a conversion must refuse what it cannot check.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::digest::Digest;
use crate::platform::Platform;

/// The largest config read. Configs are small (kilobytes, a few hundred KiB with long
/// histories); the bound stops a mislabelled layer from being read whole into memory.
pub const MAX_CONFIG_SIZE: usize = 16 * 1024 * 1024;

/// Why bytes are not a usable image config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Over [`MAX_CONFIG_SIZE`].
    #[error("config is {0} bytes, over the 16 MiB limit")]
    TooLarge(usize),
    /// Not a JSON object.
    #[error("not JSON ({0})")]
    Json(String),
    /// `rootfs.diff_ids` is absent or not a list.
    #[error("has no rootfs.diff_ids")]
    NoDiffIds,
    /// An entry of `rootfs.diff_ids` is not a digest.
    #[error("rootfs.diff_ids[{0}] is not a digest")]
    BadDiffId(usize),
}

/// A parsed, read-only view of image config bytes: the fields sealift reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub architecture: String,
    /// Operating system (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub os: String,
    /// OS version (Windows builds).
    #[serde(rename = "os.version", default, deserialize_with = "lenient")]
    pub os_version: Option<String>,
    /// CPU variant.
    #[serde(default, deserialize_with = "lenient")]
    pub variant: Option<String>,
    /// Creation time, as written (RFC 3339).
    #[serde(default, deserialize_with = "lenient")]
    pub created: Option<String>,
    /// Author, as written.
    #[serde(default, deserialize_with = "lenient")]
    pub author: Option<String>,
    /// How a container runs.
    #[serde(default, deserialize_with = "lenient")]
    pub config: Option<RunConfig>,
    /// Layer content digests.
    #[serde(default, deserialize_with = "lenient")]
    pub rootfs: Option<RootFs>,
    /// How each layer was made, bottom first (empty when absent).
    #[serde(default, deserialize_with = "or_default")]
    pub history: Vec<History>,
}

/// `config` inside an image config. Docker writes `null` for empty lists.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunConfig {
    /// Entrypoint.
    #[serde(rename = "Entrypoint", default, deserialize_with = "lenient")]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(rename = "Cmd", default, deserialize_with = "lenient")]
    pub cmd: Option<Vec<String>>,
    /// Environment, `KEY=value`.
    #[serde(rename = "Env", default, deserialize_with = "lenient")]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(rename = "WorkingDir", default, deserialize_with = "lenient")]
    pub working_dir: Option<String>,
    /// User.
    #[serde(rename = "User", default, deserialize_with = "lenient")]
    pub user: Option<String>,
    /// Labels.
    #[serde(rename = "Labels", default, deserialize_with = "lenient")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `rootfs` inside an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    /// `layers`, normally.
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// DiffIDs as written, bottom layer first; `None` when absent or not a list. Read them
    /// through [`ImageConfig::diff_ids`] or [`ImageConfig::diff_id_strings`].
    #[serde(default, deserialize_with = "lenient")]
    diff_ids: Option<Vec<Value>>,
}

/// One entry of `history`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, deserialize_with = "lenient")]
    pub created: Option<String>,
    /// The command that made the layer.
    #[serde(default, deserialize_with = "lenient")]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default, deserialize_with = "lenient")]
    pub comment: Option<String>,
    /// Whether this step made no layer (it has no DiffID).
    #[serde(default, deserialize_with = "or_default")]
    pub empty_layer: bool,
}

/// A field of the wrong type reads as absent.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// A field of the wrong type (or `null`) reads as its default.
fn or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(lenient(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// Parse config bytes (at most [`MAX_CONFIG_SIZE`]); they must be a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        if bytes.len() > MAX_CONFIG_SIZE {
            return Err(ConfigError::TooLarge(bytes.len()));
        }
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(m)) => serde_json::from_value(Value::Object(m))
                .map_err(|e| ConfigError::Json(e.to_string())),
            Ok(_) => Err(ConfigError::Json("not an object".into())),
            Err(e) => Err(ConfigError::Json(e.to_string())),
        }
    }

    /// The platform the config declares (without `os.version`, as indexes are matched).
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: None,
            variant: self.variant.clone(),
        }
    }

    /// `rootfs.diff_ids`, strictly: absent is [`ConfigError::NoDiffIds`], an entry that is not
    /// a digest is [`ConfigError::BadDiffId`].
    pub fn diff_ids(&self) -> Result<Vec<Digest>, ConfigError> {
        let list = self
            .rootfs
            .as_ref()
            .and_then(|r| r.diff_ids.as_ref())
            .ok_or(ConfigError::NoDiffIds)?;
        list.iter()
            .enumerate()
            .map(|(i, d)| {
                d.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or(ConfigError::BadDiffId(i))
            })
            .collect()
    }

    /// `rootfs.diff_ids` as written, for comparing and reporting: entries that are not
    /// strings are skipped, strings are kept even when they are not digests.
    pub fn diff_id_strings(&self) -> Vec<&str> {
        self.rootfs
            .as_ref()
            .and_then(|r| r.diff_ids.as_ref())
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn reads_what_docker_and_oci_write() {
        let bytes = format!(
            r#"{{"architecture":"arm64","os":"linux","variant":"v8","created":"2024-01-02T03:04:05Z",
            "config":{{"Env":["PATH=/bin"],"Cmd":null,"Entrypoint":["/init"],"Labels":{{"a":"b"}},"WorkingDir":"/w"}},
            "rootfs":{{"type":"layers","diff_ids":["{D1}","{D2}"]}},
            "history":[{{"created_by":"ADD x"}},{{"empty_layer":true,"comment":"c"}}],"x-unknown":1}}"#
        );
        let c = ImageConfig::parse(bytes.as_bytes()).unwrap();
        assert_eq!(c.platform().to_string(), "linux/arm64/v8");
        assert_eq!(c.created.as_deref(), Some("2024-01-02T03:04:05Z"));
        let run = c.config.clone().unwrap();
        assert_eq!(run.env, Some(vec!["PATH=/bin".to_string()]));
        assert_eq!(run.cmd, None);
        assert_eq!(run.entrypoint, Some(vec!["/init".to_string()]));
        assert_eq!(run.labels.unwrap()["a"], "b");
        assert_eq!(run.working_dir.as_deref(), Some("/w"));
        assert_eq!(
            c.diff_ids().unwrap(),
            vec![D1.parse::<Digest>().unwrap(), D2.parse().unwrap()]
        );
        assert_eq!(c.diff_id_strings(), vec![D1, D2]);
        assert_eq!(c.history.len(), 2);
        assert_eq!(c.history[0].created_by.as_deref(), Some("ADD x"));
        assert!(c.history[1].empty_layer);
        assert_eq!(c.rootfs.unwrap().kind.as_deref(), Some("layers"));
    }

    #[test]
    fn a_field_of_the_wrong_type_reads_as_absent() {
        let bytes = format!(
            r#"{{"architecture":5,"os":"linux","config":"nope","history":{{}},
            "rootfs":{{"diff_ids":["{D1}",7,"not-a-digest"]}}}}"#
        );
        let c = ImageConfig::parse(bytes.as_bytes()).unwrap();
        assert_eq!(c.architecture, "");
        assert_eq!(c.os, "linux");
        assert!(c.config.is_none());
        assert!(c.history.is_empty());
        assert_eq!(c.diff_id_strings(), vec![D1, "not-a-digest"]);
        assert_eq!(c.diff_ids(), Err(ConfigError::BadDiffId(1)));
    }

    #[test]
    fn refuses_what_is_not_a_config() {
        assert!(matches!(
            ImageConfig::parse(b"not json"),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            ImageConfig::parse(b"[1,2]"),
            Err(ConfigError::Json(_))
        ));
        let big = vec![b' '; MAX_CONFIG_SIZE + 1];
        assert_eq!(
            ImageConfig::parse(&big).unwrap_err(),
            ConfigError::TooLarge(MAX_CONFIG_SIZE + 1)
        );
        let c = ImageConfig::parse(b"{}").unwrap();
        assert_eq!(c.diff_ids(), Err(ConfigError::NoDiffIds));
        assert!(c.diff_id_strings().is_empty());
        let c = ImageConfig::parse(br#"{"rootfs":{"diff_ids":"x"}}"#).unwrap();
        assert_eq!(c.diff_ids(), Err(ConfigError::NoDiffIds));
    }
}

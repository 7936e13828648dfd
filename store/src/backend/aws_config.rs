//! Endpoint, region and credentials for an S3 bucket, the way AWS tools find them: the
//! environment first (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`), then the shared files (`~/.aws/credentials`,
//! `~/.aws/config`, profile `AWS_PROFILE` or `default`).
//!
//! Only the variables named here are read: the client is built from these explicit values,
//! so unrelated `AWS_*` variables of the machine (such as `AWS_CA_BUNDLE`) cannot change it.

use std::fmt;
use std::path::{Path, PathBuf};

/// How to reach an S3-compatible endpoint. Never stored, never logged: `Debug` shows the
/// endpoint and region only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://HOST:PORT` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Region for request signing (`us-east-1` when nothing says otherwise).
    pub region: String,
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The region when neither the environment nor the config file names one.
const DEFAULT_REGION: &str = "us-east-1";

impl S3Settings {
    /// Settings from the process environment and the shared AWS files. The error says
    /// what is missing (never a secret).
    pub fn from_environment() -> Result<S3Settings, String> {
        S3Settings::from_sources(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Settings from `var` (an environment) and the files it points at.
    pub fn from_sources(var: &dyn Fn(&str) -> Option<String>) -> Result<S3Settings, String> {
        let home = var("HOME").map(PathBuf::from);
        let file = |name: &str, default: &str| {
            var(name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .map(|p| read_section(&p, &profile))
            .unwrap_or_default();
        // The config file names profiles `[profile NAME]`, except `[default]`.
        let config_section = if profile == "default" {
            profile.clone()
        } else {
            format!("profile {profile}")
        };
        let config = file("AWS_CONFIG_FILE", "config")
            .map(|p| read_section(&p, &config_section))
            .unwrap_or_default();
        let from_files = |k: &str| lookup(&credentials, k).or_else(|| lookup(&config, k));

        // Keys come as a pair from one place, so an ID is never paired with another
        // source's secret.
        let (access_key_id, secret_access_key, session_token) =
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => (id, secret, var("AWS_SESSION_TOKEN")),
                _ => match (
                    from_files("aws_access_key_id"),
                    from_files("aws_secret_access_key"),
                ) {
                    (Some(id), Some(secret)) => (id, secret, from_files("aws_session_token")),
                    _ => {
                        return Err(format!(
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                             or put aws_access_key_id and aws_secret_access_key in profile \
                             [{profile}] of ~/.aws/credentials"
                        ))
                    }
                },
            };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| lookup(&config, "region"))
            .unwrap_or_else(|| DEFAULT_REGION.into());
        let endpoint = var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| lookup(&config, "endpoint_url"));
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!(
                    "S3 endpoint {e:?} must start with http:// or https://"
                ));
            }
        }
        Ok(S3Settings {
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region,
            access_key_id,
            secret_access_key,
            session_token,
        })
    }
}

fn lookup(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// The `key = value` lines of section `[section]` of an INI file (a missing or unreadable
/// file is an empty section). Lines indented under a key (nested service settings) and
/// comments are skipped.
fn read_section(path: &Path, section: &str) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(env: &[(&str, String)]) -> Result<S3Settings, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        S3Settings::from_sources(&|k| env.get(k).cloned())
    }

    #[test]
    fn environment_wins_over_files_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = FILEID\naws_secret_access_key = filesecret\n",
        )
        .unwrap();
        let s = settings(&[
            ("HOME", home.clone()),
            ("AWS_ACCESS_KEY_ID", "ENVID".into()),
            ("AWS_SECRET_ACCESS_KEY", "envsecret".into()),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/".into()),
        ])
        .unwrap();
        assert_eq!(s.access_key_id, "ENVID");
        assert_eq!(s.secret_access_key, "envsecret");
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let s = settings(&[("HOME", home)]).unwrap();
        assert_eq!(
            (s.access_key_id.as_str(), s.secret_access_key.as_str()),
            ("FILEID", "filesecret")
        );
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn profiles_and_explicit_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        let config = dir.path().join("conf");
        std::fs::write(
            &creds,
            "# comment\n[default]\naws_access_key_id=A\naws_secret_access_key=B\n\
             [site]\naws_access_key_id = SITEID\naws_secret_access_key = sitesecret\n\
             aws_session_token = tok-zz9\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile site]\nregion = ap-south-1\n\
             endpoint_url = https://s3.site.example\ns3 =\n  endpoint_url = http://nested\n",
        )
        .unwrap();
        let s = settings(&[
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", "site".into()),
        ])
        .unwrap();
        assert_eq!(s.access_key_id, "SITEID");
        assert_eq!(s.session_token.as_deref(), Some("tok-zz9"));
        assert_eq!(s.region, "ap-south-1");
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.site.example"));
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("SITEID")
                && !debug.contains("sitesecret")
                && !debug.contains("tok-zz9")
        );
        let s = settings(&[
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_REGION", "us-west-2".into()),
        ])
        .unwrap();
        assert_eq!(
            (s.access_key_id.as_str(), s.region.as_str()),
            ("A", "us-west-2")
        );
    }

    #[test]
    fn missing_credentials_and_bad_endpoints_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = settings(&[("HOME", dir.path().display().to_string())]).unwrap_err();
        assert!(e.contains("no S3 credentials"), "{e}");
        let e = settings(&[
            ("AWS_ACCESS_KEY_ID", "x".into()),
            ("AWS_SECRET_ACCESS_KEY", "y".into()),
            ("AWS_ENDPOINT_URL", "127.0.0.1:9000".into()),
        ])
        .unwrap_err();
        assert!(e.contains("http://"), "{e}");
    }
}

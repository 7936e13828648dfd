//! Errors that point into the file: `file:line:col: key: what`, from the byte spans TOML
//! values were read with.

use std::path::{Path, PathBuf};

use toml::Spanned;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading config {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key's value (or the syntax around it) is wrong.
    #[error("{}:{line}:{column}: {key}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key at fault (`job[1].tags.semver`), or the text found there.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// Where errors point: the config's text (to turn byte offsets into line:column) and its
/// file name.
pub(crate) struct Cx<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a Path,
}

impl Cx<'_> {
    /// An error at byte `offset` of the text.
    pub(crate) fn err(
        &self,
        offset: usize,
        key: impl Into<String>,
        message: String,
    ) -> ConfigError {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message,
        }
    }

    /// A TOML syntax or type error, pointing at its span; the key is the text found there
    /// when it is short (an unknown key's name), else `syntax`.
    pub(crate) fn toml(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let found = self.text.get(span.clone()).unwrap_or("").trim();
        let key = if !found.is_empty() && found.len() <= 60 && !found.contains('\n') {
            found.to_string()
        } else {
            "syntax".to_string()
        };
        self.err(span.start, key, e.message().trim().to_string())
    }

    /// An error at the value `s` was read from.
    pub(crate) fn at<T>(&self, s: &Spanned<T>, key: &str, message: String) -> ConfigError {
        self.err(s.span().start, key, message)
    }
}

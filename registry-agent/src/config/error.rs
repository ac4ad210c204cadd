//! Configuration errors. Every message starts with `config:` and names the key and the file
//! (or flag) it came from, so that a startup failure points at the line to fix.

use std::path::PathBuf;

/// Why the agent configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("config: cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not valid JSON or HCL.
    #[error("config: failed to parse {origin}: {message}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A file's name does not tell its format and `-config-format` was not given.
    #[error(
        "config: missing or invalid file extension for {0:?}. Please use .json or .hcl, or set -config-format"
    )]
    UnknownFormat(PathBuf),
    /// A key that the agent does not know.
    #[error("config: unknown key {key:?} in {origin}")]
    UnknownKey {
        /// The key, dotted for nested blocks (`ports.foo`).
        key: String,
        /// Where it came from.
        origin: String,
    },
    /// A key whose value has the wrong type or shape.
    #[error("config: invalid value for {key:?} in {origin}: {reason}")]
    InvalidValue {
        /// The key, dotted for nested blocks.
        key: String,
        /// Where it came from.
        origin: String,
        /// What was expected.
        reason: String,
    },
    /// The merged configuration is inconsistent (`data_dir cannot be empty`, ...).
    #[error("config: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// A validation failure of the merged configuration.
    pub fn invalid(message: impl Into<String>) -> Self {
        ConfigError::Invalid(message.into())
    }
}

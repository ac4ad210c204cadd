//! Configuration sources on disk: `-config-file` paths and every `*.json` / `*.hcl` file of a
//! `-config-dir`, read in lexical order, parsed and normalised into `PartialConfig`s.

use super::error::ConfigError;
use super::hcl::hcl_to_json;
use super::partial::PartialConfig;
use super::schema::normalize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The syntax of a configuration source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// HCL (version 2 syntax, as the `hcl-rs` crate reads it).
    Hcl,
}

impl Format {
    /// `json` or `hcl`, as `-config-format` takes it.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "hcl" => Some(Format::Hcl),
            _ => None,
        }
    }

    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Option<Format> {
        Format::parse(path.extension()?.to_str()?)
    }
}

/// Parses one source's text. `origin` names it in errors.
pub fn parse_source(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<PartialConfig, ConfigError> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?,
        Format::Hcl => hcl_to_json(text).map_err(|message| ConfigError::Parse {
            origin: origin.to_string(),
            message,
        })?,
    };
    let (map, ignored) = normalize(value, origin)?;
    let mut partial = PartialConfig::from_map(&map, origin)?;
    partial.ignored = ignored;
    Ok(partial)
}

/// The files a path stands for: the file itself, or the `.json`/`.hcl` files of a directory
/// (all regular files when `forced` names a format), sorted by name.
pub fn expand_path(path: &Path, forced: Option<Format>) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file = entry.path();
        if !std::fs::metadata(&file).map_err(io)?.is_file() {
            continue;
        }
        if forced.is_some() || Format::from_path(&file).is_some() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses one file.
pub fn load_file(path: &Path, forced: Option<Format>) -> Result<PartialConfig, ConfigError> {
    let format = forced
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| ConfigError::UnknownFormat(path.to_path_buf()))?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_source(&text, format, &path.display().to_string())
}

/// Reads every source a list of paths (files or directories, in command-line order) stands
/// for. Returns the sources in merge order together with the files read.
pub fn load_paths(
    paths: &[PathBuf],
    forced: Option<Format>,
) -> Result<(Vec<PartialConfig>, Vec<PathBuf>), ConfigError> {
    let mut sources = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        for file in expand_path(path, forced)? {
            sources.push(load_file(&file, forced)?);
            files.push(file);
        }
    }
    Ok((sources, files))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn directory_files_are_sorted_and_filtered() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b.hcl", "a.json", "c.txt", "0.json"] {
            std::fs::write(dir.path().join(name), "{}").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub.json")).expect("mkdir");
        let files = expand_path(dir.path(), None).expect("expand");
        let names: Vec<_> = files
            .iter()
            .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(names, ["0.json", "a.json", "b.hcl"]);
        let forced = expand_path(dir.path(), Some(Format::Json)).expect("expand");
        assert_eq!(forced.len(), 4);
    }

    #[test]
    fn unknown_extension_needs_config_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.conf");
        std::fs::write(&file, "{\"server\": true}").expect("write");
        assert!(matches!(
            load_file(&file, None),
            Err(ConfigError::UnknownFormat(_))
        ));
        let cfg = load_file(&file, Some(Format::Json)).expect("forced json");
        assert_eq!(cfg.server, Some(true));
    }

    #[test]
    fn unknown_key_names_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.hcl");
        std::fs::write(&file, "foo = 1\n").expect("write");
        let err = load_file(&file, None).expect_err("unknown key");
        assert_eq!(
            err.to_string(),
            format!("config: unknown key \"foo\" in {}", file.display())
        );
    }
}

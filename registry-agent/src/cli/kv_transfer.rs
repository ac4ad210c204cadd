//! `registry kv export|import`: a KV tree as Consul's JSON (an array of `key`, `flags` and a
//! base64 `value`), written with a tab indent as Consul does, and read back under an optional
//! `-prefix`.

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use base64::Engine;
use clap::Args;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Read, Write};

/// `kv export`.
#[derive(Args, Debug)]
pub struct KvExportArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// PREFIX: export only the keys under it (all keys without it).
    #[arg(value_name = "PREFIX")]
    args: Vec<String>,
}

/// `kv import`.
#[derive(Args, Debug)]
pub struct KvImportArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Key prefix prepended to every imported key.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    prefix: String,
    /// DATA: the JSON of `kv export`, `@file` to read it from a file or `-` for standard
    /// input.
    #[arg(value_name = "DATA")]
    args: Vec<String>,
}

/// One entry of the export format.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The pair's flags.
    #[serde(default)]
    pub flags: u64,
    /// The value, base64 encoded.
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
}

/// Consul's `json.MarshalIndent(entries, "", "\t")`.
pub fn render(entries: &[Entry]) -> Result<String, String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    entries
        .serialize(&mut ser)
        .map_err(|e| format!("Error exporting KV data: {e}"))?;
    String::from_utf8(buf).map_err(|e| e.to_string())
}

/// Runs `kv export`.
pub async fn export(args: KvExportArgs, ui: &mut Ui<'_>) -> i32 {
    let prefix = match args.args.as_slice() {
        [] => String::new(),
        [p] => p.trim_start_matches('/').to_string(),
        more => {
            return ui.fail(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let path = format!("/v1/kv/{}", encode_path(&prefix));
    let pairs: Vec<Pair> = match client
        .send(Method::GET, &path, &[("recurse", String::new())], None)
        .await
    {
        Ok(r) if r.status == 404 => Vec::new(),
        Ok(r) if r.status == 200 => match r.json() {
            Ok(pairs) => pairs,
            Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
        },
        Ok(r) => {
            return ui.fail(&format!(
                "Error querying Consul agent: {}",
                r.status_error()
            ))
        }
        Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
    };
    let entries: Vec<Entry> = pairs
        .into_iter()
        .map(|p| Entry {
            key: p.key,
            flags: p.flags,
            value: p.value.unwrap_or_default(),
        })
        .collect();
    match render(&entries) {
        Ok(text) => {
            ui.output(&text);
            0
        }
        Err(e) => ui.fail(&e),
    }
}

fn read_data(args: &[String]) -> Result<Vec<u8>, String> {
    let data = match args {
        [] => return Err("Missing DATA argument".to_string()),
        [d] => d,
        more => {
            return Err(format!(
                "Too many arguments (expected 1 or 0, got {})",
                more.len()
            ))
        }
    };
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if data == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(buf);
    }
    Ok(data.as_bytes().to_vec())
}

/// The key an entry is written to: the prefix joined to the key with one `/`; a folder key
/// keeps its trailing `/`.
pub fn target_key(prefix: &str, key: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let key = key.trim_start_matches('/');
    if prefix.is_empty() {
        key.to_string()
    } else if key.is_empty() {
        format!("{prefix}/")
    } else {
        format!("{prefix}/{key}")
    }
}

/// Runs `kv import`.
pub async fn import(args: KvImportArgs, ui: &mut Ui<'_>) -> i32 {
    let data = match read_data(&args.args) {
        Ok(data) => data,
        Err(e) => return ui.fail(&format!("Error! {e}")),
    };
    let entries: Vec<Entry> = match serde_json::from_slice(&data) {
        Ok(entries) => entries,
        Err(e) => return ui.fail(&format!("Cannot unmarshal data: {e}")),
    };
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let progress = entries.len() >= 100 && std::io::stderr().is_terminal();
    let total = entries.len();
    for (i, entry) in entries.into_iter().enumerate() {
        let value = match base64::engine::general_purpose::STANDARD.decode(&entry.value) {
            Ok(value) => value,
            Err(e) => {
                return ui.fail(&format!(
                    "Error base 64 decoding value for key {}: {e}",
                    entry.key
                ))
            }
        };
        let key = target_key(&args.prefix, &entry.key);
        let mut query: Vec<(&str, String)> = Vec::new();
        if entry.flags != 0 {
            query.push(("flags", entry.flags.to_string()));
        }
        let path = format!("/v1/kv/{}", encode_path(&key));
        match client.send(Method::PUT, &path, &query, Some(value)).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                return ui.fail(&format!(
                    "Error! Failed writing data for key {key}: {}",
                    r.status_error()
                ))
            }
            Err(e) => return ui.fail(&format!("Error! Failed writing data for key {key}: {e}")),
        }
        if progress {
            progress_bar(i + 1, total);
        }
        ui.output(&format!("Imported: {key}"));
    }
    0
}

/// A one-line progress bar on standard error (only drawn when it is a terminal).
pub fn progress_bar(done: usize, total: usize) {
    let width = 40;
    let filled = done.saturating_mul(width) / total.max(1);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    if done >= total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn export_format_is_tab_indented_lowercase() {
        let text = render(&[Entry {
            key: "a/b".into(),
            flags: 42,
            value: "aGk=".into(),
        }])
        .expect("render");
        assert_eq!(
            text,
            "[\n\t{\n\t\t\"key\": \"a/b\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"aGk=\"\n\t}\n]"
        );
        assert_eq!(render(&[]).expect("empty"), "[]");
    }

    #[test]
    fn prefixes_join_with_one_slash() {
        assert_eq!(target_key("", "a/b"), "a/b");
        assert_eq!(target_key("new/", "a/"), "new/a/");
        assert_eq!(target_key("new", "/a"), "new/a");
    }
}

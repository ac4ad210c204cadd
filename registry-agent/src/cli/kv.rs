//! `registry kv put|get|delete`: Consul's KV commands, with the same flags, messages and exit
//! codes (`export` and `import` live in [`super::kv_transfer`]).

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::table::tabwrite;
use super::ui::Ui;
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use std::io::Read;

/// `kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Sets or updates data in the KV store: `kv put KEY [DATA]`, where DATA may be `@file`
    /// or `-` for standard input.
    Put(KvPutArgs),
    /// Retrieves or lists data from the KV store: `kv get [KEY_OR_PREFIX]`.
    Get(KvGetArgs),
    /// Removes data from the KV store: `kv delete KEY_OR_PREFIX`.
    Delete(KvDeleteArgs),
    /// Exports the keys under a prefix (all keys without one) as Consul's JSON: an array of
    /// `key`, `flags` and base64 `value`, for `kv import`.
    Export(super::kv_transfer::KvExportArgs),
    /// Imports the JSON of `kv export` (DATA, `@file` or `-` for standard input), under
    /// `-prefix` if given; prints each imported key.
    Import(super::kv_transfer::KvImportArgs),
}

/// `kv put`.
#[derive(Args, Debug)]
pub struct KvPutArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Perform a Check-And-Set operation; requires -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    cas: Option<bool>,
    /// Unsigned integer stored with the pair; Consul does not read it.
    #[arg(long, default_value_t = 0, value_name = "N")]
    flags: u64,
    /// The ModifyIndex the key must have, for -cas.
    #[arg(long = "modify-index", default_value_t = 0, value_name = "N")]
    modify_index: u64,
    /// Treat DATA as base64 encoded.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    base64: Option<bool>,
    /// Session ID, required with -acquire and -release.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Obtain a lock on the key for -session (the key is created if missing).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    acquire: Option<bool>,
    /// Release the lock -session holds on the key.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    release: Option<bool>,
    /// KEY and optional DATA.
    #[arg(value_name = "KEY [DATA]")]
    args: Vec<String>,
}

/// `kv get`.
#[derive(Args, Debug)]
pub struct KvGetArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Base64 encode the value in the output.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    base64: Option<bool>,
    /// Print all metadata of the pair (indexes, flags, session) as well as the value.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    detailed: Option<bool>,
    /// List the keys under the prefix, not their values (see -separator).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    keys: Option<bool>,
    /// Print every pair under the prefix as `key:value`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    recurse: Option<bool>,
    /// Separator at which -keys stops listing deeper keys (default "/").
    #[arg(long, default_value = "/", value_name = "SEP")]
    separator: String,
    /// KEY_OR_PREFIX.
    #[arg(value_name = "KEY_OR_PREFIX")]
    args: Vec<String>,
}

/// `kv delete`.
#[derive(Args, Debug)]
pub struct KvDeleteArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Perform a Check-And-Set delete; requires -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    cas: Option<bool>,
    /// The ModifyIndex the key must have, for -cas.
    #[arg(long = "modify-index", default_value_t = 0, value_name = "N")]
    modify_index: u64,
    /// Delete every key under the prefix.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    recurse: Option<bool>,
    /// KEY_OR_PREFIX.
    #[arg(value_name = "KEY_OR_PREFIX")]
    args: Vec<String>,
}

/// One entry of `GET /v1/kv/...`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl KvPair {
    fn bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }

    fn shown_value(&self, base64: bool) -> Vec<u8> {
        if base64 {
            base64::engine::general_purpose::STANDARD
                .encode(self.bytes())
                .into_bytes()
        } else {
            self.bytes()
        }
    }

    fn detailed(&self, base64: bool) -> Vec<u8> {
        let session = self.session.clone().filter(|s| !s.is_empty());
        let rows = [
            ("CreateIndex", self.create_index.to_string()),
            ("Flags", self.flags.to_string()),
            ("Key", self.key.clone()),
            ("LockIndex", self.lock_index.to_string()),
            ("ModifyIndex", self.modify_index.to_string()),
            ("Session", session.unwrap_or_else(|| "-".to_string())),
            ("Value", String::new()),
        ];
        let rows: Vec<(String, String)> =
            rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut out = tabwrite(&rows).into_bytes();
        out.extend(self.shown_value(base64));
        out
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_path(key.trim_start_matches('/')))
}

fn read_data(data: &str) -> Result<Vec<u8>, String> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
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

/// Runs one `kv` subcommand.
pub async fn run(command: KvCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        KvCommand::Put(args) => put(args, ui).await,
        KvCommand::Get(args) => get(args, ui).await,
        KvCommand::Delete(args) => delete(args, ui).await,
        KvCommand::Export(args) => super::kv_transfer::export(args, ui).await,
        KvCommand::Import(args) => super::kv_transfer::import(args, ui).await,
    }
}

async fn put(args: KvPutArgs, ui: &mut Ui<'_>) -> i32 {
    let (key, data) = match args.args.as_slice() {
        [] => return ui.fail("Error! Missing KEY argument"),
        [key] => (key.clone(), String::new()),
        [key, data] => (key.clone(), data.clone()),
        more => {
            return ui.fail(&format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ))
        }
    };
    let mut bytes = match read_data(&data) {
        Ok(bytes) => bytes,
        Err(e) => return ui.fail(&format!("Error! {e}")),
    };
    if args.base64.unwrap_or(false) {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        bytes = match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(decoded) => decoded,
            Err(e) => return ui.fail(&format!("Error! Cannot base 64 decode data: {e}")),
        };
    }
    let (cas, acquire, release) = (
        args.cas.unwrap_or(false),
        args.acquire.unwrap_or(false),
        args.release.unwrap_or(false),
    );
    let session = args.session.clone().unwrap_or_default();
    if (acquire || release) && session.is_empty() {
        return ui.fail("Error! Missing -session (required with -acquire and -release)");
    }
    if cas && args.modify_index == 0 {
        return ui.fail("Must specify -modify-index with -cas!");
    }
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    if args.flags != 0 {
        query.push(("flags", args.flags.to_string()));
    }
    if cas {
        query.push(("cas", args.modify_index.to_string()));
    } else if acquire {
        query.push(("acquire", session));
    } else if release {
        query.push(("release", session));
    }
    let result = client
        .send(Method::PUT, &kv_path(&key), &query, Some(bytes))
        .await
        .and_then(|r| {
            if r.status == 200 {
                Ok(r.text().trim() == "true")
            } else {
                Err(r.status_error())
            }
        });
    match (cas, acquire, release, result) {
        (true, _, _, Err(e)) => ui.fail(&format!("Error! Did not write to {key}: {e}")),
        (true, _, _, Ok(false)) => ui.fail(&format!("Error! Did not write to {key}: CAS failed")),
        (_, true, _, Err(e)) => ui.fail(&format!("Error! Failed writing data: {e}")),
        (_, true, _, Ok(false)) => ui.fail("Error! Did not acquire lock"),
        (_, true, _, Ok(true)) => {
            ui.output(&format!("Success! Lock acquired on: {key}"));
            0
        }
        (_, _, true, Err(_)) => ui.fail(&format!("Error! Failed writing data: {key}")),
        (_, _, true, Ok(false)) => ui.fail("Error! Did not release lock"),
        (_, _, true, Ok(true)) => {
            ui.output(&format!("Success! Lock released on: {key}"));
            0
        }
        (_, _, _, Err(e)) => ui.fail(&format!("Error! Failed writing data: {e}")),
        (_, _, _, Ok(_)) => {
            ui.output(&format!("Success! Data written to: {key}"));
            0
        }
    }
}

/// The key argument of `get` and `delete`: optional, leading `/` dropped.
fn key_argument(args: &[String], ui: &mut Ui<'_>) -> Result<String, i32> {
    match args {
        [] => Ok(String::new()),
        [key] => Ok(key.strip_prefix('/').unwrap_or(key).to_string()),
        more => Err(ui.fail(&format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        ))),
    }
}

async fn get(args: KvGetArgs, ui: &mut Ui<'_>) -> i32 {
    let key = match key_argument(&args.args, ui) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let (keys, recurse, detailed, base64) = (
        args.keys.unwrap_or(false),
        args.recurse.unwrap_or(false),
        args.detailed.unwrap_or(false),
        args.base64.unwrap_or(false),
    );
    if key.is_empty() && !(recurse || keys) {
        return ui.fail("Error! Missing KEY argument");
    }
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let query: Vec<(&str, String)> = if keys {
        let mut q = vec![("keys", String::new())];
        if !args.separator.is_empty() {
            q.push(("separator", args.separator.clone()));
        }
        q
    } else if recurse {
        vec![("recurse", String::new())]
    } else {
        Vec::new()
    };
    let response = match client.send(Method::GET, &kv_path(&key), &query, None).await {
        Ok(r) if r.status == 200 || r.status == 404 => r,
        Ok(r) => {
            return ui.fail(&format!(
                "Error querying Consul agent: {}",
                r.status_error()
            ))
        }
        Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
    };
    let found = response.status == 200;
    if keys {
        let list: Vec<String> = if found {
            match response.json() {
                Ok(list) => list,
                Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
            }
        } else {
            Vec::new()
        };
        for k in list {
            ui.output(&k);
        }
        return 0;
    }
    let pairs: Vec<KvPair> = if found {
        match response.json() {
            Ok(pairs) => pairs,
            Err(e) => return ui.fail(&format!("Error querying Consul agent: {e}")),
        }
    } else {
        Vec::new()
    };
    if recurse {
        let count = pairs.len();
        for (i, pair) in pairs.iter().enumerate() {
            if detailed {
                ui.output_bytes(&pair.detailed(base64));
                if i + 1 < count {
                    ui.output("");
                }
            } else {
                let mut line = format!("{}:", pair.key).into_bytes();
                line.extend(pair.shown_value(base64));
                ui.output_bytes(&line);
            }
        }
        return 0;
    }
    match pairs.first() {
        None => ui.fail(&format!("Error! No key exists at: {key}")),
        Some(pair) if detailed => {
            ui.output_bytes(&pair.detailed(base64));
            0
        }
        Some(pair) => {
            ui.output_bytes(&pair.shown_value(base64));
            0
        }
    }
}

async fn delete(args: KvDeleteArgs, ui: &mut Ui<'_>) -> i32 {
    let key = match key_argument(&args.args, ui) {
        Ok(key) => key,
        Err(code) => return code,
    };
    let (cas, recurse) = (args.cas.unwrap_or(false), args.recurse.unwrap_or(false));
    if key.is_empty() && !recurse {
        return ui.fail("Error! Missing KEY argument");
    }
    if cas && args.modify_index == 0 {
        return ui.fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        );
    }
    if args.modify_index != 0 && !cas {
        return ui.fail("Cannot specify -modify-index without -cas!");
    }
    if recurse && cas {
        return ui.fail("Cannot specify both -cas and -recurse!");
    }
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let query: Vec<(&str, String)> = if recurse {
        vec![("recurse", String::new())]
    } else if cas {
        vec![("cas", args.modify_index.to_string())]
    } else {
        Vec::new()
    };
    let result = client
        .send(Method::DELETE, &kv_path(&key), &query, None)
        .await
        .and_then(|r| {
            if r.status == 200 {
                Ok(r.text().trim() != "false")
            } else {
                Err(r.status_error())
            }
        });
    match result {
        Err(e) if recurse => ui.fail(&format!("Error! Did not delete prefix {key}: {e}")),
        Ok(_) if recurse => {
            ui.output(&format!("Success! Deleted keys with prefix: {key}"));
            0
        }
        Err(e) if cas => ui.fail(&format!("Error! Did not delete key {key}: {e}")),
        Ok(false) if cas => ui.fail(&format!("Error! Did not delete key {key}: CAS failed")),
        Err(e) => ui.fail(&format!("Error deleting key {key}: {e}")),
        Ok(_) => {
            ui.output(&format!("Success! Deleted key: {key}"));
            0
        }
    }
}

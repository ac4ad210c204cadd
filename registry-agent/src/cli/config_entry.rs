//! `registry config write|read|list|delete`: Consul's config entry commands, with the same
//! flags and messages. `write` takes a JSON or HCL file (or `-` for standard input).

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;
use std::io::Read;

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Creates or updates a config entry from a JSON or HCL file (`-` reads standard input).
    Write(WriteArgs),
    /// Prints one config entry as JSON.
    Read(ReadArgs),
    /// Lists the names of the config entries of a kind.
    List(ListArgs),
    /// Deletes a config entry.
    Delete(DeleteArgs),
}

/// `config write`.
#[derive(Args, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Perform a Check-And-Set operation; requires -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    cas: Option<bool>,
    /// The ModifyIndex the entry must have, for -cas (0: it must not exist).
    #[arg(long = "modify-index", default_value_t = 0, value_name = "N")]
    modify_index: u64,
    /// The file, or `-`.
    #[arg(value_name = "FILE")]
    file: String,
}

/// `config read`.
#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Kind of the entry.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Name of the entry.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// `config list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Kind of the entries.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// go-bexpr filter over the entries.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
}

/// `config delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Kind of the entry.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Name of the entry.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Perform a Check-And-Set operation; requires -modify-index.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    cas: Option<bool>,
    /// The ModifyIndex the entry must have, for -cas.
    #[arg(long = "modify-index", default_value_t = 0, value_name = "N")]
    modify_index: u64,
}

/// Runs a `config` subcommand.
pub async fn run(command: ConfigCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        ConfigCommand::Write(a) => write(a, ui).await,
        ConfigCommand::Read(a) => read(a, ui).await,
        ConfigCommand::List(a) => list(a, ui).await,
        ConfigCommand::Delete(a) => delete(a, ui).await,
    }
}

/// Parses a config entry file: JSON, else HCL.
fn parse_entry(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(v);
    }
    crate::config::hcl::hcl_to_json(text)
}

fn entry_id(v: &Value) -> (String, String) {
    let get = |a: &str, b: &str| {
        v.get(a)
            .or_else(|| v.get(b))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("Kind", "kind"), get("Name", "name"))
}

async fn write(a: WriteArgs, ui: &mut Ui<'_>) -> i32 {
    let text = if a.file == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            return ui.fail(&format!("Failed to read stdin: {e}"));
        }
        s
    } else {
        match std::fs::read_to_string(&a.file) {
            Ok(s) => s,
            Err(e) => return ui.fail(&format!("Failed to read file: {e}")),
        }
    };
    let entry = match parse_entry(&text) {
        Ok(v) => v,
        Err(e) => return ui.fail(&format!("Failed to decode config entry input: {e}")),
    };
    let (kind, mut name) = entry_id(&entry);
    let client = match Client::new(&a.http, Some(&a.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query = Vec::new();
    if a.cas.unwrap_or(false) {
        query.push(("cas", a.modify_index.to_string()));
    }
    let body = entry.to_string().into_bytes();
    match client
        .send(Method::PUT, "/v1/config", &query, Some(body))
        .await
    {
        Ok(r) if r.status == 200 => {
            if name.is_empty() {
                name = match kind.as_str() {
                    "proxy-defaults" => "global".into(),
                    "mesh" => "mesh".into(),
                    _ => name,
                };
            }
            if r.text().trim() == "true" {
                ui.output(&format!("Config entry written: {kind}/{name}"));
                0
            } else {
                ui.fail(&format!("Config entry not updated: {kind}/{name}"))
            }
        }
        Ok(r) => ui.fail(&format!(
            "Error writing config entry {kind}/{name}: {}",
            r.status_error()
        )),
        Err(e) => ui.fail(&format!("Error writing config entry {kind}/{name}: {e}")),
    }
}

async fn read(a: ReadArgs, ui: &mut Ui<'_>) -> i32 {
    let Some(kind) = a.kind.filter(|k| !k.is_empty()) else {
        return ui.fail("Must specify the -kind parameter");
    };
    let Some(name) = a.name.filter(|n| !n.is_empty()) else {
        return ui.fail("Must specify the -name parameter");
    };
    let client = match Client::new(&a.http, Some(&a.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let path = format!("/v1/config/{}/{}", encode_path(&kind), encode_path(&name));
    match client.send(Method::GET, &path, &[], None).await {
        Ok(r) if r.status == 200 => match r.json::<Value>() {
            Ok(v) => {
                ui.output(&pretty(&v));
                0
            }
            Err(e) => ui.fail(&e),
        },
        Ok(r) => ui.fail(&format!(
            "Error reading config entry {kind}/{name}: {}",
            r.status_error()
        )),
        Err(e) => ui.fail(&format!("Error reading config entry {kind}/{name}: {e}")),
    }
}

/// JSON indented with four spaces, as Consul prints it.
fn pretty(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn list(a: ListArgs, ui: &mut Ui<'_>) -> i32 {
    let Some(kind) = a.kind.filter(|k| !k.is_empty()) else {
        return ui.fail("Must specify the -kind parameter");
    };
    let client = match Client::new(&a.http, Some(&a.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query = Vec::new();
    if let Some(f) = a.filter {
        query.push(("filter", f));
    }
    let path = format!("/v1/config/{}", encode_path(&kind));
    match client.send(Method::GET, &path, &query, None).await {
        Ok(r) if r.status == 200 => match r.json::<Vec<Value>>() {
            Ok(entries) => {
                for e in entries {
                    ui.output(e.get("Name").and_then(Value::as_str).unwrap_or_default());
                }
                0
            }
            Err(e) => ui.fail(&e),
        },
        Ok(r) => ui.fail(&format!(
            "Error listing config entries for kind {kind:?}: {}",
            r.status_error()
        )),
        Err(e) => ui.fail(&format!(
            "Error listing config entries for kind {kind:?}: {e}"
        )),
    }
}

async fn delete(a: DeleteArgs, ui: &mut Ui<'_>) -> i32 {
    let Some(kind) = a.kind.filter(|k| !k.is_empty()) else {
        return ui.fail("Must specify the -kind parameter");
    };
    let Some(name) = a.name.filter(|n| !n.is_empty()) else {
        return ui.fail("Must specify the -name parameter");
    };
    let cas = a.cas.unwrap_or(false);
    if a.modify_index != 0 && !cas {
        return ui.fail("Cannot specify -modify-index without -cas");
    }
    let client = match Client::new(&a.http, Some(&a.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query = Vec::new();
    if cas {
        query.push(("cas", a.modify_index.to_string()));
    }
    let path = format!("/v1/config/{}/{}", encode_path(&kind), encode_path(&name));
    match client.send(Method::DELETE, &path, &query, None).await {
        Ok(r) if r.status == 200 => {
            if cas && r.text().trim() != "true" {
                return ui.fail(&format!("Config entry not deleted: {kind}/{name}"));
            }
            ui.output(&format!("Config entry deleted: {kind}/{name}"));
            0
        }
        Ok(r) => ui.fail(&format!(
            "Error deleting config entry {kind}/{name}: {}",
            r.status_error()
        )),
        Err(e) => ui.fail(&format!("Error deleting config entry {kind}/{name}: {e}")),
    }
}

//! `registry services register|deregister` (Consul's `command/services`): register services
//! with the local agent from configuration files (HCL or JSON, `service {}` / `services []`)
//! or from flags, and deregister them by file or `-id`, all through
//! `PUT /v1/agent/service/register` and `/v1/agent/service/deregister/:id`.
//!
//! With both files and flags, a flag fills what a file's definition leaves unset (ID, name,
//! address, port, kind, socket); metadata and tagged addresses from flags are merged in, and
//! tags from flags are appended, as Consul's `CombineArgs` does.

use super::http::{encode_path, Client, HttpFlags};
use super::ui::Ui;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// `services` subcommands.
#[derive(Subcommand, Debug)]
pub enum ServicesCommand {
    /// Registers services with the local agent, from files or flags.
    Register(RegisterArgs),
    /// Deregisters services from the local agent, by file or -id.
    Deregister(DeregisterArgs),
}

/// `services register` flags and files.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// ID of the service to register for arg-based registration (default: the -name value).
    #[arg(long = "id", value_name = "ID")]
    id: Option<String>,
    /// Name of the service to register for arg-based registration.
    #[arg(long = "name", value_name = "NAME")]
    name: Option<String>,
    /// Address of the service to register for arg-based registration.
    #[arg(long = "address", value_name = "ADDR")]
    address: Option<String>,
    /// Port of the service to register for arg-based registration.
    #[arg(long = "port", value_name = "PORT")]
    port: Option<u16>,
    /// Path to the Unix domain socket to register (conflicts with address and port).
    #[arg(long = "socket", value_name = "PATH")]
    socket: Option<String>,
    /// Metadata to set on the service, as key=value (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Tag to add to the service (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Tagged address to set on the service, as key=host:port (repeatable).
    #[arg(long = "tagged-address", value_name = "KEY=ADDR")]
    tagged_addresses: Vec<String>,
    /// The service's kind.
    #[arg(long = "kind", value_name = "KIND")]
    kind: Option<String>,
    /// Service definition files (HCL or JSON agent configuration).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// `services deregister` flags and files.
#[derive(Args, Debug)]
pub struct DeregisterArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// ID to delete. This must not be set if arguments are given.
    #[arg(long = "id", value_name = "ID")]
    id: Option<String>,
    /// Service definition files whose services are deregistered.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Runs a `services` subcommand.
pub async fn run(command: ServicesCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        ServicesCommand::Register(args) => register(args, ui).await,
        ServicesCommand::Deregister(args) => deregister(args, ui).await,
    }
}

/// A key compared the way Consul's decoder matches field names: case and `_` ignored.
fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The value of field `name` (any casing, snake or camel) in `obj`.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let want = norm(name);
    obj.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v)
}

/// Whether field `name` is set to something other than its zero value.
fn is_set(obj: &Map<String, Value>, name: &str) -> bool {
    match field(obj, name) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

/// The key under which `obj` holds field `name`, or `name` itself.
fn key_of(obj: &Map<String, Value>, name: &str) -> String {
    let want = norm(name);
    obj.keys()
        .find(|k| norm(k) == want)
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn text(obj: &Map<String, Value>, name: &str) -> String {
    match field(obj, name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// `key=value` pairs of a map flag (Consul's `FlagMapValue`).
fn map_flag(values: &[String], what: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for v in values {
        let Some((k, val)) = v.split_once('=') else {
            return Err(format!("invalid {what} {v:?}: expected key=value"));
        };
        out.insert(k.to_string(), Value::String(val.to_string()));
    }
    Ok(out)
}

/// `host:port` as a service address object (Consul's `api.ParseServiceAddr`).
fn service_addr(text: &str) -> Result<Value, String> {
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() || !p.is_empty() => (h, p),
        _ => (text, ""),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = if port.is_empty() {
        0
    } else {
        port.parse()
            .map_err(|_| format!("invalid port {port:?} in {text:?}"))?
    };
    Ok(json!({"Address": host, "Port": port}))
}

impl RegisterArgs {
    /// The registration the flags describe.
    fn flag_service(&self) -> Result<Map<String, Value>, String> {
        let mut svc = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                svc.insert(k.to_string(), v);
            }
        };
        put("Kind", self.kind.clone().map(Value::String));
        put("ID", self.id.clone().map(Value::String));
        put("Name", self.name.clone().map(Value::String));
        put("Address", self.address.clone().map(Value::String));
        put("Port", self.port.map(|p| json!(p)));
        put("SocketPath", self.socket.clone().map(Value::String));
        if !self.tags.is_empty() {
            svc.insert("Tags".into(), json!(self.tags));
        }
        let meta = map_flag(&self.meta, "meta")?;
        if !meta.is_empty() {
            svc.insert("Meta".into(), Value::Object(meta));
        }
        let mut tagged = Map::new();
        for (k, v) in map_flag(&self.tagged_addresses, "tagged address")? {
            let addr = service_addr(v.as_str().unwrap_or_default())
                .map_err(|e| format!("Invalid Tagged Address: {e}"))?;
            tagged.insert(k, addr);
        }
        if !tagged.is_empty() {
            svc.insert("TaggedAddresses".into(), Value::Object(tagged));
        }
        Ok(svc)
    }
}

/// Fills what `file` leaves unset from `flags` (Consul's `CombineArgs`).
fn combine(file: &mut Map<String, Value>, flags: &Map<String, Value>) {
    for name in ["ID", "Name", "Address", "Port", "Kind", "SocketPath"] {
        if let Some(v) = flags.get(name) {
            if !is_set(file, name) {
                let key = key_of(file, name);
                file.insert(key, v.clone());
            }
        }
    }
    for name in ["Meta", "TaggedAddresses"] {
        let Some(Value::Object(extra)) = flags.get(name) else {
            continue;
        };
        let key = key_of(file, name);
        let slot = file.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Value::Object(m) = slot {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(Value::Array(extra)) = flags.get("Tags") {
        let key = key_of(file, "Tags");
        let slot = file.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        if let Value::Array(tags) = slot {
            tags.extend(extra.iter().cloned());
        }
    }
}

/// The service definitions of configuration files, in file order.
fn services_from_files(files: &[PathBuf]) -> Result<Vec<Map<String, Value>>, String> {
    let mut out = Vec::new();
    for path in files {
        let cfg = crate::config::source::load_file(path, None).map_err(|e| e.to_string())?;
        for svc in cfg.services {
            match svc {
                Value::Object(m) => out.push(m),
                other => {
                    return Err(format!(
                        "{}: a service definition must be an object, got {other}",
                        path.display()
                    ))
                }
            }
        }
    }
    Ok(out)
}

fn connect(http: &HttpFlags, ui: &mut Ui<'_>) -> Result<Client, i32> {
    Client::new(http, None).map_err(|e| ui.fail(&format!("Error connecting to Consul agent: {e}")))
}

async fn register(args: RegisterArgs, ui: &mut Ui<'_>) -> i32 {
    let from_flags = match args.flag_service() {
        Ok(s) => s,
        Err(e) => return ui.fail(&e),
    };
    let has_name = args.name.as_deref().is_some_and(|n| !n.is_empty());
    if args.files.is_empty() && !has_name {
        return ui.fail("Service registration requires at least one argument or flags.");
    }
    if !args.files.is_empty() && has_name {
        return ui.fail("Service registration requires arguments or -id, not both.");
    }
    let services = if args.files.is_empty() {
        vec![from_flags]
    } else {
        match services_from_files(&args.files) {
            Ok(mut svcs) => {
                for svc in &mut svcs {
                    combine(svc, &from_flags);
                }
                svcs
            }
            Err(e) => return ui.fail(&format!("Error: {e}")),
        }
    };
    let client = match connect(&args.http, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for svc in services {
        let name = text(&svc, "Name");
        let body = match serde_json::to_vec(&Value::Object(svc)) {
            Ok(b) => b,
            Err(e) => return ui.fail(&format!("Error registering service {name:?}: {e}")),
        };
        let sent = client
            .send(Method::PUT, "/v1/agent/service/register", &[], Some(body))
            .await;
        match sent {
            Ok(r) if r.status == 200 => ui.output(&format!("Registered service: {name}")),
            Ok(r) => {
                return ui.fail(&format!(
                    "Error registering service {name:?}: {}",
                    r.status_error()
                ))
            }
            Err(e) => return ui.fail(&format!("Error registering service {name:?}: {e}")),
        }
    }
    0
}

async fn deregister(args: DeregisterArgs, ui: &mut Ui<'_>) -> i32 {
    let id = args.id.clone().filter(|i| !i.is_empty());
    if args.files.is_empty() && id.is_none() {
        return ui.fail("Service deregistration requires at least one argument or -id.");
    }
    if !args.files.is_empty() && id.is_some() {
        return ui.fail("Service deregistration requires arguments or -id, not both.");
    }
    // (ID or name to deregister, name for messages)
    let targets: Vec<(String, String)> = match id {
        Some(id) => vec![(id, String::new())],
        None => match services_from_files(&args.files) {
            Ok(svcs) => svcs
                .iter()
                .map(|s| {
                    let name = text(s, "Name");
                    let id = text(s, "ID");
                    (if id.is_empty() { name.clone() } else { id }, name)
                })
                .collect(),
            Err(e) => return ui.fail(&format!("Error: {e}")),
        },
    };
    let client = match connect(&args.http, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for (id, name) in targets {
        if id.is_empty() {
            continue;
        }
        let path = format!("/v1/agent/service/deregister/{}", encode_path(&id));
        match client.send(Method::PUT, &path, &[], None).await {
            Ok(r) if r.status == 200 => ui.output(&format!("Deregistered service: {id}")),
            // Consul's command words this failure as a registration error.
            Ok(r) => {
                return ui.fail(&format!(
                    "Error registering service {name:?}: {}",
                    r.status_error()
                ))
            }
            Err(e) => return ui.fail(&format!("Error registering service {name:?}: {e}")),
        }
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_fill_what_files_leave_unset() {
        let mut file = json!({"name": "web", "port": 0, "tags": ["a"], "meta": {"x": "1"}})
            .as_object()
            .cloned()
            .unwrap();
        let flags = json!({"ID": "w1", "Name": "other", "Port": 80, "Tags": ["b"],
                           "Meta": {"y": "2"}})
        .as_object()
        .cloned()
        .unwrap();
        combine(&mut file, &flags);
        assert_eq!(
            Value::Object(file),
            json!({"name": "web", "port": 80, "tags": ["a", "b"],
                   "meta": {"x": "1", "y": "2"}, "ID": "w1"})
        );
    }

    #[test]
    fn service_addresses() {
        assert_eq!(
            service_addr("10.0.0.1:80").unwrap(),
            json!({"Address": "10.0.0.1", "Port": 80})
        );
        assert_eq!(
            service_addr("[::1]:80").unwrap(),
            json!({"Address": "::1", "Port": 80})
        );
        assert_eq!(
            service_addr("host").unwrap(),
            json!({"Address": "host", "Port": 0})
        );
        assert!(service_addr("h:x").is_err());
        assert!(map_flag(&["novalue".into()], "meta").is_err());
    }
}

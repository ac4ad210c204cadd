//! `registry keygen` and `registry keyring -list|-install|-use|-remove`: gossip encryption
//! keys, with Consul's flags, output and exit codes.

use super::http::{Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// `keyring` flags.
#[derive(Args, Debug)]
pub struct KeyringArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Install a new encryption key. This will broadcast the new key to all members in the
    /// cluster.
    #[arg(long, value_name = "KEY")]
    install: Option<String>,
    /// Change the primary encryption key, which is used to encrypt messages. The key must
    /// already be installed before this operation can succeed.
    #[arg(long = "use", value_name = "KEY")]
    use_key: Option<String>,
    /// Remove the given key from the cluster. This operation may only be performed on keys
    /// which are not currently the primary key.
    #[arg(long, value_name = "KEY")]
    remove: Option<String>,
    /// List all keys currently in use within the cluster.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    list: Option<bool>,
    /// Relay responses through this many other nodes (0 to 5).
    #[arg(long = "relay-factor", value_name = "N", default_value_t = 0)]
    relay_factor: u8,
    /// List the keys of the local agent only.
    #[arg(long = "local-only", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    local_only: Option<bool>,
}

const USAGE: &str = "Usage: registry keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.";

/// Runs `keygen`: a new random 32-byte key in base64.
pub fn keygen() -> i32 {
    println!(
        "{}",
        crate::gossip::crypto::GossipKey::generate().to_base64()
    );
    0
}

/// Runs `keyring`.
pub async fn run(args: KeyringArgs, ui: &mut Ui<'_>) -> i32 {
    let list = args.list.unwrap_or(false);
    let mut found = list;
    for arg in [&args.install, &args.use_key, &args.remove] {
        let set = arg.as_deref().is_some_and(|a| !a.is_empty());
        if found && set {
            return ui.fail("Only a single action is allowed");
        }
        found |= set;
    }
    if !found {
        return ui.fail(USAGE);
    }
    if args.relay_factor > 5 {
        return ui.fail("Error parsing relay factor: Relay factor must be in range: [0, 5]");
    }
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    if args.relay_factor > 0 {
        query.push(("relay-factor", args.relay_factor.to_string()));
    }
    if list {
        if args.local_only.unwrap_or(false) {
            query.push(("local-only", "true".to_string()));
        }
        ui.output("==> Gathering installed encryption keys...");
        let responses: Vec<Value> = match client.get_ok("/v1/operator/keyring", &query).await {
            Ok(r) => match r.json() {
                Ok(v) => v,
                Err(e) => return ui.fail(&format!("error: {e}")),
            },
            Err(e) => return ui.fail(&format!("error: {e}")),
        };
        for line in list_lines(&responses) {
            ui.output(&line);
        }
        return 0;
    }
    let (method, key, banner) = if let Some(k) = args.install.as_deref().filter(|k| !k.is_empty()) {
        (
            Method::POST,
            k,
            "==> Installing new gossip encryption key...",
        )
    } else if let Some(k) = args.use_key.as_deref().filter(|k| !k.is_empty()) {
        (
            Method::PUT,
            k,
            "==> Changing primary gossip encryption key...",
        )
    } else if let Some(k) = args.remove.as_deref().filter(|k| !k.is_empty()) {
        (Method::DELETE, k, "==> Removing gossip encryption key...")
    } else {
        return ui.fail(USAGE);
    };
    ui.output(banner);
    let body = serde_json::json!({ "Key": key }).to_string().into_bytes();
    match client
        .send(method, "/v1/operator/keyring", &query, Some(body))
        .await
    {
        Ok(r) if r.status == 200 => 0,
        Ok(r) => ui.fail(&format!("error: {}", r.status_error())),
        Err(e) => ui.fail(&format!("error: {e}")),
    }
}

/// Consul's listing: per pool, `  KEY [holders/members]`.
fn list_lines(responses: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for r in responses {
        let dc = r.get("Datacenter").and_then(Value::as_str).unwrap_or("");
        let segment = r.get("Segment").and_then(Value::as_str).unwrap_or("");
        let mut pool = format!("{dc} (LAN)");
        if !segment.is_empty() {
            pool.push_str(&format!(" [{segment}]"));
        }
        if r.get("WAN").and_then(Value::as_bool) == Some(true) {
            pool = "WAN".to_string();
        }
        let nodes = r.get("NumNodes").and_then(Value::as_u64).unwrap_or(0);
        out.push(String::new());
        out.push(format!("{pool}:"));
        if let Some(keys) = r.get("Keys").and_then(Value::as_object) {
            for (key, n) in keys {
                out.push(format!("  {key} [{}/{nodes}]", n.as_u64().unwrap_or(0)));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_consuls() {
        let v: Vec<Value> = serde_json::from_str(
            r#"[{"WAN":true,"Datacenter":"dc1","Segment":"","Keys":{"a=":2},"NumNodes":2},
                {"WAN":false,"Datacenter":"dc1","Segment":"","Keys":{"a=":3,"b=":1},"NumNodes":3}]"#,
        )
        .unwrap();
        assert_eq!(
            list_lines(&v),
            vec![
                "",
                "WAN:",
                "  a= [2/2]",
                "",
                "dc1 (LAN):",
                "  a= [3/3]",
                "  b= [1/3]"
            ]
        );
    }
}

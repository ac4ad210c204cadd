//! `registry watch`: Consul's watches over blocking queries. Each change of a key, a key
//! prefix, the service or node list, one service's health, checks or user events runs the
//! handler with the new data as JSON on its standard input (and `CONSUL_INDEX` in its
//! environment); without a handler the first result is printed and the command exits.

use super::http::{encode_path, Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `watch` flags.
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// What to watch: key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// The key to watch (-type=key).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// The key prefix to watch (-type=keyprefix).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// The service to watch (-type=service; with -type=checks, that service's checks).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Only instances with this tag (-type=service); repeatable.
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Only instances whose checks all pass (-type=service).
    #[arg(long = "passingonly", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    passing_only: Option<bool>,
    /// Only checks in this state: any, passing, warning or critical (-type=checks).
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only user events with this name (-type=event).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Run the handler through `sh -c` (the default); -shell=false runs it directly.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    shell: Option<bool>,
    /// The handler command and its arguments.
    #[arg(
        value_name = "HANDLER",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    handler: Vec<String>,
}

/// What one watch reads.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Path of the blocking read.
    pub path: String,
    /// Query pairs besides `index` and `wait`.
    pub query: Vec<(&'static str, String)>,
    /// How the body becomes the handler's data.
    pub shape: Shape,
}

/// How a response becomes the watch's data.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Shape {
    /// The body as is (`null` on 404).
    Whole,
    /// The first element of the array (`null` on 404): a single key.
    First,
}

/// Builds the plan of a watch from its flags, with Consul's messages for bad combinations.
pub fn plan(args: &WatchArgs) -> Result<Plan, String> {
    let kind = args.kind.as_deref().unwrap_or_default();
    let whole = |path: String, query: Vec<(&'static str, String)>| Plan {
        path,
        query,
        shape: Shape::Whole,
    };
    match kind {
        "" => Err("Must specify watch type".to_string()),
        "key" => {
            let key = args
                .key
                .as_deref()
                .filter(|k| !k.is_empty())
                .ok_or("Must specify a single key to watch")?;
            Ok(Plan {
                path: format!("/v1/kv/{}", encode_path(key.trim_start_matches('/'))),
                query: Vec::new(),
                shape: Shape::First,
            })
        }
        "keyprefix" => {
            let prefix = args
                .prefix
                .as_deref()
                .ok_or("Must specify a single prefix to watch")?;
            Ok(whole(
                format!("/v1/kv/{}", encode_path(prefix.trim_start_matches('/'))),
                vec![("recurse", String::new())],
            ))
        }
        "services" => Ok(whole("/v1/catalog/services".into(), Vec::new())),
        "nodes" => Ok(whole("/v1/catalog/nodes".into(), Vec::new())),
        "service" => {
            let service = args
                .service
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or("Must specify a single service to watch")?;
            let mut query: Vec<(&'static str, String)> =
                args.tag.iter().map(|t| ("tag", t.clone())).collect();
            if args.passing_only.unwrap_or(false) {
                query.push(("passing", "1".into()));
            }
            Ok(whole(
                format!("/v1/health/service/{}", encode_path(service)),
                query,
            ))
        }
        "checks" => match (args.service.as_deref(), args.state.as_deref()) {
            (Some(_), Some(_)) => Err("Cannot specify service and state".to_string()),
            (Some(service), None) => Ok(whole(
                format!("/v1/health/checks/{}", encode_path(service)),
                Vec::new(),
            )),
            (None, state) => {
                let state = state.unwrap_or("any");
                if !matches!(state, "any" | "passing" | "warning" | "critical") {
                    return Err(format!("Invalid state: {state}"));
                }
                Ok(whole(format!("/v1/health/state/{state}"), Vec::new()))
            }
        },
        "event" => {
            let query = args
                .name
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| ("name", n.clone()))
                .collect();
            Ok(whole("/v1/event/list".into(), query))
        }
        other => Err(format!("Unsupported watch type: {other}")),
    }
}

/// Go's `json.MarshalIndent(data, "", "    ")`.
pub fn pretty(data: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if data.serialize(&mut ser).is_err() {
        return data.to_string();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// One blocking read: the new index and data.
async fn fetch(client: &Client, plan: &Plan, index: u64) -> Result<(u64, Value), String> {
    let mut query = plan.query.clone();
    if index > 0 {
        query.push(("index", index.to_string()));
        query.push(("wait", "5m".to_string()));
    }
    let r = client.send(Method::GET, &plan.path, &query, None).await?;
    let new_index = r.meta().index;
    let data = match r.status {
        404 => Value::Null,
        200 => {
            let body: Value = r.json()?;
            match plan.shape {
                Shape::Whole => body,
                Shape::First => body
                    .as_array()
                    .and_then(|a| a.first().cloned())
                    .unwrap_or(Value::Null),
            }
        }
        _ => return Err(r.status_error()),
    };
    Ok((new_index, data))
}

/// Runs the handler with `data` on its standard input.
async fn run_handler(args: &WatchArgs, index: u64, data: &Value) -> Result<(), String> {
    let mut cmd = if args.shell.unwrap_or(true) {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(args.handler.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&args.handler[0]);
        c.args(&args.handler[1..]);
        c
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    let mut input = data.to_string().into_bytes();
    input.push(b'\n');
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is not an error.
        let _ = stdin.write_all(&input).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("Error executing handler: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("Error executing handler: {status}"))
    }
}

/// Runs `watch`.
pub async fn run(args: WatchArgs, ui: &mut Ui<'_>) -> i32 {
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => return ui.fail(&format!("Error: {e}")),
    };
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    // Consul checks that the agent answers before it starts the loop.
    if let Err(e) = client.get_ok("/v1/status/leader", &[]).await {
        return ui.fail(&format!("Error connecting to Consul agent: {e}"));
    }
    tokio::select! {
        code = watch_loop(&args, &plan, &client, ui) => code,
        _ = tokio::signal::ctrl_c() => 0,
    }
}

async fn watch_loop(args: &WatchArgs, plan: &Plan, client: &Client, ui: &mut Ui<'_>) -> i32 {
    let mut index = 0u64;
    let mut last: Option<Value> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let (new_index, data) = match fetch(client, plan, index).await {
            Ok(found) => found,
            Err(e) => {
                ui.error(&format!(
                    "Watch errored: {e}, retry in {}s",
                    backoff.as_secs()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        // An index that goes backwards (a restored snapshot) starts over.
        let changed_index = new_index != index || last.is_none();
        index = if new_index < index { 0 } else { new_index };
        if !changed_index || last.as_ref() == Some(&data) {
            continue;
        }
        if args.handler.is_empty() {
            ui.output(&pretty(&data));
            return 0;
        }
        if let Err(e) = run_handler(args, new_index, &data).await {
            return ui.fail(&e);
        }
        last = Some(data);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: WatchArgs,
    }

    fn args(words: &[&str]) -> WatchArgs {
        let mut all = vec!["watch"];
        all.extend(words);
        Wrap::try_parse_from(all).expect("parse").args
    }

    #[test]
    fn plans_follow_consul() {
        assert_eq!(
            plan(&args(&[])).unwrap_err(),
            "Must specify watch type".to_string()
        );
        assert_eq!(
            plan(&args(&["--type", "key"])).unwrap_err(),
            "Must specify a single key to watch"
        );
        let p = plan(&args(&["--type", "key", "--key", "a/b c"])).expect("key");
        assert_eq!((p.path.as_str(), p.shape), ("/v1/kv/a/b%20c", Shape::First));
        let p = plan(&args(&[
            "--type",
            "service",
            "--service",
            "web",
            "--tag",
            "v1",
            "--passingonly",
        ]))
        .expect("service");
        assert_eq!(p.path, "/v1/health/service/web");
        assert_eq!(
            p.query,
            vec![("tag", "v1".to_string()), ("passing", "1".to_string())]
        );
        let p = plan(&args(&["--type", "checks", "--state", "critical"])).expect("checks");
        assert_eq!(p.path, "/v1/health/state/critical");
        assert!(plan(&args(&["--type", "nope"])).is_err());
    }

    #[test]
    fn output_is_indented_by_four() {
        let v: Value = serde_json::json!({"a": [1]});
        assert_eq!(pretty(&v), "{\n    \"a\": [\n        1\n    ]\n}");
    }
}

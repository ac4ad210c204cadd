//! `registry monitor`: follows the agent's log through `/v1/agent/monitor` at a chosen level
//! (which may be more verbose than the agent's own), in text or JSON lines, until interrupted
//! or until the agent goes away.

use super::http::{Client, HttpFlags};
use super::ui::Ui;
use clap::Args;
use reqwest::Method;

/// `monitor` flags.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Level of the messages to show: trace, debug, info, warn or error. It may be more
    /// verbose than the level the agent logs at.
    #[arg(long = "log-level", default_value = "INFO", value_name = "LEVEL")]
    log_level: String,
    /// Stream the messages as JSON objects, one a line.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = super::go_bool, value_name = "BOOL")]
    log_json: Option<bool>,
}

/// Runs `monitor`.
pub async fn run(args: MonitorArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = vec![("loglevel", args.log_level.clone())];
    if args.log_json.unwrap_or(false) {
        query.push(("logjson", String::new()));
    }
    let pq = registry_client::with_query("/v1/agent/monitor", &query);
    let response = match client.api().request(Method::GET, &pq).send().await {
        Ok(r) => r,
        Err(e) => return ui.fail(&format!("Error starting monitor: {e}")),
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return ui.fail(&format!(
            "Error starting monitor: Unexpected response code: {status} ({})",
            body.trim()
        ));
    }
    let code = tokio::select! {
        code = follow(response, ui) => code,
        _ = tokio::signal::ctrl_c() => return 0,
    };
    if code != 0 {
        ui.error(
            "Remote side ended the monitor! This usually means that the\n\
             remote side has exited or crashed.",
        );
    }
    code
}

/// Copies the stream to standard output, a chunk at a time; 1 when it ends.
async fn follow(mut response: reqwest::Response, ui: &mut Ui<'_>) -> i32 {
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                if !ui.stream(&bytes) {
                    return 0;
                }
            }
            Ok(None) | Err(_) => return 1,
        }
    }
}

//! Script checks (Consul's `CheckMonitor`, `ScriptArgs` form only; needs
//! `enable_script_checks`): exit 0 passes, exit 1 warns, anything else is critical. The
//! output is the last `OutputMaxSize` bytes of stdout and stderr. The run is killed after
//! the timeout (30s when none was given) with `Timed out (<t>) running check`.

use super::TailBuffer;
use registry_proto::api::{CheckKind, CheckSpec};
use registry_proto::duration::format_go_duration;
use registry_proto::model::status;
use std::process::Stdio;
use std::time::Duration;

/// Timeout of a script check that gives none.
const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct ScriptProbe {
    args: Vec<String>,
    timeout: Duration,
    output_max_size: usize,
}

impl ScriptProbe {
    pub(crate) fn new(spec: &CheckSpec) -> Result<Self, String> {
        let CheckKind::Script { args, .. } = &spec.kind else {
            return Err("not a script check".to_string());
        };
        if args.is_empty() {
            return Err("script check without arguments".to_string());
        }
        let timeout = if spec.check.definition.timeout_ns == 0 {
            DEFAULT_SCRIPT_TIMEOUT
        } else {
            spec.timeout
        };
        Ok(ScriptProbe {
            args: args.clone(),
            timeout,
            output_max_size: spec.output_max_size,
        })
    }

    fn output_text(&self, out: &TailBuffer) -> String {
        let text = out.text();
        if out.total() > self.output_max_size {
            format!(
                "Captured {} of {} bytes\n...\n{text}",
                self.output_max_size,
                out.total()
            )
        } else {
            text
        }
    }

    pub(crate) async fn run(&self) -> (&'static str, String) {
        let Some((program, rest)) = self.args.split_first() else {
            return (status::CRITICAL, "script check without arguments".into());
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (status::CRITICAL, e.to_string()),
        };
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => (
                status::CRITICAL,
                format!(
                    "Timed out ({}) running check",
                    format_go_duration(self.timeout)
                ),
            ),
            Ok(Err(e)) => (status::CRITICAL, e.to_string()),
            Ok(Ok(output)) => {
                let mut buf = TailBuffer::new(self.output_max_size);
                buf.write(&output.stdout);
                buf.write(&output.stderr);
                let text = self.output_text(&buf);
                let st = match output.status.code() {
                    Some(0) => status::PASSING,
                    Some(1) => status::WARNING,
                    _ => status::CRITICAL,
                };
                (st, text)
            }
        }
    }
}

//! Go `flag`-package argument conventions on top of clap.
//!
//! Consul's CLI takes `-flag`, `--flag`, `-flag=value` and `-flag value`, treats booleans as
//! `-flag` or `-flag=false`, and stops reading flags at the first positional argument (so
//! `kv put key -` reads stdin). [`normalize_args`] rewrites such a command line into one clap
//! parses the same way: `--flag=value`, and `--` before the first positional argument of a
//! command that has no subcommands.

use clap::Command;

/// Rewrites Go-style arguments (including `argv[0]`) for `root`, which must be built.
pub fn normalize_args(root: &Command, args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len() + 1);
    let Some((program, rest)) = args.split_first() else {
        return out;
    };
    out.push(program.clone());
    let mut cmd = root;
    let mut i = 0;
    if let Some(first) = rest.first() {
        if matches!(first.as_str(), "-v" | "-version" | "--version") {
            out.push("version".to_string());
            i = 1;
        }
    }
    while i < rest.len() {
        let arg = &rest[i];
        if arg == "--" {
            out.extend(rest[i..].iter().cloned());
            break;
        }
        if let Some(sub) = cmd.find_subcommand(arg) {
            out.push(arg.clone());
            cmd = sub;
            i += 1;
            continue;
        }
        if is_flag(arg) {
            if arg == "-h" {
                out.push(arg.clone());
                i += 1;
                continue;
            }
            let body = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .unwrap_or(arg);
            let (name, has_value) = match body.split_once('=') {
                Some((name, _)) => (name, true),
                None => (body, false),
            };
            let separate_value = !has_value
                && cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(name))
                    .is_some_and(|a| a.get_action().takes_values() && !a.is_require_equals_set());
            match rest.get(i + 1) {
                Some(value) if separate_value => {
                    out.push(format!("--{name}={value}"));
                    i += 2;
                }
                _ => {
                    out.push(format!("--{body}"));
                    i += 1;
                }
            }
            continue;
        }
        if cmd.has_subcommands() {
            out.push(arg.clone());
            i += 1;
            continue;
        }
        out.push("--".to_string());
        out.extend(rest[i..].iter().cloned());
        break;
    }
    out
}

/// A flag token: starts with a dash and is not the lone `-` (stdin).
fn is_flag(arg: &str) -> bool {
    arg.len() > 1 && arg.starts_with('-')
}

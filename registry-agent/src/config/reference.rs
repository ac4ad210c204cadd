//! The configuration reference, `docs/configuration.md`, generated from the key tables: every
//! key of Consul's agent configuration as supported, accepted-and-ignored (with why), or
//! rejected. A test keeps the file in step with the tables (`REGISTRY_UPDATE_DOCS=1` rewrites
//! it).

use super::consul_keys::{reason, IGNORED};
use super::schema::{Shape, TOP_LEVEL};
use std::fmt::Write as _;

fn supported(keys: &[(&str, Shape)], prefix: &str, out: &mut Vec<(String, &'static str)>) {
    for (name, shape) in keys {
        let path = format!("{prefix}{name}");
        match shape {
            Shape::Block(inner) => supported(inner, &format!("{path}."), out),
            Shape::Scalar => out.push((path, "value")),
            Shape::Map => out.push((path, "map")),
            Shape::List => out.push((path, "definitions")),
        }
    }
}

/// The Markdown text of `docs/configuration.md`.
pub fn render() -> String {
    let mut s = String::new();
    s.push_str(
        "# Agent configuration reference\n\n\
         Generated from `registry-agent/src/config/{schema,consul_keys}.rs` (a unit test keeps \
         this file current; `REGISTRY_UPDATE_DOCS=1 cargo test -p registry-agent reference` \
         rewrites it).\n\n\
         Configuration files are JSON or HCL (`-config-file`, `-config-dir`, `-hcl`, \
         `-config-format`), merged in command-line order as Consul merges them: later scalars \
         win, lists append, maps merge key by key; flags apply after the files and `-hcl` \
         fragments after the flags. `registry validate PATH...` checks files exactly as the \
         agent reads them at start.\n\n\
         Every key of Consul's agent configuration falls in one of three groups:\n\n\
         - **supported**: read and acted on, with Consul's default and validation;\n\
         - **accepted and ignored**: type-checked as Consul checks it, then dropped; the agent \
         logs one warning at start naming each such key it met, with the reason below;\n\
         - **rejected**: any other key (a typo, a key of another program) stops the agent with \
         `config: unknown key \"KEY\" in FILE`, as Consul stops on an unknown key.\n\n",
    );
    let mut keys = Vec::new();
    supported(TOP_LEVEL, "", &mut keys);
    let _ = writeln!(s, "## Supported ({} keys)\n", keys.len());
    s.push_str("| key | kind |\n|---|---|\n");
    for (k, kind) in &keys {
        let _ = writeln!(s, "| `{k}` | {kind} |");
    }
    s.push_str(
        "\n`service`/`services` and `check`/`checks` take Consul's service and check \
         definitions (the same fields as `PUT /v1/agent/service/register` and \
         `/v1/agent/check/register`, in snake_case or CamelCase).\n\n",
    );
    let _ = writeln!(s, "## Accepted and ignored ({} keys)\n", IGNORED.len());
    s.push_str("| key | type | why it is ignored |\n|---|---|---|\n");
    let mut ignored: Vec<_> = IGNORED.to_vec();
    ignored.sort_by_key(|(k, _)| *k);
    for (k, kind) in ignored {
        let _ = writeln!(s, "| `{k}` | {} | {} |", kind.name(), reason(k));
    }
    s.push_str(
        "\n## Rejected\n\n\
         Any key not listed above. Values of a listed key with the wrong type are rejected \
         too, with mapstructure's wording (`expected type 'bool', got unconvertible type \
         'string'`).\n",
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn reference_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let want = super::render();
        if std::env::var_os("REGISTRY_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).expect("write docs/configuration.md");
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/configuration.md is out of date: run REGISTRY_UPDATE_DOCS=1 cargo test -p registry-agent reference"
        );
    }
}

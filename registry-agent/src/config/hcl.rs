//! HCL text to the JSON shape Consul's configuration has.
//!
//! `hcl::from_str` keeps only the last of repeated blocks, so the body is walked here instead:
//! a key seen once keeps its value, a key seen several times (`service { }` twice) becomes an
//! array of its values, and `ident "label" { }` becomes `{"ident": {"label": {...}}}`.

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Structure};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Parses HCL into a JSON object.
pub fn hcl_to_json(text: &str) -> Result<Value, String> {
    let body = hcl::parse(text).map_err(|e| e.to_string())?;
    body_to_json(body, &Context::new())
}

/// Collects the attributes and blocks of one body into an object.
fn body_to_json(body: Body, ctx: &Context<'_>) -> Result<Value, String> {
    let mut object = Object::default();
    for structure in body.into_inner() {
        match structure {
            Structure::Attribute(attribute) => {
                let key = attribute.key.as_str().to_string();
                let value = attribute
                    .expr
                    .evaluate(ctx)
                    .map_err(|e| format!("{key}: {e}"))?;
                let value = serde_json::to_value(value).map_err(|e| format!("{key}: {e}"))?;
                object.insert(key, value);
            }
            Structure::Block(block) => {
                let key = block.identifier.as_str().to_string();
                object.insert(key, block_to_json(block, ctx)?);
            }
        }
    }
    Ok(Value::Object(object.map))
}

/// A block's body, wrapped in one object per label.
fn block_to_json(block: Block, ctx: &Context<'_>) -> Result<Value, String> {
    let mut value = body_to_json(block.body, ctx)?;
    for label in block.labels.iter().rev() {
        let mut wrapper = Map::new();
        wrapper.insert(label.as_str().to_string(), value);
        value = Value::Object(wrapper);
    }
    Ok(value)
}

/// An object whose repeated keys collect their values into an array.
#[derive(Default)]
struct Object {
    map: Map<String, Value>,
    repeated: HashSet<String>,
}

impl Object {
    fn insert(&mut self, key: String, value: Value) {
        match self.map.get_mut(&key) {
            None => {
                self.map.insert(key, value);
            }
            Some(Value::Array(items)) if self.repeated.contains(&key) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
                self.repeated.insert(key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_blocks_become_arrays() {
        let text = r#"
service {
  name = "a"
}
service {
  name = "b"
  port = -1
}
ports {
  http = 8501
}
"#;
        let value = hcl_to_json(text).expect("parse");
        assert_eq!(
            value,
            json!({
                "service": [{"name": "a"}, {"name": "b", "port": -1}],
                "ports": {"http": 8501}
            })
        );
    }

    #[test]
    fn labels_nest_and_lists_stay_lists() {
        let text = "a \"x\" \"y\" {\n  v = true\n}\nlist = [\"p\", \"q\"]\nobj = { k = 1 }\n";
        let value = hcl_to_json(text).expect("parse");
        assert_eq!(
            value,
            json!({"a": {"x": {"y": {"v": true}}}, "list": ["p", "q"], "obj": {"k": 1}})
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(hcl_to_json("a = ").is_err());
        assert!(hcl_to_json("a = var.unknown").is_err());
    }
}

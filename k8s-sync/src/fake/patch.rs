//! Patch semantics of the fake API server: JSON merge patch (RFC 7386) and strategic merge
//! patch as kubectl sends it. For strategic merge, a list is merged by key only when the patch
//! carries a `$setElementOrder/<field>` directive (kubectl always sends one for lists with a
//! merge key), whose entries name the key; other lists are replaced. `$patch: delete` entries
//! remove an element, `$retainKeys` and `$deleteFromPrimitiveList/...` are honoured.

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn merge_key(order: &[Value]) -> Option<String> {
    let first = order.first()?.as_object()?;
    first
        .keys()
        .find(|k| order.iter().all(|o| o.get(k.as_str()).is_some()))
        .cloned()
}

/// Strategic merge patch (the subset kubectl's client-side apply produces).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()) || p.contains_key(k));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                    list.retain(|x| !del.contains(x));
                }
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let order = p
            .get(&format!("$setElementOrder/{k}"))
            .and_then(Value::as_array);
        match (v, order.and_then(|o| merge_key(o).map(|key| (o, key)))) {
            (Value::Array(items), Some((order, key))) => {
                let cur = match t.get(k) {
                    Some(Value::Array(a)) => a.clone(),
                    _ => Vec::new(),
                };
                let mut merged: Vec<Value> = Vec::new();
                for o in order {
                    let kv = o.get(&key);
                    let base = cur.iter().find(|c| c.get(&key) == kv).cloned();
                    let upd = items.iter().find(|i| i.get(&key) == kv);
                    let deleted =
                        upd.and_then(|u| u.get("$patch")).and_then(Value::as_str) == Some("delete");
                    if deleted {
                        continue;
                    }
                    match (base, upd) {
                        (Some(mut b), Some(u)) => {
                            strategic_merge(&mut b, u);
                            merged.push(b);
                        }
                        (Some(b), None) => merged.push(b),
                        (None, Some(u)) => {
                            let mut n = Value::Object(Map::new());
                            strategic_merge(&mut n, u);
                            merged.push(n);
                        }
                        (None, None) => {}
                    }
                }
                t.insert(k.clone(), Value::Array(merged));
            }
            (Value::Object(_), _) => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v),
            (other, _) => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"b": {"c": null, "e": 4}, "l": [3]}));
        assert_eq!(t, json!({"a": 1, "b": {"d": 3, "e": 4}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_like_kubectl_apply() {
        let mut t = json!({"spec": {"ports": [{"port": 80, "name": "http", "protocol": "TCP"},
                                              {"port": 81, "name": "x", "protocol": "TCP"}],
                                    "selector": {"app": "a"}}});
        let p = json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 90}],
                                "ports": [{"port": 90, "name": "new"}, {"port": 80, "name": "web"}],
                                "selector": {"app": "b"}}});
        strategic_merge(&mut t, &p);
        assert_eq!(
            t,
            json!({"spec": {"ports": [{"port": 80, "name": "web", "protocol": "TCP"},
                                                {"port": 90, "name": "new"}],
                                      "selector": {"app": "b"}}})
        );
        // Lists without a merge key are replaced.
        let mut t = json!({"endpoints": [{"addresses": ["1.1.1.1"]}]});
        strategic_merge(&mut t, &json!({"endpoints": [{"addresses": ["2.2.2.2"]}]}));
        assert_eq!(t, json!({"endpoints": [{"addresses": ["2.2.2.2"]}]}));
        let mut t = json!({"m": {"a": 1, "b": 2}});
        strategic_merge(&mut t, &json!({"m": {"a": null}}));
        assert_eq!(t, json!({"m": {"b": 2}}));
    }
}

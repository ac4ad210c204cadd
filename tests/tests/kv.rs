//! `/v1/kv/:key`: get/put/delete, recurse, keys+separator, raw, cas, flags, size limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use registry_tests::{b64, unb64, TestAgent};
use serde_json::Value;

fn entry(v: &Value) -> &serde_json::Map<String, Value> {
    let arr = v.as_array().expect("KV GET returns an array");
    assert_eq!(
        arr.len(),
        1,
        "single-key GET returns exactly one entry: {v}"
    );
    arr[0].as_object().expect("entry is an object")
}

#[tokio::test]
async fn put_get_roundtrip_shape_and_headers() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.put("/v1/kv/app/config", "hello world").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");

    let r = a.get("/v1/kv/app/config").await?;
    r.assert_status(200).assert_read_headers();
    assert!(
        r.content_type().starts_with("application/json"),
        "content type {:?}",
        r.content_type()
    );
    let v = r.json();
    let e = entry(&v);
    assert_eq!(e["Key"], "app/config");
    assert_eq!(e["Flags"], 0);
    assert_eq!(e["LockIndex"], 0);
    assert_eq!(unb64(e["Value"].as_str().unwrap()), b"hello world");
    let create = e["CreateIndex"].as_u64().unwrap();
    let modify = e["ModifyIndex"].as_u64().unwrap();
    assert!(create > 0);
    assert_eq!(create, modify);
    assert!(!e.contains_key("Session"), "Session is omitempty: {v}");
    // Single-key read: the index is the key's ModifyIndex.
    assert_eq!(r.index(), modify);

    // Update: ModifyIndex grows, CreateIndex stays.
    a.kv_put("app/config", "v2").await?;
    let r = a.get("/v1/kv/app/config").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let e = entry(&v);
    assert_eq!(e["CreateIndex"].as_u64().unwrap(), create);
    let modify2 = e["ModifyIndex"].as_u64().unwrap();
    assert!(
        modify2 > modify,
        "ModifyIndex {modify2} must exceed {modify}"
    );
    assert_eq!(unb64(e["Value"].as_str().unwrap()), b"v2");
    assert_eq!(r.index(), modify2);
    Ok(())
}

#[tokio::test]
async fn missing_key_is_404_with_index_headers() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/kv/does/not/exist").await?;
    r.assert_status(404).assert_read_headers();
    // Also after some writes exist.
    a.kv_put("other", "x").await?;
    let r = a.get("/v1/kv/does/not/exist").await?;
    r.assert_status(404).assert_read_headers();
    let r = a.get("/v1/kv/does/not/exist?recurse").await?;
    r.assert_status(404).assert_read_headers();
    Ok(())
}

#[tokio::test]
async fn empty_value_is_null() -> Result<()> {
    let a = TestAgent::dev().await?;
    a.kv_put("empty", "").await?;
    let r = a.get("/v1/kv/empty").await?;
    r.assert_status(200);
    let v = r.json();
    let e = entry(&v);
    assert!(e.contains_key("Value"), "Value field present: {v}");
    assert_eq!(e["Value"], Value::Null, "empty value is null: {v}");
    // ?raw of an empty value is an empty body.
    let r = a.get("/v1/kv/empty?raw").await?;
    r.assert_status(200);
    assert!(r.body.is_empty());
    Ok(())
}

#[tokio::test]
async fn flags_are_full_u64() -> Result<()> {
    let a = TestAgent::dev().await?;
    // api.Lock's LockFlagValue and api.Semaphore's SemaphoreFlagValue.
    for (key, flags) in [
        ("lock", 0x2ddc_cbc0_58a5_0c18u64),
        ("sema", 0xe0f6_9a2b_aa41_4de0u64),
        ("max", u64::MAX),
        ("one", 1u64),
    ] {
        let r = a.put(&format!("/v1/kv/{key}?flags={flags}"), "v").await?;
        r.assert_status(200);
        assert_eq!(r.text().trim(), "true");
        let r = a.get(&format!("/v1/kv/{key}")).await?;
        r.assert_status(200);
        // The number must appear verbatim in the JSON text (no float rounding).
        assert!(
            r.text().contains(&format!("\"Flags\":{flags}")),
            "Flags {flags} not found verbatim in {}",
            r.text()
        );
        let v = r.json();
        assert_eq!(entry(&v)["Flags"].as_u64(), Some(flags));
    }
    assert_eq!(0x2ddc_cbc0_58a5_0c18u64, 3304740253564472344);
    Ok(())
}

#[tokio::test]
async fn recurse_and_keys_with_separator() -> Result<()> {
    let a = TestAgent::dev().await?;
    for (k, v) in [
        ("web/foo", "1"),
        ("web/bar", "2"),
        ("web/subdir/x", "3"),
        ("web/subdir/y/z", "4"),
        ("webx", "5"),
        ("zzz", "6"),
    ] {
        a.kv_put(k, v).await?;
    }

    let r = a.get("/v1/kv/web/?recurse").await?;
    r.assert_status(200).assert_read_headers();
    let v = r.json();
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["web/bar", "web/foo", "web/subdir/x", "web/subdir/y/z"],
        "recurse returns every key under the prefix, sorted"
    );
    let max_modify = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ModifyIndex"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(r.index() >= max_modify);

    // Prefix without trailing slash matches "webx" too.
    let r = a.get("/v1/kv/web?recurse").await?;
    r.assert_status(200);
    assert_eq!(r.json().as_array().unwrap().len(), 5);

    // ?recurse=true form.
    let r = a.get("/v1/kv/web/?recurse=true").await?;
    r.assert_status(200);
    assert_eq!(r.json().as_array().unwrap().len(), 4);

    let r = a.get("/v1/kv/web/?keys").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(
        r.json(),
        serde_json::json!(["web/bar", "web/foo", "web/subdir/x", "web/subdir/y/z"])
    );

    let r = a.get("/v1/kv/web/?keys&separator=/").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(
        r.json(),
        serde_json::json!(["web/bar", "web/foo", "web/subdir/"])
    );

    let r = a.get("/v1/kv/?keys&separator=/").await?;
    r.assert_status(200);
    assert_eq!(r.json(), serde_json::json!(["web/", "webx", "zzz"]));

    // Empty non-root prefix: 404 with headers.
    let r = a.get("/v1/kv/nothing/here/?keys").await?;
    r.assert_status(404).assert_read_headers();
    Ok(())
}

#[tokio::test]
async fn keys_on_empty_root_is_empty_list() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.get("/v1/kv/?keys").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.json(), serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn raw_returns_bytes_with_safety_headers() -> Result<()> {
    let a = TestAgent::dev().await?;
    let bytes: Vec<u8> = (0u8..=255).chain([0, 0, 255]).collect();
    let r = a.put("/v1/kv/bin/blob", bytes.clone()).await?;
    r.assert_status(200);

    let r = a.get("/v1/kv/bin/blob?raw").await?;
    r.assert_status(200).assert_read_headers();
    assert_eq!(r.body, bytes, "raw body is the exact bytes");
    assert!(
        r.content_type().starts_with("text/plain"),
        "raw content type {:?}",
        r.content_type()
    );
    assert_eq!(
        r.header("X-Content-Type-Options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        r.header("Content-Security-Policy").as_deref(),
        Some("sandbox")
    );

    // And the JSON form carries the same bytes base64-encoded.
    let v = a.get_json("/v1/kv/bin/blob").await?;
    assert_eq!(entry(&v)["Value"].as_str().unwrap(), b64(&bytes));

    let r = a.get("/v1/kv/bin/missing?raw").await?;
    r.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn cas_create_only_and_index_match() -> Result<()> {
    let a = TestAgent::dev().await?;
    // cas=0: create only if absent.
    let r = a.put("/v1/kv/leader?cas=0", "node-a").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let r = a.put("/v1/kv/leader?cas=0", "node-b").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "false", "cas=0 on an existing key fails");
    let v = a.get_json("/v1/kv/leader").await?;
    assert_eq!(unb64(entry(&v)["Value"].as_str().unwrap()), b"node-a");
    let idx = entry(&v)["ModifyIndex"].as_u64().unwrap();

    // Wrong index fails, right index succeeds.
    let r = a
        .put(&format!("/v1/kv/leader?cas={}", idx + 1000), "x")
        .await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "false");
    let r = a.put(&format!("/v1/kv/leader?cas={idx}"), "node-c").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let v = a.get_json("/v1/kv/leader").await?;
    assert_eq!(unb64(entry(&v)["Value"].as_str().unwrap()), b"node-c");
    let idx2 = entry(&v)["ModifyIndex"].as_u64().unwrap();
    assert!(idx2 > idx);
    // The old index no longer matches.
    let r = a.put(&format!("/v1/kv/leader?cas={idx}"), "stale").await?;
    assert_eq!(r.text().trim(), "false");

    // DELETE ?cas.
    let r = a.delete(&format!("/v1/kv/leader?cas={idx}")).await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "false");
    a.get("/v1/kv/leader").await?.assert_status(200);
    let r = a.delete(&format!("/v1/kv/leader?cas={idx2}")).await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    a.get("/v1/kv/leader").await?.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn delete_single_and_recurse() -> Result<()> {
    let a = TestAgent::dev().await?;
    for k in ["d/a", "d/b", "d/c/d", "dx", "keep"] {
        a.kv_put(k, "v").await?;
    }
    let before = a.get("/v1/kv/d/a").await?.index();
    let r = a.delete("/v1/kv/d/a").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let r = a.get("/v1/kv/d/a").await?;
    r.assert_status(404).assert_read_headers();
    assert!(
        r.index() > before,
        "index after delete ({}) must exceed the key's last ModifyIndex ({before})",
        r.index()
    );

    // Deleting a missing key is fine.
    let r = a.delete("/v1/kv/d/never").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");

    let r = a.delete("/v1/kv/d/?recurse").await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    a.get("/v1/kv/d/?recurse").await?.assert_status(404);
    // Keys outside the prefix survive.
    a.get("/v1/kv/dx").await?.assert_status(200);
    a.get("/v1/kv/keep").await?.assert_status(200);
    Ok(())
}

#[tokio::test]
async fn value_size_limit_is_512_kib() -> Result<()> {
    let a = TestAgent::dev().await?;
    let max = vec![b'a'; 512 * 1024];
    let r = a.put("/v1/kv/big/ok", max.clone()).await?;
    r.assert_status(200);
    assert_eq!(r.text().trim(), "true");
    let r = a.get("/v1/kv/big/ok?raw").await?;
    r.assert_status(200);
    assert_eq!(r.body.len(), max.len());

    let too_big = vec![b'a'; 512 * 1024 + 1];
    let r = a.put("/v1/kv/big/no", too_big).await?;
    r.assert_status(413);
    a.get("/v1/kv/big/no").await?.assert_status(404);
    Ok(())
}

#[tokio::test]
async fn put_with_flags_keeps_value_and_unusual_keys() -> Result<()> {
    let a = TestAgent::dev().await?;
    // Keys with characters that need escaping in URLs are stored decoded.
    let r = a.put("/v1/kv/sp%20ace/x%3Ay", "v").await?;
    r.assert_status(200);
    let v = a.get_json("/v1/kv/sp%20ace/x%3Ay").await?;
    assert_eq!(entry(&v)["Key"], "sp ace/x:y");
    // Deep keys collapse to their first level under a separator listing.
    let r = a.put("/v1/kv/deep/a/b/c/d/e/f/g/h", "v").await?;
    r.assert_status(200);
    let v = a.get_json("/v1/kv/deep/?keys&separator=/").await?;
    assert_eq!(v, serde_json::json!(["deep/a/"]));
    Ok(())
}

#[tokio::test]
async fn missing_key_name_and_conflicting_flags_are_400() -> Result<()> {
    let a = TestAgent::dev().await?;
    let r = a.put("/v1/kv/", "v").await?;
    r.assert_status(400);
    assert!(r.text().contains("Missing key name"), "body {:?}", r.text());
    let r = a.put("/v1/kv/k?cas=0&acquire=abc", "v").await?;
    r.assert_status(400);
    assert!(
        r.text().contains("Conflicting flags"),
        "body {:?}",
        r.text()
    );
    Ok(())
}

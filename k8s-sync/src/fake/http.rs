//! The fake's HTTP surface: discovery, resource requests (list, watch, get, create, update,
//! patch, delete, the status subresource) and the `/fake/` test knobs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::discovery;
use super::store::{key_of, status, Fake, Msg};
use super::{kind_index, merge_patch, strategic_merge, Selector, KINDS};

/// The router serving `fake` (give it as axum state-free router).
pub fn router(fake: Fake) -> Router {
    Router::new().fallback(handle).with_state(fake)
}

fn respond(code: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let path = uri.path().trim_end_matches('/').to_string();
    let q = query(uri.query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if let Some(knob) = path.strip_prefix("/fake/") {
        return knobs(&fake, knob, &q);
    }
    match segs.as_slice() {
        ["version"] => return respond(200, &discovery::version()),
        ["api"] => return respond(200, &discovery::core_versions(&host)),
        ["apis"] => return respond(200, &discovery::group_list()),
        ["api", v] => {
            return discovery::resource_list("", v).map_or_else(not_found, |d| respond(200, &d))
        }
        ["apis", g] => return discovery::group_doc(g).map_or_else(not_found, |d| respond(200, &d)),
        ["apis", g, v] => {
            return discovery::resource_list(g, v).map_or_else(not_found, |d| respond(200, &d))
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return not_found(),
    };
    {
        let mut st = fake.st.lock();
        st.requests.push(format!(
            "{method} {}",
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
        ));
        if st.fail.0 > 0 {
            st.fail.0 -= 1;
            let code = st.fail.1;
            return respond(
                code,
                &status(code, "ServiceUnavailable", "injected failure"),
            );
        }
    }
    // (namespace, plural, name, subresource)
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" => (
            Some(*ns),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        _ => return not_found(),
    };
    let Some(kind) = kind_index(group, version, plural) else {
        return not_found();
    };
    let k = &KINDS[kind];
    if k.namespaced && name.is_some() && ns.is_none() {
        return not_found();
    }
    let ns_key = if k.namespaced { ns.unwrap_or("") } else { "" };
    let status_sub = match sub {
        None => false,
        Some("status") if k.has_status => true,
        Some(_) => return not_found(),
    };
    let result = match (&method, name) {
        (&Method::GET, None)
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
        {
            return watch(fake, kind, ns, &q);
        }
        (&Method::GET, None) => return list(&fake, kind, ns, &q),
        (&Method::GET, Some(n)) => fake.get(kind, ns_key, n).map(|v| (200, v)).ok_or_else(|| {
            (
                404,
                status(404, "NotFound", &format!("{} \"{n}\" not found", k.plural)),
            )
        }),
        (&Method::POST, None) => match parse(&body) {
            Ok(v) => {
                let body_ns = v.pointer("/metadata/namespace").and_then(Value::as_str);
                if k.namespaced && body_ns.is_some_and(|b| Some(b) != ns) {
                    Err((400, status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")))
                } else {
                    fake.create(kind, ns_key, v).map(|v| (201, v))
                }
            }
            Err(e) => Err(e),
        },
        (&Method::PUT, Some(n)) => parse(&body).and_then(|v| {
            fake.update(kind, ns_key, n, v, status_sub)
                .map(|v| (200, v))
        }),
        (&Method::PATCH, Some(n)) => patch(&fake, kind, ns_key, n, &ctype, &body, status_sub),
        (&Method::DELETE, Some(n)) => fake.delete(kind, ns_key, n).map(|v| (200, v)),
        _ => Err((
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        )),
    };
    match result {
        Ok((code, v)) => respond(code, &v),
        Err((code, v)) => respond(code, &v),
    }
}

fn not_found() -> Response {
    respond(
        404,
        &status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    )
}

fn parse(body: &[u8]) -> Result<Value, (u16, Value)> {
    serde_json::from_slice(body).map_err(|e| {
        (
            400,
            status(400, "BadRequest", &format!("invalid JSON body: {e}")),
        )
    })
}

fn patch(
    fake: &Fake,
    kind: usize,
    ns: &str,
    name: &str,
    ctype: &str,
    body: &[u8],
    status_sub: bool,
) -> Result<(u16, Arc<Value>), (u16, Value)> {
    let p = parse(body)?;
    let ctype = ctype.split(';').next().unwrap_or("").trim();
    let Some(cur) = fake.get(kind, ns, name) else {
        if ctype == "application/apply-patch+yaml" {
            return fake.create(kind, ns, p).map(|v| (201, v));
        }
        return Err((
            404,
            status(
                404,
                "NotFound",
                &format!("{} \"{name}\" not found", KINDS[kind].plural),
            ),
        ));
    };
    let mut next = (*cur).clone();
    match ctype {
        "application/merge-patch+json" | "application/apply-patch+yaml" => {
            merge_patch(&mut next, &p)
        }
        "application/strategic-merge-patch+json" => strategic_merge(&mut next, &p),
        other => {
            return Err((
                415,
                status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format: {other}"),
                ),
            ))
        }
    }
    // A patch is unconditional unless it names a resourceVersion itself.
    if p.pointer("/metadata/resourceVersion").is_none() {
        next["metadata"]["resourceVersion"] = json!("");
    }
    fake.update(kind, ns, name, next, status_sub)
        .map(|v| (200, v))
}

fn list(fake: &Fake, kind: usize, ns: Option<&str>, q: &HashMap<String, String>) -> Response {
    let k = &KINDS[kind];
    let labels = match Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return respond(400, &status(400, "BadRequest", &e)),
    };
    let fields = match Selector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return respond(400, &status(400, "BadRequest", &e)),
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // A continue token is (list resourceVersion, namespace, name of the last item).
    let (snapshot_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => match unhex(c).and_then(|s| {
            let mut it = s.splitn(3, '\0');
            Some((
                it.next()?.parse::<u64>().ok()?,
                it.next()?.to_string(),
                it.next()?.to_string(),
            ))
        }) {
            Some((rv, a, b)) => {
                if rv < fake.st.lock().compacted {
                    return respond(410, &status(410, "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                }
                (Some(rv), Some((a, b)))
            }
            None => return respond(400, &status(400, "BadRequest", "invalid continue token")),
        },
        None => (None, None),
    };
    let (items, rv, more) = fake.list(kind, ns, &labels, &fields, after, limit);
    let rv = snapshot_rv.unwrap_or(rv);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some((a, b)) = more {
        meta["continue"] = json!(hex(&format!("{rv}\0{a}\0{b}")));
    }
    let items: Vec<&Value> = items.iter().map(|v| v.as_ref()).collect();
    respond(
        200,
        &json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version(), "metadata": meta, "items": items}),
    )
}

fn line(typ: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": typ, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn gone(asked: u64, now: u64) -> Value {
    status(
        410,
        "Expired",
        &format!("too old resource version: {asked} ({now})"),
    )
}

fn watch(fake: Fake, kind: usize, ns: Option<&str>, q: &HashMap<String, String>) -> Response {
    let labels = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .unwrap_or_default();
    let fields = Selector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .unwrap_or_default();
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(fake.opts.max_watch)
        .min(fake.opts.max_watch);
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let ns = ns.map(str::to_string);
    let (mut tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let matches = move |c_kind: usize, v: &Value| -> bool {
        c_kind == kind
            && ns.as_deref().is_none_or(|n| key_of(v).0 == n)
            && labels.matches_labels(v)
            && fields.matches_fields(v)
    };
    tokio::spawn(async move {
        let (mut sub, replay, too_old, now) = {
            let st = fake.st.lock();
            let sub = fake.tx.subscribe();
            match from {
                Some(rv) if rv < st.compacted => (sub, Vec::new(), Some(rv), st.rv),
                Some(rv) => {
                    let replay: Vec<_> = st
                        .log
                        .iter()
                        .filter(|c| c.rv > rv && matches(c.kind, &c.obj))
                        .map(|c| (c.typ, c.obj.clone(), c.rv))
                        .collect();
                    (sub, replay, None, rv)
                }
                // No resourceVersion: the current objects as ADDED, then changes.
                None => {
                    let replay: Vec<_> = st
                        .objects
                        .iter()
                        .filter(|((k, _, _), v)| matches(*k, v))
                        .map(|(_, v)| ("ADDED", v.clone(), st.rv))
                        .collect();
                    (sub, replay, None, st.rv)
                }
            }
        };
        if let Some(asked) = too_old {
            let _ = tx.send(Ok(line("ERROR", &gone(asked, now)))).await;
            return;
        }
        let mut last = now;
        for (typ, obj, rv) in replay {
            last = last.max(rv);
            if tx.send(Ok(line(typ, &obj))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(fake.opts.bookmark_interval);
        tick.tick().await;
        let k = &KINDS[kind];
        let bookmark = |rv: u64| json!({"kind": k.kind, "apiVersion": k.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
        loop {
            let out = tokio::select! {
                m = sub.recv() => match m {
                    Ok(Msg::Change(c)) if c.rv > last && matches(c.kind, &c.obj) => { last = c.rv; line(c.typ, &c.obj) }
                    Ok(Msg::Change(c)) => { last = last.max(c.rv); continue }
                    Ok(Msg::Bookmark) if bookmarks => line("BOOKMARK", &bookmark(fake.st.lock().rv.max(last))),
                    Ok(Msg::Bookmark) => continue,
                    Ok(Msg::Expire) | Err(RecvError::Lagged(_)) => {
                        let now = fake.st.lock().rv;
                        let _ = tx.send(Ok(line("ERROR", &gone(last, now)))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if !bookmarks { continue }
                    line("BOOKMARK", &bookmark(last))
                }
                _ = tokio::time::sleep_until(deadline) => return,
            };
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(Body::from_stream(rx))
        .unwrap_or_default()
}

fn knobs(fake: &Fake, knob: &str, q: &HashMap<String, String>) -> Response {
    match knob {
        "compact" => {
            fake.compact();
            respond(200, &json!({"compacted": fake.st.lock().compacted}))
        }
        "bookmark" => {
            let _ = fake.tx.send(Msg::Bookmark);
            respond(200, &json!({}))
        }
        "fail" => {
            let count = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
            let code = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(503);
            fake.st.lock().fail = (count, code);
            respond(200, &json!({"count": count, "code": code}))
        }
        "requests" => {
            let st = fake.st.lock();
            let text = st.requests.join("\n");
            Response::builder()
                .status(200)
                .body(Body::from(text))
                .unwrap_or_default()
        }
        _ => not_found(),
    }
}

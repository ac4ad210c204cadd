//! The web UI: static assets compiled into the binary and served under
//! `ui_config.content_path` (default `/ui/`), and `GET /`, which redirects there as Consul's
//! agent does (or says the UI is disabled).
//!
//! - `{content_path}assets/{build}/{file}`: the stylesheet, ES modules and icon. `{build}` is a
//!   digest of all assets, so these answers are `immutable` for a year: a new binary with
//!   different assets has a different `{build}`, and an old one answers 404.
//! - Every other path under `{content_path}` answers `index.html` (history routing: a deep
//!   link such as `/ui/dc1/services/web` survives a reload), `no-cache` with an `ETag`, so a
//!   browser revalidates it and gets `304 Not Modified` while the binary is unchanged.
//!
//! Assets are gzip-compressed once at start-up and sent compressed when the client accepts
//! it. The page's settings (content path, asset URL, datacenter) are written into a `<meta>`
//! tag of `index.html`, so the page needs no inline script and its CSP can forbid them.

use crate::config::ServerConfig;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;

/// The UI's files, relative to `registry-server/ui/`, with their content types.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/dom.js"),
    ),
    (
        "views/services.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/services.js"),
    ),
    (
        "views/nodes.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/nodes.js"),
    ),
    (
        "views/kv.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/kv.js"),
    ),
    (
        "views/sessions.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/sessions.js"),
    ),
    (
        "views/members.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/members.js"),
    ),
    (
        "views/acl.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/views/acl.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../ui/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("../../ui/index.html");

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file ready to send: identity and gzip bodies, each with its `ETag`.
#[derive(Debug)]
struct Asset {
    content_type: &'static str,
    plain: bytes::Bytes,
    gzip: bytes::Bytes,
    etag: String,
}

impl Asset {
    fn new(content_type: &'static str, body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex(&digest[..12]));
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail; if it somehow did, only the identity body is served.
        let gzip = enc
            .write_all(&body)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        Asset {
            content_type,
            plain: body.into(),
            gzip: gzip.into(),
            etag,
        }
    }

    /// The response to a GET, honouring `If-None-Match` and `Accept-Encoding`.
    fn respond(&self, req: &HeaderMap, cache: &'static str) -> Response {
        let gzip = !self.gzip.is_empty() && accepts_gzip(req);
        let etag = if gzip {
            format!("{}-gz\"", self.etag.trim_end_matches('"'))
        } else {
            self.etag.clone()
        };
        let matched = req
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
            });
        let mut resp = if matched {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let body = if gzip { &self.gzip } else { &self.plain };
            let mut r = Body::from(body.clone()).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            if gzip {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The UI of one agent: `index.html` rendered for its settings, and the assets.
#[derive(Debug)]
struct Ui {
    /// `ui_config.content_path`.
    content_path: String,
    /// `{content_path}assets/{build}/`.
    assets_path: String,
    index: Asset,
    files: Vec<(&'static str, Asset)>,
}

impl Ui {
    fn new(content_path: &str, datacenter: &str) -> Self {
        let mut h = Sha256::new();
        for (name, _, body) in FILES {
            h.update(name.as_bytes());
            h.update((body.len() as u64).to_le_bytes());
            h.update(body);
        }
        let build = hex(&h.finalize()[..6]);
        let assets_path = format!("{content_path}assets/{build}/");
        let index = INDEX
            .replace("{{ASSETS}}", &escape_attr(&assets_path))
            .replace("{{CONTENT_PATH}}", &escape_attr(content_path))
            .replace("{{DATACENTER}}", &escape_attr(datacenter));
        Ui {
            content_path: content_path.to_string(),
            assets_path,
            index: Asset::new("text/html; charset=utf-8", index.into_bytes()),
            files: FILES
                .iter()
                .map(|(name, ct, body)| (*name, Asset::new(ct, body.to_vec())))
                .collect(),
        }
    }

    fn page(&self, req: &HeaderMap) -> Response {
        let mut resp = self.index.respond(req, REVALIDATE);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        resp
    }

    /// A path under the content path: an asset of this build, else the page.
    fn serve(&self, path: &str, req: &HeaderMap) -> Response {
        if let Some(file) = path.strip_prefix(&self.assets_path) {
            return match self.files.iter().find(|(n, _)| *n == file) {
                Some((_, a)) => a.respond(req, IMMUTABLE),
                None => (StatusCode::NOT_FOUND, "no such UI asset").into_response(),
            };
        }
        let rel = path.strip_prefix(&self.content_path).unwrap_or(path);
        if rel.starts_with("assets/") || rel.ends_with(".js") || rel.ends_with(".css") {
            // An asset of another build (a page loaded before an upgrade) or a typo: a 404,
            // never the page with the wrong content type.
            return (StatusCode::NOT_FOUND, "no such UI asset").into_response();
        }
        self.page(req)
    }
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Routes for `GET /`, `/robots.txt` and, when the UI is enabled, its content path.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(cfg: &ServerConfig) -> Router<S> {
    let content_path = cfg.ui.content_path.clone();
    if !cfg.ui.enabled {
        return Router::new().route(
            "/",
            get(|| async {
                "registry agent: UI disabled. To enable, set ui_config.enabled=true in the \
                 agent configuration and restart."
            }),
        );
    }
    let ui = Arc::new(Ui::new(&content_path, &cfg.datacenter));
    let bare = content_path.trim_end_matches('/').to_string();
    let to = content_path.clone();
    let root = {
        let to = to.clone();
        move || async move { redirect(&to) }
    };
    let index = {
        let ui = ui.clone();
        move |h: HeaderMap| async move { ui.page(&h) }
    };
    let any = {
        let ui = ui.clone();
        move |axum::extract::Path(rest): axum::extract::Path<String>, h: HeaderMap| async move {
            ui.serve(&format!("{}{rest}", ui.content_path), &h)
        }
    };
    Router::new()
        .route("/", get(root))
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /\n" }),
        )
        .route(&bare, get(move || async move { redirect(&to) }))
        .route(&content_path, get(index))
        .route(&format!("{content_path}{{*rest}}"), get(any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(ui: &Ui, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        ui.serve(path, &h)
    }

    #[test]
    fn assets_are_immutable_and_revalidate_with_their_etag() {
        let ui = Ui::new("/ui/", "dc1");
        let path = format!("{}app.js", ui.assets_path);
        let r = get(&ui, &path, &[]);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get(&ui, &path, &[("if-none-match", &etag)]);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let gz = get(&ui, &path, &[("accept-encoding", "br, gzip")]);
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        assert_ne!(gz.headers()[header::ETAG].to_str().unwrap(), etag);
        let refused = get(&ui, &path, &[("accept-encoding", "gzip;q=0")]);
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn deep_links_get_the_page_and_unknown_assets_a_404() {
        let ui = Ui::new("/console/", "eu-west");
        let r = get(&ui, "/console/eu-west/services/web", &[]);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], REVALIDATE);
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let html = String::from_utf8(ui.index.plain.to_vec()).unwrap();
        assert!(html.contains(&ui.assets_path), "asset URLs rendered");
        assert!(html.contains("eu-west"));
        assert!(!html.contains("{{"), "every placeholder replaced");
        let stale = get(&ui, "/console/assets/000000000000/app.js", &[]);
        assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn content_paths_are_normalised_as_consul_does() {
        use crate::config::UiConfig;
        assert_eq!(UiConfig::normalize_path(""), "/ui/");
        assert_eq!(UiConfig::normalize_path("console"), "/console/");
        assert_eq!(UiConfig::normalize_path("/a/b//"), "/a/b/");
        assert_eq!(UiConfig::normalize_path("/"), "/ui/");
    }
}

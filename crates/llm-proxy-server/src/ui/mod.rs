//! The built-in dashboard (`GET /ui`, docs/dashboard.md): one HTML page, its script, style
//! sheet and icon, embedded in the binary and served with a Content-Security-Policy that
//! allows only the proxy's own origin. The page holds no data: its script reads the usage
//! endpoints and [`status`] with the client's key, so the same rules guard the data. The
//! static files themselves are served without a client key in multi-user mode (a browser
//! cannot attach one to a page load or a `<script>` tag; see [`is_public_asset`]); without
//! client keys they are, like usage, only served to the proxy's own host.

pub mod status;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, header};

use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;
use crate::usage::api::refuse_remote_without_keys;

/// Nothing but the proxy's own origin: scripts, styles, images and fetches from `self`, no
/// inline code, no frames, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/ui/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/dashboard.js"),
    },
    Asset {
        path: "/ui/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/dashboard.css"),
    },
    Asset {
        path: "/ui/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// Whether `path` is one of the dashboard's static files, which hold no data and which the
/// client-key check lets through (a browser sends no `Authorization` header with them).
pub fn is_public_asset(path: &str) -> bool {
    path == "/ui/" || ASSETS.iter().any(|a| a.path == path)
}

/// `GET /ui`, `/ui/` and the files under it.
pub async fn asset(State(state): State<AppState>, req: Request) -> Response {
    if let Err(refusal) = refuse_remote_without_keys(&state, &req, "the dashboard") {
        return refusal.into_response_for(WireFormat::OpenAi);
    }
    let path = match req.uri().path() {
        "/ui/" => "/ui",
        other => other,
    };
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ProxyError::NotFound(format!("GET {path}")).into_response_for(WireFormat::OpenAi);
    };
    let mut resp = Response::new(Body::from(asset.body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small, and changes with the binary: revalidated on every load.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_embedded_files_are_public() {
        for path in ["/ui", "/ui/", "/ui/dashboard.js", "/ui/favicon.svg"] {
            assert!(is_public_asset(path), "{path}");
        }
        for path in [
            "/ui/x",
            "/uix",
            "/v1/status",
            "/v1/usage/stats",
            "/ui/../v1/status",
        ] {
            assert!(!is_public_asset(path), "{path}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for needed in ["/ui/dashboard.js", "/ui/dashboard.css", "/ui/favicon.svg"] {
            assert!(page.contains(needed), "{needed}");
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("<script>"), "no inline script (CSP)");
        assert!(!page.contains("style="), "no inline style (CSP)");
        let script = std::str::from_utf8(ASSETS[1].body).unwrap();
        assert!(!script.contains("innerHTML"), "DOM built from text nodes");
        assert!(!script.contains("https://"), "no external fetches");
    }
}

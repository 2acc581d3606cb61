//! The web page: sign in, the environments a user may reach and the kubeconfig download, and the
//! admin's screens. Plain HTML, CSS and JavaScript from `web/`, embedded in the binary (nothing is
//! loaded from anywhere else), served at `/` with strict security headers.
//!
//! The page lives outside `/api`, so it is not part of the REST route table or of
//! `schemas/openapi.yaml`: [`ROUTES`] lists what it serves. Every other non-`/api` `GET` gets the
//! page too (a bookmark of any path lands on it); unknown `/api/*` paths keep the JSON 404.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::ApiError;

/// The page's routes (outside `/api`, so outside the OpenAPI document).
pub const ROUTES: &[&str] = &["/", "/assets/{file}"];

/// Scripts, styles, images and requests from this origin only; no inline script or style, no
/// framing, no plugins, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: u64,
}

/// FNV-1a: a content hash for the `ETag`, computed at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name));
        Asset { name: $name, content_type: $type, body: BODY, etag: fnv1a(BODY) }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Adds the page's routes to the REST router; its fallback serves the page for other non-`/api`
/// `GET`s.
pub fn install(router: Router) -> Router {
    router.route("/", get(index)).route("/assets/{file}", get(asset)).fallback(fallback)
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a, &headers),
        None => no_such_asset(),
    }
}

fn no_such_asset() -> Response {
    with_security_headers(
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such asset")
            .into_response(),
    )
}

async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound("no such route".into()).into_response();
    }
    if path.starts_with("/assets/") {
        return no_such_asset();
    }
    if method == Method::GET || method == Method::HEAD {
        return serve(&INDEX, &headers);
    }
    ApiError::MethodNotAllowed("method not allowed on this route".into()).into_response()
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time (a 304 is cheap): an upgrade never leaves an old script running
    // against a newer API.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        install(Router::new().route("/api/known", get(|| async { "api" })))
    }

    async fn call(method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(r: Response) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn page_routes_stay_outside_the_api() {
        assert!(ROUTES.iter().all(|r| !r.starts_with("/api")));
        let api: Vec<_> = crate::http::routes().into_iter().map(|(p, _, _)| p).collect();
        assert!(ROUTES.iter().all(|r| !api.contains(r)));
    }

    #[tokio::test]
    async fn the_page_with_its_security_headers() {
        let r = call("GET", "/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-cache");
        let body = text(r).await;
        assert!(body.contains("/assets/app.js"));
        // No inline script, nothing from elsewhere.
        assert!(!body.contains("<script>") && !body.contains("http://") && !body.contains("https://"));
    }

    #[tokio::test]
    async fn assets_have_their_types_and_revalidate() {
        for (path, ty) in [
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let r = call("GET", path, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-type"], ty);
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            let again = call("GET", path, &[("if-none-match", &etag)]).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(again.headers()["x-content-type-options"], "nosniff");
        }
        let r = call("GET", "/assets/nope.js", &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        for path in ["/assets/../Cargo.toml", "/assets/%2e%2e/Cargo.toml", "/assets/a/b.js"] {
            let r = call("GET", path, &[]).await;
            let body = text(r).await;
            assert!(!body.contains("[package]"), "{path}: nothing outside the embedded files");
        }
        assert_eq!(call("GET", "/assets/a/b.js", &[]).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn other_paths_get_the_page_but_unknown_api_paths_stay_json() {
        let r = call("GET", "/tokens", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let r = call("GET", "/api/nope", &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert!(text(r).await.contains("no such route"));
        assert_eq!(call("GET", "/api", &[]).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(call("GET", "/api/known", &[]).await.status(), StatusCode::OK);
        let r = call("POST", "/elsewhere", &[]).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = call("HEAD", "/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere_nor_written_as_html() {
        let needles = [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "url(",
            "@import",
            "eval(",
            "new Function",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "<script>",
            "style=\"",
        ];
        for a in ASSETS.iter().chain([&INDEX]) {
            let text = std::str::from_utf8(a.body).unwrap();
            for needle in needles {
                assert!(!text.contains(needle), "{} contains {needle:?}", a.name);
            }
        }
        // Every request the script makes goes to this origin.
        let script = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert_eq!(script.matches("fetch(").count(), 1, "one place talks to the server");
        assert!(script.contains("fetch(path,"));
    }
}

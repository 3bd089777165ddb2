//! The owner's dashboard: the single-page app built from `web/` (React,
//! `npm run build` → `web/dist`), embedded in the binary at compile time so
//! that `tributary serve` needs no Node and no files beside it.
//!
//! Any GET outside `/api/` that names no embedded file is answered with
//! `index.html`: the app routes on the client (`/explore?m=hr…`), and a
//! reload or a shared link must land on the app. Hashed assets
//! (`/assets/*`) are cached for a year; `index.html` is revalidated on every
//! load so that a new build is picked up at once.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The built dashboard (`web/dist`, committed; docs/dashboard.md says how it
/// is kept equal to a fresh build of `web/`).
#[derive(rust_embed::Embed)]
#[folder = "../../web/dist"]
struct Dist;

/// What the page may load: only this origin; inline styles because the
/// chart library sets element styles from script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// The fallback of the router: the dashboard's files for GET and HEAD, the
/// API's problem+json 404 under `/api/`.
pub(crate) async fn serve(request: Request) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") || path == "/api" {
        return ApiError::NotFound("no such endpoint (see /api/openapi.json)".into())
            .into_response();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::MethodNotAllowed.into_response();
    }
    let wanted = path.trim_start_matches('/');
    if let Some(file) = Dist::get(wanted).filter(|_| !wanted.is_empty()) {
        let cache = if wanted.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return file_response(wanted, file, cache);
    }
    // A missing asset is a 404, not the app: a browser would try to run
    // HTML as a script.
    if wanted.starts_with("assets/") || wanted.rsplit('/').next().is_some_and(|s| s.contains('.')) {
        return ApiError::NotFound(format!("no file /{wanted}")).into_response();
    }
    match Dist::get("index.html") {
        Some(index) => file_response("index.html", index, "no-cache"),
        None => (
            StatusCode::NOT_FOUND,
            "this build has no dashboard (web/dist was empty when it was compiled)",
        )
            .into_response(),
    }
}

fn file_response(path: &str, file: rust_embed::EmbeddedFile, cache: &'static str) -> Response {
    let mime = file.metadata.mimetype().to_owned();
    // Embedded in a release build: served from the binary without a copy.
    let body = match file.data {
        std::borrow::Cow::Borrowed(bytes) => axum::body::Bytes::from_static(bytes),
        std::borrow::Cow::Owned(bytes) => axum::body::Bytes::from(bytes),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

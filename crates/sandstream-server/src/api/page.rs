//! The built web page (`web/dist`): `/`, `/index.html` and the files the build wrote.
//! **The page has no client-side routes, so every other path is a JSON 404 in the API's
//! error shape**: a probe or scraper that asks `/metrics/x`, or any path this server
//! does not have, must not get a 200 with the page's HTML and take it for an answer.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;

use super::AppState;
use crate::error::AppError;

fn not_found(method: &Method, path: &str) -> Response {
    AppError::NotFound(format!("no route {method} {path}")).into_response()
}

/// Serves `req` from the built page, or a JSON 404.
pub(crate) async fn serve(state: &AppState, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if method != Method::GET && method != Method::HEAD {
        return not_found(&method, &path);
    }
    let Some(dir) = state.cfg.web_dir.as_ref().filter(|d| d.join("index.html").is_file()) else {
        if path == "/" || path == "/index.html" {
            return Html(
                "<h1>Sandstream</h1><p>The web page is not built. Run <code>scripts/build-web.sh</code> \
                 (or <code>scripts/start.sh</code>, which builds it) and restart.</p>",
            )
            .into_response();
        }
        return not_found(&method, &path);
    };
    // ServeDir answers `/` with index.html, refuses paths that leave the directory, and
    // says 404 for a file the build did not write.
    match tower_http::services::ServeDir::new(dir).oneshot(req).await {
        Ok(r) if r.status() == StatusCode::NOT_FOUND => not_found(&method, &path),
        Ok(r) => r.into_response(),
        Err(e) => AppError::internal(e).into_response(),
    }
}

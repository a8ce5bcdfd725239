//! Cross-origin requests from browsers: refused (no CORS headers at all)
//! unless the request's `Origin` is one of [`HttpOptions::cors_origins`](super::HttpOptions::cors_origins),
//! compared exactly. A listed origin gets its preflight answered and its
//! answers marked readable, the session header included.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How long a browser may cache a preflight answer, in seconds.
pub const CORS_MAX_AGE_SECONDS: u32 = 600;

/// Checks a `--cors-origin` value: `http://` or `https://`, a host, an
/// optional port, nothing else.
pub fn validate_origin(origin: &str) -> Result<(), String> {
    let rest = origin.strip_prefix("https://").or(origin.strip_prefix("http://"));
    let ok = rest.is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#', ' ', '*']));
    match ok {
        true => Ok(()),
        false => Err(format!("CORS origin {origin:?}: expected scheme://host[:port], e.g. https://app.example")),
    }
}

/// The middleware.
pub(super) async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed =
        origin.filter(|origin| state.cors_origins.iter().any(|listed| listed.as_bytes() == origin.as_bytes()));
    let Some(origin) = allowed else {
        return next.run(request).await;
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, PUT, POST, DELETE"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(CORS_MAX_AGE_SECONDS));
    } else {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(super::SESSION_HEADER));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in ["https://app.example", "http://127.0.0.1:3000"] {
            assert!(validate_origin(good).is_ok(), "{good}");
        }
        for bad in ["app.example", "https://", "https://app.example/", "https://*.example", "ftp://x", "*"] {
            assert!(validate_origin(bad).is_err(), "{bad}");
        }
    }
}

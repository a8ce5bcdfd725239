//! The request-rate limit: one token bucket for all of a node's clients
//! (behind a proxy or on loopback every client has the same address, so a
//! per-address limit would not protect the node). Requests beyond it are
//! answered 429 with `retry-after`; `/health` and `/metrics` are never
//! limited, so monitoring sees an overloaded node.

use super::{error, AppState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Mutex;
use std::time::Instant;

/// The `chorus node` default for `--max-requests-per-second`.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 20_000;

/// Tokens are counted in millionths, so that refilling needs no floats.
const MICRO: u64 = 1_000_000;

/// A token bucket of `per_second` tokens, refilled continuously; a full
/// bucket allows a burst of one second's worth.
#[derive(Debug)]
pub(super) struct RateLimiter {
    per_second: u64,
    /// Tokens (in millionths) and when they were counted.
    bucket: Mutex<(u64, Instant)>,
}

impl RateLimiter {
    pub(super) fn new(per_second: u32, now: Instant) -> RateLimiter {
        let per_second = u64::from(per_second.max(1));
        RateLimiter { per_second, bucket: Mutex::new((per_second * MICRO, now)) }
    }

    /// Takes a token if one is left at `now`.
    pub(super) fn try_acquire(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, counted) = *bucket;
        let elapsed_micros = u64::try_from(now.saturating_duration_since(counted).as_micros()).unwrap_or(u64::MAX);
        let refilled =
            tokens.saturating_add(elapsed_micros.saturating_mul(self.per_second)).min(self.per_second * MICRO);
        let allowed = refilled >= MICRO;
        *bucket = (if allowed { refilled - MICRO } else { refilled }, now);
        allowed
    }
}

/// The middleware: 429 once the bucket is empty.
pub(super) async fn limit_rate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let exempt = matches!(request.uri().path(), "/health" | "/metrics");
    let allowed = exempt || state.rate_limiter.as_ref().is_none_or(|limiter| limiter.try_acquire(Instant::now()));
    if allowed {
        return next.run(request).await;
    }
    let mut response =
        error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "the node's request-rate limit is reached; retry shortly");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_seconds_burst_then_refills_with_time() {
        let start = Instant::now();
        let limiter = RateLimiter::new(10, start);
        assert_eq!((0..15).filter(|_| limiter.try_acquire(start)).count(), 10);
        assert!(!limiter.try_acquire(start + Duration::from_millis(50)));
        assert!(limiter.try_acquire(start + Duration::from_millis(160)));
        assert!(!limiter.try_acquire(start + Duration::from_millis(160)));
        // A long pause refills the bucket only up to one second's worth.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..15).filter(|_| limiter.try_acquire(later)).count(), 10);
    }
}

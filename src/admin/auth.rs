//! The admin token: required by every state-changing endpoint, compared in
//! constant time, never logged.

use crate::types::Secret;
use subtle::ConstantTimeEq;

/// Whether a presented token matches the configured one. With no token
/// configured, nothing matches: mutations are off.
pub fn token_ok(configured: &Secret, presented: Option<&str>) -> bool {
    match presented {
        Some(p) if !configured.is_empty() => {
            bool::from(configured.expose().as_bytes().ct_eq(p.as_bytes()))
        }
        _ => false,
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        let s = Secret::new("s3cret");
        assert!(token_ok(&s, Some("s3cret")));
        assert!(!token_ok(&s, Some("s3cre")));
        assert!(!token_ok(&s, Some("s3cret ")));
        assert!(!token_ok(&s, None));
        assert!(!token_ok(&Secret::default(), Some("")));
    }
}

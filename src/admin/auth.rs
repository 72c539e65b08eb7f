//! The admin token: required by every state-changing endpoint, compared in
//! constant time, never logged.

use super::AppState;
use crate::types::Secret;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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

/// Proof that a request carried the admin token, with who sent it (the
/// `X-Ferry-By` header, for the operations record). Every state-changing
/// API handler takes it as its first argument, so the token is checked
/// before the body is read: without it, a malformed body is a 401 like any
/// other.
pub struct Authorized {
    /// The caller, as the `X-Ferry-By` header names them.
    pub by: String,
}

/// The header naming the caller of a state-changing request.
pub const BY_HEADER: &str = "x-ferry-by";

impl FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        if token_ok(&st.ctx.settings.admin_token, bearer(&parts.headers)) {
            let by = parts
                .headers
                .get(BY_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty())
                .unwrap_or("an admin API caller (no X-Ferry-By given)");
            Ok(Authorized { by: by.to_string() })
        } else {
            Err(unauthorized())
        }
    }
}

fn unauthorized() -> Response {
    let why = "this endpoint changes state: send Authorization: Bearer <FERRY_ADMIN_TOKEN>";
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": why })),
    )
        .into_response()
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

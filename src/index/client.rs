//! The HTTP client for OpenSearch/Elasticsearch: one place that sends
//! requests, applies timeouts and credentials, and turns failures into
//! [`IndexError`]s that keep the server's status, error type and reason.

use super::flavor::Flavor;
use crate::retry::Transient;
use crate::types::{DocId, IndexName, Secret};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use thiserror::Error;

/// Every byte but ASCII letters, digits, `-` and `_` is encoded, so an id
/// such as `a/../b?c#d` stays one path segment and reaches that document.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Percent-encodes one path segment (document id, index or alias name).
pub fn segment(raw: &str) -> String {
    utf8_percent_encode(raw, SEGMENT).to_string()
}

/// A failed index request.
#[derive(Debug, Error)]
pub enum IndexError {
    /// The server could not be reached, or did not answer in time.
    #[error("index server unreachable during {op}: {detail}")]
    Transport { op: String, detail: String },
    /// The server answered with an error status.
    #[error("{op} failed with HTTP {status} {kind}: {reason}")]
    Status {
        op: String,
        status: u16,
        kind: String,
        reason: String,
    },
    /// The server answered something ferry cannot read.
    #[error("{op}: unexpected response: {detail}")]
    Decode { op: String, detail: String },
    /// The engine or its version is one ferry does not support.
    #[error("{base}: {problem}")]
    Engine {
        base: String,
        problem: super::flavor::FlavorError,
    },
}

impl IndexError {
    /// HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            IndexError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error type (`version_conflict_engine_exception`, ...).
    pub fn kind(&self) -> Option<&str> {
        match self {
            IndexError::Status { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// True for a missing index or alias (as opposed to a missing document).
    pub fn is_missing_index(&self) -> bool {
        self.status() == Some(404)
            && matches!(
                self.kind(),
                Some("index_not_found_exception") | Some("aliases_not_found_exception")
            )
    }

    /// The status and reason without the request line: for failure records,
    /// whose messages must group by cause and never name a document.
    pub fn cause(&self) -> String {
        match self {
            IndexError::Transport { detail, .. } => format!("index server unreachable: {detail}"),
            IndexError::Status {
                status,
                kind,
                reason,
                ..
            } => format!("HTTP {status} {kind}: {reason}"),
            IndexError::Decode { detail, .. } => format!("unexpected response: {detail}"),
            IndexError::Engine { problem, .. } => problem.to_string(),
        }
    }
}

impl Transient for IndexError {
    fn is_transient(&self) -> bool {
        match self {
            IndexError::Transport { .. } => true,
            IndexError::Status { status, .. } => *status == 429 || *status >= 500,
            IndexError::Decode { .. } | IndexError::Engine { .. } => false,
        }
    }
}

/// Where a write goes: an alias resolved by the server at that instant
/// (written with `require_alias=true`), or a concrete index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Resolve this alias at write time; skip if it does not exist.
    Alias(IndexName),
    /// This exact index.
    Index(IndexName),
}

impl Target {
    /// The name used in the request path.
    pub fn name(&self) -> &IndexName {
        match self {
            Target::Alias(n) | Target::Index(n) => n,
        }
    }
    /// Whether requests must carry `require_alias=true`.
    pub fn require_alias(&self) -> bool {
        matches!(self, Target::Alias(_))
    }
}

/// A response: status and parsed JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Parsed body.
    pub body: Value,
}

/// Client for one index server.
#[derive(Clone)]
pub struct IndexClient {
    http: reqwest::Client,
    base: String,
    user: Option<String>,
    password: Secret,
    /// The engine, read from `GET /` on first need (shared by clones).
    flavor: std::sync::Arc<tokio::sync::OnceCell<Flavor>>,
}

impl std::fmt::Debug for IndexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexClient")
            .field("base", &self.base)
            .finish()
    }
}

impl IndexClient {
    /// A client for `base` (e.g. `http://127.0.0.1:9200`); every request
    /// times out after `timeout`.
    pub fn new(
        base: &str,
        user: Option<String>,
        password: Secret,
        timeout: Duration,
    ) -> Result<Self, IndexError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| IndexError::Transport {
                op: "building the HTTP client".into(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            user,
            password,
            flavor: Default::default(),
        })
    }

    /// The engine and version answering, read once from `GET /`; an
    /// engine ferry does not support is an error that says which.
    pub async fn flavor(&self) -> Result<Flavor, IndexError> {
        self.flavor
            .get_or_try_init(|| async {
                let root = self.call(Method::GET, "/", None).await?;
                Flavor::from_root(&root).map_err(|problem| IndexError::Engine {
                    base: self.base.clone(),
                    problem,
                })
            })
            .await
            .copied()
    }

    /// A client from the settings.
    pub fn from_settings(s: &crate::config::Settings) -> Result<Self, IndexError> {
        Self::new(
            &s.index_url,
            s.index_username.clone(),
            s.index_password.clone(),
            s.index_timeout,
        )
    }

    /// A client for the target cluster, if the settings name one.
    pub fn target_from_settings(s: &crate::config::Settings) -> Result<Option<Self>, IndexError> {
        s.target_index_url
            .as_deref()
            .map(|url| {
                Self::new(
                    url,
                    s.target_index_username.clone(),
                    s.target_index_password.clone(),
                    s.target_index_timeout,
                )
            })
            .transpose()
    }

    /// The base URL without any credentials in it, for readers and pages.
    pub fn public_base(&self) -> String {
        match reqwest::Url::parse(&self.base) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.as_str().trim_end_matches('/').to_string()
            }
            Err(_) => self.base.clone(),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; any status is returned, transport failures are errors.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Reply, IndexError> {
        let op = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(user) = &self.user {
            req = req.basic_auth(user, Some(self.password.expose()));
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::NdJson(s)) => req.header("content-type", "application/x-ndjson").body(s),
            None => req,
        };
        let resp = req.send().await.map_err(|e| IndexError::Transport {
            op: op.clone(),
            detail: transport_detail(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| IndexError::Transport {
            op: op.clone(),
            detail: transport_detail(&e),
        })?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply { status, body })
    }

    /// Sends a request and turns any non-2xx status into an error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, IndexError> {
        let op = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let reply = self.send(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply.body)
        } else {
            Err(status_error(&op, reply.status, &reply.body))
        }
    }

    /// Creates an index from a mapping/settings body.
    pub async fn create_index(&self, index: &IndexName, body: &Value) -> Result<(), IndexError> {
        self.call(
            Method::PUT,
            &format!("/{}", segment(index.as_str())),
            Some(Body::Json(body.clone())),
        )
        .await
        .map(|_| ())
    }

    /// Deletes an index (not an alias).
    pub async fn delete_index(&self, index: &IndexName) -> Result<(), IndexError> {
        self.call(
            Method::DELETE,
            &format!("/{}", segment(index.as_str())),
            None,
        )
        .await
        .map(|_| ())
    }

    /// True when the index (or alias) exists.
    pub async fn exists(&self, index: &IndexName) -> Result<bool, IndexError> {
        let reply = self
            .send(Method::HEAD, &format!("/{}", segment(index.as_str())), None)
            .await?;
        match reply.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(
                "HEAD index",
                StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
                &reply.body,
            )),
        }
    }

    /// Makes recent writes visible to search (tests, verify, counts).
    pub async fn refresh(&self, index: &IndexName) -> Result<(), IndexError> {
        self.call(
            Method::POST,
            &format!("/{}/_refresh", segment(index.as_str())),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Adds fields to an index's mapping.
    pub async fn put_mapping(&self, index: &IndexName, mapping: &Value) -> Result<(), IndexError> {
        self.call(
            Method::PUT,
            &format!("/{}/_mapping", segment(index.as_str())),
            Some(Body::Json(mapping.clone())),
        )
        .await
        .map(|_| ())
    }

    /// True when the server answers at all (readiness).
    pub async fn ping(&self) -> Result<(), IndexError> {
        self.call(Method::GET, "/", None).await.map(|_| ())
    }
}

/// A request body.
pub enum Body {
    /// A JSON document.
    Json(Value),
    /// Newline-delimited JSON (bulk).
    NdJson(String),
}

fn transport_detail(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or reset".into()
    } else {
        // reqwest's Display can carry the URL; keep only the kind of failure.
        let mut s = e.to_string();
        if let Some(url) = e.url() {
            s = s.replace(url.as_str(), "<url>");
        }
        s
    }
}

/// Builds an error from an error reply, keeping status, type and reason.
pub fn status_error(op: &str, status: StatusCode, body: &Value) -> IndexError {
    let (kind, reason) = error_kind_reason(body);
    IndexError::Status {
        op: op.to_string(),
        status: status.as_u16(),
        kind,
        reason,
    }
}

/// Extracts `error.type` and `error.reason` from a reply (or a bulk item).
pub fn error_kind_reason(body: &Value) -> (String, String) {
    match body.get("error") {
        Some(Value::Object(e)) => {
            let root = e
                .get("root_cause")
                .and_then(|r| r.get(0))
                .filter(|_| e.get("type").is_none());
            let src = root.and_then(Value::as_object).unwrap_or(e);
            (
                src.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                src.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        }
        Some(Value::String(s)) => ("error".into(), s.clone()),
        _ => match body.get("result").and_then(Value::as_str) {
            Some(r) => (r.to_string(), String::new()),
            None => ("error".into(), body.to_string().chars().take(200).collect()),
        },
    }
}

/// Path of one document: `/<index>/_doc/<id>` with both parts encoded.
pub fn doc_path(index: &IndexName, endpoint: &str, id: &DocId) -> String {
    format!(
        "/{}/{endpoint}/{}",
        segment(index.as_str()),
        segment(id.as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_segment() {
        let id = DocId::parse("a/../b?c#d%e f").unwrap();
        let idx = IndexName::parse("Images_Current").unwrap();
        let p = doc_path(&idx, "_doc", &id);
        assert_eq!(p, "/Images_Current/_doc/a%2F%2E%2E%2Fb%3Fc%23d%25e%20f");
        assert_eq!(p.matches('/').count(), 3);
    }

    #[test]
    fn error_replies_keep_type_and_reason() {
        let body = serde_json::json!({"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"},"status":409});
        let e = status_error("PUT /i/_doc/x", StatusCode::CONFLICT, &body);
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.kind(), Some("version_conflict_engine_exception"));
        assert!(!e.is_transient());
        assert!(status_error("x", StatusCode::TOO_MANY_REQUESTS, &body).is_transient());
    }
}

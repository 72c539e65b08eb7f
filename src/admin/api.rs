//! The JSON API: the same operations as the CLI, answering with the same
//! serialized reports. Reads are open on the admin address; every mutation
//! needs `Authorization: Bearer <FERRY_ADMIN_TOKEN>`.

use super::auth::Authorized;
use super::AppState;
use crate::ops::audit::audited;
use crate::ops::lifecycle::Simple;
use crate::ops::{self, OpsError};
use crate::types::DocId;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The API routes, under `/api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/current", get(current))
        .route("/api/worker", get(worker))
        .route("/api/failures", get(failures))
        .route("/api/record", get(record))
        .route("/api/verify", get(verify))
        .route("/api/start", post(start))
        .route("/api/pause", post(|s, a| simple(s, a, Simple::Pause)))
        .route("/api/resume", post(|s, a| simple(s, a, Simple::Resume)))
        .route("/api/preview", post(|s, a| simple(s, a, Simple::Preview)))
        .route(
            "/api/unpreview",
            post(|s, a| simple(s, a, Simple::Unpreview)),
        )
        .route("/api/rollback", post(|s, a| simple(s, a, Simple::Rollback)))
        .route(
            "/api/retire-source",
            post(|s, a| simple(s, a, Simple::RetireSource)),
        )
        .route("/api/complete", post(complete))
        .route("/api/abandon", post(abandon))
        .route("/api/queue", post(queue))
        .route("/api/failures/retry", post(retry))
        .route("/api/throttle", get(throttle_get).post(throttle_set))
        .route("/api/compare", get(compare_get).post(compare_run))
        .route("/api/history", get(history))
}

/// An operation's error as an HTTP answer: refusals are 409 with the reason.
pub struct ApiError(pub OpsError);

impl<E: Into<OpsError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, key) = match &self.0 {
            OpsError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            OpsError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            _ => (StatusCode::BAD_GATEWAY, "error"),
        };
        let text = match &self.0 {
            OpsError::Refused(why) | OpsError::Invalid(why) => why.clone(),
            other => other.to_string(),
        };
        (status, Json(json!({ key: text }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// A mutation's JSON body, taken as `Result` by the handler so that a
/// malformed one is a 400 in the API's own error shape.
fn body<T>(b: Result<T, JsonRejection>) -> Result<T, ApiError> {
    b.map_err(|e| OpsError::Invalid(e.body_text()).into())
}

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

async fn status(State(st): State<AppState>) -> ApiResult {
    let broker = st.broker().await;
    ok(ops::status::status(&st.ctx, broker.as_deref()).await?)
}

/// Where readers find Current: cluster URL (no credentials), alias, index.
async fn current(State(st): State<AppState>) -> ApiResult {
    ok(ops::status::current(&st.ctx).await?)
}

/// This worker's own view: identity, scan lease, health, throttle.
async fn worker(State(st): State<AppState>) -> ApiResult {
    use std::sync::atomic::Ordering;
    ok(json!({
        "owner": st.lease.owner,
        "holds_scan_lease": st.lease.held(),
        "broker_connected": st.ctx.broker_up.load(Ordering::Relaxed),
        "degraded": st.ctx.health.is_degraded(),
        "throttle": st.ctx.pace.state(),
    }))
}

#[derive(Debug, Deserialize)]
struct FailuresQuery {
    #[serde(default)]
    historical: bool,
    message: Option<String>,
    page: Option<usize>,
}

async fn failures(State(st): State<AppState>, Query(q): Query<FailuresQuery>) -> ApiResult {
    let scope = ops::failures::scope(&st.ctx, q.historical).await?;
    match q.message {
        Some(m) => ok(ops::failures::list(&st.ctx, scope, Some(&m), q.page.unwrap_or(1)).await?),
        None => ok(ops::failures::overview(&st.ctx, scope).await?),
    }
}

#[derive(Debug, Deserialize)]
struct RecordQuery {
    id: String,
    #[serde(default)]
    historical: bool,
}

async fn record(State(st): State<AppState>, Query(q): Query<RecordQuery>) -> ApiResult {
    let id = DocId::parse(q.id)?;
    let scope = ops::failures::scope(&st.ctx, q.historical).await?;
    ok(ops::failures::show(&st.ctx, scope, &id).await?)
}

#[derive(Debug, Deserialize)]
struct VerifyQuery {
    sample: Option<usize>,
    #[serde(default)]
    all: bool,
}

async fn verify(State(st): State<AppState>, Query(q): Query<VerifyQuery>) -> ApiResult {
    let scope = ops::input::scope(q.all, q.sample);
    ok(ops::verify::verify(&st.ctx, scope).await?)
}

#[derive(Debug, Default, Deserialize)]
struct StartBody {
    mapping: Option<String>,
    /// A bulk-load profile for the new index.
    #[serde(default)]
    backfill: ops::backfill::Profile,
}

async fn start(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Option<Json<StartBody>>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?.map(|b| b.0).unwrap_or_default();
    let mapping = b.mapping.unwrap_or_else(|| st.ctx.settings.mapping.clone());
    let work = ops::lifecycle::start_with(&st.ctx, &mapping, &b.backfill);
    ok(audited(
        &st.ctx,
        &who.by,
        "start",
        format!("mapping {mapping}"),
        work,
    )
    .await?)
}

async fn simple(State(st): State<AppState>, who: Authorized, op: Simple) -> ApiResult {
    ok(ops::lifecycle::simple(&st.ctx, op, &who.by).await?)
}

#[derive(Debug, Default, Deserialize)]
struct CompleteBody {
    #[serde(default)]
    force: bool,
    verify_sample: Option<usize>,
    /// Who forces the switch, for the log line.
    by: Option<String>,
    /// Searches compared before the switch (refused while one is flagged).
    compare: Option<CompareBody>,
}

async fn complete(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Option<Json<CompleteBody>>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?.map(|b| b.0).unwrap_or_default();
    let by = b.by.unwrap_or(who.by);
    let detail = format!(
        "force {}, verify sample {}, {} search(es) compared",
        b.force,
        b.verify_sample
            .map_or("default".to_string(), |n| n.to_string()),
        b.compare.as_ref().map_or(0, |c| c.queries.len())
    );
    let compare = b.compare.map(CompareBody::spec).transpose()?;
    let gate = ops::input::gate(b.force, Some(by.clone()), b.verify_sample).with_compare(compare);
    let work = ops::lifecycle::complete(&st.ctx, gate);
    ok(audited(&st.ctx, &by, "complete", detail, work).await?)
}

#[derive(Debug, Default, Deserialize)]
struct AbandonBody {
    #[serde(default)]
    delete_index: bool,
}

async fn abandon(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Option<Json<AbandonBody>>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?.map(|b| b.0).unwrap_or_default();
    let detail = format!("delete index {}", b.delete_index);
    let work = ops::lifecycle::abandon(&st.ctx, b.delete_index);
    ok(audited(&st.ctx, &who.by, "abandon", detail, work).await?)
}

#[derive(Debug, Deserialize)]
struct IdsBody {
    #[serde(default)]
    ids: Vec<String>,
    message: Option<String>,
    /// `failures/retry`: every failure.
    #[serde(default)]
    all: bool,
    /// `queue`: every Current document this search query selects.
    query: Option<serde_json::Value>,
    /// `queue`: documents uploaded since (inclusive).
    since: Option<String>,
    /// `queue`: documents uploaded until (exclusive).
    until: Option<String>,
}

async fn queue(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Json<IdsBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body(b)?;
    let by_query = b.query.is_some() || b.since.is_some() || b.until.is_some();
    let selector = by_query
        .then(|| {
            let q = b.query.as_ref().map(|q| q.to_string());
            ops::input::selector(q.as_deref(), b.since.as_deref(), b.until.as_deref())
        })
        .transpose()?;
    let ids = if by_query {
        Vec::new()
    } else {
        ops::input::ids(&b.ids)?
    };
    let broker = st
        .broker()
        .await
        .ok_or_else(|| OpsError::Refused("the broker is unreachable".into()))?;
    let ctx = &st.ctx;
    match selector {
        Some(query) => {
            let detail = format!("query {query}");
            let mut quiet = |_, _| {};
            let work = ops::queue::queue_matching(ctx, &broker, query, &mut quiet);
            ok(audited(ctx, &who.by, "queue", detail, work).await?)
        }
        None => {
            let detail = format!("{} id(s)", ids.len());
            let work = ops::queue::queue(ctx, &broker, &ids);
            ok(audited(ctx, &who.by, "queue", detail, work).await?)
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompareBody {
    queries: Vec<ops::compare::NamedQuery>,
    top: Option<usize>,
    min_overlap: Option<f64>,
}

impl CompareBody {
    fn spec(self) -> Result<ops::compare::Spec, OpsError> {
        ops::compare::Spec::new(
            self.queries,
            self.top.unwrap_or(ops::compare::DEFAULT_TOP),
            self.min_overlap
                .unwrap_or(ops::compare::DEFAULT_MIN_OVERLAP),
        )
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

/// The operations record, newest first (`?limit=`, default 20).
async fn history(State(st): State<AppState>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(ops::audit::DEFAULT_LIMIT);
    ok(ops::audit::history(&st.ctx, limit).await?)
}

/// The latest comparison (`null` when none ran).
async fn compare_get(State(st): State<AppState>) -> ApiResult {
    ok(ops::compare::latest(&st.ctx).await?)
}

/// Runs a comparison of Current with the migration index.
async fn compare_run(
    State(st): State<AppState>,
    _: Authorized,
    b: Result<Json<CompareBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body(b)?;
    ok(ops::compare::compare(&st.ctx, &b.spec()?).await?)
}

async fn retry(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Json<IdsBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body(b)?;
    let selection = ops::input::selection(b.all, b.message, &b.ids)?;
    let broker = st
        .broker()
        .await
        .ok_or_else(|| OpsError::Refused("the broker is unreachable".into()))?;
    let detail = selection.describe();
    let work = ops::failures::retry(&st.ctx, &broker, selection);
    ok(audited(&st.ctx, &who.by, "failures retry", detail, work).await?)
}

async fn throttle_get(State(st): State<AppState>) -> ApiResult {
    let cap = ops::throttle::get(&st.ctx).await?;
    ok(json!({
        "max_docs_per_second": cap.max_docs_per_second,
        "edit_latency_budget": cap.edit_latency_budget,
        "worker": st.ctx.pace.state(),
    }))
}

#[derive(Debug, Deserialize)]
struct ThrottleBody {
    /// Absent with an `edit_latency` given: the cap stays as it is.
    #[serde(default, deserialize_with = "present")]
    max_docs_per_second: Option<Option<u64>>,
    /// `300ms` or `off`.
    edit_latency: Option<String>,
}

/// Tells a field given as `null` (Some(None)) from one left out (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

async fn throttle_set(
    State(st): State<AppState>,
    who: Authorized,
    b: Result<Json<ThrottleBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body(b)?;
    let ctx = &st.ctx;
    let budget = b
        .edit_latency
        .as_deref()
        .map(|raw| {
            raw.parse::<crate::config::LatencyBudget>()
                .map_err(|e| OpsError::Invalid(format!("edit_latency: {e}")))
        })
        .transpose()?;
    let detail = format!(
        "edit latency {}, max docs/s {}",
        budget.map_or("unchanged".into(), |b| b.to_string()),
        match b.max_docs_per_second {
            Some(Some(c)) => c.to_string(),
            Some(None) => "off".into(),
            None if budget.is_some() => "unchanged".into(),
            None => "off".into(),
        }
    );
    let work = async {
        let mut done = None;
        if let Some(budget) = budget {
            done = Some(ops::throttle::set_budget(ctx, budget).await?);
        }
        match (b.max_docs_per_second, done) {
            (Some(cap), _) => ops::throttle::set(ctx, cap).await,
            (None, Some(d)) => Ok(d),
            // Neither given: as before, an empty body removes the cap.
            (None, None) => ops::throttle::set(ctx, None).await,
        }
    };
    ok(audited(ctx, &who.by, "throttle", detail, work).await?)
}

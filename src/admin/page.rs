//! The support web page: status with progress, failures grouped by message
//! with example ids, lookup by document id, retry buttons (token required),
//! the latest search comparison, the operations record, a picture of the
//! last hour (rate and edit latency), and the operator's buttons (pause,
//! resume, preview, complete; token required).
//! Plain server-rendered HTML; maud escapes every value.

use super::auth::token_ok;
use super::AppState;
use crate::context::pace::PaceState;
use crate::index::records::Outcome;
use crate::ops::{self, compare::Comparison, failures::Overview, status::Status, OpsError};
use crate::stores::control::{AuditEntry, AuditOutcome};
use crate::types::{DocId, IndexName};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/ui/retry", post(retry))
        .route("/ui/op", post(operate))
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    id: Option<String>,
    msg: Option<String>,
    #[serde(default)]
    historical: bool,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}progress{width:30em}.flash{background:#eef;padding:.5em}.bad{color:#a00}code{word-break:break-all}";

async fn page(State(st): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let broker = st.broker().await;
    let status = ops::status::status(&st.ctx, broker.as_deref()).await;
    let scope = ops::failures::scope(&st.ctx, q.historical).await;
    let overview = match scope {
        Ok(s) => ops::failures::overview(&st.ctx, s).await.map(Some),
        Err(OpsError::Refused(_)) => Ok(None),
        Err(e) => Err(e),
    };
    let comparison = ops::compare::latest(&st.ctx).await;
    let history = ops::audit::history(&st.ctx, ops::audit::DEFAULT_LIMIT).await;
    let lookup = match q.id.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(match DocId::parse(raw) {
            Err(e) => Err(format!("invalid id: {e}")),
            Ok(id) => match ops::failures::scope(&st.ctx, q.historical).await {
                Ok(scope) => ops::failures::show(&st.ctx, scope, &id)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        }),
    };
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "ferry" } style { (STYLE) } }
            body {
                h1 { "ferry" }
                @if let Some(m) = &q.msg { p.flash role="status" { (m) } }
                @match &status { Ok(s) => (status_block(s)), Err(e) => p.bad { "status unavailable: " (e.to_string()) } }
                @if let Ok(s) = &status { (buttons_block(s)) }
                (pace_block(&st.ctx.pace.state()))
                h2 { "Last hour" }
                div #last-hour {
                    @match super::chart::svg(&st.recent.points()) {
                        // Drawn from numbers and our own labels only.
                        Some(svg) => (PreEscaped(svg)),
                        None => p { "Nothing to draw yet: a point every " (super::chart::EVERY.as_secs()) " s once edits or a migration run." },
                    }
                }
                h2 { "Look up a document" }
                form method="get" action="/" {
                    input name="id" placeholder="document id" value=(q.id.clone().unwrap_or_default()) size="50";
                    @if q.historical { input type="hidden" name="historical" value="true"; }
                    " " button type="submit" { "Look up" }
                }
                @if let Some(l) = &lookup { (lookup_block(l)) }
                h2 { "Failures" @if q.historical { " (last completed migration)" } }
                p { a href=(if q.historical { "/" } else { "/?historical=true" }) { @if q.historical { "show the running migration" } @else { "show the last completed migration" } } }
                @match &overview {
                    Ok(Some(o)) => (failures_block(o, q.historical)),
                    Ok(None) => p { "No migration to show failures for." },
                    Err(e) => p.bad { "failures unavailable: " (e.to_string()) },
                }
                h2 { "History" }
                @match &history {
                    Ok(h) if h.is_empty() => p { "No operator action recorded yet." },
                    Ok(h) => (history_block(h)),
                    Err(e) => p.bad { "history unavailable: " (e.to_string()) },
                }
                h2 { "Search comparison" }
                @match &comparison {
                    Ok(Some(c)) => (comparison_block(c)),
                    Ok(None) => p { "None yet: " code { "ferry compare --queries FILE" } " runs one." },
                    Err(e) => p.bad { "comparison unavailable: " (e.to_string()) },
                }
            }
        }
    };
    Html(body.into_string()).into_response()
}

/// This worker's edits and the migration's pace.
fn pace_block(p: &PaceState) -> Markup {
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
    html! {
        h2 { "Pace (this worker)" }
        table {
            tr { th { "Edit latency" } td #edit-latency { "p50 " (ms(p.edit_p50_ms)) ", p99 " (ms(p.edit_p99_ms)) " over the last seconds" } }
            tr { th { "Budget" } td { @match p.edit_latency_budget_ms { Some(b) => (format!("{b} ms")), None => "off" } } }
            tr { th { "Migration" } td {
                (p.batch_size) " per batch, " (p.batches_in_flight) " at once"
                @if let Some(r) = p.budget_docs_per_second { ", held to " (format!("{r:.0}")) " docs/s by the budget" }
                @if let Some(c) = p.worker_docs_per_second { ", capped at " (format!("{c:.0}")) " docs/s" }
            } }
            @if let Some(why) = &p.yielding { tr { th { "Yielding" } td { (why) } } }
        }
    }
}

fn status_block(s: &Status) -> Markup {
    html! {
        h2 { "Migration" }
        p { "State: " strong #phase { (format!("{:?}", s.phase)) } @if s.preview { " (preview on)" } }
        @for v in &s.violations { p.bad { "Invariant broken: " (v) } }
        table {
            tr { th { "Current" } td { code { (IndexName::list(&s.aliases.current)) } } }
            tr { th { "Migration" } td { code { (IndexName::list(&s.aliases.migration)) } } }
            tr { th { "Historical" } td { code { (IndexName::list(&s.aliases.historical)) } } }
            @if let Some(p) = &s.progress {
                tr { th { "Progress" } td {
                    progress #progress value=(p.migrated + p.failed) max=(p.total.max(1)) {}
                    " " (p.migrated) " migrated, " (p.failed) " failed, " (p.to_go) " to go, of " (p.total)
                } }
            }
            @if let Some(r) = s.rate_per_second { tr { th { "Rate" } td { (format!("{r:.0} docs/s")) @if let Some(e) = s.eta_seconds { ", about " (humantime::format_duration(std::time::Duration::from_secs(e)).to_string()) " to go" } } } }
            @if let Some(q) = &s.queues { tr { th { "Queues" } td { "high " (q.high) ", migration " (q.low) ", dead letters " (q.dead_letters) } } }
            @if let Some(why) = &s.yielding { tr { th { "Yielding" } td #yielding { (why) } } }
            @if !s.unaliased.is_empty() { tr { th { "Cleanup" } td #unaliased { (s.unaliased.len()) " index(es) no alias names: " code { (s.unaliased.join(", ")) } " (" code { "ferry cleanup" } ")" } } }
            tr { th { "Scanner" } td { @match &s.lease { Some(l) => (l.owner), None => "none" } } }
        }
    }
}

/// The operations record, newest first.
fn history_block(entries: &[AuditEntry]) -> Markup {
    html! {
        table #history {
            tr { th { "When" } th { "Who" } th { "What" } th { "Outcome" } th { "Message" } }
            @for e in entries {
                tr.action {
                    td { (chrono::DateTime::from_timestamp_millis(e.at_ms as i64).map(|t| t.to_rfc3339()).unwrap_or_default()) }
                    td.by { (e.by) }
                    td.what { (e.action) @if !e.detail.is_empty() { " (" (e.detail) ")" } }
                    td.outcome { @if e.outcome == AuditOutcome::Done { "done" } @else { span.bad { (format!("{:?}", e.outcome).to_lowercase()) } } }
                    td { (e.message) }
                }
            }
        }
    }
}

/// The latest `ferry compare`, worst searches first.
fn comparison_block(c: &Comparison) -> Markup {
    let at = chrono::DateTime::from_timestamp_millis(c.at_ms as i64)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    html! {
        p { (c.results.len()) " search(es) on " code { (c.current) } " and " code { (c.new) } " at " (at) ", top " (c.top) " ids: " strong #compare-flagged { (c.flagged) " flagged" } " (overlap below " (format!("{:.2}", c.min_overlap)) ")" }
        table #comparison {
            tr { th { "" } th { "Search" } th { "Hits (Current)" } th { "Hits (new)" } th { "Overlap" } th { "Average overlap" } }
            @for r in &c.results {
                tr.comparison {
                    td { @if r.flagged { span.bad { "flagged" } } @else { "ok" } }
                    td.name { (r.name) @if let Some(e) = &r.error { br; span.bad { (e) } } }
                    td { (r.current_hits) } td { (r.new_hits) }
                    td { (format!("{:.2}", r.overlap)) } td { (format!("{:.2}", r.average_overlap)) }
                }
            }
        }
    }
}

/// The operator's buttons that apply to the migration's phase; each asks
/// for the token.
fn buttons_block(s: &Status) -> Markup {
    use crate::index::aliases::Phase;
    let ops: &[(&str, &str)] = match s.phase {
        Phase::InProgress if s.preview => &[
            ("pause", "Pause"),
            ("unpreview", "Remove the preview"),
            ("complete", "Complete"),
        ],
        Phase::InProgress => &[
            ("pause", "Pause"),
            ("preview", "Preview"),
            ("complete", "Complete"),
        ],
        Phase::Paused => &[("resume", "Resume"), ("complete", "Complete")],
        Phase::Idle | Phase::Broken => &[],
    };
    html! {
        @if !ops.is_empty() {
            form #operate method="post" action="/ui/op" {
                (token_field())
                @for (op, label) in ops {
                    " " button.op type="submit" name="op" value=(op) { (label) }
                }
            }
        }
    }
}

/// The page's buttons: `op` is pause, resume, preview, unpreview or
/// complete (the checked gate; forcing stays on the CLI and the API).
#[derive(Debug, Deserialize)]
struct OpForm {
    #[serde(default)]
    token: String,
    op: String,
}

async fn operate(State(st): State<AppState>, Form(f): Form<OpForm>) -> Response {
    if !token_ok(&st.ctx.settings.admin_token, Some(&f.token)) {
        return wrong_token();
    }
    use ops::lifecycle::Simple;
    let ctx = &st.ctx;
    let result = match f.op.as_str() {
        "pause" => ops::lifecycle::simple(ctx, Simple::Pause, PAGE_CALLER).await,
        "resume" => ops::lifecycle::simple(ctx, Simple::Resume, PAGE_CALLER).await,
        "preview" => ops::lifecycle::simple(ctx, Simple::Preview, PAGE_CALLER).await,
        "unpreview" => ops::lifecycle::simple(ctx, Simple::Unpreview, PAGE_CALLER).await,
        "complete" => {
            let gate = ops::input::gate(false, None, None);
            let work = ops::lifecycle::complete(ctx, gate);
            ops::audit::audited(ctx, PAGE_CALLER, "complete", "from the page".into(), work).await
        }
        other => Err(OpsError::Invalid(format!("no such button: {other}"))),
    };
    match result {
        Ok(c) => flash(&format!("{} Next: {}", c.done, c.next)),
        Err(OpsError::Refused(why) | OpsError::Invalid(why)) => flash(&format!("refused: {why}")),
        Err(e) => flash(&format!("{} failed: {e}", f.op)),
    }
}

fn wrong_token() -> Response {
    let body = html! { (DOCTYPE) html { body { h1 { "Wrong or missing admin token" } p { "Nothing was changed. " a href="/" { "Back" } } } } };
    (StatusCode::UNAUTHORIZED, Html(body.into_string())).into_response()
}

fn token_field() -> Markup {
    html! { input type="password" name="token" placeholder="admin token" required; }
}

fn failures_block(o: &Overview, historical: bool) -> Markup {
    html! {
        p { (o.total) " failed document(s) migrating " code { (o.scope.index.as_str()) } " → " code { (o.scope.target.as_str()) } }
        @if !o.groups.is_empty() {
            table #failures {
                tr { th { "Count" } th { "Message" } th { "Examples" } @if !historical { th { "Retry" } } }
                @for g in &o.groups {
                    tr.group {
                        td.count { (g.count) }
                        td.message { (g.key) }
                        td { @for id in &g.examples { a.example href=(format!("/?id={}", crate::index::client::segment(id.as_str()))) { (id.as_str()) } br; } }
                        @if !historical {
                            td { form method="post" action="/ui/retry" {
                                input type="hidden" name="message" value=(g.key);
                                (token_field()) " " button.retry type="submit" { "Retry all" }
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn lookup_block(l: &Result<ops::failures::Record, String>) -> Markup {
    html! {
        @match l {
            Err(e) => p.bad #record { (e) },
            Ok(r) => div #record {
                p { code { (r.id.as_str()) } " in " code { (r.scope.index.as_str()) } ": "
                    @match &r.outcome {
                        None => strong { "not in the index" },
                        Some(Outcome::Migrated) => strong { "migrated" },
                        Some(Outcome::Pending) => strong { "not migrated yet" },
                        Some(Outcome::Failed(m)) => { strong { "failed: " } span.message { (m) } },
                    }
                }
                @if let Some(Outcome::Failed(_)) = &r.outcome {
                    form method="post" action="/ui/retry" {
                        input type="hidden" name="id" value=(r.id.as_str());
                        (token_field()) " " button.retry type="submit" { "Retry this document" }
                    }
                }
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct RetryForm {
    /// Missing counts as wrong (401), not as a malformed form.
    #[serde(default)]
    token: String,
    message: Option<String>,
    id: Option<String>,
}

async fn retry(State(st): State<AppState>, Form(f): Form<RetryForm>) -> Response {
    if !token_ok(&st.ctx.settings.admin_token, Some(&f.token)) {
        return wrong_token();
    }
    let ids: Vec<String> = f.id.into_iter().collect();
    let selection = match ops::input::selection(false, f.message, &ids) {
        Ok(s) => s,
        Err(e) => return flash(&e.to_string()),
    };
    let Some(broker) = st.broker().await else {
        return flash("the broker is unreachable; nothing was retried");
    };
    let detail = selection.describe();
    let work = ops::failures::retry(&st.ctx, &broker, selection);
    match ops::audit::audited(&st.ctx, PAGE_CALLER, "failures retry", detail, work).await {
        Ok(r) => flash(&format!(
            "cleared {} record(s), queued {} document(s) again",
            r.cleared, r.queued
        )),
        Err(e) => flash(&format!("retry failed: {e}")),
    }
}

/// Who the operations record names for the page's buttons (they carry the
/// token, not a name).
const PAGE_CALLER: &str = "the support page";

fn flash(msg: &str) -> Response {
    Redirect::to(&format!("/?msg={}", crate::index::client::segment(msg))).into_response()
}

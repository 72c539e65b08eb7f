//! The admin HTTP server inside `ferry worker`: the JSON API (same
//! operations as the CLI), the support web page, health, readiness and
//! Prometheus metrics. Binds to loopback unless told otherwise.

pub mod api;
pub mod auth;
pub mod chart;
pub mod page;

use crate::context::Ctx;
use crate::queue::Broker;
use crate::worker::lease::LeaseHandle;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide metrics recorder once.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// State shared by the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The worker's context.
    pub ctx: Arc<Ctx>,
    /// The worker's lease handle.
    pub lease: LeaseHandle,
    /// A broker connection for depths and queueing, opened on first use.
    pub broker: Arc<tokio::sync::Mutex<Option<Arc<Broker>>>>,
    /// The last hour's rate and edit latency, for the page's picture.
    pub recent: Arc<chart::Recent>,
}

impl AppState {
    /// State for a worker's admin server.
    pub fn new(ctx: Arc<Ctx>, lease: LeaseHandle) -> Self {
        Self {
            ctx,
            lease,
            broker: Default::default(),
            recent: Default::default(),
        }
    }

    /// The broker connection, (re)connecting if needed; `None` if unreachable.
    pub async fn broker(&self) -> Option<Arc<Broker>> {
        let mut slot = self.broker.lock().await;
        if let Some(b) = slot.as_ref().filter(|b| b.is_connected()) {
            return Some(b.clone());
        }
        match Broker::connect(&self.ctx.settings).await {
            Ok(b) => {
                let b = Arc::new(b);
                *slot = Some(b.clone());
                Some(b)
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin server cannot reach the broker");
                None
            }
        }
    }
}

/// The router with every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(page::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Starts the admin server unless `admin_bind` is off.
pub async fn spawn(
    ctx: Arc<Ctx>,
    lease: LeaseHandle,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    metrics_handle();
    let bind = ctx.settings.admin_bind.0?;
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%bind, error = %e, "cannot start the admin server");
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(bind);
    tracing::info!(bind = %bound, "admin server listening");
    let state = AppState::new(ctx.clone(), lease);
    tokio::spawn(chart::sample(ctx, state.recent.clone(), shutdown.clone()));
    let app = router(state);
    Some(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    }))
}

async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let ctx = &st.ctx;
    let mut problems = ctx.problems().await;
    if !ctx.broker_up.load(Ordering::Relaxed) {
        problems.push("broker: not connected".to_string());
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n"))
    }
}

async fn metrics_text() -> impl IntoResponse {
    metrics_handle().map(|h| h.render()).unwrap_or_default()
}

//! The runtime's endpoints: `/health`, `/health/live`, `/health/ready` and `/metrics`.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{StatusCode, header};

use super::{Inner, Mesh};
use crate::observe::{
    health::{HealthReport, Status},
    prometheus,
};

impl Mesh {
    /// `/health`, `/health/live`, `/health/ready` and `/metrics`.
    pub(super) fn endpoints(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics_text))
            .with_state(self.inner.clone())
    }
}

async fn health(State(inner): State<Arc<Inner>>) -> Response {
    report(inner.checks.run().await)
}

async fn live() -> Response {
    report(HealthReport {
        status: Status::Up,
        components: Default::default(),
    })
}

async fn ready(State(inner): State<Arc<Inner>>) -> Response {
    if !inner.ready.load(Ordering::SeqCst) {
        return report(HealthReport {
            status: Status::OutOfService,
            components: Default::default(),
        });
    }
    report(inner.checks.run().await)
}

fn report(report: HealthReport) -> Response {
    let status = match report.status {
        Status::Up => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(report)).into_response()
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::render(),
    )
        .into_response()
}

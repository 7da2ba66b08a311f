use std::{collections::BTreeMap, fmt::Write, sync::Arc, sync::atomic::Ordering};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::registry::Registry;

/// `GET /metrics`: the registry's state in Prometheus' text format.
pub(super) async fn render(State(registry): State<Arc<Registry>>) -> Result<Response, ApiError> {
    let snapshot = registry.snapshot().await?;
    let mut by_status: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for registration in &snapshot.registrations {
        *by_status
            .entry((
                registration.service().to_string(),
                registration.status().as_str(),
            ))
            .or_default() += 1;
    }
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    metric(
        "mesh_registry_instances",
        "gauge",
        "Registered instances by service and status.",
    );
    for ((service, status), count) in &by_status {
        let _ = writeln!(
            text,
            "mesh_registry_instances{{service=\"{}\",status=\"{status}\"}} {count}",
            escape_label(service)
        );
    }
    let counters = registry.counters();
    let totals = [
        (
            "mesh_registry_registrations_total",
            "Registrations received.",
            &counters.registrations,
        ),
        (
            "mesh_registry_renewals_total",
            "Lease renewals.",
            &counters.renewals,
        ),
        (
            "mesh_registry_evictions_total",
            "Leases evicted after expiring.",
            &counters.evictions,
        ),
        (
            "mesh_registry_cancellations_total",
            "Registrations cancelled by their instance.",
            &counters.cancellations,
        ),
    ];
    for (name, help, value) in totals {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        text,
        "# HELP mesh_registry_self_preservation Whether self-preservation holds evictions back.\n\
         # TYPE mesh_registry_self_preservation gauge\nmesh_registry_self_preservation {}",
        u8::from(registry.is_self_preserving())
    );
    let _ = writeln!(
        text,
        "# HELP mesh_registry_revision The registry's current revision.\n\
         # TYPE mesh_registry_revision gauge\nmesh_registry_revision {}",
        snapshot.revision
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

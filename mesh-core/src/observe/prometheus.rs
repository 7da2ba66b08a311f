//! The Prometheus exposition of every metric mesh records.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, of every `*_duration_seconds` histogram.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder (once) and returns its
/// handle; `None` when another recorder was installed first, in which case metrics go there.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    DURATION_BUCKETS,
                )
                .expect("the duration buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!(
                        "a metrics recorder was installed already; /metrics stays empty"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets when nothing scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`]. The recorder keeps
/// every sample until an upkeep runs, so a process that is never scraped would otherwise grow
/// by every call it times.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("mesh-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "no metrics upkeep thread: histograms grow until scraped");
    }
}

/// The metrics in Prometheus's text format (version 0.0.4).
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The help text of every metric mesh records (Prometheus's `# HELP`).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        "mesh_server_requests_total",
        "Requests served, by service, method, route pattern and status."
    );
    describe_counter!(
        "mesh_server_relayed_requests_total",
        "Requests a relay answered from their bytes, by service (counted in the requests too)."
    );
    describe_histogram!(
        "mesh_server_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to serve a request, by service, method and route pattern."
    );
    describe_counter!(
        "mesh_client_requests_total",
        "Calls made through a MeshClient, by called service and status (or error kind)."
    );
    describe_histogram!(
        "mesh_client_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time of a call through a MeshClient, every retry included."
    );
    describe_counter!("mesh_timeouts_total", "Calls cut off by the timeout layer.");
    describe_counter!(
        "mesh_deadlines_exceeded_total",
        "Requests whose caller's deadline passed while they were served."
    );
    describe_counter!(
        "mesh_retries_total",
        "Attempts after the first, by retry layer."
    );
    describe_counter!(
        "mesh_circuit_breaker_calls_total",
        "Calls seen by a circuit breaker, by outcome."
    );
    describe_counter!(
        "mesh_circuit_breaker_transitions_total",
        "Circuit breaker state changes."
    );
    describe_gauge!(
        "mesh_circuit_breaker_state",
        "1 for the state a circuit breaker is in, 0 for the others."
    );
    describe_counter!(
        "mesh_bulkhead_rejected_total",
        "Calls refused because the bulkhead was full."
    );
    describe_gauge!(
        "mesh_bulkhead_max_concurrent_calls",
        "The bulkhead's concurrency limit."
    );
    describe_counter!(
        "mesh_rate_limit_rejected_total",
        "Calls refused by the rate limiter."
    );
    describe_counter!(
        "mesh_rate_limit_store_failures_total",
        "Rate-limit decisions the store failed to make in time."
    );
    describe_counter!(
        "mesh_balance_ejections_total",
        "Instances ejected from a balancer after consecutive failures."
    );
    describe_counter!("mesh_bus_published_total", "Events published, by outcome.");
    describe_counter!(
        "mesh_bus_consumed_total",
        "Events delivered to a subscriber."
    );
    describe_counter!("mesh_bus_handled_total", "Events handled, by outcome.");
    describe_counter!(
        "mesh_cache_requests_total",
        "Cache reads, by cache and result (hit or miss)."
    );
    describe_counter!(
        "mesh_cache_loads_total",
        "Loads after a miss, by cache and outcome (found, absent, failed)."
    );
    describe_counter!(
        "mesh_cache_evictions_total",
        "Cache entries removed, by cache and reason (size, invalidated)."
    );
    describe_counter!(
        "mesh_cache_store_errors_total",
        "Cache store failures (the value was loaded instead), by cache."
    );
    describe_counter!(
        "mesh_bus_retried_total",
        "Events scheduled for another attempt."
    );
    describe_counter!(
        "mesh_bus_dead_lettered_total",
        "Events moved to a dead-letter queue."
    );
    describe_histogram!(
        "mesh_bus_handler_seconds",
        metrics::Unit::Seconds,
        "Time an event handler took."
    );
    describe_gauge!(
        "mesh_bus_queue_depth",
        "Messages waiting in a subscriber's queue."
    );
}

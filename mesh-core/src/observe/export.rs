//! Trace export over OTLP: each service's spans batched off the request path and sent to an
//! OpenTelemetry collector (Jaeger, Tempo, Zipkin through a collector, …).
//!
//! [`install`] turns it on for a service when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or the configuration's `observe.otlp.endpoint`) is set;
//! the runtime calls it when a [`Mesh`](crate::Mesh) is built. The standard variables apply:
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, the default, or `http/protobuf`),
//! `OTEL_SERVICE_NAME` (the service's name otherwise), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (parent-based ratio sampling by
//! default, the ratio 1.0 unless the argument says otherwise), and `OTEL_BSP_*` for the batch.
//!
//! Spans carry the trace and span IDs of the W3C trace context mesh propagates, so the IDs in
//! logs, error bodies and `traceparent` headers are the exported ones. Each finished span goes
//! into a bounded queue that a background thread exports in batches; when the queue is full
//! the span is dropped and counted (`mesh_trace_spans_dropped_total`), never waited for.
//! [`shutdown`] exports what is queued; the runtime calls it on graceful shutdown. Without an
//! endpoint nothing is installed and a span costs one atomic load.
//!
//! ```no_run
//! # async fn run() -> Result<(), mesh_core::MeshError> {
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 in the environment:
//! mesh_core::observe::export::install("orders", None)?;
//! // … serve …
//! mesh_core::observe::export::shutdown().await;
//! # Ok(()) }
//! ```

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    Context,
    trace::{SpanId, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SdkTracer,
        SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
    },
};

use crate::error::{ErrorKind, MeshError};

/// Whether any service exports: the one check a span makes when none does.
static ON: AtomicBool = AtomicBool::new(false);

/// Each exporting service's provider and tracer, by service name.
static SERVICES: LazyLock<RwLock<HashMap<String, Exporting>>> = LazyLock::new(RwLock::default);

#[derive(Clone)]
struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The provider's sampler, for decisions taken before a span starts.
    sampler: Sampler,
    /// The meshes of this name that installed it: the last one's shutdown flushes it.
    users: usize,
}

/// A service's key in [`SERVICES`]: its name in lowercase, as its `ServiceId` has it.
fn key(service: &str) -> std::borrow::Cow<'_, str> {
    if service.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(service.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(service)
    }
}

/// The spans a queue holds when none is configured (`OTEL_BSP_MAX_QUEUE_SIZE`).
const QUEUE: usize = 2048;

/// Installs trace export for `service` when an endpoint is set: `endpoint` (the
/// configuration's `observe.otlp.endpoint`) or the OTLP variables. `Ok(false)` when none is
/// set (nothing is exported). Meshes of one name in one process share one export; it is
/// flushed and stopped when the last of them shuts down.
pub fn install(service: &str, endpoint: Option<&str>) -> Result<bool, MeshError> {
    let from_env = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    let endpoint = endpoint.filter(|endpoint| !endpoint.is_empty());
    if !from_env && endpoint.is_none() {
        return Ok(false);
    }
    let service = key(service).into_owned();
    let mut services = SERVICES.write().unwrap_or_else(|p| p.into_inner());
    if let Some(exporting) = services.get_mut(&service) {
        exporting.users += 1;
        return Ok(true);
    }
    let failed = |e: &dyn std::fmt::Display| {
        MeshError::new(ErrorKind::Config, format!("OTLP trace export: {e}"))
    };
    // First: building the gRPC exporter needs the runtime too.
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| failed(&"install it from inside a tokio runtime"))?;
    let exporter = build_exporter(endpoint).map_err(|e| failed(&e))?;
    let config = BatchConfigBuilder::default().build();
    let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        handle,
        queued: queued.clone(),
    };
    let processor = Bounded {
        inner: BatchSpanProcessor::new(exporter, config),
        queued,
        capacity,
        dropped: metrics::counter!("mesh_trace_spans_dropped_total", "service" => service.clone()),
    };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.clone());
    }
    let sampler = sampler_from_env();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_id_generator(HopIds)
        .with_sampler(sampler.clone())
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("mesh");
    let exporting = Exporting {
        provider,
        tracer,
        sampler,
        users: 1,
    };
    services.insert(service.clone(), exporting);
    ON.store(true, Ordering::Release);
    tracing::info!(%service, "exporting traces over OTLP");
    Ok(true)
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name: parent-based ratio
/// sampling (at ratio 1.0) unless they say otherwise.
fn sampler_from_env() -> Sampler {
    let ratio = || {
        std::env::var("OTEL_TRACES_SAMPLER_ARG")
            .ok()
            .and_then(|ratio| ratio.parse().ok())
            .unwrap_or(1.0)
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match std::env::var("OTEL_TRACES_SAMPLER").as_deref() {
        Ok("always_on") => Sampler::AlwaysOn,
        Ok("always_off") => Sampler::AlwaysOff,
        Ok("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Ok("parentbased_always_on") => parent_based(Sampler::AlwaysOn),
        Ok("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        _ => parent_based(Sampler::TraceIdRatioBased(ratio())),
    }
}

/// Whether `service`'s sampler keeps a new trace `trace_id`, decided before its first span
/// starts (a request relayed, an event published), so the decision travels with the IDs;
/// `None` when the service does not export.
pub(crate) fn keeps_new_trace(service: &str, trace_id: u128) -> Option<bool> {
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
    if !ON.load(Ordering::Acquire) {
        return None;
    }
    let services = SERVICES.read().unwrap_or_else(|p| p.into_inner());
    let sampler = &services.get(key(service).as_ref())?.sampler;
    let decision = sampler.should_sample(
        None,
        TraceId::from(trace_id),
        "",
        &SpanKind::Server,
        &[],
        &[],
    );
    Some(decision.decision == SamplingDecision::RecordAndSample)
}

/// The OTLP exporter the protocol names (`OTEL_EXPORTER_OTLP_PROTOCOL`, gRPC by default).
fn build_exporter(
    endpoint: Option<&str>,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let builder = opentelemetry_otlp::SpanExporter::builder();
    if protocol.starts_with("http") {
        let builder = builder.with_http();
        match endpoint {
            // A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is.
            Some(base) => builder
                .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
                .build(),
            None => builder.build(),
        }
    } else {
        let builder = builder.with_tonic();
        match endpoint {
            Some(endpoint) => builder.with_endpoint(endpoint).build(),
            None => builder.build(),
        }
    }
}

/// The `observe.otlp` section of the configuration.
///
/// ```yaml
/// observe:
///   otlp:
///     endpoint: http://127.0.0.1:4317   # or OTEL_EXPORTER_OTLP_ENDPOINT
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpSettings {
    /// Where the collector listens; unset: the OTLP variables decide, and without them
    /// nothing is exported.
    pub endpoint: Option<String>,
}

/// Exports what every service has queued and stops exporting. Waits at most 5 s per service
/// for a collector that does not answer.
pub async fn shutdown() {
    let providers: Vec<SdkTracerProvider> = {
        let mut services = SERVICES.write().unwrap_or_else(|p| p.into_inner());
        ON.store(false, Ordering::Release);
        services.drain().map(|(_, e)| e.provider).collect()
    };
    flush(providers).await;
}

/// A mesh of `service` shuts down: the last one exports what the service has queued and stops
/// its export.
pub(crate) async fn shutdown_service(service: &str) {
    let provider = {
        let mut services = SERVICES.write().unwrap_or_else(|p| p.into_inner());
        let service = key(service);
        let last = services.get_mut(service.as_ref()).is_some_and(|exporting| {
            exporting.users -= 1;
            exporting.users == 0
        });
        let provider = last
            .then(|| services.remove(service.as_ref()))
            .flatten()
            .map(|e| e.provider);
        if services.is_empty() {
            ON.store(false, Ordering::Release);
        }
        provider
    };
    flush(provider.into_iter().collect()).await;
}

/// Shuts `providers` down, each exporting what it holds first.
async fn flush(providers: Vec<SdkTracerProvider>) {
    if providers.is_empty() {
        return;
    }
    // The batch thread exports on this runtime: wait for it from a thread of its own.
    let _ = tokio::task::spawn_blocking(move || {
        for provider in providers {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    })
    .await;
}

/// The tracer of `service`, when it exports.
pub(crate) fn tracer(service: &str) -> Option<SdkTracer> {
    if !ON.load(Ordering::Acquire) {
        return None;
    }
    let services = SERVICES.read().unwrap_or_else(|p| p.into_inner());
    services
        .get(key(service).as_ref())
        .map(|e| e.tracer.clone())
}

thread_local! {
    /// The IDs the next span started on this thread takes: mesh's own, from the trace
    /// context it propagates.
    static NEXT: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Starts a span with mesh's IDs for it: `trace_id` (when it has no parent) and `span_id`.
pub(crate) fn start_with_ids(
    tracer: &SdkTracer,
    builder: opentelemetry::trace::SpanBuilder,
    parent: &Context,
    trace_id: u128,
    span_id: u64,
) -> Span {
    /// Clears the IDs however the start ends.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            NEXT.set(None);
        }
    }
    NEXT.set(Some((TraceId::from(trace_id), SpanId::from(span_id))));
    let _clear = Clear;
    builder.start_with_context(tracer, parent)
}

/// Gives a span the IDs [`start_with_ids`] set, random ones otherwise.
#[derive(Debug)]
struct HopIds;

impl IdGenerator for HopIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT.get()
            .map_or_else(|| RandomIdGenerator::default().new_trace_id(), |(t, _)| t)
    }

    fn new_span_id(&self) -> SpanId {
        NEXT.get()
            .map_or_else(|| RandomIdGenerator::default().new_span_id(), |(_, s)| s)
    }
}

/// A batch processor behind a bound of its own: a span beyond `capacity` queued is dropped and
/// counted here, so the batch's own queue is never full.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    dropped: metrics::Counter,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter whose exports run on the service's tokio runtime (the OTLP clients need one;
/// the batch thread has none), counting each exported batch out of the bound.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    handle: tokio::runtime::Handle,
    queued: Arc<AtomicUsize>,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        let inner = self.inner.clone();
        let task = self.handle.spawn(async move { inner.export(batch).await });
        let queued = self.queued.clone();
        async move {
            let exported = task
                .await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())));
            queued.fetch_sub(spans, Ordering::AcqRel);
            exported
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, Tracer as _};

    use super::*;

    /// Counts the spans it is sent.
    #[derive(Debug, Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl SpanExporter for Counting {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn spans_beyond_the_bound_are_dropped_and_counted_not_waited_for() {
        // The exports run on this runtime, as a service's do on its own.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let exported = Counting::default();
        let queued = Arc::new(AtomicUsize::new(0));
        let provider = metrics::with_local_recorder(&recorder, || {
            let exporter = OnRuntime {
                inner: Arc::new(exported.clone()),
                handle: runtime.handle().clone(),
                queued: queued.clone(),
            };
            let processor = Bounded {
                inner: BatchSpanProcessor::new(exporter, BatchConfigBuilder::default().build()),
                queued: queued.clone(),
                capacity: 3,
                dropped: metrics::counter!("mesh_trace_spans_dropped_total", "service" => "test"),
            };
            SdkTracerProvider::builder()
                .with_span_processor(processor)
                .build()
        });
        let tracer = provider.tracer("test");
        // The batch waits seconds before exporting: these ten spans all arrive first.
        for _ in 0..10 {
            tracer.start("hop").end();
        }
        assert_eq!(queued.load(Ordering::SeqCst), 3);
        let dropped: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "mesh_trace_spans_dropped_total")
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Counter(count) => count,
                other => panic!("a counter, not {other:?}"),
            })
            .sum();
        assert_eq!(dropped, 7);
        // Shutting down exports what was kept, on the runtime, and the bound has room again.
        provider.shutdown().unwrap();
        assert_eq!(exported.0.load(Ordering::SeqCst), 3);
        assert_eq!(queued.load(Ordering::SeqCst), 0);
    }
}

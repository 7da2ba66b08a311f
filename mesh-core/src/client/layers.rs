//! The client's own two layers: context injection (trace context, the caller's token) and
//! RED metrics.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::{
    auth::{
        Caller,
        edge::{EDGE_HEADER, EdgeProof},
    },
    error::{BoxError, kind_of},
    observe::{
        BAGGAGE, Baggage, TRACEPARENT, TraceContext, method_label,
        span::{Attempts, HopSpan, Kind, Parent},
        status_label,
    },
};

/// Sends a child of the current trace context (or a new trace) in `traceparent`, the current
/// [`Baggage`] in `baggage`, and, when
/// relaying, the current [`Caller`]'s token as `Authorization` unless the request has one,
/// and the gateway's proof of the request being served ([`EdgeProof`]).
/// When the calling service exports traces, the call is a client span (retries are its
/// events).
#[derive(Debug, Clone)]
pub(crate) struct InjectContext<S> {
    inner: S,
    relay_token: bool,
    service: Arc<str>,
    caller: Arc<str>,
}

/// Applies [`InjectContext`].
#[derive(Debug, Clone)]
pub(crate) struct InjectContextLayer {
    /// Whether the current caller's token goes along (`clients.<service>.token_relay`).
    pub(crate) relay_token: bool,
    /// The service called.
    pub(crate) service: Arc<str>,
    /// The calling service.
    pub(crate) caller: Arc<str>,
}

impl<S> Layer<S> for InjectContextLayer {
    type Service = InjectContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InjectContext {
            inner,
            relay_token: self.relay_token,
            service: self.service.clone(),
            caller: self.caller.clone(),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for InjectContext<S>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClientSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let parent = request
            .extensions()
            .get::<TraceContext>()
            .copied()
            .or_else(TraceContext::current);
        let mut context = parent.map_or_else(TraceContext::root, |p| p.child());
        let method = method_label(request.method());
        let span = HopSpan::start(
            &self.caller,
            Kind::Client,
            || method.into(),
            &mut context,
            parent.map(|context| Parent {
                context,
                remote: false,
            }),
            || {
                vec![
                    ("http.request.method", method.into()),
                    ("server.address", self.service.to_string().into()),
                    ("url.path", request.uri().path().to_owned().into()),
                    ("peer.service", self.service.to_string().into()),
                ]
            },
        );
        let retried = span.is_recording().then(|| {
            let retried = Attempts::default();
            request.extensions_mut().insert(retried.clone());
            retried
        });
        request
            .headers_mut()
            .insert(TRACEPARENT, context.to_header());
        if let Some(baggage) = Baggage::current()
            && !request.headers().contains_key(BAGGAGE)
        {
            request.headers_mut().insert(BAGGAGE, baggage.to_header());
        }
        if self.relay_token
            && !request.headers().contains_key(AUTHORIZATION)
            && let Some(caller) = Caller::current()
            && let Ok(value) = HeaderValue::try_from(format!("Bearer {}", caller.token))
        {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        // A request the gateway let in is served on: its proof goes along.
        if let Some(proof) = EdgeProof::current()
            && !request.headers().contains_key(EDGE_HEADER)
        {
            request
                .headers_mut()
                .insert(EDGE_HEADER, proof.value().clone());
        }
        ClientSpanFuture {
            inner: self.inner.call(request),
            span,
            retried,
        }
    }
}

pin_project! {
    /// The response future of [`InjectContext`]: the call, ending its span with the answer.
    pub(crate) struct ClientSpanFuture<F> {
        #[pin]
        inner: F,
        span: HopSpan,
        retried: Option<Attempts>,
    }
}

impl<F, ResB> Future for ClientSpanFuture<F>
where
    F: Future<Output = Result<Response<ResB>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if this.span.is_recording() {
            let retried = this.retried.as_ref().map_or(0, |r| r.retried());
            for attempt in 1..=retried {
                this.span
                    .event("retry", vec![("attempt", i64::from(attempt + 1).into())]);
            }
            match &output {
                Ok(response) => {
                    let status = response.status();
                    this.span.set("http.response.status_code", status.as_u16());
                    // A client span fails on 4xx too (OpenTelemetry's HTTP conventions).
                    if status.is_client_error() || status.is_server_error() {
                        this.span
                            .fail(status.as_u16().to_string(), || status.to_string());
                    }
                }
                Err(error) => {
                    let kind = kind_of(error.as_ref()).as_str();
                    this.span.fail(kind, || error.to_string());
                }
            }
        }
        Poll::Ready(output)
    }
}

/// Counts calls by outcome and times them: `mesh_client_requests_total{service, status}` and
/// `mesh_client_request_duration_seconds{service}`.
#[derive(Debug, Clone)]
pub(crate) struct RecordMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

/// The metric handles registered once: the duration histogram and the counter of the usual
/// outcome (200); other outcomes are looked up when they happen.
#[derive(Debug)]
pub(crate) struct Handles {
    service: Arc<str>,
    ok: Counter,
    duration: Histogram,
}

impl Handles {
    fn count(&self, status: &'static str) {
        if status == "200" {
            self.ok.increment(1);
        } else {
            metrics::counter!("mesh_client_requests_total", "service" => self.service.clone(), "status" => status)
                .increment(1);
        }
    }
}

/// Applies [`RecordMetrics`].
#[derive(Debug, Clone)]
pub(crate) struct RecordMetricsLayer {
    handles: Arc<Handles>,
}

impl RecordMetricsLayer {
    pub(crate) fn new(service: Arc<str>) -> Self {
        Self {
            handles: Arc::new(Handles {
                ok: metrics::counter!("mesh_client_requests_total", "service" => service.clone(), "status" => "200"),
                duration: metrics::histogram!("mesh_client_request_duration_seconds", "service" => service.clone()),
                service,
            }),
        }
    }
}

impl<S> Layer<S> for RecordMetricsLayer {
    type Service = RecordMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordMetrics {
            inner,
            handles: self.handles.clone(),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for RecordMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        crate::clock::call_started(|started| MetricsFuture {
            inner: self.inner.call(request),
            handles: self.handles.clone(),
            started,
        })
    }
}

pin_project! {
    /// The response future of [`RecordMetrics`].
    pub(crate) struct MetricsFuture<F> {
        #[pin]
        inner: F,
        handles: Arc<Handles>,
        started: Instant,
    }
}

impl<F, ResB> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<ResB>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        let elapsed = this.started.elapsed().as_secs_f64();
        let status = match &output {
            Ok(response) => status_label(response.status().as_u16()),
            Err(error) => kind_of(error.as_ref()).as_str(),
        };
        this.handles.count(status);
        this.handles.duration.record(elapsed);
        Poll::Ready(output)
    }
}

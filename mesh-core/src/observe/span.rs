//! The span of one hop — a request served, a call made, an event published or handled — as
//! it is exported ([`export`](super::export)): named and attributed after OpenTelemetry's
//! semantic conventions, with the IDs of the trace context mesh propagates. When nothing is
//! exported (or the trace is not sampled) a span records nothing and costs a check.
// Without the `otlp` feature a span records nothing, and without `runtime` some hops are not
// built at all.
#![cfg_attr(not(feature = "otlp"), allow(dead_code))]

use std::borrow::Cow;

use super::TraceContext;

/// What a hop is, in OpenTelemetry's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request served.
    Server,
    /// A call made.
    Client,
    /// An event published.
    Producer,
    /// An event handled.
    Consumer,
}

/// An attribute's value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Text.
    Text(Cow<'static, str>),
    /// A number.
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Self {
        Self::Text(Cow::Borrowed(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self::Text(Cow::Owned(text))
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Self::Int(number)
    }
}

impl From<u16> for Value {
    fn from(number: u16) -> Self {
        Self::Int(i64::from(number))
    }
}

/// The span's parent: the span whose context this hop's is a child of, and whether it is in
/// another process (a caller's `traceparent`, an event's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parent {
    pub(crate) context: TraceContext,
    pub(crate) remote: bool,
}

/// `context`, a new trace's, with `service`'s sampling decision in its flags: for a hop whose
/// IDs go out before its span starts (a request relayed from its bytes).
#[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
pub(crate) fn decide_new_trace(service: &str, context: TraceContext) -> TraceContext {
    #[cfg(feature = "otlp")]
    if let Some(kept) = super::export::keeps_new_trace(service, context.raw().0) {
        return context.with_sampled(kept);
    }
    context
}

/// How many times a traced call was sent again: the retry layer counts into it (found among
/// the request's extensions), the call's span records each as an event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempts(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Attempts {
    /// Counts one more attempt after the first.
    pub(crate) fn retry(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The attempts after the first.
    pub(crate) fn retried(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One hop's span; ended when dropped.
#[derive(Debug, Default)]
pub(crate) struct HopSpan {
    #[cfg(feature = "otlp")]
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl HopSpan {
    /// A span of `service` for the hop whose context is `context`, a child of `parent` (none:
    /// a new trace). It records only when `service` exports and the trace is sampled; a new
    /// trace's sampling decision is written into `context`'s flags, so the calls it makes
    /// carry it on.
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn start(
        service: &str,
        kind: Kind,
        name: impl FnOnce() -> Cow<'static, str>,
        context: &mut TraceContext,
        parent: Option<Parent>,
        attributes: impl FnOnce() -> Vec<(&'static str, Value)>,
    ) -> Self {
        #[cfg(feature = "otlp")]
        if let Some(tracer) = super::export::tracer(service) {
            return Self {
                span: otlp::start(&tracer, kind, name(), context, parent, attributes()),
            };
        }
        Self::default()
    }

    /// Whether the span records: whether attributes are worth computing.
    pub(crate) fn is_recording(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.span.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Sets an attribute.
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        #[cfg(feature = "otlp")]
        if let Some(span) = &mut self.span {
            use opentelemetry::trace::Span as _;
            span.set_attribute(otlp::key_value(key, value.into()));
        }
    }

    /// Renames the span (a server span once its route is known).
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn rename(&mut self, name: impl FnOnce() -> String) {
        #[cfg(feature = "otlp")]
        if let Some(span) = &mut self.span {
            use opentelemetry::trace::Span as _;
            span.update_name(name());
        }
    }

    /// Records that something happened during the hop: a retry, a fallback.
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn event(&mut self, name: &'static str, attributes: Vec<(&'static str, Value)>) {
        #[cfg(feature = "otlp")]
        if let Some(span) = &mut self.span {
            use opentelemetry::trace::Span as _;
            let attributes = attributes
                .into_iter()
                .map(|(key, value)| otlp::key_value(key, value))
                .collect();
            span.add_event(name, attributes);
        }
    }

    /// Marks the hop failed, with `error.type` set to `kind`.
    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    pub(crate) fn fail(&mut self, kind: impl Into<Value>, description: impl FnOnce() -> String) {
        #[cfg(feature = "otlp")]
        if let Some(span) = &mut self.span {
            use opentelemetry::trace::Span as _;
            span.set_attribute(otlp::key_value("error.type", kind.into()));
            span.set_status(opentelemetry::trace::Status::error(description()));
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::borrow::Cow;

    use opentelemetry::{
        Context, KeyValue,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer},
    };
    use opentelemetry_sdk::trace::{SdkTracer, Span};

    use super::{Kind, Parent, TraceContext, Value};

    pub(super) fn key_value(key: &'static str, value: Value) -> KeyValue {
        match value {
            Value::Text(text) => KeyValue::new(key, text),
            Value::Int(number) => KeyValue::new(key, number),
        }
    }

    /// The span, when the sampler keeps it.
    pub(super) fn start(
        tracer: &SdkTracer,
        kind: Kind,
        name: Cow<'static, str>,
        context: &mut TraceContext,
        parent: Option<Parent>,
        attributes: Vec<(&'static str, Value)>,
    ) -> Option<Span> {
        let kind = match kind {
            Kind::Server => opentelemetry::trace::SpanKind::Server,
            Kind::Client => opentelemetry::trace::SpanKind::Client,
            Kind::Producer => opentelemetry::trace::SpanKind::Producer,
            Kind::Consumer => opentelemetry::trace::SpanKind::Consumer,
        };
        let parent_context = match parent {
            Some(Parent { context, remote }) => {
                let (trace_id, span_id, flags) = context.raw();
                Context::new().with_remote_span_context(SpanContext::new(
                    TraceId::from(trace_id),
                    SpanId::from(span_id),
                    TraceFlags::new(flags),
                    remote,
                    TraceState::default(),
                ))
            }
            None => Context::new(),
        };
        let builder = tracer.span_builder(name).with_kind(kind).with_attributes(
            attributes
                .into_iter()
                .map(|(key, value)| key_value(key, value)),
        );
        let (trace_id, span_id, _) = context.raw();
        let span = super::super::export::start_with_ids(
            tracer,
            builder,
            &parent_context,
            trace_id,
            span_id,
        );
        use opentelemetry::trace::Span as _;
        let sampled = span.span_context().is_sampled();
        if parent.is_none() {
            *context = context.with_sampled(sampled);
        }
        span.is_recording().then_some(span)
    }
}

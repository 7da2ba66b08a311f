//! Logs for ELK: one JSON line per event with Elastic Common Schema field names, or readable
//! text in a terminal. [`init`] installs it for a binary; [`EcsFormat`] is the formatter, for
//! those who assemble their own subscriber.
//!
//! A line carries `@timestamp`, `log.level`, `log.logger` (the event's target), `message`,
//! `service.name`, the request's `trace.id` and `span.id` when the event happens while a
//! request is served (mesh's trace context, the same ids as the `traceparent` headers and the
//! access log), then the event's own fields under their names:
//!
//! ```text
//! {"@timestamp":"2026-12-07T16:03:24.123456Z","log.level":"warn","log.logger":"mesh_core::client","message":"registry watch failed","service.name":"orders","trace.id":"4bf9…","span.id":"00f0…","service":"inventory"}
//! ```

use std::{fmt, io::IsTerminal, time::SystemTime};

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, filter_fn},
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use super::TraceContext;

/// Formats events as ECS JSON lines for the service `service`.
#[derive(Debug, Clone)]
pub struct EcsFormat {
    service: String,
}

impl EcsFormat {
    /// The format for `service` (its `service.name`).
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    /// The line for an event with `level`, `target` and `fields` (`message` among them) at
    /// `at`, in `context`: what [`FormatEvent`] writes.
    fn line(
        &self,
        at: SystemTime,
        level: &tracing::Level,
        target: &str,
        mut fields: Map<String, Value>,
        context: Option<TraceContext>,
    ) -> String {
        let mut line = Map::new();
        line.insert("@timestamp".into(), Value::String(timestamp(at)));
        line.insert(
            "log.level".into(),
            Value::String(level.as_str().to_ascii_lowercase()),
        );
        line.insert("log.logger".into(), Value::String(target.to_owned()));
        line.insert(
            "message".into(),
            fields
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        line.insert("service.name".into(), Value::String(self.service.clone()));
        if let Some(context) = context {
            line.insert("trace.id".into(), Value::String(context.trace_id()));
            line.insert("span.id".into(), Value::String(context.span_id()));
        }
        for (name, value) in fields {
            line.entry(name).or_insert(value);
        }
        Value::Object(line).to_string()
    }
}

impl<S, N> FormatEvent<S, N> for EcsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let metadata = event.metadata();
        let line = self.line(
            SystemTime::now(),
            metadata.level(),
            metadata.target(),
            fields.0,
            TraceContext::current(),
        );
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl tracing::field::Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

/// `at` as RFC 3339 in UTC with microseconds.
fn timestamp(at: SystemTime) -> String {
    let elapsed = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = elapsed.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        elapsed.subsec_micros()
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// How lines are written: ECS JSON, or text for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One ECS JSON object per line.
    Json,
    /// tracing's readable text.
    Text,
}

impl LogFormat {
    /// `MESH_LOG_FORMAT` (`json` or `text`), else JSON unless standard output is a terminal.
    pub fn from_env() -> Self {
        match std::env::var("MESH_LOG_FORMAT").as_deref() {
            Ok("text") => Self::Text,
            Ok("json") => Self::Json,
            _ if std::io::stdout().is_terminal() => Self::Text,
            _ => Self::Json,
        }
    }
}

/// Installs the process's log output for `service`: events (not spans, whose fields would be
/// formatted for every request) filtered by `MESH_LOG` (`default_filter` when unset, such as
/// `info`), as [`LogFormat::from_env`] says, on standard output. Fails when a subscriber is
/// installed already.
pub fn init(
    service: &str,
    default_filter: &str,
) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_from_env("MESH_LOG").unwrap_or_else(|_| default_filter.into());
    let events = filter.and(filter_fn(|metadata| !metadata.is_span()));
    let format = match LogFormat::from_env() {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(EcsFormat::new(service))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    };
    tracing_subscriber::registry()
        .with(format.with_filter(events))
        .try_init()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_line_has_the_ecs_fields_and_the_event_s_own() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_765_123_456_789_012);
        let mut fields = Map::new();
        fields.insert("message".into(), "registry watch failed".into());
        fields.insert("service".into(), "inventory".into());
        fields.insert("attempts".into(), 3.into());
        let context = TraceContext::root();
        let line: Value = serde_json::from_str(&EcsFormat::new("orders").line(
            at,
            &tracing::Level::WARN,
            "mesh_core::registry",
            fields,
            Some(context),
        ))
        .unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "@timestamp": "2025-12-07T16:04:16.789012Z",
                "log.level": "warn",
                "log.logger": "mesh_core::registry",
                "message": "registry watch failed",
                "service.name": "orders",
                "trace.id": context.trace_id(),
                "span.id": context.span_id(),
                "service": "inventory",
                "attempts": 3,
            })
        );
    }

    #[test]
    fn an_event_s_field_never_overwrites_an_ecs_one() {
        let mut fields = Map::new();
        fields.insert("service.name".into(), "spoofed".into());
        let line: Value = serde_json::from_str(&EcsFormat::new("orders").line(
            SystemTime::UNIX_EPOCH,
            &tracing::Level::INFO,
            "t",
            fields,
            None,
        ))
        .unwrap();
        assert_eq!(line["service.name"], "orders");
        assert_eq!(line["@timestamp"], "1970-01-01T00:00:00.000000Z");
        assert!(line.get("trace.id").is_none());
    }

    #[test]
    fn dates_follow_the_calendar() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_794, (2026, 12, 7)),
        ] {
            assert_eq!(civil(days), date, "{days}");
        }
    }
}

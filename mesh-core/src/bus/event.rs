use std::time::SystemTime;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::BusError;
use crate::observe::{Baggage, TraceContext};

/// A typed event payload, declared once with its CloudEvents type, which is also its routing
/// key on the topic exchange. Through the `mesh` facade, `#[derive(mesh::EventType)]` with
/// `#[event(type = "order.placed")]` writes this impl.
///
/// ```
/// use mesh_core::bus::{Event, EventType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderPlaced { order_id: u64, customer: String }
///
/// impl EventType for OrderPlaced {
///     const TYPE: &'static str = "order.placed";
/// }
///
/// let event = Event::new("order-service", &OrderPlaced { order_id: 7, customer: "ada".into() })
///     .unwrap()
///     .with_subject("ada");
/// assert_eq!(event.ty, "order.placed");
/// let back: OrderPlaced = event.data().unwrap();
/// assert_eq!(back.order_id, 7);
/// ```
pub trait EventType: Serialize + DeserializeOwned {
    /// The CloudEvents `type` and routing key, dotted: `client.created`, `goal.updated`.
    const TYPE: &'static str;
}

/// An event: CloudEvents attributes and a JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; copies of one event (redeliveries, republishes) share it.
    pub id: String,
    /// Who published it (a service name).
    pub source: String,
    /// What happened, dotted (`order.placed`); the routing key.
    #[serde(rename = "type")]
    pub ty: String,
    /// When it happened, RFC 3339.
    pub time: String,
    /// What it is about (a customer, an order): the partition key that orders handling.
    #[serde(default)]
    pub subject: Option<String>,
    /// The payload's media type.
    pub datacontenttype: String,
    /// The W3C trace context of the publishing span.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The W3C baggage of the request or event it was published for, carried on to its
    /// handlers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event of `T`'s type with a fresh id and the current time.
    pub fn new<T: EventType>(source: &str, payload: &T) -> Result<Self, BusError> {
        let data = serde_json::to_value(payload).map_err(|e| BusError::Invalid(e.to_string()))?;
        Ok(Self {
            id: format!("{:032x}", fastrand::u128(..)),
            source: source.to_string(),
            ty: T::TYPE.to_string(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            subject: None,
            datacontenttype: "application/json".into(),
            // The publish span: a child of the trace the publisher is serving, or a new trace.
            traceparent: Some(
                TraceContext::current()
                    .map_or_else(TraceContext::root, |current| current.child())
                    .to_string(),
            ),
            baggage: Baggage::current().map(|baggage| baggage.as_str().to_owned()),
            data,
        })
    }

    /// Sets the subject (partition key).
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the trace context.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The payload as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        serde_json::from_value(self.data.clone()).map_err(|e| BusError::Invalid(e.to_string()))
    }

    /// The key that picks the partition: the subject, or the id when there is none.
    pub fn partition_key(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.id)
    }

    #[cfg(feature = "amqp")]
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, BusError> {
        serde_json::to_vec(self).map_err(|e| BusError::Invalid(e.to_string()))
    }

    #[cfg(feature = "amqp")]
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self, BusError> {
        serde_json::from_slice(bytes).map_err(|e| BusError::Invalid(e.to_string()))
    }
}

//! The `bus` section of the configuration: which backend carries a service's events, so the
//! same code runs on the in-process bus and on RabbitMQ by configuration alone.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, Weak},
    time::Duration,
};

use serde::Deserialize;

use super::{Bus, BusError, DedupeStore, MemoryBus, MemoryDedupe};

/// The `bus` section.
///
/// ```yaml
/// bus:
///   url: amqp://guest:guest@127.0.0.1:5672/%2f   # or `memory` (the default), `memory://NAME`; MESH_BUS_URL
///   exchange: mesh.events
///   dedupe_retention: 24h
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    /// `memory` for an in-process bus of the service's own, `memory://NAME` for the
    /// in-process bus every service of the process naming `NAME` shares (several services in
    /// one process talking as they would through a broker), or an `amqp://` (`amqps://`)
    /// broker URL.
    pub url: String,
    /// The topic exchange events are published to (RabbitMQ); `mesh.events` when unset.
    pub exchange: Option<String>,
    /// How long a handled event's ID is remembered, so a redelivery is not handled twice.
    #[serde(with = "humantime_serde")]
    pub dedupe_retention: Duration,
}

impl Default for BusSettings {
    /// The in-process bus, a day of dedupe.
    fn default() -> Self {
        Self {
            url: "memory".into(),
            exchange: None,
            dedupe_retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl BusSettings {
    /// Whether the URL names an in-process bus.
    pub fn is_memory(&self) -> bool {
        self.url.is_empty()
            || self.url.eq_ignore_ascii_case("memory")
            || self.shared_memory_name().is_some()
    }

    /// The name of the shared in-process bus the URL names (`memory://NAME`).
    fn shared_memory_name(&self) -> Option<&str> {
        let (scheme, name) = self.url.split_once("://")?;
        scheme.eq_ignore_ascii_case("memory").then_some(name)
    }

    /// Connects the bus these settings name, remembering handled events in `dedupe` (a
    /// Redis store shared by a service's instances) or, when `None`, in memory.
    pub async fn connect(
        &self,
        dedupe: Option<Arc<dyn DedupeStore>>,
    ) -> Result<Arc<dyn Bus>, BusError> {
        let dedupe = dedupe.unwrap_or_else(|| Arc::new(MemoryDedupe::new(self.dedupe_retention)));
        if let Some(name) = self.shared_memory_name() {
            return Ok(shared_memory_bus(name, dedupe));
        }
        if self.is_memory() {
            return Ok(Arc::new(MemoryBus::with_dedupe(dedupe)));
        }
        let scheme = self.url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("amqp" | "amqps") => self.connect_amqp(dedupe).await,
            _ => Err(BusError::Config(format!(
                "bus.url: `{}` is neither `memory` nor an amqp:// URL",
                crate::userinfo::redact(&self.url)
            ))),
        }
    }

    #[cfg(feature = "amqp")]
    async fn connect_amqp(&self, dedupe: Arc<dyn DedupeStore>) -> Result<Arc<dyn Bus>, BusError> {
        let mut bus = super::AmqpBus::connect(&self.url)
            .await?
            .with_dedupe(dedupe);
        if let Some(exchange) = &self.exchange {
            bus = bus.with_exchange(exchange).await?;
        }
        Ok(Arc::new(bus))
    }

    #[cfg(not(feature = "amqp"))]
    async fn connect_amqp(&self, _: Arc<dyn DedupeStore>) -> Result<Arc<dyn Bus>, BusError> {
        Err(BusError::Config(
            "bus.url names RabbitMQ, but mesh was built without its `amqp` feature".into(),
        ))
    }
}

/// The in-process bus named `name`, shared while any service holds it; the first service to
/// name it gives it its dedupe store.
fn shared_memory_bus(name: &str, dedupe: Arc<dyn DedupeStore>) -> Arc<dyn Bus> {
    static SHARED: LazyLock<Mutex<HashMap<String, Weak<MemoryBus>>>> =
        LazyLock::new(Mutex::default);
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared.retain(|_, bus| bus.strong_count() > 0);
    if let Some(bus) = shared.get(name).and_then(Weak::upgrade) {
        return bus;
    }
    let bus = Arc::new(MemoryBus::with_dedupe(dedupe));
    shared.insert(name.to_owned(), Arc::downgrade(&bus));
    bus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_a_configuration_error() {
        let settings = BusSettings {
            url: "kafka://user:secret@broker".into(),
            ..BusSettings::default()
        };
        let error = settings.connect(None).await.err().unwrap();
        let shown = error.to_string();
        assert!(shown.contains("bus.url"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

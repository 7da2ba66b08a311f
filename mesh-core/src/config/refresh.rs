//! Refresh over the bus, as Spring Cloud Bus does it: the config server publishes a
//! [`RefreshRequested`] event when its configuration changed (`POST /actuator/busrefresh`),
//! and every running service it names reads its configuration again.

use serde::{Deserialize, Serialize};

use crate::bus::EventType;

/// Configuration changed: the services it is for (`destination`) read theirs again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequested {
    /// Which services: `None` (every one), a service ID (`orders`, or Spring's `orders:**`), or
    /// one instance (`orders:10.0.0.7:8080`).
    #[serde(default)]
    pub destination: Option<String>,
    /// The commit the configuration was read at, when the server's repository is git.
    #[serde(default)]
    pub version: Option<String>,
}

impl EventType for RefreshRequested {
    const TYPE: &'static str = "mesh.config.refresh";
}

impl RefreshRequested {
    /// Whether the refresh is for the instance `instance` of `service`.
    ///
    /// ```
    /// use mesh_core::config::RefreshRequested;
    /// let to = |destination: &str| RefreshRequested { destination: Some(destination.into()), version: None };
    /// assert!(RefreshRequested::default().is_for("orders", "10.0.0.7:8080"));
    /// assert!(to("orders").is_for("orders", "10.0.0.7:8080"));
    /// assert!(to("orders:**").is_for("orders", "10.0.0.7:8080"));
    /// assert!(to("orders:10.0.0.7:8080").is_for("orders", "10.0.0.7:8080"));
    /// assert!(!to("orders:10.0.0.8:8080").is_for("orders", "10.0.0.7:8080"));
    /// assert!(!to("payments").is_for("orders", "10.0.0.7:8080"));
    /// ```
    pub fn is_for(&self, service: &str, instance: &str) -> bool {
        let Some(destination) = self.destination.as_deref() else {
            return true;
        };
        match destination.split_once(':') {
            None => destination == service,
            Some((named, rest)) => named == service && (rest == "**" || rest == instance),
        }
    }
}

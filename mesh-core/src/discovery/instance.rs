use std::{collections::BTreeMap, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};

/// The name a service is called by, compared case-insensitively (Eureka spells application
/// names in capitals, Rust services rarely do). Stored in lower case.
///
/// ```
/// use mesh_core::discovery::ServiceId;
/// assert_eq!(ServiceId::new("INVENTORY-SERVICE"), ServiceId::new("inventory-service"));
/// assert_eq!(ServiceId::new("Inventory").as_str(), "inventory");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct ServiceId(Arc<str>);

/// Whether an instance should receive traffic. Only [`InstanceStatus::Up`] instances do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Serving.
    #[default]
    Up,
    /// Not serving (failed its own health check).
    Down,
    /// Starting up, not serving yet.
    Starting,
    /// Taken out of rotation by an operator.
    OutOfService,
    /// Status not known.
    Unknown,
}

/// One running copy of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique within the service (Eureka's `instanceId`).
    pub id: String,
    /// The service this is an instance of.
    pub service: ServiceId,
    /// Host name or IP address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Whether to connect with TLS.
    #[serde(default)]
    pub secure: bool,
    /// Availability zone, for zone-aware routing.
    #[serde(default)]
    pub zone: Option<String>,
    /// Relative share of traffic for the weighted balancer (default 100).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Free-form key-value pairs (version, management port, …).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Whether the instance takes traffic.
    #[serde(default)]
    pub status: InstanceStatus,
}

fn default_weight() -> u32 {
    100
}

// === impl ServiceId ===

impl ServiceId {
    /// A service id; the name is lower-cased.
    pub fn new(name: &str) -> Self {
        Self(name.to_ascii_lowercase().into())
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ServiceId {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for ServiceId {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

impl From<ServiceId> for String {
    fn from(id: ServiceId) -> Self {
        id.0.to_string()
    }
}

// === impl InstanceStatus ===

impl InstanceStatus {
    /// Eureka's spelling: `UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE`, `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Starting => "STARTING",
            Self::OutOfService => "OUT_OF_SERVICE",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status text was not one of Eureka's five.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown instance status `{0}`")]
pub struct UnknownStatus(String);

impl FromStr for InstanceStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "UP" => Self::Up,
            "DOWN" => Self::Down,
            "STARTING" => Self::Starting,
            "OUT_OF_SERVICE" => Self::OutOfService,
            "UNKNOWN" => Self::Unknown,
            _ => return Err(UnknownStatus(text.to_string())),
        })
    }
}

// === impl Instance ===

impl Instance {
    /// An `UP` instance of `service` at `host:port`, weight 100, with `id` `host:service:port`
    /// (Spring Cloud's default instance id).
    pub fn new(service: impl Into<ServiceId>, host: impl Into<String>, port: u16) -> Self {
        let service = service.into();
        let host = host.into();
        Self {
            id: format!("{host}:{service}:{port}"),
            service,
            host,
            port,
            secure: false,
            zone: None,
            weight: default_weight(),
            metadata: BTreeMap::new(),
            status: InstanceStatus::Up,
        }
    }

    /// `host:port`, for a URI's authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the instance should receive traffic.
    pub fn is_up(&self) -> bool {
        self.status == InstanceStatus::Up
    }
}

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::TlsSettings;
use crate::{auth::AuthSettings, http1::Limits};

/// The `server` section of the configuration.
///
/// ```yaml
/// server:
///   address: 0.0.0.0:8080
///   advertise_host: orders.internal   # what the registry tells callers
///   body_limit: 2097152
///   max_head_bytes: 32768
///   max_fields: 100
///   drain_timeout: 30s
///   idle_timeout: 60s
///   max_deadline: 60s
///   auth:                                 # token verification, off by default
///     jwt: { public_key: /etc/mesh/auth.pem, issuer: auth-service }
///     public: ["/products/**"]
///   edge:                                 # only requests through the gateway, off by default
///     jwt: { public_key: /etc/mesh/edge.pem, issuer: mesh-gateway, audience: mesh-edge }
///     public: ["GET /.well-known/jwks.json"]
///   tls: { cert: /etc/mesh/cert.pem, key: /etc/mesh/key.pem }   # HTTPS, h2 by ALPN
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where to listen; port 0 picks a free port (the registry learns the real one).
    pub address: SocketAddr,
    /// The host the registry advertises; the listening IP when unset (127.0.0.1 when
    /// listening on every interface).
    pub advertise_host: Option<String>,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// Largest request head (request line and fields) accepted, in bytes, over HTTP/1.1 and
    /// as HTTP/2's header list; a larger one gets 431. At least 8 KiB is used.
    pub max_head_bytes: usize,
    /// Most header fields a request may have over HTTP/1.1; one with more gets 431.
    pub max_fields: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long an HTTP/1.1 connection may go without sending a whole request (idle between
    /// requests, or sending too slowly) before it is closed: within twice this time on the
    /// connections mesh reads itself, after a head has taken this long on those hyper serves
    /// (TLS among them). An HTTP/2 connection on which no request begins for this long is
    /// shut down gracefully (`GOAWAY`; open streams finish), within twice this time; an
    /// HTTP/2 peer is also pinged once per this period and dropped, open streams and all, when
    /// it does not answer within another. A request being handled is not held to it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest deadline a caller may ask for; longer ones are cut to it.
    #[serde(with = "humantime_serde")]
    pub max_deadline: Duration,
    /// Token verification on the routes; off unless a key source is set.
    pub auth: AuthSettings,
    /// The gateway's proof required on every request but the runtime's endpoints and the
    /// `public` paths (see [`auth::edge`](crate::auth::edge)); off unless a key source is set.
    /// Its `jwt` requires the gateway's `issuer` and `audience`: `mesh-gateway` and
    /// `mesh-edge` when it names none.
    pub edge: AuthSettings,
    /// HTTPS with these PEM files (HTTP/2 and HTTP/1.1 by ALPN); plain HTTP when unset.
    pub tls: Option<TlsSettings>,
    /// Worker threads serving requests, as nginx's `worker_processes`: each runs its own
    /// single-threaded runtime and accepts on its own listener on `address` (`SO_REUSEPORT`),
    /// so a connection stays on one thread. `0` (the default) serves on the runtime that
    /// starts the mesh.
    pub threads: usize,
}

impl Default for ServerSettings {
    /// `127.0.0.1:0`, 2 MiB bodies, 32 KiB heads of 100 fields, 30 s to drain, 60 s idle, deadlines up to 60 s.
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
            body_limit: Limits::REQUEST.body_bytes,
            max_head_bytes: Limits::REQUEST.head_bytes,
            max_fields: Limits::REQUEST.fields,
            drain_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_deadline: Duration::from_secs(60),
            auth: AuthSettings::default(),
            edge: AuthSettings::default(),
            tls: None,
            threads: 0,
        }
    }
}

impl ServerSettings {
    /// How large a request may be: `body_limit`, `max_head_bytes` and `max_fields`.
    pub fn limits(&self) -> Limits {
        Limits {
            head_bytes: self.max_head_bytes,
            fields: self.max_fields,
            body_bytes: self.body_limit,
        }
    }
}

/// The `management` section of the configuration: where the runtime's own endpoints
/// (`/health`, `/health/live`, `/health/ready`, `/metrics`) are served, as Spring Boot's
/// `management.server.port` moves its actuator.
///
/// ```yaml
/// management:
///   address: 127.0.0.1:8081   # the endpoints here only; unset: on the service's own port
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementSettings {
    /// Where the endpoints are served instead of the service's own address; on that address,
    /// their paths then go to the service like any other.
    pub address: Option<SocketAddr>,
}

/// The `registry` section of the configuration.
///
/// ```yaml
/// registry:
///   url: http://127.0.0.1:8761
///   renewal_interval: 5s
///   lease_duration: 15s
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// The registry's base URL; unset (and no embedded registry) means no registration, and
    /// clients use `clients.<service>.instances`.
    pub url: Option<String>,
    /// Whether this service registers itself (it may only call others).
    pub register: bool,
    /// How often the lease is renewed.
    #[serde(with = "humantime_serde")]
    pub renewal_interval: Duration,
    /// How long the lease lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
}

impl Default for RegistrySettings {
    /// No URL; register; renew every 5 s; a 15 s lease.
    fn default() -> Self {
        Self {
            url: None,
            register: true,
            renewal_interval: Duration::from_secs(5),
            lease_duration: Duration::from_secs(15),
        }
    }
}

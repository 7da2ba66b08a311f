//! The gateway's YAML: routes as Spring Cloud Gateway users write them, and edge auth.

use std::{path::Path, time::Duration};

use mesh_core::{
    auth::{JwtConfig, edge::EdgeSigning},
    error::{ErrorKind, MeshError},
    resilience::{
        circuit_breaker::CircuitBreakerConfig, rate_limit::RateLimitConfig, retry::RetryConfig,
    },
};
use serde::Deserialize;

use crate::path::PathRules;

/// The whole gateway file.
///
/// ```yaml
/// routes:
///   - id: products
///     uri: lb://product-service
///     predicates: [Path=/api/products/**, Method=GET]
///     filters: [StripPrefix=1]
///     auth: public
///   - id: orders
///     uri: lb://order-service
///     predicates: [Path=/api/orders/**]
///     filters: [StripPrefix=1]
///     auth: [customer]
///     rate_limit: { replenish_rate: 10, burst_capacity: 20, key: subject }
///     timeout: 2s
/// auth:
///   jwt: { jwks_url: http://auth-service/.well-known/jwks.json, issuer: auth-service }
/// ```
///
/// The same file may hold the gateway's own mesh settings (`server`, `registry`, `clients`),
/// read by its `Mesh`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// The routes, tried in `order` (then file order); the first match wins.
    pub routes: Vec<RouteConfig>,
    /// How tokens are verified at the edge.
    pub auth: EdgeAuthConfig,
    /// Which browser origins may call the gateway; none by default.
    pub cors: Option<CorsConfig>,
    /// Redis shared by every gateway replica: the routes' rate limits and the token cache.
    pub redis: Option<RedisSettings>,
    /// The proxies (addresses or networks, `10.0.0.0/8`) in front of the gateway whose
    /// `X-Forwarded-*`, `X-Real-IP` and `Forwarded` fields are believed; from any other peer
    /// they are dropped and the gateway sets its own. None by default: the gateway is the edge.
    pub trusted_proxies: Vec<String>,
    /// Stricter rules for request paths than the normalisation every path gets.
    pub paths: PathRules,
    /// The gateway's proof, signed with this key and sent upstream on every request, that
    /// the request came through it: services with `server.edge` refuse any request without
    /// one (see `mesh::auth::edge`). None by default.
    pub edge: Option<EdgeSigning>,
}

/// Where the shared Redis is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
}

/// The CORS policy, answered at the edge (preflights never reach a service).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins (`https://shop.example.com`), or `*` for any.
    pub allowed_origins: Vec<String>,
    /// Allowed methods.
    pub allowed_methods: Vec<String>,
    /// Allowed request headers.
    pub allowed_headers: Vec<String>,
    /// Whether cookies and credentials may be sent (never with a `*` origin).
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .into(),
            allowed_headers: ["authorization", "content-type", "x-request-id"]
                .map(String::from)
                .into(),
            allow_credentials: true,
            max_age: Duration::from_secs(600),
        }
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs and metrics.
    pub id: String,
    /// `lb://service-id` (discovery and balancing) or `http://host:port` (a fixed upstream).
    pub uri: String,
    /// Spring Cloud Gateway's shorthand: `Path=/api/**`, `Method=GET,POST`,
    /// `Host=**.example.com`, `Header=X-Tenant, \d+`, `Query=green` or `Query=color, gr.+`,
    /// `Cookie=session`, `After=…`, `Before=…`, `Between=…, …` (RFC 3339 date-times, Spring's
    /// `[Zone]` suffix accepted), `RemoteAddr=10.0.0.0/8`; or its expanded form,
    /// `{name: Path, args: {patterns: [/api/**]}}`.
    #[serde(default, deserialize_with = "shorthand_list")]
    pub predicates: Vec<String>,
    /// Spring Cloud Gateway's shorthand: `StripPrefix=1`, `SetPath=/{segment}`,
    /// `RewritePath=/red/(?<segment>.*), /$\{segment}`, `AddRequestHeader=X-A, 1`,
    /// `RemoveRequestHeader=Cookie`, `AddResponseHeader=X-B, 2`, `RemoveResponseHeader=Server`;
    /// or the expanded form, `{name: StripPrefix, args: {parts: 1}}`.
    #[serde(default, deserialize_with = "shorthand_list")]
    pub filters: Vec<String>,
    /// Lower first; routes of equal order keep their file order.
    #[serde(default)]
    pub order: i32,
    /// `required` (the default: any valid token), `public`, or a list of roles (any one).
    #[serde(default)]
    pub auth: RouteAuth,
    /// A rate limit on this route (keyed by the `key` it names).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// The longest the upstream may take, retries included; the remaining budget travels
    /// upstream as a deadline.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Retries of failed calls (idempotent methods only unless `retry_non_idempotent`).
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// A circuit breaker on this route.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// What answers when the upstream call fails: the circuit is open, the call timed out,
    /// or no connection could be made (instead of the 503, 504 or 502).
    #[serde(default)]
    pub fallback: Option<Fallback>,
    /// Keeps a session on one instance of an `lb://` route's service (Socket.IO's polling
    /// transport: every request of a session must reach the instance that holds it), by the
    /// value of a query parameter (`sid`) or a cookie.
    #[serde(default)]
    pub sticky: Option<Sticky>,
    /// A login route: the token in its JSON answer (`token` or `access_token`) becomes the
    /// gateway's HttpOnly cookie.
    #[serde(default)]
    pub login: bool,
    /// A logout route: its answer clears the cookie.
    #[serde(default)]
    pub logout: bool,
}

/// A route's `sticky` option: what keys a session, so its requests reach one instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// The query parameter whose value keys the session (Socket.IO: `sid`).
    #[serde(default)]
    pub query: Option<String>,
    /// The cookie whose value keys the session, when the query does not name one.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// What answers when a route's upstream call fails (its circuit is open, it timed out, the
/// connection failed): a static answer, or another path of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Spring Cloud Gateway's `fallbackUri`: `forward:/path` routes the request again, with
    /// this path, through the gateway's routes (its body is not replayed). When set, `status`
    /// and `body` are not used.
    #[serde(default)]
    pub uri: Option<String>,
    /// The status of the static answer (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// The JSON body of the static answer.
    #[serde(default)]
    pub body: serde_json::Value,
}

fn ok() -> u16 {
    200
}

impl Fallback {
    /// The static answer.
    pub fn response(&self) -> axum::response::Response {
        let status = http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::OK);
        axum::response::IntoResponse::into_response((status, axum::Json(self.body.clone())))
    }

    /// The path a `forward:` fallback routes to.
    pub fn forward_path(&self) -> Option<&str> {
        self.uri.as_deref()?.strip_prefix("forward:")
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawAuth")]
pub enum RouteAuth {
    /// Secure by default: any valid token.
    #[default]
    Required,
    /// No token needed.
    Public,
    /// A valid token carrying any one of these roles.
    Roles(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAuth {
    Mode(AuthMode),
    Roles(Vec<String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AuthMode {
    Required,
    Public,
}

impl From<RawAuth> for RouteAuth {
    fn from(raw: RawAuth) -> Self {
        match raw {
            RawAuth::Mode(AuthMode::Required) => Self::Required,
            RawAuth::Mode(AuthMode::Public) => Self::Public,
            RawAuth::Roles(roles) => Self::Roles(roles),
        }
    }
}

/// Token verification at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeAuthConfig {
    /// The keys and claims; with no key source, only `public` routes answer.
    pub jwt: JwtConfig,
    /// The HttpOnly cookie a browser's token may come in, instead of `Authorization`.
    pub cookie: String,
    /// Whether the cookie is `Secure` (sent over HTTPS only); turn off for plain-HTTP
    /// development only.
    pub secure_cookie: bool,
    /// Whether a login answer's tokens (`token`, `access_token`, `refresh_token`) are taken
    /// out of its JSON once the cookie holds the access token, so a page's scripts never see
    /// them. Off by default (a client may use the bearer token instead of the cookie).
    pub cookie_only: bool,
    /// How many verified tokens are remembered (until they expire), so a repeated token
    /// skips the signature check.
    pub token_cache_size: usize,
}

impl Default for EdgeAuthConfig {
    fn default() -> Self {
        Self {
            jwt: JwtConfig::default(),
            cookie: "mesh_token".into(),
            secure_cookie: true,
            cookie_only: false,
            token_cache_size: 100_000,
        }
    }
}

impl GatewayConfig {
    /// Reads a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MeshError::new(ErrorKind::Config, format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|e| {
            MeshError::new(
                ErrorKind::Config,
                format!("{}: {}", path.display(), e.message()),
            )
        })
    }

    /// Reads YAML text; the error names the offending key.
    pub fn from_yaml(text: &str) -> Result<Self, MeshError> {
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            MeshError::new(ErrorKind::Config, format!("`{}`: {}", e.path(), e.inner()))
        })
    }
}

/// A predicate or filter as Spring Cloud Gateway accepts it: shorthand, or expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum Definition {
    Shorthand(String),
    Expanded {
        name: String,
        #[serde(default)]
        args: serde_json::Map<String, serde_json::Value>,
    },
}

/// The argument names of Spring's expanded form, in shorthand order.
const ARGUMENTS: &[(&str, &[&str])] = &[
    ("Path", &["patterns", "pattern"]),
    ("Host", &["patterns", "pattern"]),
    ("Method", &["methods", "method"]),
    ("Header", &["header", "regexp"]),
    ("Query", &["param", "regexp"]),
    ("Cookie", &["name", "regexp"]),
    ("After", &["datetime"]),
    ("Before", &["datetime"]),
    ("Between", &["datetime1", "datetime2"]),
    ("RemoteAddr", &["sources", "source"]),
    ("StripPrefix", &["parts"]),
    ("SetPath", &["template"]),
    ("RewritePath", &["regexp", "replacement"]),
    ("AddRequestHeader", &["name", "value"]),
    ("RemoveRequestHeader", &["name"]),
    ("AddResponseHeader", &["name", "value"]),
    ("RemoveResponseHeader", &["name"]),
];

fn shorthand_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let definitions = Vec::<Definition>::deserialize(deserializer)?;
    Ok(definitions.into_iter().map(shorthand).collect())
}

/// `{name: Header, args: {header: X-Id, regexp: '\d+'}}` → `Header=X-Id, \d+`. Arguments
/// Spring generated itself (`_genkey_0`, `_genkey_1`, …) keep their numeric order.
fn shorthand(definition: Definition) -> String {
    let (name, args) = match definition {
        Definition::Shorthand(text) => return text,
        Definition::Expanded { name, args } => (name, args),
    };
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let known = ARGUMENTS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, keys)| *keys)
        .unwrap_or_default();
    let mut values: Vec<String> = known
        .iter()
        .filter_map(|key| args.get(*key).map(text))
        .collect();
    if values.is_empty() {
        let mut generated: Vec<(u32, String)> = args
            .iter()
            .filter_map(|(key, value)| {
                Some((key.strip_prefix("_genkey_")?.parse().ok()?, text(value)))
            })
            .collect();
        generated.sort();
        values = generated.into_iter().map(|(_, v)| v).collect();
    }
    format!("{name}={}", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expanded_form_reads_as_the_shorthand() {
        let config = GatewayConfig::from_yaml(
            r#"
routes:
  - id: expanded
    uri: lb://product-service
    predicates:
      - name: Path
        args: { patterns: [/api/products/**, /catalog/**] }
      - name: Header
        args: { header: X-Request-Id, regexp: '\d+' }
      - name: Method
        args: { _genkey_1: POST, _genkey_0: GET }
      - Host=**.example.com
      - name: Between
        args: { datetime2: '2999-01-21T17:42:47Z', datetime1: '2017-01-20T17:42:47Z' }
      - name: RemoteAddr
        args: { sources: [10.0.0.0/8, 192.168.1.7] }
    filters:
      - name: StripPrefix
        args: { parts: 1 }
      - name: RewritePath
        args: { regexp: '/red/(?<segment>.*)', replacement: '/$\{segment}' }
"#,
        )
        .unwrap();
        let route = &config.routes[0];
        assert_eq!(
            route.predicates,
            [
                "Path=/api/products/**,/catalog/**",
                "Header=X-Request-Id, \\d+",
                "Method=GET, POST",
                "Host=**.example.com",
                "Between=2017-01-20T17:42:47Z, 2999-01-21T17:42:47Z",
                "RemoteAddr=10.0.0.0/8,192.168.1.7",
            ]
        );
        assert_eq!(
            route.filters,
            [
                "StripPrefix=1",
                "RewritePath=/red/(?<segment>.*), /$\\{segment}"
            ]
        );
    }
}

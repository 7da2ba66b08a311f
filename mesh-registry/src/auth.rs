//! Who may write to the registry: HTTP Basic users and, optionally, JWT bearer tokens.
//!
//! Once credentials are configured ([`AuthConfig::is_configured`]), every write — register,
//! renew, cancel, status override — needs them, and an instance may be renewed, changed or
//! cancelled only by the identity that registered it or by an operator. Reads stay open unless
//! [`AuthConfig::protect_reads`] is set. Without credentials the registry takes anonymous writes,
//! and the binary then binds loopback only ([`bind_address`]).

use std::{fmt, net::SocketAddr};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use mesh_core::{
    auth::{AuthError, JwtConfig, JwtVerifier, bearer_value},
    error::{ErrorKind, MeshError},
};
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

/// The challenge a 401 answer carries (RFC 7617).
const CHALLENGE: &str = "Basic realm=\"mesh-registry\", charset=\"UTF-8\"";

/// Credentials of the registry's writers.
///
/// ```
/// use mesh_registry::auth::{AuthConfig, User};
/// let auth = AuthConfig {
///     users: vec![User::new("orders", "s3cret"), User::operator("ops", "0ps-s3cret")],
///     ..AuthConfig::default()
/// };
/// assert!(auth.is_configured());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Users allowed to write, authenticated with HTTP Basic (as Eureka clients send it from
    /// `http://user:pass@host:8761/eureka/`).
    pub users: Vec<User>,
    /// Verification of mesh JWT bearer tokens; a token's `sub` becomes the identity `jwt:<sub>`.
    #[serde(skip_serializing)]
    pub jwt: Option<JwtConfig>,
    /// The role a token needs to write at all; `None` lets every valid token write.
    pub jwt_write_role: Option<String>,
    /// The role that makes a token's holder an operator (default `registry-operator`).
    pub operator_role: String,
    /// Whether reads (catalogue, watch, gRPC watch, `/metrics`) need credentials too. `/health`
    /// stays open for probes.
    pub protect_reads: bool,
    /// Whether a writer that is no operator may register instances of one service only: the
    /// one named as it is (a Basic user's name, a token's `sub`; case-insensitive). Without
    /// it any writer may add instances to any service, though it may change only its own.
    pub service_per_identity: bool,
}

/// A Basic user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user name; the owner of the instances this user registers.
    pub name: String,
    /// The password, compared in constant time; never serialized or logged.
    #[serde(skip_serializing, default)]
    pub password: String,
    /// Whether the user is an operator, allowed to change and cancel every instance.
    #[serde(default)]
    pub operator: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity: a Basic user's name, or `jwt:<sub>` for a token.
    pub name: String,
    /// Whether the caller may change every instance.
    pub operator: bool,
    /// Set when the caller may register instances of this service only (see
    /// [`AuthConfig::service_per_identity`]).
    pub service: Option<String>,
}

/// Checks the credentials a request presents against an [`AuthConfig`].
#[derive(Clone)]
pub struct Authenticator {
    enabled: bool,
    service_per_identity: bool,
    users: Vec<User>,
    jwt: Option<JwtVerifier>,
    jwt_write_role: Option<String>,
    operator_role: String,
    protect_reads: bool,
}

/// Where the registry listens, and why, when that differs from what was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindDecision {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Set when the configured address was replaced by loopback: what to log.
    pub warning: Option<String>,
}

// === impl AuthConfig ===

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            jwt: None,
            jwt_write_role: None,
            operator_role: "registry-operator".into(),
            protect_reads: false,
            service_per_identity: false,
        }
    }
}

impl AuthConfig {
    /// Whether any credentials are configured (then writes need them).
    pub fn is_configured(&self) -> bool {
        !self.users.is_empty() || self.jwt.is_some()
    }

    /// Reads users written as `name:password[:operator]`, separated by commas, as
    /// `MESH_REGISTRY_USERS` holds them. A password may hold `:` but not `,`.
    ///
    /// ```
    /// use mesh_registry::auth::AuthConfig;
    /// let users = AuthConfig::parse_users("orders:s3cret, ops:p:w:operator").unwrap();
    /// assert_eq!((users[0].name.as_str(), users[0].operator), ("orders", false));
    /// assert_eq!((users[1].password.as_str(), users[1].operator), ("p:w", true));
    /// ```
    pub fn parse_users(text: &str) -> Result<Vec<User>, MeshError> {
        let mut users = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, rest) = entry.split_once(':').ok_or_else(|| {
                MeshError::new(
                    ErrorKind::Config,
                    "a registry user is `name:password[:operator]`",
                )
            })?;
            let (password, operator) = match rest.strip_suffix(":operator") {
                Some(password) => (password, true),
                None => (rest, false),
            };
            if name.is_empty() || password.is_empty() {
                return Err(MeshError::new(
                    ErrorKind::Config,
                    format!("registry user {name:?} needs a name and a password"),
                ));
            }
            users.push(User {
                name: name.into(),
                password: password.into(),
                operator,
            });
        }
        Ok(users)
    }
}

// === impl User ===

impl User {
    /// A user that may write its own instances.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            operator: false,
        }
    }

    /// An operator: may change and cancel every instance.
    pub fn operator(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            operator: true,
            ..Self::new(name, password)
        }
    }
}

/// The password never reaches a log.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("operator", &self.operator)
            .finish()
    }
}

// === impl Caller ===

impl Caller {
    /// Whether this caller may renew, change or cancel a registration owned by `owner`
    /// (`None`: made while the registry took anonymous writes, so only an operator may).
    pub fn may_change(&self, owner: Option<&str>) -> bool {
        self.operator || owner == Some(self.name.as_str())
    }

    /// Whether this caller may register instances of `service`.
    pub fn may_register(&self, service: &str) -> bool {
        self.operator
            || self
                .service
                .as_deref()
                .is_none_or(|own| own.eq_ignore_ascii_case(service))
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// An authenticator for `config`; an error when its JWT settings are invalid.
    pub fn new(config: &AuthConfig) -> Result<Self, MeshError> {
        Ok(Self {
            enabled: config.is_configured(),
            service_per_identity: config.service_per_identity,
            users: config.users.clone(),
            jwt: config.jwt.clone().map(JwtVerifier::new).transpose()?,
            jwt_write_role: config.jwt_write_role.clone(),
            operator_role: config.operator_role.clone(),
            protect_reads: config.protect_reads,
        })
    }

    /// An authenticator refusing every write: what a registry whose credentials could not be
    /// loaded falls back to, so a mistake never opens it.
    pub fn deny_all() -> Self {
        Self {
            enabled: true,
            service_per_identity: true,
            users: Vec::new(),
            jwt: None,
            jwt_write_role: None,
            operator_role: String::new(),
            protect_reads: true,
        }
    }

    /// Whether writes need credentials.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether reads need credentials.
    pub fn protects_reads(&self) -> bool {
        self.protect_reads && self.is_enabled()
    }

    /// The caller a request's `Authorization` header proves, for a write. `Ok(None)` when no
    /// credentials are configured (anonymous writes); a 401 error when they are and the header
    /// is missing or wrong, a 403 when a token lacks the write role.
    pub async fn writer(&self, headers: &HeaderMap) -> Result<Option<Caller>, MeshError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let Some(value) = single_authorization(headers)? else {
            return Err(unauthorized(
                "credentials are required to write to the registry",
            ));
        };
        if let Some(credentials) = basic_value(value.as_bytes()) {
            return self.basic(&credentials).map(Some);
        }
        if let Some(token) = bearer_value(value.as_bytes()) {
            return self.bearer(token, true).await.map(Some);
        }
        Err(unauthorized(
            "the registry accepts Basic credentials or a bearer token",
        ))
    }

    /// Checks a reader's credentials when reads are protected; `Ok(())` otherwise.
    pub async fn reader(&self, headers: &HeaderMap) -> Result<(), MeshError> {
        if !self.protects_reads() {
            return Ok(());
        }
        let Some(value) = single_authorization(headers)? else {
            return Err(unauthorized(
                "credentials are required to read the registry",
            ));
        };
        if let Some(credentials) = basic_value(value.as_bytes()) {
            return self.basic(&credentials).map(drop);
        }
        if let Some(token) = bearer_value(value.as_bytes()) {
            return self.bearer(token, false).await.map(drop);
        }
        Err(unauthorized(
            "the registry accepts Basic credentials or a bearer token",
        ))
    }

    /// Every user is compared, each in constant time, so neither a name nor a password is
    /// found out by timing.
    fn basic(&self, credentials: &[u8]) -> Result<Caller, MeshError> {
        let (name, password) = match credentials.iter().position(|&b| b == b':') {
            Some(colon) => (&credentials[..colon], &credentials[colon + 1..]),
            None => (credentials, &[][..]),
        };
        let mut found: Option<&User> = None;
        for user in &self.users {
            let matches = constant_time_eq(user.name.as_bytes(), name)
                & constant_time_eq(user.password.as_bytes(), password);
            if bool::from(matches) {
                found = Some(user);
            }
        }
        found
            .map(|user| Caller {
                name: user.name.clone(),
                operator: user.operator,
                service: self.service_per_identity.then(|| user.name.clone()),
            })
            .ok_or_else(|| unauthorized("wrong user name or password"))
    }

    async fn bearer(&self, token: &str, write: bool) -> Result<Caller, MeshError> {
        let Some(verifier) = &self.jwt else {
            return Err(unauthorized("this registry accepts no bearer tokens"));
        };
        let identity = verifier.verify(token).await.map_err(|error| match error {
            AuthError::KeysUnavailable => MeshError::from(error),
            other => unauthorized(other.to_string()),
        })?;
        let operator = identity.has_role(&self.operator_role);
        if write
            && !operator
            && let Some(role) = &self.jwt_write_role
            && !identity.has_role(role)
        {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                format!("writing to the registry needs the `{role}` role"),
            ));
        }
        if identity.subject.is_empty() {
            return Err(unauthorized("the token has no `sub` claim"));
        }
        Ok(Caller {
            // Token subjects live in their own namespace: a token issued for an end user
            // named `orders` is not the Basic user `orders`.
            name: format!("jwt:{}", identity.subject),
            operator,
            service: self.service_per_identity.then(|| identity.subject.clone()),
        })
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("users", &self.users.len())
            .field("jwt", &self.jwt.is_some())
            .field("jwt_write_role", &self.jwt_write_role)
            .field("operator_role", &self.operator_role)
            .field("protect_reads", &self.protect_reads)
            .finish()
    }
}

/// A 401 error; its response carries a Basic challenge.
pub(crate) fn unauthorized(message: impl Into<String>) -> MeshError {
    MeshError::new(ErrorKind::Unauthorized, message)
}

/// The `WWW-Authenticate` value of a 401 answer.
pub(crate) fn challenge() -> HeaderValue {
    HeaderValue::from_static(CHALLENGE)
}

/// The decoded `user:password` of an `Authorization: Basic …` value.
fn basic_value(value: &[u8]) -> Option<Vec<u8>> {
    let encoded = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()
}

/// Equality whose time depends only on `expected`'s length, never on where `given` differs
/// or how long it is.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> Choice {
    let mut equal = (expected.len() as u64).ct_eq(&(given.len() as u64));
    for (i, byte) in expected.iter().enumerate() {
        equal &= byte.ct_eq(given.get(i).unwrap_or(&!byte));
    }
    equal
}

/// Where to listen: `configured`, unless no credentials are configured and it is not a
/// loopback address — then `127.0.0.1` on the same port, with a warning saying why. A
/// registry that takes anonymous writes must not be reachable from other machines.
///
/// ```
/// use mesh_registry::auth::bind_address;
/// let open = bind_address("0.0.0.0:8761".parse().unwrap(), false);
/// assert_eq!(open.addr, "127.0.0.1:8761".parse().unwrap());
/// assert!(open.warning.is_some());
/// let guarded = bind_address("0.0.0.0:8761".parse().unwrap(), true);
/// assert_eq!(guarded.addr, "0.0.0.0:8761".parse().unwrap());
/// ```
pub fn bind_address(configured: SocketAddr, credentials_configured: bool) -> BindDecision {
    if credentials_configured || configured.ip().is_loopback() {
        return BindDecision {
            addr: configured,
            warning: None,
        };
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], configured.port()));
    BindDecision {
        addr,
        warning: Some(format!(
            "no registry credentials are configured, so anyone reaching {configured} could \
             re-point, cancel or forge registrations: listening on {addr} only. Set \
             MESH_REGISTRY_USERS (`name:password[:operator]`, comma-separated) or \
             MESH_REGISTRY_JWT_SECRET / MESH_REGISTRY_JWT_PUBLIC_KEY / MESH_REGISTRY_JWT_JWKS_URL \
             to listen on {configured}"
        )),
    }
}

/// The request's one `Authorization` field, if any; two are refused (`400`): which of them a
/// proxy in front checked is not known.
fn single_authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, MeshError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(MeshError::new(
            ErrorKind::BadRequest,
            "a request may carry one Authorization field",
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn basic_users_are_told_apart() {
        let auth = Authenticator::new(&AuthConfig {
            users: vec![User::new("orders", "pw"), User::operator("ops", "pw2")],
            ..AuthConfig::default()
        })
        .unwrap();
        let caller = auth.writer(&basic("orders", "pw")).await.unwrap().unwrap();
        assert_eq!(caller.name, "orders");
        assert!(!caller.operator);
        assert!(
            auth.writer(&basic("ops", "pw2"))
                .await
                .unwrap()
                .unwrap()
                .operator
        );
        for (user, password) in [
            ("orders", "pw2"),
            ("orders", "p"),
            ("orders", "pwx"),
            ("x", "pw"),
        ] {
            let error = auth.writer(&basic(user, password)).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthorized, "{user}:{password}");
        }
        let error = auth.writer(&HeaderMap::new()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
    }

    #[tokio::test]
    async fn without_credentials_writes_are_anonymous() {
        let auth = Authenticator::new(&AuthConfig::default()).unwrap();
        assert_eq!(auth.writer(&HeaderMap::new()).await.unwrap(), None);
        assert!(auth.reader(&HeaderMap::new()).await.is_ok());
    }

    #[tokio::test]
    async fn unusable_credentials_refuse_everything() {
        let auth = Authenticator::deny_all();
        let error = auth.writer(&basic("orders", "pw")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        let error = auth.reader(&HeaderMap::new()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn comparison_needs_every_byte_and_the_length() {
        assert!(bool::from(constant_time_eq(b"secret", b"secret")));
        assert!(!bool::from(constant_time_eq(b"secret", b"secreT")));
        assert!(!bool::from(constant_time_eq(b"secret", b"secre")));
        assert!(!bool::from(constant_time_eq(b"secret", b"secrets")));
        assert!(!bool::from(constant_time_eq(b"", b"x")));
        assert!(bool::from(constant_time_eq(b"", b"")));
    }

    #[test]
    fn loopback_is_kept_and_other_addresses_need_credentials() {
        let loopback = bind_address("127.0.0.1:9000".parse().unwrap(), false);
        assert_eq!(loopback.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(loopback.warning, None);
        let v6 = bind_address("[::1]:9000".parse().unwrap(), false);
        assert_eq!(v6.warning, None);
        let public = bind_address("10.1.2.3:9000".parse().unwrap(), false);
        assert_eq!(public.addr, "127.0.0.1:9000".parse().unwrap());
        assert!(public.warning.unwrap().contains("MESH_REGISTRY_USERS"));
        let any6 = bind_address("[::]:9000".parse().unwrap(), false);
        assert_eq!(any6.addr, "127.0.0.1:9000".parse().unwrap());
        let guarded = bind_address("10.1.2.3:9000".parse().unwrap(), true);
        assert_eq!(guarded.addr, "10.1.2.3:9000".parse().unwrap());
        assert_eq!(guarded.warning, None);
    }

    #[test]
    fn users_parse_and_bad_entries_are_refused() {
        assert!(AuthConfig::parse_users("").unwrap().is_empty());
        assert!(AuthConfig::parse_users("nocolon").is_err());
        assert!(AuthConfig::parse_users("name:").is_err());
        assert!(AuthConfig::parse_users(":pw").is_err());
        let users = AuthConfig::parse_users("a:hunter2,c:d:operator").unwrap();
        assert_eq!(
            users,
            vec![User::new("a", "hunter2"), User::operator("c", "d")]
        );
        assert!(!format!("{users:?}").contains("hunter2"), "{users:?}");
    }
}

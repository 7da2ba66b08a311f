use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind as JwtErrorKind,
};
use serde_json::Value;

use super::{JwtConfig, family::Family, jwks::Jwks};
use crate::error::{ErrorKind, MeshError};

/// Checks bearer tokens. Clones share the keys.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    roles_claim: String,
}

enum Keys {
    Static(DecodingKey, Family),
    Jwks(Box<Jwks>),
}

/// The verified caller, put among the request's extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The `sub` claim (empty when the token has none).
    pub subject: String,
    /// The roles from the configured claim.
    pub roles: Vec<String>,
    /// Every claim.
    pub claims: BTreeMap<String, Value>,
}

impl Identity {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a token was refused. Every case is a 401 except [`AuthError::KeysUnavailable`] (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("a bearer token is required")]
    Missing,
    /// The token is not a well-formed JWT (this includes `alg: none`).
    #[error("the token is malformed")]
    Malformed,
    /// The token's algorithm is not one this service accepts for its key.
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the required issuer.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// `aud` does not name this service.
    #[error("the token's audience is not accepted")]
    Audience,
    /// A required claim is missing.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    /// No key with the token's `kid` is known.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// The JWKS could not be fetched.
    #[error("the verification keys are unavailable")]
    KeysUnavailable,
}

impl From<AuthError> for MeshError {
    fn from(error: AuthError) -> Self {
        let kind = match error {
            AuthError::KeysUnavailable => ErrorKind::Unavailable,
            _ => ErrorKind::Unauthorized,
        };
        MeshError::new(kind, error.to_string())
    }
}

fn config_error(message: impl Into<String>) -> MeshError {
    MeshError::new(ErrorKind::Config, message)
}

impl JwtVerifier {
    /// A verifier for `config`; an error when it names no key source or several, when the key
    /// cannot be read, or when an algorithm does not fit the key.
    pub fn new(config: JwtConfig) -> Result<Self, MeshError> {
        let sources = [
            config.secret.is_some(),
            config.public_key.is_some(),
            config.jwks_url.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(config_error(
                "jwt: set exactly one of `secret`, `public_key` and `jwks_url`",
            ));
        }
        let keys = if let Some(secret) = &config.secret {
            if secret.len() < 32 {
                return Err(config_error("jwt.secret: use at least 32 bytes"));
            }
            Keys::Static(DecodingKey::from_secret(secret.as_bytes()), Family::Hmac)
        } else if let Some(pem) = &config.public_key {
            let (key, family) = read_public_key(pem)?;
            Keys::Static(key, family)
        } else {
            let url = config.jwks_url.as_deref().unwrap_or_default();
            Keys::Jwks(Box::new(Jwks::new(
                url,
                config.jwks_refresh.unwrap_or(Duration::from_secs(300)),
            )?))
        };
        let families: Vec<Family> = match &keys {
            Keys::Static(_, family) => vec![*family],
            Keys::Jwks(_) => vec![Family::Rsa, Family::Ec, Family::Ed],
        };
        let algorithms = if config.algorithms.is_empty() {
            families.iter().flat_map(|f| f.algorithms()).collect()
        } else {
            if let Some(bad) = config
                .algorithms
                .iter()
                .find(|a| !Family::of(**a).is_some_and(|f| families.contains(&f)))
            {
                return Err(config_error(format!(
                    "jwt.algorithms: {bad:?} does not fit the configured key"
                )));
            }
            config.algorithms.clone()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                algorithms,
                issuer: config.issuer,
                audience: config.audience,
                leeway: config.leeway.unwrap_or(Duration::from_secs(30)),
                roles_claim: config.roles_claim.unwrap_or_else(|| "roles".into()),
            }),
        })
    }

    /// Verifies `token` (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let inner = &self.inner;
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !inner.algorithms.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let family = Family::of(header.alg).ok_or(AuthError::Algorithm)?;
        let key = match &inner.keys {
            Keys::Static(key, key_family) if *key_family == family => key.clone(),
            Keys::Static(..) => return Err(AuthError::Algorithm),
            Keys::Jwks(jwks) => {
                let (key, key_family) = jwks.key(header.kid.as_deref()).await?;
                if key_family != family {
                    return Err(AuthError::Algorithm);
                }
                key
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = inner.leeway.as_secs();
        validation.validate_nbf = true;
        match &inner.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &inner.issuer {
            validation.set_issuer(&[issuer]);
        }
        // A configured claim is required: a token without it is not one this service's
        // issuer or audience vouched for.
        let required = [
            Some("exp"),
            inner.issuer.as_ref().map(|_| "iss"),
            inner.audience.as_ref().map(|_| "aud"),
        ];
        validation.set_required_spec_claims(&required.into_iter().flatten().collect::<Vec<_>>());
        let data =
            decode::<BTreeMap<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    JwtErrorKind::ExpiredSignature => AuthError::Expired,
                    JwtErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    JwtErrorKind::InvalidIssuer => AuthError::Issuer,
                    JwtErrorKind::InvalidAudience => AuthError::Audience,
                    JwtErrorKind::InvalidSignature => AuthError::Signature,
                    JwtErrorKind::InvalidAlgorithm => AuthError::Algorithm,
                    JwtErrorKind::MissingRequiredClaim(claim) => {
                        AuthError::MissingClaim(claim.clone())
                    }
                    _ => AuthError::Malformed,
                }
            })?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let roles = match claims.get(&inner.roles_claim) {
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(roles)) => roles.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(Identity {
            subject,
            roles,
            claims,
        })
    }
}

/// Reads a PEM public key (inline, or the file it names) and tells its family.
fn read_public_key(pem: &str) -> Result<(DecodingKey, Family), MeshError> {
    let text = if pem.trim_start().starts_with("-----BEGIN") {
        pem.to_owned()
    } else {
        std::fs::read_to_string(pem)
            .map_err(|e| config_error(format!("jwt.public_key: reading `{pem}`: {e}")))?
    };
    let bytes = text.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((key, Family::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Ok((key, Family::Ec));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok((key, Family::Ed));
    }
    Err(config_error(
        "jwt.public_key: not an RSA, EC or Ed25519 public key in PEM",
    ))
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.inner.algorithms)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

//! Issuing access tokens: ES256 JWTs signed by a key ring that rotates, its public keys served
//! as a JWKS for every verifier (the gateway, services with `server.auth`).
//!
//! The ring holds the key that signs now, the key that will sign after the next rotation
//! (published ahead, so verifiers that refetched since the last rotation know it before its
//! first token), and retired keys until the last token they signed has expired.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::random_token;
use crate::error::{ErrorKind, MeshError};

/// What a [`TokenIssuer`] puts in its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The `iss` claim (verifiers check it with `jwt.issuer`).
    pub issuer: String,
    /// The `aud` claim, when set (verifiers check it with `jwt.audience`).
    pub audience: Option<String>,
    /// How long an access token lasts (its `exp`).
    pub token_ttl: Duration,
    /// The claim the roles go in (verifiers read it with `jwt.roles_claim`).
    pub roles_claim: String,
}

impl IssuerSettings {
    /// Tokens from `issuer`, lasting 15 minutes, roles in `roles`, no audience.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: None,
            token_ttl: Duration::from_secs(15 * 60),
            roles_claim: "roles".into(),
        }
    }

    /// Tokens for `audience` (the `aud` claim).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// How long an access token lasts.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }
}

/// An access token as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires (OAuth's `expires_in`).
    pub expires_in: u64,
    /// The key that signed it.
    pub kid: String,
}

/// Signs access tokens with a rotating ES256 key ring and publishes the ring's public keys.
/// Clones share the ring.
///
/// ```
/// use mesh_core::auth::{IssuerSettings, TokenIssuer};
///
/// # fn run() -> Result<(), mesh_core::MeshError> {
/// let issuer = TokenIssuer::new(IssuerSettings::new("auth-service"))?;
/// let token = issuer.issue("ada", &["customer".to_owned()])?;
/// assert_eq!(token.token.split('.').count(), 3);
/// let jwks = issuer.jwks();
/// assert!(jwks["keys"].as_array().unwrap().iter().any(|key| key["kid"] == token.kid.as_str()));
/// // A new key signs from now on; the old one keeps verifying until its tokens expire.
/// issuer.rotate()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    settings: IssuerSettings,
    ring: Mutex<Ring>,
    random: SystemRandom,
}

struct Ring {
    current: SigningKey,
    next: SigningKey,
    /// Keys that signed before, each with when its last token expires.
    retired: VecDeque<(SigningKey, SystemTime)>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// The public point's coordinates, base64url.
    x: String,
    y: String,
}

/// The claims of an issued token.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    #[serde(flatten)]
    roles: serde_json::Map<String, serde_json::Value>,
}

impl TokenIssuer {
    /// An issuer with a fresh key ring.
    pub fn new(settings: IssuerSettings) -> Result<Self, MeshError> {
        let random = SystemRandom::new();
        let ring = Ring {
            current: SigningKey::generate(&random)?,
            next: SigningKey::generate(&random)?,
            retired: VecDeque::new(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                ring: Mutex::new(ring),
                random,
            }),
        })
    }

    /// The settings tokens are issued with.
    pub fn settings(&self) -> &IssuerSettings {
        &self.inner.settings
    }

    /// An access token for `subject` with `roles`, signed by the current key.
    pub fn issue(&self, subject: &str, roles: &[String]) -> Result<AccessToken, MeshError> {
        let settings = &self.inner.settings;
        let now = unix_seconds(SystemTime::now());
        let ttl = settings.token_ttl.as_secs().max(1);
        let mut role_claim = serde_json::Map::new();
        role_claim.insert(settings.roles_claim.clone(), serde_json::json!(roles));
        let claims = Claims {
            iss: &settings.issuer,
            aud: settings.audience.as_deref(),
            sub: subject,
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: random_token(16)?,
            roles: role_claim,
        };
        let ring = self.ring();
        let key = &ring.current;
        let header = Header {
            kid: Some(key.kid.clone()),
            ..Header::new(Algorithm::ES256)
        };
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| MeshError::new(ErrorKind::Internal, format!("signing a token: {e}")))?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
            kid: key.kid.clone(),
        })
    }

    /// Rotates the ring: the published next key signs from now on, a new next key is published,
    /// and the key that signed until now keeps verifying until the tokens it signed have
    /// expired. Returns the new signing key's `kid`.
    pub fn rotate(&self) -> Result<String, MeshError> {
        let next = SigningKey::generate(&self.inner.random)?;
        let mut ring = self.ring();
        let now = SystemTime::now();
        ring.retired.retain(|(_, until)| *until > now);
        let promoted = std::mem::replace(&mut ring.next, next);
        let retired = std::mem::replace(&mut ring.current, promoted);
        ring.retired
            .push_back((retired, now + self.inner.settings.token_ttl));
        tracing::info!(kid = %ring.current.kid, "signing key rotated");
        Ok(ring.current.kid.clone())
    }

    /// The public keys as a JWKS document (`{"keys": […]}`): the signing key, the next one,
    /// and retired ones whose tokens may still be valid.
    pub fn jwks(&self) -> serde_json::Value {
        let ring = self.ring();
        let now = SystemTime::now();
        let retired = ring
            .retired
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(key, _)| key);
        let keys: Vec<_> = [&ring.current, &ring.next]
            .into_iter()
            .chain(retired)
            .map(SigningKey::jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// `GET /.well-known/jwks.json`: the [`jwks`](Self::jwks) document, to merge into the
    /// auth service's router.
    pub fn jwks_router(&self) -> axum::Router {
        let issuer = self.clone();
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = issuer.jwks();
                async move {
                    (
                        [(http::header::CACHE_CONTROL, "max-age=60")],
                        axum::Json(jwks),
                    )
                }
            }),
        )
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("settings", &self.inner.settings)
            .field("kid", &self.ring().current.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn generate(random: &SystemRandom) -> Result<Self, MeshError> {
        let failed = |_| MeshError::new(ErrorKind::Internal, "generating a signing key failed");
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, random)
            .map_err(failed)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| MeshError::new(ErrorKind::Internal, "reading a signing key failed"))?;
        // Uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(MeshError::new(
                ErrorKind::Internal,
                "unexpected P-256 public key",
            ));
        }
        Ok(Self {
            kid: random_token(16)?,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{JwtConfig, JwtVerifier};

    /// Serves `issuer`'s JWKS; its URL.
    async fn serve(issuer: &TokenIssuer) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, issuer.jwks_router()).into_future());
        format!("http://{addr}/.well-known/jwks.json")
    }

    /// A verifier of `issuer`'s tokens, fetching its keys.
    async fn verifier_of(issuer: &TokenIssuer) -> JwtVerifier {
        let config = JwtConfig::with_jwks_url(serve(issuer).await).issuer("auth");
        JwtVerifier::new(config).unwrap()
    }

    #[tokio::test]
    async fn an_issued_token_verifies_against_the_published_keys() {
        let issuer = TokenIssuer::new(IssuerSettings::new("auth").audience("shop")).unwrap();
        let token = issuer.issue("ada", &["admin".into()]).unwrap();
        let config = JwtConfig::with_jwks_url(serve(&issuer).await)
            .issuer("auth")
            .audience("shop");
        let identity = JwtVerifier::new(config)
            .unwrap()
            .verify(&token.token)
            .await
            .unwrap();
        assert_eq!(identity.subject, "ada");
        assert!(identity.has_role("admin"));
        assert_eq!(token.expires_in, 15 * 60);
    }

    #[tokio::test]
    async fn after_a_rotation_old_and_new_tokens_verify_with_the_keys_fetched_before_it() {
        let issuer = TokenIssuer::new(IssuerSettings::new("auth")).unwrap();
        let verifier = verifier_of(&issuer).await;
        let old = issuer.issue("ada", &[]).unwrap();
        // The verifier fetches the keys once, before the rotation.
        verifier.verify(&old.token).await.unwrap();
        let kid = issuer.rotate().unwrap();
        let new = issuer.issue("ada", &[]).unwrap();
        assert_eq!(new.kid, kid);
        assert_ne!(old.kid, new.kid);
        // The new key was published ahead: known without a refetch (which a verifier
        // throttles).
        verifier.verify(&new.token).await.unwrap();
        verifier.verify(&old.token).await.unwrap();
        // And the old key is still published while its tokens live.
        let fresh = verifier_of(&issuer).await;
        fresh.verify(&old.token).await.unwrap();
    }

    #[test]
    fn a_retired_key_leaves_the_jwks_once_its_tokens_have_expired() {
        let issuer =
            TokenIssuer::new(IssuerSettings::new("auth").token_ttl(Duration::ZERO)).unwrap();
        let old = issuer.issue("ada", &[]).unwrap();
        issuer.rotate().unwrap();
        let kids: Vec<String> = issuer.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kids.len(), 2, "{kids:?}");
        assert!(!kids.contains(&old.kid));
    }

    #[tokio::test]
    async fn a_token_signed_by_another_ring_is_refused() {
        let ours = TokenIssuer::new(IssuerSettings::new("auth")).unwrap();
        let theirs = TokenIssuer::new(IssuerSettings::new("auth")).unwrap();
        let verifier = verifier_of(&ours).await;
        let forged = theirs.issue("mallory", &["admin".into()]).unwrap();
        assert!(verifier.verify(&forged.token).await.is_err());
    }
}

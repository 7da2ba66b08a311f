//! Proof that a request came through the gateway: the gateway signs a short-lived token with
//! a key only it holds and sends it upstream in the `mesh-edge` field of every request; a
//! service with `server.edge` configured refuses (`403`) every request without a valid one,
//! so a request sent to it directly fails even with a user's valid bearer token. A client
//! can't forge one: the gateway drops a `mesh-edge` field a client sends, and services hold
//! only the public key.
//!
//! The token names no request: it says "the gateway let this in". It lasts a minute and the
//! gateway signs a new one every half of that, so verifying one is a signature check per
//! token per service, not per request. While a service serves a proven request, the calls its
//! `MeshClient`s make from that request's task carry the same token, so services behind the
//! gateway call each other as part of the request. A task it spawns does not inherit the proof
//! ([`EdgeProof::scope`] passes it on); work outside any request (a bus consumer, a WebSocket
//! after its switch) has none, and a service that requires proofs refuses its calls. The
//! gateway sends proofs to `lb://` services only, never to a fixed upstream, and removes one
//! an upstream echoes from its answer.
//!
//! ```
//! use mesh_core::auth::edge::{EdgeKeyPair, EdgeSigner, EdgeSigning};
//! use mesh_core::auth::{JwtConfig, JwtVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::MeshError> {
//! let keys = EdgeKeyPair::generate()?;
//! let signer = EdgeSigner::new(EdgeSigning::with_private_key(keys.private_pem.clone()))?;
//! let token = signer.token()?;
//! let verifier = JwtVerifier::new(
//!     JwtConfig::with_public_key(keys.public_pem.clone())
//!         .issuer("mesh-gateway")
//!         .audience("mesh-edge"),
//! )?;
//! assert!(verifier.verify(token.to_str().unwrap()).await.is_ok());
//! # Ok(()) }
//! ```

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwapOption;
use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::task::futures::TaskLocalFuture;

use crate::error::{ErrorKind, MeshError};

/// The field the gateway's proof travels in.
pub const EDGE_HEADER: HeaderName = HeaderName::from_static("mesh-edge");
/// The `iss` of the gateway's proofs unless `edge.issuer` says otherwise; services require it
/// unless `server.edge.jwt.issuer` says otherwise.
pub const DEFAULT_ISSUER: &str = "mesh-gateway";
/// The `aud` of the gateway's proofs unless `edge.audience` says otherwise; services require
/// it unless `server.edge.jwt.audience` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "mesh-edge";

/// How the gateway signs its proofs: the `edge` section of its configuration.
///
/// ```yaml
/// edge:
///   private_key: /etc/mesh/edge-key.pem   # PKCS#8 EC P-256, inline PEM or a path
///   issuer: mesh-gateway                  # the default
///   audience: mesh-edge                   # the default
///   ttl: 60s                              # the default
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSigning {
    /// The PKCS#8 PEM of an EC P-256 private key (ES256), inline or as a file path. Services
    /// verify with its public key (`server.edge.jwt.public_key`).
    pub private_key: Option<String>,
    /// The `iss` claim (default `mesh-gateway`).
    pub issuer: String,
    /// The `aud` claim (default `mesh-edge`).
    pub audience: String,
    /// How long a proof lasts (default 60 s; a new one is signed every half of it).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for EdgeSigning {
    fn default() -> Self {
        Self {
            private_key: None,
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            ttl: Duration::from_secs(60),
        }
    }
}

impl EdgeSigning {
    /// Signing with `pem`, the defaults otherwise.
    pub fn with_private_key(pem: impl Into<String>) -> Self {
        Self {
            private_key: Some(pem.into()),
            ..Self::default()
        }
    }
}

/// The key never reaches a log.
impl fmt::Debug for EdgeSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeSigning")
            .field("private_key", &self.private_key.as_ref().map(|_| "<pem>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A fresh EC P-256 key pair as PEM: the private key for the gateway (`edge.private_key`),
/// the public one for the services (`server.edge.jwt.public_key`).
#[derive(Clone)]
pub struct EdgeKeyPair {
    /// PKCS#8 `PRIVATE KEY` PEM.
    pub private_pem: String,
    /// SubjectPublicKeyInfo `PUBLIC KEY` PEM.
    pub public_pem: String,
}

impl fmt::Debug for EdgeKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeKeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl EdgeKeyPair {
    /// Generates a pair.
    pub fn generate() -> Result<Self, MeshError> {
        let failed = || MeshError::new(ErrorKind::Internal, "generating an edge key failed");
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| failed())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| failed())?;
        // SubjectPublicKeyInfo of an uncompressed P-256 point: the algorithm identifiers
        // (id-ecPublicKey, prime256v1), then the 65-byte point as a bit string.
        const SPKI_PREFIX: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let spki = [&SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
        Ok(Self {
            private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", &spki),
        })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Signs the gateway's proofs, keeping the current one until half its life has passed.
/// Clones share it.
#[derive(Clone)]
pub struct EdgeSigner {
    inner: Arc<Signer>,
}

struct Signer {
    key: EncodingKey,
    settings: EdgeSigning,
    current: ArcSwapOption<(HeaderValue, Instant)>,
}

impl fmt::Debug for EdgeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeSigner")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

impl EdgeSigner {
    /// A signer with `settings`; an error when it has no key or the key is not a PKCS#8 EC
    /// P-256 PEM.
    pub fn new(settings: EdgeSigning) -> Result<Self, MeshError> {
        let config = |message: String| MeshError::new(ErrorKind::Config, message);
        let pem = settings
            .private_key
            .as_deref()
            .ok_or_else(|| config("edge: `private_key` is required".into()))?;
        let text = if pem.trim_start().starts_with("-----BEGIN") {
            pem.to_owned()
        } else {
            std::fs::read_to_string(pem)
                .map_err(|e| config(format!("edge.private_key: reading `{pem}`: {e}")))?
        };
        let key = EncodingKey::from_ec_pem(text.as_bytes()).map_err(|e| {
            config(format!(
                "edge.private_key: not a PKCS#8 EC P-256 private key: {e}"
            ))
        })?;
        if settings.ttl < Duration::from_secs(2) {
            return Err(config("edge.ttl: at least 2s".into()));
        }
        let signer = Self {
            inner: Arc::new(Signer {
                key,
                settings,
                current: ArcSwapOption::empty(),
            }),
        };
        // A key that cannot sign is found at start, not on the first request.
        signer.token()?;
        Ok(signer)
    }

    /// The proof to send now: the current one, or a new one once half its life has passed.
    pub fn token(&self) -> Result<HeaderValue, MeshError> {
        let inner = &self.inner;
        if let Some(current) = inner.current.load().as_deref()
            && current.1.elapsed() < inner.settings.ttl / 2
        {
            return Ok(current.0.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let claims = Claims {
            iss: &inner.settings.issuer,
            aud: &inner.settings.audience,
            sub: "gateway",
            iat: now,
            nbf: now,
            exp: now + inner.settings.ttl.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &inner.key)
            .map_err(|e| {
                MeshError::new(ErrorKind::Internal, format!("signing an edge proof: {e}"))
            })?;
        let value = HeaderValue::try_from(token)
            .map_err(|e| MeshError::new(ErrorKind::Internal, format!("an edge proof: {e}")))?;
        inner
            .current
            .store(Some(Arc::new((value.clone(), Instant::now()))));
        Ok(value)
    }
}

tokio::task_local! {
    static PROVEN: EdgeProof;
}

/// The verified proof of the request being served, carried by the calls made while serving
/// it (see the [module](self)).
#[derive(Debug, Clone)]
pub struct EdgeProof(pub(crate) HeaderValue);

impl EdgeProof {
    /// The proof of the request being served, if it had one.
    pub fn current() -> Option<EdgeProof> {
        PROVEN.try_with(EdgeProof::clone).ok()
    }

    /// The token, as sent.
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }

    /// Runs `future` with this proof current: what a task spawned while serving a proven
    /// request (which does not inherit it) uses to call other services as part of it.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<EdgeProof, F> {
        PROVEN.scope(self, future)
    }

    /// Runs `f` with this proof current.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        PROVEN.sync_scope(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, JwtConfig, JwtVerifier};

    fn verifier(public_pem: &str) -> JwtVerifier {
        JwtVerifier::new(
            JwtConfig::with_public_key(public_pem)
                .issuer("mesh-gateway")
                .audience("mesh-edge"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_proof_verifies_with_the_pairs_public_key_and_not_with_another() {
        let keys = EdgeKeyPair::generate().unwrap();
        let other = EdgeKeyPair::generate().unwrap();
        let signer = EdgeSigner::new(EdgeSigning::with_private_key(keys.private_pem)).unwrap();
        let token = signer.token().unwrap();
        let token = token.to_str().unwrap();
        assert!(verifier(&keys.public_pem).verify(token).await.is_ok());
        assert_eq!(
            verifier(&other.public_pem).verify(token).await.unwrap_err(),
            AuthError::Signature
        );
    }

    #[test]
    fn the_same_proof_is_sent_until_half_its_life_has_passed() {
        let keys = EdgeKeyPair::generate().unwrap();
        let signer = EdgeSigner::new(EdgeSigning::with_private_key(keys.private_pem)).unwrap();
        assert_eq!(signer.token().unwrap(), signer.token().unwrap());
        // Aged past half its life, it is signed again.
        let aged = Instant::now() - Duration::from_secs(31);
        let current = signer.inner.current.load_full().unwrap();
        signer
            .inner
            .current
            .store(Some(Arc::new((current.0.clone(), aged))));
        let renewed = signer.token().unwrap();
        assert_eq!(signer.inner.current.load_full().unwrap().0, renewed);
        assert!(signer.inner.current.load_full().unwrap().1 > aged);
    }

    #[test]
    fn a_missing_or_unreadable_key_is_a_configuration_error() {
        assert!(EdgeSigner::new(EdgeSigning::default()).is_err());
        let error = EdgeSigner::new(EdgeSigning::with_private_key(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ))
        .unwrap_err();
        assert!(error.to_string().contains("edge.private_key"), "{error}");
    }
}

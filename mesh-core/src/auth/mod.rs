//! Who is calling, and may they: verifying tokens, and the toolkit of an auth service that
//! issues them.
//!
//! Issuing: a [`TokenIssuer`] signs ES256 access tokens with a rotating key ring and serves
//! its public keys at `/.well-known/jwks.json`; [`RefreshTokens`] are opaque, rotate on use
//! and revoke their family when one is reused (in memory or Redis); [`Passwords`] hashes
//! with Argon2id and checks a login in the same time whether the user exists or not.
//!
//! Proving the way in: [`edge`] signs, at the gateway, a short-lived proof that a request came
//! through it, and services with `server.edge` refuse every request without one.
//!
//! Verifying:
//! A [`JwtVerifier`] checks a bearer token's signature with a shared secret (HS256/384/512), a
//! PEM public key (RS*, PS*, ES256/384, EdDSA) or the keys a JWKS URL publishes (fetched on
//! first use, refreshed periodically and when a token names an unknown `kid`), then its
//! `exp`, `nbf` (with leeway), `iss` and `aud`. The algorithms it accepts are pinned by the key:
//! `alg: none` is refused, and so is a token whose algorithm belongs to another key family (an
//! HS256 token "signed" with an RSA public key, the classic key-confusion attack).
//!
//! A service turns verification on with `server.auth` in its configuration; every route then
//! needs a valid token except the public ones, and the handler finds the caller's
//! [`Identity`] among the request's extensions.
//!
//! ```
//! use mesh_core::auth::{JwtConfig, JwtVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let verifier = JwtVerifier::new(JwtConfig::with_secret("a long shared secret, not this one")).unwrap();
//! let error = verifier.verify("not.a.token").await.unwrap_err();
//! assert_eq!(error.to_string(), "the token is malformed");
//! # }
//! ```

mod caller;
mod config;
pub mod edge;
mod family;
mod issue;
mod jwks;
mod password;
mod random;
mod refresh;
mod verify;

#[cfg(feature = "redis")]
pub use self::refresh::RedisRefreshStore;
pub use self::{
    caller::Caller,
    config::{AuthSettings, JwtConfig},
    issue::{AccessToken, IssuerSettings, TokenIssuer},
    password::{MAX_PASSWORD_BYTES, Passwords},
    random::random_token,
    refresh::{
        Grant, MemoryRefreshStore, RefreshError, RefreshRecord, RefreshStore, RefreshTokens,
        StoreFuture, Taken,
    },
    verify::{AuthError, Identity, JwtVerifier},
};

/// The token of an `Authorization: Bearer …` header, if the request has a non-empty one.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(mesh_core::auth::bearer_token(&headers), Some("abc.def.ghi"));
/// ```
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    bearer_value(headers.get(http::header::AUTHORIZATION)?.as_bytes())
}

/// The token of an `Authorization` value `Bearer <token>`, if it is one. The scheme is read in
/// any case (RFC 9110 §11.1).
///
/// ```
/// assert_eq!(mesh_core::auth::bearer_value(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
/// assert_eq!(mesh_core::auth::bearer_value(b"BEARER abc.def.ghi"), Some("abc.def.ghi"));
/// assert_eq!(mesh_core::auth::bearer_value(b"Basic dXNlcg=="), None);
/// ```
pub fn bearer_value(value: &[u8]) -> Option<&str> {
    const SCHEME: &[u8] = b"bearer ";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    // A header value holds no control characters; `from_utf8` checks the rest of a long token
    // word by word where `to_str` would go byte by byte. A token that is not base64url fails
    // verification.
    let token = std::str::from_utf8(rest).ok()?.trim();
    (!token.is_empty()).then_some(token)
}

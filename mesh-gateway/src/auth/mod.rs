//! Edge auth: who the caller is (a bearer token or the gateway's cookie, verified or found in
//! the token cache), whether the route lets them in, and the login and logout cookies.

pub(crate) mod token_cache;

use std::{borrow::Cow, sync::Arc};

use axum::{body::Body, extract::Request, response::Response};
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use mesh_core::{
    auth::{AuthError, JwtVerifier, bearer_token, bearer_value},
    error::{ErrorKind, MeshError},
    http1::RawRequest,
};

use self::token_cache::{TokenCache, Verified};
#[cfg(feature = "redis")]
use crate::error::invalid;
use crate::{
    config::{GatewayConfig, RouteAuth},
    headers::{ROLES_HEADER, USER_HEADER, cookie, is_identity_name, strip},
    route::{Route, predicate::RequestHead},
};

/// Largest login answer read to find the token in it.
const MAX_LOGIN_ANSWER_BYTES: usize = 1024 * 1024;

/// The gateway's token verification, token cache and cookie.
#[derive(Debug)]
pub(crate) struct EdgeAuth {
    verifier: Option<JwtVerifier>,
    tokens: TokenCache,
    cookie: String,
    secure_cookie: bool,
    /// Whether a login answer keeps its tokens from the client (`auth.cookie_only`).
    cookie_only: bool,
}

impl EdgeAuth {
    /// The auth of `config`: a verifier when `auth.jwt` names a key, the token cache (shared
    /// through Redis when `redis` is set).
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, MeshError> {
        let jwt = &config.auth.jwt;
        let verifier = if jwt.secret.is_some() || jwt.public_key.is_some() || jwt.jwks_url.is_some()
        {
            Some(JwtVerifier::new(jwt.clone())?)
        } else {
            None
        };
        let tokens = TokenCache::new(config.auth.token_cache_size);
        #[cfg(feature = "redis")]
        let tokens = match &config.redis {
            Some(redis) => tokens
                .with_redis(&redis.url)
                .map_err(|e| invalid(format!("redis.url: {e}")))?,
            None => tokens,
        };
        Ok(Self {
            verifier,
            tokens,
            cookie: config.auth.cookie.clone(),
            secure_cookie: config.auth.secure_cookie,
            cookie_only: config.auth.cookie_only,
        })
    }

    /// Whether tokens can be verified at all (a key is configured).
    pub(crate) fn verifies(&self) -> bool {
        self.verifier.is_some()
    }

    /// The route's token and role requirements: drops the client's identity headers, then,
    /// unless the route is public, verifies the token and sets them from it.
    pub(crate) async fn admit(
        &self,
        route: &Route,
        request: &mut Request,
    ) -> Result<(), MeshError> {
        strip(request.headers_mut(), |name| {
            is_identity_name(name.as_str().as_bytes())
        });
        if route.auth == RouteAuth::Public {
            return Ok(());
        }
        let Some(verifier) = &self.verifier else {
            return Err(AuthError::Missing.into());
        };
        // A bearer token is read in place; a cookie's is relayed upstream, so it is kept.
        let (verified, from_cookie) = match bearer_token(request.headers()) {
            Some(token) => (self.verified(verifier, token).await?, None),
            None => match cookie(request.values("cookie"), &self.cookie) {
                Some(token) => (self.verified(verifier, &token).await?, Some(token)),
                None => return Err(AuthError::Missing.into()),
            },
        };
        if let RouteAuth::Roles(roles) = &route.auth
            && !has_role(&route.auth, &verified)
        {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                format!("route `{}` needs one of the roles {roles:?}", route.id),
            ));
        }
        let headers = request.headers_mut();
        if let Some(user) = &verified.user {
            headers.insert(USER_HEADER, user.clone());
        }
        if let Some(roles) = &verified.roles {
            headers.insert(ROLES_HEADER, roles.clone());
        }
        if let Some(token) = from_cookie
            && let Ok(value) = HeaderValue::try_from(format!("Bearer {token}"))
        {
            // Relayed, so services behind the gateway can call each other on the user's behalf.
            headers.insert(header::AUTHORIZATION, value);
        }
        // The limiter's key when it counts per user.
        request.extensions_mut().insert(verified.subject.clone());
        Ok(())
    }

    /// The identity of a raw request's token (bearer, or the cookie's, which is then returned
    /// to be relayed as a bearer token) when the token cache holds it and it has one of the
    /// route's roles; `None` when it must be verified or refused on the typed path.
    pub(crate) fn cached(
        &self,
        auth: &RouteAuth,
        request: &RawRequest<'_>,
    ) -> Option<(Arc<Verified>, Option<String>)> {
        let (token, from_cookie) = match request.value("authorization").and_then(bearer_value) {
            Some(token) => (Cow::Borrowed(token), None),
            None => {
                let token = cookie(request.values("cookie"), &self.cookie)?;
                (Cow::Owned(token.clone()), Some(token))
            }
        };
        let verified = self.tokens.cached(&token)?;
        has_role(auth, &verified).then_some((verified, from_cookie))
    }

    /// The identity of `token`: from the token cache, or verified now (and then cached).
    async fn verified(
        &self,
        verifier: &JwtVerifier,
        token: &str,
    ) -> Result<Arc<Verified>, MeshError> {
        if let Some(verified) = self.tokens.get(token).await {
            return Ok(verified);
        }
        // Boxed: verifying (a JWKS fetch, at worst) and caching run once per token, and their
        // futures would otherwise make every request's larger.
        let identity = Box::pin(verifier.verify(token))
            .await
            .map_err(MeshError::from)?;
        let verified = Verified::new(identity);
        Box::pin(self.tokens.put(token, &verified)).await;
        Ok(verified)
    }

    /// Turns a login answer's token (`token` or `access_token` in its JSON) into the
    /// gateway's cookie, for `expires_in` seconds (an hour when it says nothing); with
    /// `cookie_only`, the answer's JSON loses its tokens.
    pub(crate) async fn remember_login(&self, response: Response) -> Result<Response, MeshError> {
        let (mut parts, body) = response.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_LOGIN_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                MeshError::new(
                    ErrorKind::Upstream,
                    format!("reading the login answer: {e}"),
                )
            })?
            .to_bytes();
        let mut answer: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let token = answer
            .as_ref()
            .and_then(|a| a.get("token").or_else(|| a.get("access_token")))
            .and_then(|t| t.as_str());
        let Some(token) = token else {
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        };
        let lifetime = answer
            .as_ref()
            .and_then(|a| a.get("expires_in"))
            .and_then(|e| e.as_u64())
            .unwrap_or(3600);
        let cookie = self.cookie_header(token, lifetime);
        parts.headers.append(header::SET_COOKIE, cookie);
        if !self.cookie_only {
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        }
        if let Some(fields) = answer.as_mut().and_then(|a| a.as_object_mut()) {
            for secret in ["token", "access_token", "refresh_token"] {
                fields.remove(secret);
            }
        }
        let kept = serde_json::to_vec(&answer).unwrap_or_default();
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(parts, Body::from(kept)))
    }

    /// The `Set-Cookie` that clears the gateway's cookie, for a logout answer.
    pub(crate) fn logout_cookie(&self) -> HeaderValue {
        self.cookie_header("", 0)
    }

    /// `Set-Cookie` for the token (an empty token and no lifetime clear it).
    fn cookie_header(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Whether `verified` may use a route with `auth` (any valid token, or one of its roles).
fn has_role(auth: &RouteAuth, verified: &Verified) -> bool {
    match auth {
        RouteAuth::Roles(roles) => roles.iter().any(|role| verified.identity.has_role(role)),
        RouteAuth::Required | RouteAuth::Public => true,
    }
}

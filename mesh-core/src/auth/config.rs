use std::{fmt, time::Duration};

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// How tokens are verified: one key source (a secret, a PEM public key or a JWKS URL), and
/// the claims required.
///
/// ```yaml
/// jwt:
///   public_key: /etc/mesh/auth-public.pem   # or inline PEM, or `secret:`, or `jwks_url:`
///   issuer: https://auth.example.com
///   audience: shop
///   leeway: 30s
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// A shared secret: HS256, HS384 and HS512 tokens.
    pub secret: Option<String>,
    /// A PEM public key (RSA, EC or Ed25519), inline or as a file path.
    pub public_key: Option<String>,
    /// A JWKS document's URL; keys are chosen by the token's `kid`.
    pub jwks_url: Option<String>,
    /// The accepted algorithms; by default every algorithm of the key's family.
    pub algorithms: Vec<Algorithm>,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The required `aud` (one of the token's audiences), if any.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    #[serde(with = "humantime_serde::option")]
    pub leeway: Option<Duration>,
    /// The claim holding the caller's roles (default `roles`; a list or a space-separated
    /// string, as OAuth's `scope`).
    pub roles_claim: Option<String>,
    /// How often JWKS keys are fetched again (default 5 minutes).
    #[serde(with = "humantime_serde::option")]
    pub jwks_refresh: Option<Duration>,
}

impl JwtConfig {
    /// Verification with a shared secret (HS256/384/512).
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            secret: Some(secret.into()),
            ..Self::default()
        }
    }

    /// Verification with a PEM public key, inline or as a path.
    pub fn with_public_key(pem: impl Into<String>) -> Self {
        Self {
            public_key: Some(pem.into()),
            ..Self::default()
        }
    }

    /// Verification with the keys a JWKS URL publishes.
    pub fn with_jwks_url(url: impl Into<String>) -> Self {
        Self {
            jwks_url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Requires this issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires this audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Tolerates this much clock skew.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Whether a key source is set (verification is on).
    pub fn has_key(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks_url.is_some()
    }
}

/// The secret never reaches a log.
impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key", &self.public_key.as_ref().map(|_| "<pem>"))
            .field("jwks_url", &self.jwks_url)
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// The `server.auth` section: token verification on a service's routes.
///
/// ```yaml
/// server:
///   auth:
///     jwt: { jwks_url: http://auth-service/.well-known/jwks.json, issuer: auth-service }
///     public: ["/products/**", "/login"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// How tokens are verified; no key source means no verification on this service.
    pub jwt: JwtConfig,
    /// Paths that need no token: exact, with `{name}` segments matching any one segment, or
    /// ending in `/**` to match everything below; prefixed with a method and a space
    /// (`GET /catalog/**`), for that method only. `/health`, `/health/*` and `/metrics` are
    /// always public.
    pub public: Vec<String>,
}

impl AuthSettings {
    /// Whether verification is on.
    pub fn enabled(&self) -> bool {
        self.jwt.has_key()
    }

    /// Whether a request of `method` to `path` needs no token. A pattern is a path, or a
    /// method, a space and a path (`GET /products/{sku}`) to be public for that method only.
    pub fn is_public(&self, method: &http::Method, path: &str) -> bool {
        const ALWAYS: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];
        ALWAYS.contains(&path)
            || self.public.iter().any(|pattern| {
                let pattern = match pattern.split_once(' ') {
                    Some((only, pattern)) if only.eq_ignore_ascii_case(method.as_str()) => pattern,
                    Some(_) => return false,
                    None => pattern,
                };
                match pattern.strip_suffix("/**") {
                    Some(prefix) => {
                        path == prefix
                            || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
                    }
                    None => segments_match(pattern, path),
                }
            })
    }
}

/// Whether `path` is `pattern`, a `{name}` segment of the pattern matching any one non-empty
/// segment.
fn segments_match(pattern: &str, path: &str) -> bool {
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut patterns = pattern.split('/');
    let mut segments = path.split('/');
    loop {
        match (patterns.next(), segments.next()) {
            (None, None) => return true,
            (Some(expected), Some(segment)) => {
                let any = expected.starts_with('{') && expected.ends_with('}');
                if !(any && !segment.is_empty() || expected == segment) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_patterns_match_exactly_or_by_segment_prefix() {
        let settings = AuthSettings {
            public: vec!["/products/**".into(), "/login".into()],
            ..AuthSettings::default()
        };
        for path in [
            "/products",
            "/products/1",
            "/products/1/reviews",
            "/login",
            "/health/ready",
        ] {
            assert!(settings.is_public(&http::Method::GET, path), "{path}");
        }
        for path in ["/productsx", "/login/extra", "/orders", "/"] {
            assert!(!settings.is_public(&http::Method::GET, path), "{path}");
        }
    }

    #[test]
    fn a_named_segment_of_a_public_pattern_matches_any_one_segment() {
        let settings = AuthSettings {
            public: vec!["/products/{id}/reviews".into()],
            ..AuthSettings::default()
        };
        assert!(settings.is_public(&http::Method::GET, "/products/7/reviews"));
        for path in [
            "/products//reviews",
            "/products/7/8/reviews",
            "/products/7/reviews/1",
            "/products/7",
        ] {
            assert!(!settings.is_public(&http::Method::GET, path), "{path}");
        }
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let shown = format!("{:?}", JwtConfig::with_secret("hunter2-hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_pattern_with_a_method_is_public_for_that_method_only() {
        let settings = AuthSettings {
            public: vec!["GET /products/{sku}".into()],
            ..AuthSettings::default()
        };
        assert!(settings.is_public(&http::Method::GET, "/products/tea"));
        assert!(!settings.is_public(&http::Method::PUT, "/products/tea"));
        assert!(!settings.is_public(&http::Method::DELETE, "/products/tea"));
    }
}

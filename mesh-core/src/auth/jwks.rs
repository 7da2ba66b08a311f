//! Keys from a JWKS URL, cached and rotated.

use std::{collections::HashMap, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    DecodingKey,
    jwk::{AlgorithmParameters, JwkSet},
};
use tokio::{sync::Mutex, time::Instant};

use super::{AuthError, family::Family};
use crate::{
    error::{ErrorKind, MeshError},
    fetch::get_json_bytes,
};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long the JWKS endpoint has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two fetches that are not due (triggered by unknown `kid`s, or after
/// a fetch failed), so forged `kid`s or a key server that is down cannot make every request
/// wait on a fetch.
const MIN_REFETCH: Duration = Duration::from_secs(10);

type KeyMap = HashMap<Option<String>, (DecodingKey, Family)>;

pub(super) struct Jwks {
    url: String,
    http: Client<HttpConnector, Empty<Bytes>>,
    keys: ArcSwap<KeyMap>,
    fetches: Mutex<Fetches>,
    refresh: Duration,
}

/// When the set was last fetched, and last tried.
#[derive(Default)]
struct Fetches {
    /// The last fetch that succeeded: the keys are stale `refresh` after it.
    succeeded: Option<Instant>,
    /// The last fetch tried, whatever its outcome.
    tried: Option<Instant>,
}

impl Jwks {
    pub(super) fn new(url: &str, refresh: Duration) -> Result<Self, MeshError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| MeshError::new(ErrorKind::Config, format!("jwt.jwks_url `{url}`: {e}")))?;
        if uri.scheme_str() != Some("http") {
            // HTTPS needs a TLS connector; the gateway's, when it lands, will provide one.
            return Err(MeshError::new(
                ErrorKind::Config,
                format!("jwt.jwks_url `{url}`: only http:// URLs are supported"),
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
            refresh,
        })
    }

    /// The key for `kid` (a JWKS with one key also serves tokens without a `kid`).
    pub(super) async fn key(&self, kid: Option<&str>) -> Result<(DecodingKey, Family), AuthError> {
        let stale = {
            let fetches = self.fetches.lock().await;
            self.is_stale(&fetches)
        };
        if !stale && let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        self.fetch(kid).await?;
        self.lookup(kid).ok_or(AuthError::UnknownKey)
    }

    /// Whether the keys are due to be fetched again.
    fn is_stale(&self, fetches: &Fetches) -> bool {
        fetches
            .succeeded
            .is_none_or(|at| at.elapsed() >= self.refresh)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<(DecodingKey, Family)> {
        let keys = self.keys.load();
        let key = keys.get(&kid.map(str::to_owned)).or_else(|| {
            // A token without a kid against a set of one key.
            (kid.is_none() && keys.len() == 1).then(|| keys.values().next())?
        });
        key.cloned()
    }

    /// Fetches the set again when it is stale or asked for an unknown `kid`; either way at
    /// most every `MIN_REFETCH`, unless the last fetch succeeded and the set is due. Decided
    /// under the lock: callers that waited for another's fetch use what it brought.
    async fn fetch(&self, kid: Option<&str>) -> Result<(), AuthError> {
        let mut fetches = self.fetches.lock().await;
        let stale = self.is_stale(&fetches);
        if !stale && self.lookup(kid).is_some() {
            return Ok(());
        }
        let due = stale && fetches.succeeded == fetches.tried;
        if !due && fetches.tried.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return if self.keys.load().is_empty() {
                Err(AuthError::KeysUnavailable)
            } else {
                Ok(())
            };
        }
        fetches.tried = Some(Instant::now());
        match self.download().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(keys));
                fetches.succeeded = fetches.tried;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed");
                // Keep serving the keys already known.
                if self.keys.load().is_empty() {
                    Err(AuthError::KeysUnavailable)
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn download(&self) -> Result<KeyMap, String> {
        let body = get_json_bytes(&self.http, &self.url, MAX_JWKS_BYTES, FETCH_TIMEOUT).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                // Symmetric keys have no place in a published key set.
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(jwk.common.key_id.clone(), (key, family));
            }
        }
        Ok(keys)
    }
}

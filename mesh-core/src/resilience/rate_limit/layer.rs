use std::sync::Arc;

use metrics::Counter;
use tower::Layer;

use super::{LocalStore, Quota, RateLimit, RateLimitConfig, RateLimitStore, health::StoreHealth};
use crate::clock::Clock;
use crate::error::ConfigError;

/// Applies [`RateLimit`] to a service. Every service the layer builds shares its store, so the
/// limit holds across clones (and, with a Redis store, across replicas).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) config: RateLimitConfig,
    pub(super) quota: Quota,
    pub(super) store: Arc<dyn RateLimitStore>,
    pub(super) clock: Clock,
    /// The store key of every request when the limit is global.
    pub(super) global_key: Box<str>,
    pub(super) rejected: Counter,
    pub(super) store_failures: Counter,
    /// Whether the store is worth asking.
    pub(super) health: StoreHealth,
}

impl RateLimitLayer {
    /// A limiter named `name` on an in-process [`LocalStore`].
    ///
    /// # Panics
    ///
    /// When the configuration is invalid; use [`try_new`](Self::try_new) to get the error.
    pub fn new(name: impl Into<Arc<str>>, config: RateLimitConfig) -> Self {
        Self::try_new(name, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A limiter on a [`LocalStore`], or the first configuration error.
    pub fn try_new(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        Self::with_store(name, config, Arc::new(LocalStore::new()))
    }

    /// A limiter on `store` (a [`RedisStore`](super::RedisStore) to share the limit).
    pub fn with_store(
        name: impl Into<Arc<str>>,
        config: RateLimitConfig,
        store: Arc<dyn RateLimitStore>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Arc<str> = name.into();
        Ok(Self {
            shared: Arc::new(Shared {
                rejected: metrics::counter!("mesh_rate_limit_rejected_total", "name" => name.clone()),
                store_failures: metrics::counter!(
                    "mesh_rate_limit_store_failures_total", "name" => name.clone()
                ),
                quota: config.quota(),
                global_key: format!("{name}:global").into(),
                name,
                config,
                store,
                clock: Clock::new(),
                health: StoreHealth::default(),
            }),
        })
    }
}

impl RateLimitLayer {
    /// Decides whether `request` may go on, as the services this layer builds do, for a caller
    /// that is not a tower service (a proxy that checks the limit before its own call, say).
    /// Admitted, it is the decision when the configuration asks to tell it
    /// ([`include_headers`](RateLimitConfig::include_headers)); refused, a [`RateLimited`]
    /// error (or [`MissingKey`](super::MissingKey), or
    /// [`StoreUnavailable`](super::StoreUnavailable) under a fail-closed policy). A local
    /// store decides without waiting; a Redis store within the configured store timeout. The
    /// request is read when this is called (for its key); the future does not hold it.
    ///
    /// [`RateLimited`]: super::RateLimited
    pub fn admit<'a, B>(
        &'a self,
        request: &http::Request<B>,
    ) -> impl Future<Output = Result<Option<super::Decision>, crate::error::BoxError>> + Send + use<'a, B>
    {
        self.shared.admit(request)
    }
}

impl RateLimitLayer {
    /// Decides at once, as [`admit`](Self::admit) does, whether a request read as `parts` may
    /// go on, for a caller without an `http::Request` (a relay reading the request's bytes);
    /// `None` when the store cannot decide without waiting (Redis): the caller then goes
    /// through [`admit`](Self::admit).
    pub fn admit_now(
        &self,
        parts: super::KeyParts<'_>,
    ) -> Option<Result<Option<super::Decision>, crate::error::BoxError>> {
        self.shared.admit_now(parts)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}

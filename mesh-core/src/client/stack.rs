//! The client stack, in the one order mesh documents:
//!
//! ```text
//! context (inject traceparent, relay the caller's token) ─► metrics ─► timeout/deadline ─► retry (budget, backoff)
//!   ─► circuit breaker ─► bulkhead ─► rate limit ─► balance (p2c, outlier ejection)
//!   ─► a connection to the picked instance (per-thread HTTP/1.1 pool, or shared HTTP/2)
//! ```
//!
//! Timeout sits outside retry so one budget bounds every attempt; retry sits outside the
//! breaker so a retried call is counted once per attempt; the bulkhead and rate limit sit
//! inside so a retry also needs a permit and a token; the balancer is innermost so each
//! attempt may go to another instance.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};

use super::{
    ClientSettings,
    layers::{InjectContextLayer, RecordMetricsLayer},
    pool::{Http1Pool, ResponseBody},
    raw::{self, RawCall},
    settings::{Switchable, TokenRelay},
};
use crate::{
    BoxBody,
    balance::BalanceLayer,
    discovery::Discovery,
    error::{BoxError, ConfigError, ErrorKind, MeshError},
    resilience::{
        bulkhead::BulkheadLayer,
        circuit_breaker::{Breaker, CircuitBreakerLayer, ServerErrorsAreFailures},
        rate_limit::RateLimitLayer,
        retry::{NotSent, RetryLayer},
        timeout::TimeoutLayer,
    },
};

/// How calls reach the picked instance; every client of a mesh shares the connections.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// HTTP/1.1 connections kept idle per thread ([`Http1Pool`]).
    Http1(Arc<Http1Pool>),
    /// HTTP/2 without TLS (h2c): hyper-util's pool, one multiplexed connection per instance.
    Http2(Arc<Client<HttpConnector, BoxBody>>),
}

impl Service<Request<BoxBody>> for Transport {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<ResponseBody>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<BoxBody>) -> Self::Future {
        let relayed = request.extensions_mut().remove::<RawCall>();
        match (self, relayed) {
            (Self::Http1(pool), Some(relayed)) => match raw::send(pool, request, relayed) {
                Ok(exchange) => Box::pin(exchange),
                Err(error) => Box::pin(std::future::ready(Err(error.into()))),
            },
            (Self::Http2(_), Some(_)) => Box::pin(std::future::ready(Err(MeshError::new(
                ErrorKind::Internal,
                "a call relayed from its bytes needs HTTP/1.1 to the service",
            )
            .into()))),
            (Self::Http1(pool), None) => {
                let pool = pool.clone();
                Box::pin(async move { pool.send(request).await.map_err(BoxError::from) })
            }
            (Self::Http2(client), None) => {
                let call = client.request(request);
                Box::pin(async move {
                    match call.await {
                        Ok(response) => Ok(response.map(ResponseBody::unpooled)),
                        // Not connected: nothing of the request went out.
                        Err(error) if error.is_connect() => Err(NotSent::new(error).into()),
                        Err(error) => Err(error.into()),
                    }
                })
            }
        }
    }
}

/// A built stack, shared by the calls of one generation of settings; each call clones it
/// (every layer's state sits behind an `Arc`).
pub(crate) type Stack = BoxCloneSyncService<Request<BoxBody>, Response<ResponseBody>, BoxError>;

/// The layers built from one [`ClientSettings`]. A reload keeps every layer whose section did
/// not change, with its state (breaker window, limiter bucket, balancer estimates).
#[derive(Debug, Clone)]
pub(crate) struct Layers {
    name: Arc<str>,
    /// The calling service: whose spans the calls are.
    caller: Arc<str>,
    settings: ClientSettings,
    metrics: RecordMetricsLayer,
    timeout: TimeoutLayer,
    retry: RetryLayer,
    /// A 5xx answer counts as a failure, as an exception would for Feign and Resilience4j.
    breaker: CircuitBreakerLayer<ServerErrorsAreFailures>,
    bulkhead: BulkheadLayer,
    rate_limit: Option<RateLimitLayer>,
    balance: BalanceLayer,
}

impl Layers {
    pub(crate) fn new(
        name: Arc<str>,
        caller: Arc<str>,
        settings: ClientSettings,
        discovery: Discovery,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        Ok(Self {
            caller,
            timeout: TimeoutLayer::try_new(name.clone(), settings.timeout.clone())?,
            retry: RetryLayer::try_new(name.clone(), settings.retry.clone())?,
            breaker: CircuitBreakerLayer::try_new(name.clone(), settings.circuit_breaker.clone())?
                .with_classifier(ServerErrorsAreFailures),
            bulkhead: BulkheadLayer::try_new(name.clone(), settings.bulkhead.clone())?,
            rate_limit: settings
                .rate_limit
                .clone()
                .map(|config| RateLimitLayer::try_new(name.clone(), config))
                .transpose()?,
            balance: BalanceLayer::try_new(discovery, settings.balance.clone())?,
            metrics: RecordMetricsLayer::new(name.clone()),
            name,
            settings,
        })
    }

    pub(crate) fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The circuit breaker the calls go through.
    pub(crate) fn breaker(&self) -> &Breaker {
        self.breaker.breaker()
    }

    /// The layers for `settings`, keeping those whose section is unchanged. `discovery` is
    /// used when the balancer has to be rebuilt.
    pub(crate) fn update(
        &self,
        settings: ClientSettings,
        discovery: impl FnOnce() -> Discovery,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        let old = &self.settings;
        let name = &self.name;
        Ok(Self {
            timeout: if settings.timeout == old.timeout {
                self.timeout.clone()
            } else {
                TimeoutLayer::try_new(name.clone(), settings.timeout.clone())?
            },
            retry: if settings.retry == old.retry {
                self.retry.clone()
            } else {
                RetryLayer::try_new(name.clone(), settings.retry.clone())?
            },
            breaker: if settings.circuit_breaker == old.circuit_breaker {
                self.breaker.clone()
            } else {
                CircuitBreakerLayer::try_new(name.clone(), settings.circuit_breaker.clone())?
                    .with_classifier(ServerErrorsAreFailures)
            },
            bulkhead: if settings.bulkhead == old.bulkhead {
                self.bulkhead.clone()
            } else {
                BulkheadLayer::try_new(name.clone(), settings.bulkhead.clone())?
            },
            rate_limit: if settings.rate_limit == old.rate_limit {
                self.rate_limit.clone()
            } else {
                settings
                    .rate_limit
                    .clone()
                    .map(|config| RateLimitLayer::try_new(name.clone(), config))
                    .transpose()?
            },
            balance: if settings.balance == old.balance && settings.instances == old.instances {
                self.balance.clone()
            } else {
                BalanceLayer::try_new(discovery(), settings.balance.clone())?
            },
            metrics: self.metrics.clone(),
            name: name.clone(),
            caller: self.caller.clone(),
            settings,
        })
    }

    /// The whole stack over `transport`.
    pub(crate) fn stack(&self, transport: &Transport) -> Stack {
        let on = |layer| self.settings.enabled(layer);
        let service = ServiceBuilder::new()
            .layer(InjectContextLayer {
                relay_token: self.settings.token_relay == TokenRelay::Caller,
                service: self.name.clone(),
                caller: self.caller.clone(),
            })
            .layer(self.metrics.clone())
            .option_layer(on(Switchable::Timeout).then(|| self.timeout.clone()))
            .option_layer(on(Switchable::Retry).then(|| self.retry.clone()))
            .option_layer(on(Switchable::CircuitBreaker).then(|| self.breaker.clone()))
            .option_layer(on(Switchable::Bulkhead).then(|| self.bulkhead.clone()))
            .option_layer(self.rate_limit.clone())
            .layer(self.balance.clone())
            .service(transport.clone());
        BoxCloneSyncService::new(service)
    }
}

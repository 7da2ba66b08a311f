use std::time::Duration;

use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::OnceCell;

use super::{Decision, Quota, RateLimitStore, StoreError, StoreFuture};

/// GCRA in one atomic script; the same arithmetic as the local store, in microseconds (which
/// Lua's doubles hold exactly). Returns `{allowed, remaining, retry_after_micros}`.
const GCRA_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local requested = tonumber(ARGV[4])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval * requested
local allow_at = new_tat - tolerance
if now < allow_at then
  local remaining = math.max(0, math.floor((tolerance - (tat - now)) / interval))
  return {0, remaining, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0}
";

/// A rate-limit store in Redis, shared by every replica pointing at the same server.
///
/// Each decision is one `EVALSHA` of a GCRA script, atomic on the server; each key expires as
/// soon as its bucket is full again. The connection is opened on first use and re-established
/// after a loss, so a store built while Redis is down starts working once Redis is back
/// (meanwhile the layer's [`FailurePolicy`](super::FailurePolicy) applies).
///
/// ```no_run
/// use std::sync::Arc;
/// use mesh_core::resilience::rate_limit::{RateLimitConfig, RateLimitLayer, RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// let layer = RateLimitLayer::with_store("login", RateLimitConfig::default(), Arc::new(store))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisStore {
    client: Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    script: Script,
}

impl RedisStore {
    /// A store for the server at `url` (`redis://host:port/db`), keys prefixed `mesh:rl:`.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            client: Client::open(url).map_err(StoreError::new)?,
            connection: OnceCell::new(),
            prefix: String::from("mesh:rl:"),
            script: Script::new(GCRA_SCRIPT),
        })
    }

    /// Prefixes every key with `prefix` instead of `mesh:rl:`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2);
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
            .map_err(StoreError::new)
    }
}

impl RateLimitStore for RedisStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        requested: u32,
        now_micros: u64,
    ) -> StoreFuture<'a> {
        StoreFuture::pending(async move {
            let mut connection = self.connection().await?;
            let (allowed, remaining, retry_after): (i64, i64, i64) = self
                .script
                .key(format!("{}{key}", self.prefix))
                .arg(now_micros)
                .arg(quota.interval_micros())
                .arg(quota.burst_capacity)
                .arg(requested)
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)?;
            Ok(Decision::from_parts(
                allowed == 1,
                remaining.max(0) as u64,
                retry_after.max(0) as u64,
                quota,
                requested,
            ))
        })
    }
}

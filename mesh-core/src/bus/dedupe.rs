use std::{future::Future, pin::Pin, time::Duration};

use dashmap::DashMap;
use tokio::time::Instant;

use super::BusError;

/// The future a [`DedupeStore`] answers with.
pub type DedupeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// Remembers which event ids a consumer group has handled, for a while.
pub trait DedupeStore: std::fmt::Debug + Send + Sync + 'static {
    /// Whether `id` was handled within the retention time.
    fn seen<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, bool>;
    /// Records that `id` was handled.
    fn remember<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, ()>;
}

/// In-process dedupe with a retention time; expired ids are swept as new ones arrive.
#[derive(Debug)]
pub struct MemoryDedupe {
    retention: Duration,
    handled: DashMap<(String, String), Instant>,
}

impl MemoryDedupe {
    /// Remembers handled ids for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            handled: DashMap::new(),
        }
    }
}

impl Default for MemoryDedupe {
    /// A day's retention, as long as the default message TTL.
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600))
    }
}

impl DedupeStore for MemoryDedupe {
    fn seen<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, bool> {
        let now = Instant::now();
        let seen = self
            .handled
            .get(&(group.to_string(), id.to_string()))
            .is_some_and(|until| *until > now);
        Box::pin(std::future::ready(Ok(seen)))
    }

    fn remember<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, ()> {
        let now = Instant::now();
        if self.handled.len() % 1024 == 1023 {
            self.handled.retain(|_, until| *until > now);
        }
        self.handled
            .insert((group.to_string(), id.to_string()), now + self.retention);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Dedupe in Redis (`SET key 1 NX EX retention`), shared by every instance of a service.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct RedisDedupe {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    retention: Duration,
}

#[cfg(feature = "redis")]
impl RedisDedupe {
    /// Connects to the Redis at `url`; keys are `{prefix}{group}:{id}`.
    pub async fn connect(url: &str, prefix: &str, retention: Duration) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::Unavailable(e.into()))?;
        let connection = client
            .get_connection_manager()
            .await
            .map_err(|e| BusError::Unavailable(e.into()))?;
        Ok(Self {
            connection,
            prefix: prefix.to_string(),
            retention,
        })
    }
}

#[cfg(feature = "redis")]
impl DedupeStore for RedisDedupe {
    fn seen<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let key = format!("{}{group}:{id}", self.prefix);
            redis::AsyncCommands::exists(&mut connection, key)
                .await
                .map_err(|e| BusError::Unavailable(e.into()))
        })
    }

    fn remember<'a>(&'a self, group: &'a str, id: &'a str) -> DedupeFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let key = format!("{}{group}:{id}", self.prefix);
            let _: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.retention.as_secs().max(1))
                .query_async(&mut connection)
                .await
                .map_err(|e| BusError::Unavailable(e.into()))?;
            Ok(())
        })
    }
}

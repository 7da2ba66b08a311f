use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use mesh_core::discovery::{InstanceStatus, ServiceId};
use redis::{AsyncCommands, Client, Script, aio::ConnectionManager};
use tokio::sync::watch;

use super::{Store, StoreError, StoreFuture};
use crate::model::{Event, Registration, Snapshot};

/// How often a replica looks for changes other replicas made.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Changes kept for watchers to resume from.
const LOG_SIZE: i64 = 10_000;
/// Renewal counters kept, in seconds.
const RENEWAL_HISTORY_SECS: u64 = 3600;

/// Adds or replaces a registration, numbers the change and logs it, atomically.
const PUT: &str = r#"
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
local revision = redis.call('INCR', KEYS[2])
local action = existed == 1 and 'MODIFIED' or 'ADDED'
local event = '{"revision":' .. revision .. ',"at_ms":' .. ARGV[3] .. ',"action":"' .. action .. '","registration":' .. ARGV[2] .. '}'
redis.call('RPUSH', KEYS[3], event)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
return event
"#;

/// Removes a registration, numbering and logging the deletion.
const REMOVE: &str = r#"
local registration = redis.call('HGET', KEYS[1], ARGV[1])
if not registration then return false end
local renewed = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local revision = redis.call('INCR', KEYS[2])
local event = '{"revision":' .. revision .. ',"at_ms":' .. ARGV[2] .. ',"action":"DELETED","registration":' .. registration .. ',"renewed_ms":' .. (renewed or '0') .. '}'
redis.call('RPUSH', KEYS[3], event)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
return event
"#;

/// Records a renewal when the instance is known, and counts it in its second's counter.
const RENEW: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local counter = KEYS[3] .. ':' .. ARGV[3]
redis.call('INCR', counter)
redis.call('EXPIRE', counter, ARGV[4])
return 1
"#;

/// The revision and every registration with its last renewal, read at one instant.
const SNAPSHOT: &str = r#"
local revision = redis.call('GET', KEYS[2]) or '0'
return {revision, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[3])}
"#;

/// A registry store in Redis: several registry replicas pointing at one Redis serve one view.
///
/// Registrations live in a hash (their last renewal in a second one, so a renewal rewrites a
/// number, not a record); each change increments a revision and appends to a bounded log in
/// the same Lua script. A replica sees the revisions other replicas make within
/// 100 ms and wakes its watchers.
#[derive(Debug)]
pub struct RedisStore {
    connection: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    revisions: watch::Sender<u64>,
    poller: OnceLock<()>,
    this: Weak<RedisStore>,
    epoch: u64,
}

#[derive(Debug)]
struct Keys {
    registrations: String,
    renewals: String,
    revision: String,
    log: String,
    counts: String,
}

#[derive(Debug)]
struct Scripts {
    put: Script,
    remove: Script,
    renew: Script,
    snapshot: Script,
}

/// The revision, the registration records and the renewal times, as the snapshot script
/// returns them.
type RawSnapshot = (u64, Vec<(String, String)>, Vec<(String, u64)>);

fn store_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError(Box::new(error))
}

fn field(service: &ServiceId, id: &str) -> String {
    format!("{service}\u{0}{id}")
}

impl RedisStore {
    /// Connects to the Redis at `url`; every key starts with `prefix` (say `mesh:registry:`),
    /// so replicas sharing a prefix share a registry.
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<Self>, StoreError> {
        let client = Client::open(url).map_err(store_error)?;
        let connection = client.get_connection_manager().await.map_err(store_error)?;
        let keys = Keys {
            registrations: format!("{prefix}registrations"),
            renewals: format!("{prefix}renewals"),
            revision: format!("{prefix}revision"),
            log: format!("{prefix}log"),
            counts: format!("{prefix}renewal-count"),
        };
        let mut probe = connection.clone();
        // The first replica to reach an empty prefix chooses the epoch; the others read it.
        let epoch_key = format!("{prefix}epoch");
        let _: bool = probe
            .set_nx(&epoch_key, super::new_epoch())
            .await
            .map_err(store_error)?;
        let epoch: u64 = probe.get(&epoch_key).await.map_err(store_error)?;
        let revision: Option<u64> = probe.get(&keys.revision).await.map_err(store_error)?;
        Ok(Arc::new_cyclic(|this| Self {
            connection,
            keys,
            scripts: Scripts {
                put: Script::new(PUT),
                remove: Script::new(REMOVE),
                renew: Script::new(RENEW),
                snapshot: Script::new(SNAPSHOT),
            },
            revisions: watch::Sender::new(revision.unwrap_or(0)),
            poller: OnceLock::new(),
            this: this.clone(),
            epoch,
        }))
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Tells local watchers about a revision this replica made.
    fn advance_to(&self, revision: u64) {
        self.revisions.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// Follows the revisions other replicas make, while anyone holds this store.
    fn start_polling(&self) {
        let this = self.this.clone();
        let key = self.keys.revision.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(store) = this.upgrade() else { return };
                let mut connection = store.connection();
                match connection.get::<_, Option<u64>>(&key).await {
                    Ok(revision) => store.advance_to(revision.unwrap_or(0)),
                    Err(error) => tracing::warn!(%error, "reading the registry revision failed"),
                }
            }
        });
    }

    fn parse_event(text: &str) -> Result<Event, StoreError> {
        serde_json::from_str(text).map_err(store_error)
    }

    async fn log(&self) -> Result<Vec<Event>, StoreError> {
        let mut connection = self.connection();
        let entries: Vec<String> = connection
            .lrange(&self.keys.log, 0, -1)
            .await
            .map_err(store_error)?;
        entries.iter().map(|e| Self::parse_event(e)).collect()
    }
}

impl Store for RedisStore {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn put(&self, registration: Registration) -> StoreFuture<'_, Event> {
        Box::pin(async move {
            let field = field(registration.service(), &registration.instance.id);
            let json = serde_json::to_string(&registration).map_err(store_error)?;
            let event: String = self
                .scripts
                .put
                .key(&self.keys.registrations)
                .key(&self.keys.revision)
                .key(&self.keys.log)
                .key(&self.keys.renewals)
                .arg(field)
                .arg(json)
                .arg(registration.last_updated_ms)
                .arg(LOG_SIZE)
                .arg(registration.lease.last_renewal_ms)
                .invoke_async(&mut self.connection())
                .await
                .map_err(store_error)?;
            let event = Self::parse_event(&event)?;
            self.advance_to(event.revision);
            Ok(event)
        })
    }

    fn get<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Registration>> {
        Box::pin(async move {
            let field = field(service, id);
            let mut connection = self.connection();
            let (record, renewed): (Option<String>, Option<u64>) = redis::pipe()
                .hget(&self.keys.registrations, &field)
                .hget(&self.keys.renewals, &field)
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            record
                .map(|record| {
                    let mut registration: Registration =
                        serde_json::from_str(&record).map_err(store_error)?;
                    if let Some(renewed) = renewed {
                        registration.lease.last_renewal_ms = renewed;
                    }
                    Ok(registration)
                })
                .transpose()
        })
    }

    fn renew<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let renewed: i64 = self
                .scripts
                .renew
                .key(&self.keys.registrations)
                .key(&self.keys.renewals)
                .key(&self.keys.counts)
                .arg(field(service, id))
                .arg(now_ms)
                .arg(now_ms / 1000)
                .arg(RENEWAL_HISTORY_SECS)
                .invoke_async(&mut self.connection())
                .await
                .map_err(store_error)?;
            Ok(renewed == 1)
        })
    }

    fn renewals_since(&self, since_ms: u64, now_ms: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            // One counter per second, from `since` to now (bounded by the history kept).
            let last = (now_ms / 1000).max(since_ms / 1000);
            let first = (since_ms / 1000).max(last.saturating_sub(RENEWAL_HISTORY_SECS));
            let keys: Vec<String> = (first..=last)
                .map(|second| format!("{}:{second}", self.keys.counts))
                .collect();
            let mut connection = self.connection();
            let counts: Vec<Option<u64>> = connection.mget(&keys).await.map_err(store_error)?;
            Ok(counts.into_iter().flatten().sum())
        })
    }

    fn remove<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>> {
        Box::pin(async move {
            let event: Option<String> = self
                .scripts
                .remove
                .key(&self.keys.registrations)
                .key(&self.keys.revision)
                .key(&self.keys.log)
                .key(&self.keys.renewals)
                .arg(field(service, id))
                .arg(now_ms)
                .arg(LOG_SIZE)
                .invoke_async(&mut self.connection())
                .await
                .map_err(store_error)?;
            let event = event.map(|e| Self::parse_event(&e)).transpose()?;
            if let Some(event) = &event {
                self.advance_to(event.revision);
            }
            Ok(event)
        })
    }

    fn set_override<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        status: Option<InstanceStatus>,
        now_ms: u64,
    ) -> StoreFuture<'a, Option<Event>> {
        // Read, change, write: a renewal landing in between is applied again by the next one.
        Box::pin(async move {
            let Some(mut registration) = self.get(service, id).await? else {
                return Ok(None);
            };
            registration.overridden_status = status;
            registration.last_updated_ms = now_ms;
            self.put(registration).await.map(Some)
        })
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(async move {
            let (revision, records, renewals): RawSnapshot = self
                .scripts
                .snapshot
                .key(&self.keys.registrations)
                .key(&self.keys.revision)
                .key(&self.keys.renewals)
                .invoke_async(&mut self.connection())
                .await
                .map_err(store_error)?;
            let renewals: std::collections::HashMap<String, u64> = renewals.into_iter().collect();
            let mut registrations = records
                .into_iter()
                .map(|(field, record)| {
                    let mut registration: Registration =
                        serde_json::from_str(&record).map_err(store_error)?;
                    if let Some(renewed) = renewals.get(&field) {
                        registration.lease.last_renewal_ms = *renewed;
                    }
                    Ok(registration)
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            registrations
                .sort_by(|a, b| (a.service(), &a.instance.id).cmp(&(b.service(), &b.instance.id)));
            Ok(Snapshot {
                epoch: self.epoch,
                revision,
                registrations,
            })
        })
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut connection = self.connection();
            connection
                .hlen(&self.keys.registrations)
                .await
                .map_err(store_error)
        })
    }

    fn events_since(&self, revision: u64) -> StoreFuture<'_, Option<Vec<Event>>> {
        Box::pin(async move {
            let log = self.log().await?;
            let current = log.last().map_or(0, |e| e.revision);
            if revision >= current {
                return Ok(Some(Vec::new()));
            }
            let oldest = log.first().map_or(current + 1, |e| e.revision);
            if revision + 1 < oldest {
                return Ok(None);
            }
            Ok(Some(
                log.into_iter().filter(|e| e.revision > revision).collect(),
            ))
        })
    }

    fn recent(&self, since_ms: u64) -> StoreFuture<'_, Vec<Event>> {
        Box::pin(async move {
            Ok(self
                .log()
                .await?
                .into_iter()
                .filter(|e| e.at_ms >= since_ms)
                .collect())
        })
    }

    /// Read from Redis: another replica's change is seen at once, not at the next poll.
    fn revision(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut connection = self.connection();
            let revision: Option<u64> = connection
                .get(&self.keys.revision)
                .await
                .map_err(store_error)?;
            Ok(revision.unwrap_or(0))
        })
    }

    fn revisions(&self) -> watch::Receiver<u64> {
        self.poller.get_or_init(|| self.start_polling());
        self.revisions.subscribe()
    }
}

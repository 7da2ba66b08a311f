//! The registry: leases, renewals, eviction, self-preservation, status overrides and watches.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use mesh_core::{
    clock::Clock,
    discovery::{Discovery, Instance, InstanceStatus, ServiceId},
    error::{ErrorKind, MeshError},
    registry::{RegistryApi, RegistryFuture, follow, summary::InstanceSummary},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    auth::{AuthConfig, Authenticator, Caller},
    model::{Cursor, EurekaDetails, Event, Registration, Snapshot, WatchAnswer},
    render::Renderings,
    store::{MemoryStore, Store, StoreError},
    summaries::Summaries,
    validate::{self, MetadataLimits},
};

/// Settings of the registry.
///
/// ```
/// use std::time::Duration;
/// use mesh_registry::RegistryConfig;
/// let config = RegistryConfig::default();
/// assert_eq!(config.default_lease_duration, Duration::from_secs(15));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// How often expired leases are evicted.
    #[serde(with = "humantime_serde")]
    pub eviction_interval: Duration,
    /// The renewal interval of native registrations that do not name one.
    #[serde(with = "humantime_serde")]
    pub default_renewal_interval: Duration,
    /// The lease of native registrations that do not name one.
    #[serde(with = "humantime_serde")]
    pub default_lease_duration: Duration,
    /// The longest lease a client may ask for.
    #[serde(with = "humantime_serde")]
    pub max_lease_duration: Duration,
    /// How long a registry that started on an empty store waits for instances to register
    /// again before it answers watchers that followed it before the restart (Eureka's
    /// `waitTimeInMsWhenSyncEmpty`). Until then they keep the instances they knew; watchers
    /// that knew nothing get the catalogue at once. It should cover the longest renewal
    /// interval in use: an instance learns of the restart at its next renewal.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// The most instances the registry holds; new registrations beyond it are refused, so a
    /// misbehaving client cannot exhaust the registry's memory.
    pub max_instances: usize,
    /// The most metadata entries one instance may carry (default 64); registrations beyond
    /// it are refused with 400.
    pub max_metadata_entries: usize,
    /// The most metadata bytes, keys and values together, one instance may carry (default
    /// 8 KiB); registrations beyond it are refused with 400.
    pub max_metadata_bytes: usize,
    /// Self-preservation settings.
    pub self_preservation: SelfPreservationConfig,
    /// Who may write (and, optionally, read). Empty by default: anonymous writes, which is
    /// why the binary then listens on loopback only.
    pub auth: AuthConfig,
}

/// Self-preservation: when renewals fall well below what the registered instances promise, the
/// registry is more likely cut off from them than they all died, so it stops evicting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfPreservationConfig {
    /// Whether self-preservation may engage at all.
    pub enabled: bool,
    /// Engage below this share of the expected renewals (Eureka: 0.85).
    pub renewal_threshold: f64,
    /// The window renewals are counted over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer instances than this never engage it: in a small pool, losing a few instances is
    /// more likely a real failure, and keeping them would send traffic to the dead.
    pub min_instances: usize,
}

impl Default for RegistryConfig {
    /// Evict every 5 s; native leases of 15 s renewed every 5 s (Eureka: 90 s and 30 s); leases of
    /// at most 5 minutes; a warm-up of 30 s (one Eureka renewal interval); at most 100 000 instances with 64 metadata entries (8 KiB) each; no
    /// credentials.
    fn default() -> Self {
        Self {
            eviction_interval: Duration::from_secs(5),
            default_renewal_interval: Duration::from_secs(5),
            default_lease_duration: Duration::from_secs(15),
            max_lease_duration: Duration::from_secs(300),
            warmup: Duration::from_secs(30),
            max_instances: 100_000,
            max_metadata_entries: 64,
            max_metadata_bytes: 8 * 1024,
            self_preservation: SelfPreservationConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl RegistryConfig {
    /// The defaults changed by the binary's environment variables, read through `var`:
    /// `MESH_REGISTRY_USERS` (`name:password[:operator]`, comma-separated),
    /// `MESH_REGISTRY_JWT_SECRET`, `MESH_REGISTRY_JWT_PUBLIC_KEY` or
    /// `MESH_REGISTRY_JWT_JWKS_URL` (with `MESH_REGISTRY_JWT_ISSUER`,
    /// `MESH_REGISTRY_JWT_AUDIENCE`, `MESH_REGISTRY_JWT_WRITE_ROLE`,
    /// `MESH_REGISTRY_OPERATOR_ROLE`), `MESH_REGISTRY_PROTECT_READS` and
    /// `MESH_REGISTRY_SERVICE_PER_IDENTITY` (`true`/`false`),
    /// `MESH_REGISTRY_MAX_METADATA_ENTRIES` and `MESH_REGISTRY_MAX_METADATA_BYTES`,
    /// `MESH_REGISTRY_WARMUP` (a duration such as `30s`).
    ///
    /// ```
    /// use mesh_registry::RegistryConfig;
    /// let config = RegistryConfig::from_env_with(|name| match name {
    ///     "MESH_REGISTRY_USERS" => Some("orders:s3cret,ops:0ps:operator".into()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(config.auth.users.len(), 2);
    /// assert!(config.auth.is_configured());
    /// ```
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Result<Self, MeshError> {
        let mut config = Self::default();
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if let Some(users) = var("MESH_REGISTRY_USERS") {
            config.auth.users = AuthConfig::parse_users(&users)?;
        }
        let jwt = match (
            var("MESH_REGISTRY_JWT_SECRET"),
            var("MESH_REGISTRY_JWT_PUBLIC_KEY"),
            var("MESH_REGISTRY_JWT_JWKS_URL"),
        ) {
            (None, None, None) => None,
            (secret, public_key, jwks_url) => Some(mesh_core::auth::JwtConfig {
                secret,
                public_key,
                jwks_url,
                issuer: var("MESH_REGISTRY_JWT_ISSUER"),
                audience: var("MESH_REGISTRY_JWT_AUDIENCE"),
                ..mesh_core::auth::JwtConfig::default()
            }),
        };
        config.auth.jwt = jwt;
        config.auth.jwt_write_role = var("MESH_REGISTRY_JWT_WRITE_ROLE");
        if let Some(role) = var("MESH_REGISTRY_OPERATOR_ROLE") {
            config.auth.operator_role = role;
        }
        if let Some(protect) = var("MESH_REGISTRY_PROTECT_READS") {
            config.auth.protect_reads = parse_env("MESH_REGISTRY_PROTECT_READS", &protect)?;
        }
        if let Some(own) = var("MESH_REGISTRY_SERVICE_PER_IDENTITY") {
            config.auth.service_per_identity =
                parse_env("MESH_REGISTRY_SERVICE_PER_IDENTITY", &own)?;
        }
        if let Some(entries) = var("MESH_REGISTRY_MAX_METADATA_ENTRIES") {
            config.max_metadata_entries =
                parse_env("MESH_REGISTRY_MAX_METADATA_ENTRIES", &entries)?;
        }
        if let Some(bytes) = var("MESH_REGISTRY_MAX_METADATA_BYTES") {
            config.max_metadata_bytes = parse_env("MESH_REGISTRY_MAX_METADATA_BYTES", &bytes)?;
        }
        if let Some(warmup) = var("MESH_REGISTRY_WARMUP") {
            config.warmup =
                humantime_serde::re::humantime::parse_duration(warmup.trim()).map_err(|error| {
                    MeshError::new(
                        ErrorKind::Config,
                        format!("MESH_REGISTRY_WARMUP={warmup:?}: {error}"),
                    )
                })?;
        }
        Ok(config)
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, MeshError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|error| MeshError::new(ErrorKind::Config, format!("{name}={value:?}: {error}")))
}

impl Default for SelfPreservationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            renewal_threshold: 0.85,
            window: Duration::from_secs(60),
            min_instances: 5,
        }
    }
}

/// A registration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The registry holds `max_instances` already.
    #[error("the registry is full ({0} instances)")]
    Full(usize),
    /// The registration breaks an input rule (a control character, a limit).
    #[error(transparent)]
    Invalid(#[from] validate::InvalidInput),
    /// The instance is registered by another identity, and the caller is no operator.
    #[error("instance {id:?} is registered by another identity")]
    Forbidden {
        /// The instance.
        id: String,
    },
    /// The caller may register instances of its own service only.
    #[error("this identity may not register instances of {service:?}")]
    NotYourService {
        /// The service.
        service: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a caller may renew, change or cancel an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It may.
    Allowed,
    /// The instance is not registered.
    Unknown,
    /// The instance belongs to another identity.
    Denied,
}

/// How a client asks for a lease: renewal interval and duration, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseRequest {
    /// How often the client will renew.
    pub renewal_interval: Option<Duration>,
    /// How long the lease lasts without renewal.
    pub duration: Option<Duration>,
}

/// A service registry over a [`Store`].
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn Store>,
    config: RegistryConfig,
    clock: Clock,
    started_ms: u64,
    /// Until when watchers from before a restart are held (wall ms), when the store started
    /// empty.
    warm_until_ms: Option<u64>,
    self_preservation: AtomicBool,
    counters: Counters,
    authenticator: Authenticator,
    renderings: Renderings,
    summaries: Summaries,
    /// Set once the server shuts down: long-lived streams (the dashboard's) end on it.
    closing: watch::Sender<bool>,
}

/// Totals since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Leases renewed.
    pub renewals: AtomicU64,
    /// Leases evicted after expiring.
    pub evictions: AtomicU64,
    /// Registrations received.
    pub registrations: AtomicU64,
    /// Registrations cancelled by their instance.
    pub cancellations: AtomicU64,
}

impl Registry {
    /// A registry on an in-memory store.
    pub fn new(config: RegistryConfig) -> Self {
        Self::with_store(config, Arc::new(MemoryStore::new()))
    }

    /// A registry on `store`. When the configured credentials cannot be loaded (a bad JWT
    /// key, say) the registry refuses every write and protected read rather than opening up;
    /// [`try_with_store`](Self::try_with_store) reports the mistake instead.
    pub fn with_store(config: RegistryConfig, store: Arc<dyn Store>) -> Self {
        match Self::try_with_store(config.clone(), store.clone()) {
            Ok(registry) => registry,
            Err(error) => {
                tracing::error!(%error, "registry credentials unusable: every write is refused");
                Self::build(config, store, Authenticator::deny_all())
            }
        }
    }

    /// A registry on `store`; an error when the configured credentials cannot be loaded.
    pub fn try_with_store(
        config: RegistryConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, MeshError> {
        let authenticator = Authenticator::new(&config.auth)?;
        Ok(Self::build(config, store, authenticator))
    }

    fn build(config: RegistryConfig, store: Arc<dyn Store>, authenticator: Authenticator) -> Self {
        let clock = Clock::new();
        let started_ms = clock.now_millis();
        let started_empty = *store.revisions().borrow() == 0;
        let warm_until_ms = started_empty.then(|| started_ms + config.warmup.as_millis() as u64);
        Self {
            store,
            config,
            started_ms,
            warm_until_ms,
            clock,
            self_preservation: AtomicBool::new(false),
            counters: Counters::default(),
            authenticator,
            renderings: Renderings::default(),
            summaries: Summaries::default(),
            closing: watch::channel(false).0,
        }
    }

    /// The latest summary each instance reported with its renewal.
    pub fn summaries(&self) -> &Summaries {
        &self.summaries
    }

    /// Ends the streams that would otherwise outlive a graceful shutdown (the dashboard's
    /// events); [`serve`](crate::serve) calls it when its shutdown signal fires.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when [`close_streams`](Self::close_streams) is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Who may write.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The answers rendered at the current revision, shared by every reader.
    pub(crate) fn renderings(&self) -> &Renderings {
        &self.renderings
    }

    fn metadata_limits(&self) -> MetadataLimits {
        MetadataLimits {
            max_entries: self.config.max_metadata_entries,
            max_bytes: self.config.max_metadata_bytes,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Totals since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Wall-clock milliseconds, following tokio's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_millis()
    }

    /// The epoch of the registry's store; see [`Cursor`].
    pub fn epoch(&self) -> u64 {
        self.store.epoch()
    }

    /// How much longer the registry warms up after starting on an empty store; `None` once
    /// it is warm (or when it started on a store that kept its registrations).
    pub fn warming(&self) -> Option<Duration> {
        let until = self.warm_until_ms?;
        let now = self.now_ms();
        (now < until).then(|| Duration::from_millis(until - now))
    }

    /// Whether self-preservation is holding evictions back.
    pub fn is_self_preserving(&self) -> bool {
        self.self_preservation.load(Ordering::Relaxed)
    }

    /// Registers (or re-registers) an instance with no owner, unchecked: what a process
    /// embedding the registry does. See [`register_as`](Self::register_as).
    pub async fn register(
        &self,
        instance: Instance,
        lease: LeaseRequest,
        eureka: Option<EurekaDetails>,
    ) -> Result<Event, RegisterError> {
        self.register_as(instance, lease, eureka, None).await
    }

    /// Registers (or re-registers) an instance for `caller`. A re-registration keeps the first
    /// registration time and any operator override, as Eureka does. A new instance beyond
    /// `max_instances` is refused with [`RegisterError::Full`], one breaking the input rules
    /// ([`validate`](mod@crate::validate)) with [`RegisterError::Invalid`]. With a caller, the
    /// instance is owned by it; re-registering an instance another identity owns is refused
    /// with [`RegisterError::Forbidden`] unless the caller is an operator (who leaves the
    /// owner as it was). `None` registers without an owner, unchecked.
    pub async fn register_as(
        &self,
        instance: Instance,
        lease: LeaseRequest,
        eureka: Option<EurekaDetails>,
        caller: Option<&Caller>,
    ) -> Result<Event, RegisterError> {
        validate::registration(&instance, eureka.as_ref(), self.metadata_limits())?;
        if let Some(caller) = caller
            && !caller.may_register(instance.service.as_str())
        {
            return Err(RegisterError::NotYourService {
                service: instance.service.to_string(),
            });
        }
        let now = self.now_ms();
        let renewal = lease
            .renewal_interval
            .unwrap_or(self.config.default_renewal_interval)
            .clamp(Duration::from_secs(1), self.config.max_lease_duration);
        let duration = lease
            .duration
            .unwrap_or(self.config.default_lease_duration)
            .clamp(renewal, self.config.max_lease_duration);
        let mut registration = Registration::new(instance, renewal, duration, now);
        registration.eureka = eureka.unwrap_or_default();
        let existing = self
            .store
            .get(registration.service(), &registration.instance.id)
            .await?;
        if existing.is_none() && self.store.count().await? >= self.config.max_instances {
            return Err(RegisterError::Full(self.config.max_instances));
        }
        registration.owner = caller.map(|caller| caller.name.clone());
        if let Some(existing) = existing {
            if let Some(caller) = caller
                && !caller.may_change(existing.owner.as_deref())
            {
                return Err(RegisterError::Forbidden {
                    id: existing.instance.id,
                });
            }
            // The owner stays the owner, whoever (an operator, the embedding process)
            // registers the instance again.
            if existing.owner.is_some() || caller.is_none() {
                registration.owner = existing.owner;
            }
            registration.lease.registered_ms = existing.lease.registered_ms;
            registration.overridden_status = existing.overridden_status;
            if existing.lease.service_up_ms != 0 {
                registration.lease.service_up_ms = existing.lease.service_up_ms;
            }
        }
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
        let event = self.store.put(registration).await?;
        // A new process under the same ID reports afresh.
        self.summaries.remove(
            event.registration.service(),
            &event.registration.instance.id,
        );
        // Identifiers are logged with `?`: escaped, so no client can start a log line.
        tracing::info!(
            service = ?event.registration.service().as_str(),
            instance = ?event.registration.instance.id,
            owner = ?event.registration.owner,
            action = ?event.action,
            "registered"
        );
        Ok(event)
    }

    /// Whether `caller` may renew, change or cancel an instance: [`Access::Allowed`] for its
    /// owner and for operators, and for everyone when `caller` is `None` (the registry takes
    /// anonymous writes).
    pub async fn access(
        &self,
        service: &ServiceId,
        id: &str,
        caller: Option<&Caller>,
    ) -> Result<Access, StoreError> {
        let Some(caller) = caller else {
            return Ok(Access::Allowed);
        };
        Ok(match self.store.get(service, id).await? {
            None => Access::Unknown,
            Some(registration) if caller.may_change(registration.owner.as_deref()) => {
                Access::Allowed
            }
            Some(_) => Access::Denied,
        })
    }

    /// Renews a lease; `false` when the instance is unknown (it should register again).
    pub async fn renew(&self, service: &ServiceId, id: &str) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let renewed = self.store.renew(service, id, now).await?;
        if renewed {
            self.counters.renewals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(renewed)
    }

    /// Renews a lease and keeps the summary the instance reported with it; `false` when the
    /// instance is unknown.
    pub async fn renew_reporting(
        &self,
        service: &ServiceId,
        id: &str,
        summary: InstanceSummary,
    ) -> Result<bool, StoreError> {
        let renewed = self.renew(service, id).await?;
        if renewed {
            self.summaries.record(service, id, summary, self.now_ms());
        }
        Ok(renewed)
    }

    /// Changes the status an instance reports (a renewal carrying a new status, say).
    pub async fn report_status(
        &self,
        service: &ServiceId,
        id: &str,
        status: InstanceStatus,
    ) -> Result<bool, StoreError> {
        let Some(mut registration) = self.store.get(service, id).await? else {
            return Ok(false);
        };
        if registration.instance.status != status {
            let now = self.now_ms();
            registration.instance.status = status;
            registration.last_updated_ms = now;
            registration.last_dirty_ms = now;
            if status == InstanceStatus::Up && registration.lease.service_up_ms == 0 {
                registration.lease.service_up_ms = now;
            }
            self.store.put(registration).await?;
        }
        Ok(true)
    }

    /// Adds or replaces metadata entries of a registered instance (Eureka's metadata update);
    /// `false` when the instance is unknown. The result is held to the same limits as a
    /// registration.
    pub async fn update_metadata(
        &self,
        service: &ServiceId,
        id: &str,
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> Result<bool, RegisterError> {
        let Some(mut registration) = self.store.get(service, id).await? else {
            return Ok(false);
        };
        registration.instance.metadata.extend(entries);
        validate::registration(
            &registration.instance,
            Some(&registration.eureka),
            self.metadata_limits(),
        )?;
        let now = self.now_ms();
        registration.last_updated_ms = now;
        registration.last_dirty_ms = now;
        self.store.put(registration).await?;
        Ok(true)
    }

    /// Removes an instance that is shutting down; `false` when it was unknown.
    pub async fn cancel(&self, service: &ServiceId, id: &str) -> Result<bool, StoreError> {
        let removed = self
            .store
            .remove(service, id, self.now_ms())
            .await?
            .is_some();
        if removed {
            self.summaries.remove(service, id);
            self.counters.cancellations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(service = ?service.as_str(), instance = ?id, "cancelled");
        }
        Ok(removed)
    }

    /// Sets (or, with `None`, clears) an operator's status override.
    pub async fn override_status(
        &self,
        service: &ServiceId,
        id: &str,
        status: Option<InstanceStatus>,
    ) -> Result<bool, StoreError> {
        let changed = self
            .store
            .set_override(service, id, status, self.now_ms())
            .await?
            .is_some();
        if changed {
            tracing::info!(service = ?service.as_str(), instance = ?id, ?status, "status override");
        }
        Ok(changed)
    }

    /// Every registration now.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.store.snapshot().await
    }

    /// Waits up to `timeout` for changes after `cursor`. A watcher with no cursor gets a
    /// snapshot at once. One whose cursor belongs to another epoch followed this registry
    /// before it restarted on an empty store: while the registry [warms up](Self::warming) it
    /// is held, then answered [`WatchAnswer::Warming`] if the wait ends first, so it keeps the
    /// instances it knows rather than an incomplete catalogue; once warm it gets a snapshot.
    pub async fn watch(
        &self,
        cursor: Option<Cursor>,
        timeout: Duration,
    ) -> Result<WatchAnswer, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let epoch = self.epoch();
        let Some(cursor) = cursor else {
            return Ok(WatchAnswer::Snapshot(self.store.snapshot().await?));
        };
        if cursor.epoch != 0 && cursor.epoch != epoch {
            if let Some(remaining) = self.warming() {
                let warm = tokio::time::Instant::now() + remaining;
                tokio::time::sleep_until(warm.min(deadline)).await;
                if let Some(remaining) = self.warming() {
                    return Ok(WatchAnswer::Warming {
                        epoch,
                        remaining_ms: remaining.as_millis() as u64,
                    });
                }
            }
            return Ok(WatchAnswer::Snapshot(self.store.snapshot().await?));
        }
        let since = cursor.revision;
        let mut revisions = self.store.revisions();
        loop {
            let current = *revisions.borrow_and_update();
            if since > current {
                // The watcher saw revisions this history never made (a watcher from before
                // epochs): only a snapshot brings it back in step.
                return Ok(WatchAnswer::Snapshot(self.store.snapshot().await?));
            }
            if current != since {
                break;
            }
            match tokio::time::timeout_at(deadline, revisions.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Ok(WatchAnswer::Changes {
                        epoch,
                        revision: current,
                        events: Vec::new(),
                    });
                }
            }
        }
        match self.store.events_since(since).await? {
            Some(events) => Ok(WatchAnswer::Changes {
                epoch,
                revision: events.last().map_or(since, |e| e.revision),
                events,
            }),
            None => Ok(WatchAnswer::Snapshot(self.store.snapshot().await?)),
        }
    }

    /// One eviction pass: removes expired leases unless self-preservation holds them.
    pub async fn evict(&self) -> Result<Vec<Event>, StoreError> {
        let now = self.now_ms();
        self.summaries
            .forget_before(now.saturating_sub(self.config.max_lease_duration.as_millis() as u64));
        let snapshot = self.store.snapshot().await?;
        let preserving = self
            .update_self_preservation(&snapshot.registrations, now)
            .await?;
        if preserving {
            return Ok(Vec::new());
        }
        let mut evicted = Vec::new();
        for registration in snapshot.registrations.iter().filter(|r| r.is_expired(now)) {
            let service = registration.service();
            let id = &registration.instance.id;
            // Renewed since the snapshot? Then it stays.
            let current = self.store.get(service, id).await?;
            if current.is_some_and(|current| current.is_expired(now))
                && let Some(event) = self.store.remove(service, id, now).await?
            {
                tracing::warn!(service = ?service.as_str(), instance = ?id, "lease expired, evicted");
                self.summaries.remove(service, id);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                evicted.push(event);
            }
        }
        Ok(evicted)
    }

    /// Follows `service` into a [`Discovery`] straight from this registry, with no socket in
    /// between: the embedded registry of a single-process mesh or a test.
    pub async fn discover(self: &Arc<Self>, service: impl Into<ServiceId>) -> Discovery {
        follow(self.clone(), service).await
    }

    /// Evicts every `eviction_interval` until the registry is dropped.
    pub fn spawn_eviction(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(self);
        // A zero interval would spin; a tenth of a second is as eager as eviction needs.
        let interval = self
            .config
            .eviction_interval
            .max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                if let Err(error) = registry.evict().await {
                    tracing::error!(%error, "eviction pass failed");
                }
            }
        })
    }

    /// Compares the renewals of the last window with what the registered instances promise.
    async fn update_self_preservation(
        &self,
        registrations: &[Registration],
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let config = &self.config.self_preservation;
        let window_ms = config.window.as_millis() as u64;
        let warmed_up = now_ms >= self.started_ms + window_ms;
        let engaged = if !config.enabled || !warmed_up || registrations.len() < config.min_instances
        {
            false
        } else {
            let expected: f64 = registrations
                .iter()
                .map(|r| {
                    let known_for = now_ms.saturating_sub(r.lease.registered_ms).min(window_ms);
                    known_for as f64 / r.lease.renewal_interval.as_millis().max(1) as f64
                })
                .sum();
            // Whole seconds: the current one and the window's full seconds before it.
            let since = (now_ms / 1000).saturating_sub(config.window.as_secs().max(1) - 1) * 1000;
            let actual = self.store.renewals_since(since, now_ms).await?;
            expected >= 1.0 && (actual as f64) < expected * config.renewal_threshold
        };
        let was = self.self_preservation.swap(engaged, Ordering::Relaxed);
        if engaged && !was {
            tracing::warn!(
                "renewals fell below the threshold: self-preservation on, evictions stop"
            );
        } else if !engaged && was {
            tracing::info!("renewals recovered: self-preservation off, evictions resume");
        }
        Ok(engaged)
    }
}

/// The registry as a service in this process sees it: the embedded registry of a
/// single-process mesh or a test.
impl RegistryApi for Registry {
    fn register<'a>(
        &'a self,
        instance: &'a Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
    ) -> RegistryFuture<'a, ()> {
        let lease = LeaseRequest {
            renewal_interval: Some(renewal_interval),
            duration: Some(lease_duration),
        };
        Box::pin(async move {
            Registry::register(self, instance.clone(), lease, None)
                .await
                .map(drop)
                .map_err(|error| match error {
                    RegisterError::Full(_) => {
                        MeshError::new(ErrorKind::Unavailable, error.to_string())
                    }
                    RegisterError::Invalid(_) => {
                        MeshError::new(ErrorKind::BadRequest, error.to_string())
                    }
                    RegisterError::Forbidden { .. } | RegisterError::NotYourService { .. } => {
                        MeshError::new(ErrorKind::Forbidden, error.to_string())
                    }
                    RegisterError::Store(error) => store_unavailable(error),
                })
        })
    }

    fn renew<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, bool> {
        Box::pin(async move {
            Registry::renew(self, service, id)
                .await
                .map_err(store_unavailable)
        })
    }

    fn renew_with_summary<'a>(
        &'a self,
        service: &'a ServiceId,
        id: &'a str,
        summary: &'a InstanceSummary,
    ) -> RegistryFuture<'a, bool> {
        Box::pin(async move {
            Registry::renew_reporting(self, service, id, summary.clone())
                .await
                .map_err(store_unavailable)
        })
    }

    fn deregister<'a>(&'a self, service: &'a ServiceId, id: &'a str) -> RegistryFuture<'a, ()> {
        Box::pin(async move {
            Registry::cancel(self, service, id)
                .await
                .map(drop)
                .map_err(store_unavailable)
        })
    }

    fn watch(&self, cursor: Option<Cursor>, wait: Duration) -> RegistryFuture<'_, WatchAnswer> {
        Box::pin(async move {
            Registry::watch(self, cursor, wait)
                .await
                .map_err(store_unavailable)
        })
    }
}

fn store_unavailable(error: StoreError) -> MeshError {
    MeshError::new(ErrorKind::Unavailable, "registry store unavailable").with_source(error)
}

//! The registry's records on the wire: registrations with their leases, and the changes to
//! them, as the registry serves them and its clients read them.

use std::time::Duration;

use crate::discovery::{Instance, InstanceStatus, ServiceId};
use serde::{Deserialize, Serialize};

/// One registered instance with its lease and the details Eureka clients exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The instance as clients discover it; its `status` is the one the instance reported.
    pub instance: Instance,
    /// The lease: how often the instance renews and when it expires.
    pub lease: Lease,
    /// A status set by an operator, winning over the reported one.
    #[serde(default)]
    pub overridden_status: Option<InstanceStatus>,
    /// Eureka's descriptive fields, kept so Eureka clients get back what they sent.
    #[serde(default)]
    pub eureka: EurekaDetails,
    /// When the instance last changed its own record (ms since the epoch).
    pub last_dirty_ms: u64,
    /// When the registry last changed this record (ms since the epoch).
    pub last_updated_ms: u64,
    /// The identity that registered the instance, when the registry checks credentials: only
    /// it (or an operator) may renew, change or cancel the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A registration's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// How often the instance promises to renew.
    #[serde(with = "humantime_serde")]
    pub renewal_interval: Duration,
    /// How long after the last renewal the lease expires.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// When the instance registered (ms since the epoch).
    pub registered_ms: u64,
    /// When the instance last renewed (ms since the epoch).
    pub last_renewal_ms: u64,
    /// When the instance was first seen `UP` (ms since the epoch; 0 if never).
    pub service_up_ms: u64,
}

/// Fields of Eureka's `InstanceInfo` that mesh does not use but returns as received.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EurekaDetails {
    /// `app` as the client spelled it (upper case by convention).
    pub app_name: Option<String>,
    /// `ipAddr`.
    pub ip_addr: Option<String>,
    /// `vipAddress`.
    pub vip_address: Option<String>,
    /// `secureVipAddress`.
    pub secure_vip_address: Option<String>,
    /// `homePageUrl`.
    pub home_page_url: Option<String>,
    /// `statusPageUrl`.
    pub status_page_url: Option<String>,
    /// `healthCheckUrl`.
    pub health_check_url: Option<String>,
    /// `secureHealthCheckUrl`.
    pub secure_health_check_url: Option<String>,
    /// `appGroupName`.
    pub app_group_name: Option<String>,
    /// `dataCenterInfo.name` (`MyOwn` or `Amazon`).
    pub data_center: Option<String>,
    /// The plain port and whether it is enabled, when the secure one is the one used.
    pub insecure_port: Option<(u16, bool)>,
    /// The secure port and whether it is enabled, when the plain one is the one used.
    pub secure_port: Option<(u16, bool)>,
}

/// What happened to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// It was registered.
    Added,
    /// Its record or status changed.
    Modified,
    /// It was cancelled or evicted.
    Deleted,
}

/// One change, numbered: revisions grow by one with every change the registry makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The registry's revision after this change.
    pub revision: u64,
    /// When the change happened (ms since the epoch).
    pub at_ms: u64,
    /// What happened.
    pub action: Action,
    /// The registration after the change (before it, for a deletion).
    pub registration: Registration,
}

/// Every registration at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The epoch of the registry's store: revisions of different epochs are never compared.
    #[serde(default)]
    pub epoch: u64,
    /// The revision the snapshot reflects.
    pub revision: u64,
    /// Every registration, ordered by service then instance id.
    pub registrations: Vec<Registration>,
}

impl Registration {
    /// A registration of `instance` made at `now_ms` with `lease_duration`, renewing every
    /// `renewal_interval`.
    pub fn new(
        instance: Instance,
        renewal_interval: Duration,
        lease_duration: Duration,
        now_ms: u64,
    ) -> Self {
        let up = if instance.is_up() { now_ms } else { 0 };
        Self {
            instance,
            lease: Lease {
                renewal_interval,
                duration: lease_duration,
                registered_ms: now_ms,
                last_renewal_ms: now_ms,
                service_up_ms: up,
            },
            overridden_status: None,
            eureka: EurekaDetails::default(),
            last_dirty_ms: now_ms,
            last_updated_ms: now_ms,
            owner: None,
        }
    }

    /// The service this registration belongs to.
    pub fn service(&self) -> &ServiceId {
        &self.instance.service
    }

    /// The status clients see: the operator's override if any, else the reported one.
    pub fn status(&self) -> InstanceStatus {
        self.overridden_status.unwrap_or(self.instance.status)
    }

    /// The instance as clients should see it, with the effective status.
    pub fn visible_instance(&self) -> Instance {
        let mut instance = self.instance.clone();
        instance.status = self.status();
        instance
    }

    /// Whether the lease has run out at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.lease.last_renewal_ms + self.lease.duration.as_millis() as u64
    }
}

/// Where a watcher stands in a registry's history: the epoch of the registry's store and the
/// last revision it applied.
///
/// A registry whose store starts empty (a restarted in-memory registry, a flushed Redis)
/// starts a new epoch with revisions from 0 again, so a revision alone could match a
/// different change: a watcher presenting another epoch gets a full snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The epoch the revision belongs to; 0 when unknown (taken as the registry's current one).
    pub epoch: u64,
    /// The last revision applied.
    pub revision: u64,
}

/// What a watcher receives: the changes after its revision, a full snapshot when the change
/// log no longer reaches back that far (or the watcher has none), or word that the registry is
/// still warming up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WatchAnswer {
    /// Changes, oldest first, up to `revision` (empty when the wait timed out).
    Changes {
        /// The epoch the revisions belong to.
        #[serde(default)]
        epoch: u64,
        /// The revision after the last change.
        revision: u64,
        /// The changes.
        events: Vec<Event>,
    },
    /// Everything, at the snapshot's revision.
    Snapshot(Snapshot),
    /// The registry restarted on an empty store since the watcher's cursor and is still
    /// waiting for instances to register again: its catalogue is not yet complete, so the
    /// watcher keeps what it holds and asks again with the same cursor.
    Warming {
        /// The registry's new epoch.
        epoch: u64,
        /// How much longer the registry expects to warm up, in milliseconds.
        remaining_ms: u64,
    },
}

impl WatchAnswer {
    /// The cursor a watcher stands at after applying this answer to `before`.
    pub fn cursor(&self, before: Option<Cursor>) -> Option<Cursor> {
        match self {
            Self::Changes {
                epoch, revision, ..
            } => Some(Cursor {
                epoch: *epoch,
                revision: *revision,
            }),
            Self::Snapshot(snapshot) => Some(Cursor {
                epoch: snapshot.epoch,
                revision: snapshot.revision,
            }),
            Self::Warming { .. } => before,
        }
    }
}

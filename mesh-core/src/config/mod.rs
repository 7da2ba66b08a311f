//! Layered configuration with profiles and live reload.
//!
//! A service's configuration is one tree built from layers, each overriding the one before it
//! key by key:
//!
//! 1. defaults given in code ([`ConfigBuilder::defaults`]);
//! 2. the file, `mesh.yaml` in the working directory unless [`ConfigBuilder::file`] or
//!    `MESH_CONFIG` names another (a named file must exist; the default one may be absent);
//! 3. the profile's file, `mesh-{profile}.yaml` beside it, when a profile is active
//!    (`MESH_PROFILE` or [`ConfigBuilder::profile`]);
//! 4. the config server, when `config_server.url` is set: Spring Cloud Config's
//!    `GET {url}/{name}/{profile}` answer, its property sources applied in their order of
//!    precedence;
//! 5. environment variables: `MESH_` + the key path in capitals with `__` between levels, so
//!    `MESH_CLIENTS__INVENTORY_SERVICE__RETRY__MAX_ATTEMPTS=5` sets
//!    `clients.inventory_service.retry.max_attempts` (values read as YAML scalars: `5` is a
//!    number, `true` a boolean, `2s` a string). A key segment under `clients` matches the
//!    service whose ID has `-` where the variable has `_`.
//!
//! Typed sections come out through serde ([`ConfigSnapshot::section`]); an error names the
//! key and the layer that set it. [`MeshConfig::reload`] reads every layer again and, when the
//! tree changed, publishes the new snapshot to every [`subscribe`](MeshConfig::subscribe)r:
//! the layers of a running [`MeshClient`](crate::client::MeshClient) rebuild themselves from
//! it, so a changed timeout, retry or rate limit applies without a restart.
//!
//! ```
//! use mesh_core::config::MeshConfig;
//! use mesh_core::resilience::retry::RetryConfig;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::error::MeshError> {
//! let config = MeshConfig::builder("orders")
//!     .defaults(serde_json::json!({"clients": {"inventory": {"retry": {"max_attempts": 2}}}}))
//!     .env_vars([("MESH_CLIENTS__INVENTORY__RETRY__MAX_ATTEMPTS", "4")])
//!     .load()
//!     .await?;
//! let retry: RetryConfig = config.snapshot().section("clients.inventory.retry")?;
//! assert_eq!(retry, RetryConfig::default().max_attempts(4));
//! # Ok(()) }
//! ```

mod refresh;
mod server;
mod tree;

pub use self::refresh::RefreshRequested;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};

use self::tree::Tree;
use crate::error::{ErrorKind, MeshError};

/// The prefix of environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "MESH_";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "MESH_CONFIG";
/// Environment variable naming the active profile.
pub const PROFILE_ENV: &str = "MESH_PROFILE";
/// Largest configuration file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A service's live configuration. Clones share it.
#[derive(Clone)]
pub struct MeshConfig {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Sources,
    current: watch::Sender<Arc<ConfigSnapshot>>,
    /// The current snapshot's revision, readable without touching the channel.
    revision: AtomicU64,
    reloading: tokio::sync::Mutex<()>,
}

/// Everything needed to read the layers again.
#[derive(Debug, Clone)]
struct Sources {
    name: String,
    profile: Option<String>,
    defaults: Value,
    file: PathBuf,
    file_required: bool,
    env: Option<Vec<(String, String)>>,
}

/// One merged configuration, as of one (re)load.
#[derive(Debug, Clone)]
pub struct ConfigSnapshot {
    tree: Tree,
    revision: u64,
}

/// Builds a [`MeshConfig`].
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    sources: Sources,
}

/// The `config_server` section: where the config server is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigServerSettings {
    /// Base URL, such as `http://127.0.0.1:8761/config`; unset means no config server.
    pub url: Option<String>,
    /// The label (a branch, say) asked for; the server's default when unset.
    pub label: Option<String>,
    /// Fail loading when the server cannot be reached, instead of going on without it.
    pub fail_fast: bool,
}

// === impl MeshConfig ===

impl MeshConfig {
    /// Starts the configuration of the service `name`.
    pub fn builder(name: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            sources: Sources {
                name: name.into(),
                profile: None,
                defaults: Value::Object(Default::default()),
                file: PathBuf::from("mesh.yaml"),
                file_required: false,
                env: None,
            },
        }
    }

    /// A configuration of `tree` alone (no file, no environment): for tests and embedding.
    pub fn from_value(name: impl Into<String>, tree: Value) -> Self {
        let mut layers = Tree::new();
        layers.merge(tree, "defaults");
        Self::with_tree(
            Self::builder(name)
                .defaults(Value::Null)
                .env_vars(Vec::<(String, String)>::new())
                .sources,
            layers,
        )
    }

    fn with_tree(sources: Sources, tree: Tree) -> Self {
        let (current, _) = watch::channel(Arc::new(ConfigSnapshot { tree, revision: 1 }));
        Self {
            inner: Arc::new(Inner {
                sources,
                current,
                revision: AtomicU64::new(1),
                reloading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The service name the configuration is for.
    pub fn name(&self) -> &str {
        &self.inner.sources.name
    }

    /// The active profile, if any.
    pub fn profile(&self) -> Option<&str> {
        self.inner.sources.profile.as_deref()
    }

    /// The configuration now.
    pub fn snapshot(&self) -> Arc<ConfigSnapshot> {
        self.inner.current.borrow().clone()
    }

    /// The revision of the current snapshot: a cheap way to notice a change.
    pub fn revision(&self) -> u64 {
        self.inner.revision.load(Ordering::Acquire)
    }

    /// A receiver that sees every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigSnapshot>> {
        self.inner.current.subscribe()
    }

    /// Reads every layer again; `Ok(true)` when the tree changed and the new snapshot was
    /// published. On an error the current snapshot stays.
    pub async fn reload(&self) -> Result<bool, MeshError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let tree = self.inner.sources.read().await?;
        let mut changed = false;
        self.inner.current.send_if_modified(|current| {
            if current.tree == tree {
                return false;
            }
            *current = Arc::new(ConfigSnapshot {
                tree: tree.clone(),
                revision: current.revision + 1,
            });
            self.inner
                .revision
                .store(current.revision, Ordering::Release);
            changed = true;
            true
        });
        if changed {
            tracing::info!(service = %self.name(), revision = self.snapshot().revision, "configuration reloaded");
        }
        Ok(changed)
    }

    /// Replaces the value at a dotted `key` in the running configuration and publishes it,
    /// as a refresh from an operator would. The next [`reload`](Self::reload) reads the layers
    /// again and drops it.
    pub fn set(&self, key: &str, value: Value) {
        let layer = tree::unflatten([(key.to_owned(), value)]);
        self.inner.current.send_modify(|current| {
            let mut tree = current.tree.clone();
            tree.merge(layer, "runtime");
            *current = Arc::new(ConfigSnapshot {
                tree,
                revision: current.revision + 1,
            });
            self.inner
                .revision
                .store(current.revision, Ordering::Release);
        });
    }

    /// Reloads whenever the files change, checking every `every`, until every clone of this
    /// configuration is dropped.
    pub fn watch_files(&self, every: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let files = self.inner.sources.files();
        let mut seen = stamps(&files);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let now = stamps(&files);
                if now != seen {
                    seen = now;
                    if let Err(error) = (MeshConfig { inner }).reload().await {
                        tracing::warn!(%error, "configuration reload failed; keeping the last one");
                    }
                }
            }
        })
    }
}

/// Modification time and length of each file (`None` when absent): a change in either means
/// the file changed. A `stat` is quick enough to run on the runtime.
fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|file| {
            let metadata = std::fs::metadata(file).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

impl fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshConfig")
            .field("name", &self.inner.sources.name)
            .field("profile", &self.inner.sources.profile)
            .field("revision", &self.snapshot().revision)
            .finish()
    }
}

// === impl ConfigBuilder ===

impl ConfigBuilder {
    /// Selects a profile; `MESH_PROFILE` otherwise.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.sources.profile = Some(profile.into());
        self
    }

    /// The file to read instead of `mesh.yaml`; it must exist.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.file = path.into();
        self.sources.file_required = true;
        self
    }

    /// The lowest layer: values in code.
    pub fn defaults(mut self, defaults: Value) -> Self {
        self.sources.defaults = defaults;
        self
    }

    /// Reads these variables instead of the process environment.
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.sources.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads every layer.
    pub async fn load(mut self) -> Result<MeshConfig, MeshError> {
        let env = self.sources.env_vars();
        if !self.sources.file_required
            && let Some((_, path)) = env.iter().find(|(k, _)| k == CONFIG_ENV)
        {
            self.sources.file = PathBuf::from(path);
            self.sources.file_required = true;
        }
        if self.sources.profile.is_none() {
            self.sources.profile = env
                .iter()
                .find(|(k, _)| k == PROFILE_ENV)
                .map(|(_, v)| v.clone())
                .filter(|p| !p.is_empty());
        }
        let tree = self.sources.read().await?;
        Ok(MeshConfig::with_tree(self.sources, tree))
    }
}

// === impl Sources ===

impl Sources {
    fn env_vars(&self) -> Vec<(String, String)> {
        match &self.env {
            Some(vars) => vars.clone(),
            None => std::env::vars().collect(),
        }
    }

    fn profile_file(&self) -> Option<PathBuf> {
        let profile = self.profile.as_deref()?;
        let stem = self.file.file_stem()?.to_string_lossy();
        let ext = self
            .file
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "yaml".into());
        Some(self.file.with_file_name(format!("{stem}-{profile}.{ext}")))
    }

    fn files(&self) -> Vec<PathBuf> {
        std::iter::once(self.file.clone())
            .chain(self.profile_file())
            .collect()
    }

    async fn read(&self) -> Result<Tree, MeshError> {
        let mut tree = Tree::new();
        if !self.defaults.is_null() {
            tree.merge(self.defaults.clone(), "defaults");
        }
        if let Some(layer) = read_yaml(&self.file, self.file_required).await? {
            tree.merge(layer, &self.file.display().to_string());
        }
        if let Some(profile_file) = self.profile_file()
            && let Some(layer) = read_yaml(&profile_file, false).await?
        {
            tree.merge(layer, &profile_file.display().to_string());
        }
        let env = env_layer(&self.env_vars());
        // The config server's address may itself come from the environment.
        let mut with_env = tree.clone();
        with_env.merge(env.clone(), "environment");
        let server: ConfigServerSettings = (ConfigSnapshot {
            tree: with_env,
            revision: 0,
        })
        .section("config_server")?;
        if let Some(url) = &server.url {
            let profile = self.profile.as_deref().unwrap_or("default");
            match server::fetch(url, &self.name, profile, server.label.as_deref()).await {
                Ok(layer) => tree.merge(layer, &format!("config server {url}")),
                Err(error) if server.fail_fast => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "config server unreachable; going on without it")
                }
            }
        }
        tree.merge(env, "environment");
        Ok(tree)
    }
}

async fn read_yaml(path: &Path, required: bool) -> Result<Option<Value>, MeshError> {
    let shown = path.display();
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(None);
        }
        Err(error) => {
            return Err(MeshError::new(
                ErrorKind::Config,
                format!("{shown}: {error}"),
            ));
        }
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(MeshError::new(
            ErrorKind::Config,
            format!("{shown}: larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| MeshError::new(ErrorKind::Config, format!("{shown}: {e}")))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_norway::from_str(&text)
        .map_err(|e| MeshError::new(ErrorKind::Config, format!("{shown}: {e}")))?;
    match value {
        Value::Null => Ok(None),
        Value::Object(_) => Ok(Some(value)),
        _ => Err(MeshError::new(
            ErrorKind::Config,
            format!("{shown}: the top level must be a mapping"),
        )),
    }
}

/// Environment variables named as users of RabbitMQ and Redis expect, with the key each sets.
const ENV_ALIASES: [(&str, &str); 2] =
    [("MESH_BUS_URL", "bus.url"), ("MESH_REDIS_URL", "redis.url")];

/// `MESH_A__B_C=v` → `{"a": {"b_c": v}}`; `MESH_BUS_URL` and `MESH_REDIS_URL` set `bus.url`
/// and `redis.url`.
fn env_layer(vars: &[(String, String)]) -> Value {
    let flat: BTreeMap<String, Value> = vars
        .iter()
        .filter(|(key, _)| key != CONFIG_ENV && key != PROFILE_ENV)
        .filter_map(|(key, value)| {
            if let Some((_, dotted)) = ENV_ALIASES.iter().find(|(alias, _)| alias == key) {
                return Some(((*dotted).to_owned(), scalar(value)));
            }
            let path = key.strip_prefix(ENV_PREFIX)?;
            if path.is_empty() || path.split("__").any(str::is_empty) {
                return None;
            }
            let dotted = path
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            Some((dotted, scalar(value)))
        })
        .collect();
    tree::unflatten(flat)
}

/// Reads an environment value as a YAML scalar; anything else stays a string.
fn scalar(text: &str) -> Value {
    match serde_norway::from_str::<Value>(text) {
        Ok(value @ (Value::Bool(_) | Value::Number(_))) => value,
        _ => Value::String(text.to_owned()),
    }
}

// === impl ConfigSnapshot ===

impl ConfigSnapshot {
    /// Counts the loads and changes: 1 for the first, growing with each published change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The raw value at a dotted `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.tree.get(key)
    }

    /// The whole tree.
    pub fn root(&self) -> &Value {
        &self.tree.root
    }

    /// The section at a dotted `key` as `T`; an absent section is `T`'s defaults (read from an
    /// empty mapping). The error names the offending key and the layer that set it.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, MeshError> {
        self.merged_section(&[key])
    }

    /// The sections at `keys` laid over each other (later keys win) as `T`: for one section
    /// that may be spelled two ways, such as a service ID under `clients` with `-` in a file
    /// and `_` in an environment variable.
    pub fn merged_section<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<T, MeshError> {
        let mut merged = Tree::new();
        let mut named = keys.first().copied().unwrap_or_default();
        for key in keys {
            if let Some(value) = self.tree.get(key).filter(|v| !v.is_null()) {
                merged.merge(value.clone(), key);
                named = key;
            }
        }
        serde_path_to_error::deserialize(&merged.root).map_err(|error| {
            let inner = error.path().to_string();
            let full = match (named.is_empty(), inner.as_str()) {
                (true, _) => inner.clone(),
                (false, ".") => named.to_owned(),
                (false, _) => format!("{named}.{inner}"),
            };
            let origin = self.tree.origin(&full).unwrap_or("defaults");
            MeshError::new(
                ErrorKind::Config,
                format!("`{full}` (from {origin}): {}", error.inner()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn environment_variables_map_to_keys() {
        let layer = env_layer(&[
            ("MESH_SERVER__ADDRESS".into(), "0.0.0.0:9000".into()),
            (
                "MESH_CLIENTS__INVENTORY_SERVICE__RETRY__MAX_ATTEMPTS".into(),
                "5".into(),
            ),
            ("MESH_FLAG".into(), "true".into()),
            ("MESH_PROFILE".into(), "prod".into()),
            ("MESH_BAD____KEY".into(), "x".into()),
            ("OTHER".into(), "x".into()),
        ]);
        assert_eq!(
            layer,
            json!({
                "server": {"address": "0.0.0.0:9000"},
                "clients": {"inventory_service": {"retry": {"max_attempts": 5}}},
                "flag": true,
            })
        );
    }

    #[test]
    fn the_bus_and_redis_urls_have_the_names_their_users_expect() {
        let layer = env_layer(&[
            ("MESH_BUS_URL".into(), "amqp://127.0.0.1:5672/%2f".into()),
            ("MESH_REDIS_URL".into(), "redis://127.0.0.1:6379".into()),
        ]);
        assert_eq!(
            layer,
            json!({
                "bus": {"url": "amqp://127.0.0.1:5672/%2f"},
                "redis": {"url": "redis://127.0.0.1:6379"},
            })
        );
    }
}

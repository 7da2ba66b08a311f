//! The config server: Spring Cloud Config's environment over a directory of YAML and
//! `.properties` files, or over a git repository of them read at a label (branch, tag or
//! commit), with `{cipher}` values decrypted before they are served.
//!
//! Files are resolved as Spring resolves them, most specific first: for each profile (the last
//! named wins) `{application}-{profile}` then `application-{profile}`, then `{application}`,
//! then `application`; `.properties` before `.yml` before `.yaml` of one name. No profile
//! means the `default` profile.
//!
//! ```
//! # fn main() -> Result<(), mesh_registry::config_server::ConfigError> {
//! use mesh_registry::config_server::ConfigServer;
//! let dir = std::env::temp_dir().join(format!("mesh-config-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("application.yml"), "greeting: hello\n").unwrap();
//! std::fs::write(dir.join("orders-dev.yml"), "greeting: hello from dev\n").unwrap();
//! let server = ConfigServer::open(&dir, None)?;
//! let environment = server.environment("orders", "dev", None)?;
//! assert_eq!(environment.property_sources.len(), 2);
//! assert_eq!(server.merged("orders", "dev", None)?["greeting"], "hello from dev");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```

pub mod cipher;
mod properties;
mod source;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use mesh_core::{
    bus::{Bus, BusError, Event},
    config::RefreshRequested,
};
use serde::Serialize;
use serde_json::{Map, Value};

pub use self::source::Files;
use self::{
    cipher::{Cipher, PREFIX},
    properties::Flat,
    source::Source,
};

/// What the config server could not do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The directory or repository cannot be used.
    #[error("{0}")]
    Setup(String),
    /// No branch, tag or commit has this name.
    #[error("no such label: {0}")]
    NoSuchLabel(String),
    /// An application or profile name that is not one.
    #[error("{0}")]
    BadName(String),
    /// A file could not be read or parsed.
    #[error("{0}")]
    Read(String),
    /// Encryption asked of a server without a key.
    #[error("no encryption key is configured (MESH_CONFIG_ENCRYPT_KEY)")]
    NoKey,
    /// A value given to decrypt does not decrypt.
    #[error(transparent)]
    CannotDecrypt(#[from] cipher::CannotDecrypt),
    /// A refresh asked of a server without a bus.
    #[error("no bus is configured for refreshes (MESH_BUS_URL)")]
    NoBus,
    /// The bus did not take the refresh.
    #[error("publishing the refresh failed: {0}")]
    Bus(String),
}

/// Spring Cloud Config's `Environment`: what `GET /config/{application}/{profile}[/{label}]`
/// answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// The application.
    pub name: String,
    /// The profiles, as asked.
    pub profiles: Vec<String>,
    /// The label read (`null` for a plain directory).
    pub label: Option<String>,
    /// The commit read (`null` for a plain directory).
    pub version: Option<String>,
    /// Always `null`: the repository has no state to report.
    pub state: Option<String>,
    /// The matching files, most specific first.
    pub property_sources: Vec<PropertySource>,
}

/// One file's properties, flat.
#[derive(Debug, Clone, Serialize)]
pub struct PropertySource {
    /// Where it came from: `file:{dir}/{file}` or `git:{dir}/{file}`.
    pub name: String,
    /// `dotted.key → value`.
    pub source: Map<String, Value>,
}

/// A config server over one directory or git repository.
pub struct ConfigServer {
    source: Source,
    cipher: Option<Cipher>,
    bus: Option<Arc<dyn Bus>>,
}

impl std::fmt::Debug for ConfigServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigServer")
            .field("source", &self.source)
            .field("encryption", &self.cipher.is_some())
            .field("bus", &self.bus.is_some())
            .finish()
    }
}

impl ConfigServer {
    /// Serves `dir` (a git repository when it is one); `encrypt_key` decrypts `{cipher}`
    /// values and enables `/config/encrypt` and `/config/decrypt`.
    pub fn open(dir: &Path, encrypt_key: Option<&str>) -> Result<Self, ConfigError> {
        Ok(Self {
            source: Source::open(dir)?,
            cipher: encrypt_key.filter(|key| !key.is_empty()).map(Cipher::new),
            bus: None,
        })
    }

    /// Publishes refreshes on `bus` (`POST /actuator/busrefresh`).
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Tells the services `destination` names (every one when `None`; a service ID,
    /// `service:**`, or `service:instance`) to read their configuration again: a
    /// [`RefreshRequested`] on the bus, naming the commit of the default label.
    pub async fn refresh(
        &self,
        destination: Option<String>,
    ) -> Result<RefreshRequested, ConfigError> {
        let bus = self.bus.as_ref().ok_or(ConfigError::NoBus)?;
        let request = RefreshRequested {
            destination,
            version: self.source.files(None)?.version,
        };
        let event = Event::new("mesh-registry", &request)
            .map_err(|error| ConfigError::Bus(error.to_string()))?;
        match bus.publish(event).await {
            // Nobody follows refreshes: there is nothing to refresh.
            Ok(()) | Err(BusError::Unroutable(_)) => Ok(request),
            Err(error) => Err(ConfigError::Bus(error.to_string())),
        }
    }

    /// The environment of `application` under `profiles` (comma-separated; `default` when
    /// empty) at `label` (the default label when `None`).
    pub fn environment(
        &self,
        application: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Environment, ConfigError> {
        check_name("application", application)?;
        let mut profile_list: Vec<String> = profiles
            .split(',')
            .map(str::trim)
            .filter(|profile| !profile.is_empty())
            .map(str::to_owned)
            .collect();
        if profile_list.is_empty() {
            profile_list.push("default".to_owned());
        }
        for profile in &profile_list {
            check_name("profile", profile)?;
        }
        let files = self.source.files(label)?;
        let mut bases = Vec::new();
        for profile in profile_list.iter().rev() {
            bases.push(format!("{application}-{profile}"));
            bases.push(format!("application-{profile}"));
        }
        bases.push(application.to_owned());
        bases.push("application".to_owned());
        bases.dedup();
        let origin = self.source.name();
        let mut property_sources = Vec::new();
        for base in &bases {
            for extension in ["properties", "yml", "yaml"] {
                let file = format!("{base}.{extension}");
                let Some(bytes) = files.contents.get(&file) else {
                    continue;
                };
                let flat = if extension == "properties" {
                    properties::from_properties(bytes)
                } else {
                    properties::from_yaml(&file, bytes)?
                };
                property_sources.push(PropertySource {
                    name: format!("{origin}/{file}"),
                    source: self.decrypted(&file, flat),
                });
            }
        }
        Ok(Environment {
            name: application.to_owned(),
            profiles: profile_list,
            label: files.label,
            version: files.version,
            state: None,
            property_sources,
        })
    }

    /// The environment's properties merged, the most specific winning: what the `.yml`,
    /// `.properties` and `.json` renderings show.
    pub fn merged(
        &self,
        application: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Value, ConfigError> {
        Ok(properties::nest(&self.merged_flat(
            application,
            profiles,
            label,
        )?))
    }

    /// [`merged`](Self::merged), flat.
    pub fn merged_flat(
        &self,
        application: &str,
        profiles: &str,
        label: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ConfigError> {
        let environment = self.environment(application, profiles, label)?;
        let mut merged = BTreeMap::new();
        for source in environment.property_sources.into_iter().rev() {
            merged.extend(source.source);
        }
        Ok(merged.into_iter().collect())
    }

    /// `plain` encrypted (without the `{cipher}` prefix).
    pub fn encrypt(&self, plain: &str) -> Result<String, ConfigError> {
        Ok(self
            .cipher
            .as_ref()
            .ok_or(ConfigError::NoKey)?
            .encrypt(plain))
    }

    /// `encrypted` decrypted.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, ConfigError> {
        Ok(self
            .cipher
            .as_ref()
            .ok_or(ConfigError::NoKey)?
            .decrypt(encrypted)?)
    }

    /// `flat` with its `{cipher}` values decrypted; one that does not decrypt is served as
    /// Spring serves it, `invalid.{key}: <n/a>`, and logged without its value.
    fn decrypted(&self, file: &str, flat: Flat) -> Map<String, Value> {
        let mut source = Map::new();
        for (key, value) in flat {
            let Value::String(text) = &value else {
                source.insert(key, value);
                continue;
            };
            if !text.starts_with(PREFIX) {
                source.insert(key, value);
                continue;
            }
            match self.cipher.as_ref().map(|cipher| cipher.decrypt(text)) {
                Some(Ok(plain)) => {
                    source.insert(key, Value::String(plain));
                }
                outcome => {
                    let why = if outcome.is_none() {
                        "no encryption key is configured"
                    } else {
                        "it does not decrypt with this server's key"
                    };
                    tracing::warn!(file, key = ?key, why, "a {{cipher}} value is served as invalid");
                    source.insert(format!("invalid.{key}"), Value::String("<n/a>".into()));
                }
            }
        }
        source
    }
}

/// Flat properties as a `.properties` file.
pub fn render_properties(flat: &[(String, Value)]) -> String {
    properties::to_properties(flat)
}

/// Application and profile names: letters, digits, `-`, `_` and `.`.
fn check_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(ConfigError::BadName(format!(
            "{what} {name:?} is not a plain name"
        )))
    }
}

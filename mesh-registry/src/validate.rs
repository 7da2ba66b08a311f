//! What the registry accepts as input: identifiers without control characters, bounded
//! lengths, and bounded metadata.
//!
//! Nothing a client sends may start a new line in the registry's log or break its XML
//! catalogue, and no registration may make the registry's memory or answers grow past the
//! bounds [`RegistryConfig`](crate::RegistryConfig) sets.

use mesh_core::discovery::Instance;

use crate::model::EurekaDetails;

/// The longest identifier accepted: service and application names, instance ids, hosts, zones,
/// VIP addresses.
pub const MAX_IDENTIFIER_BYTES: usize = 256;
/// The longest URL accepted (Eureka's home page, status page and health check URLs).
pub const MAX_URL_BYTES: usize = 2048;

/// An input the registry refuses, with a message naming the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Bounds on one instance's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// The most entries.
    pub max_entries: usize,
    /// The most bytes, keys and values together.
    pub max_bytes: usize,
}

/// Checks an identifier (`what` names it in the message): not empty, at most
/// [`MAX_IDENTIFIER_BYTES`], no control characters.
///
/// ```
/// use mesh_registry::validate::identifier;
/// assert!(identifier("instance id", "10.0.0.1:orders:8080").is_ok());
/// assert!(identifier("instance id", "forged\nline").is_err());
/// ```
pub fn identifier(what: &str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput(format!("the {what} is empty")));
    }
    bounded_text(what, value, MAX_IDENTIFIER_BYTES)
}

fn bounded_text(what: &str, value: &str, max: usize) -> Result<(), InvalidInput> {
    if value.len() > max {
        return Err(InvalidInput(format!(
            "the {what} is {} bytes long; at most {max} are accepted",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput(format!(
            "the {what} {value:?} holds a control character"
        )));
    }
    Ok(())
}

/// Checks a registration before the registry stores it.
pub fn registration(
    instance: &Instance,
    details: Option<&EurekaDetails>,
    limits: MetadataLimits,
) -> Result<(), InvalidInput> {
    identifier("service name", instance.service.as_str())?;
    identifier("instance id", &instance.id)?;
    identifier("host", &instance.host)?;
    if let Some(zone) = &instance.zone {
        bounded_text("zone", zone, MAX_IDENTIFIER_BYTES)?;
    }
    metadata(instance, limits)?;
    if let Some(details) = details {
        let names = [
            ("app name", &details.app_name),
            ("ipAddr", &details.ip_addr),
            ("vipAddress", &details.vip_address),
            ("secureVipAddress", &details.secure_vip_address),
            ("appGroupName", &details.app_group_name),
            ("dataCenterInfo name", &details.data_center),
        ];
        for (what, value) in names {
            if let Some(value) = value {
                bounded_text(what, value, MAX_IDENTIFIER_BYTES)?;
            }
        }
        let urls = [
            ("homePageUrl", &details.home_page_url),
            ("statusPageUrl", &details.status_page_url),
            ("healthCheckUrl", &details.health_check_url),
            ("secureHealthCheckUrl", &details.secure_health_check_url),
        ];
        for (what, value) in urls {
            if let Some(value) = value {
                bounded_text(what, value, MAX_URL_BYTES)?;
            }
        }
    }
    Ok(())
}

/// At most `max_entries` entries and `max_bytes` bytes; keys without control characters,
/// values without control characters other than tab and line breaks (which XML carries; the
/// others would make the XML catalogue unreadable for every Eureka client).
fn metadata(instance: &Instance, limits: MetadataLimits) -> Result<(), InvalidInput> {
    let entries = instance.metadata.len();
    if entries > limits.max_entries {
        return Err(InvalidInput(format!(
            "metadata has {entries} entries; at most {} are accepted (max_metadata_entries)",
            limits.max_entries
        )));
    }
    let bytes: usize = instance
        .metadata
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if bytes > limits.max_bytes {
        return Err(InvalidInput(format!(
            "metadata is {bytes} bytes; at most {} are accepted (max_metadata_bytes)",
            limits.max_bytes
        )));
    }
    for (key, value) in &instance.metadata {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(InvalidInput(format!(
                "the metadata key {key:?} is empty or holds a control character"
            )));
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(InvalidInput(format!(
                "the value of metadata key {key:?} holds a control character"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MetadataLimits = MetadataLimits {
        max_entries: 4,
        max_bytes: 32,
    };

    fn with_metadata(entries: &[(&str, &str)]) -> Instance {
        let mut instance = Instance::new("orders", "10.0.0.1", 80);
        instance.metadata = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        instance
    }

    #[test]
    fn metadata_is_bounded_by_entries_and_bytes() {
        assert!(registration(&with_metadata(&[("a", "1"), ("b", "2")]), None, LIMITS).is_ok());
        let five: Vec<(String, String)> =
            (0..5).map(|i| (format!("k{i}"), String::new())).collect();
        let five: Vec<(&str, &str)> = five.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let error = registration(&with_metadata(&five), None, LIMITS).unwrap_err();
        assert!(error.0.contains("max_metadata_entries"), "{error}");
        let big = "x".repeat(32);
        let error = registration(&with_metadata(&[("k", &big)]), None, LIMITS).unwrap_err();
        assert!(error.0.contains("max_metadata_bytes"), "{error}");
        assert!(registration(&with_metadata(&[("k", &big[1..])]), None, LIMITS).is_ok());
    }

    #[test]
    fn control_characters_are_refused_where_they_could_forge_or_break() {
        assert!(registration(&with_metadata(&[("k\n", "v")]), None, LIMITS).is_err());
        assert!(registration(&with_metadata(&[("k", "a\u{1}b")]), None, LIMITS).is_err());
        assert!(registration(&with_metadata(&[("k", "line\nnext")]), None, LIMITS).is_ok());
        let mut instance = Instance::new("orders", "10.0.0.1", 80);
        instance.id = "a\r\nINFO forged".into();
        assert!(registration(&instance, None, LIMITS).is_err());
        let instance = Instance::new("orders", "host\u{7f}", 80);
        assert!(registration(&instance, None, LIMITS).is_err());
        let details = EurekaDetails {
            home_page_url: Some("http://x/\u{0}".into()),
            ..EurekaDetails::default()
        };
        let instance = Instance::new("orders", "10.0.0.1", 80);
        assert!(registration(&instance, Some(&details), LIMITS).is_err());
        assert!(identifier("id", &"x".repeat(MAX_IDENTIFIER_BYTES + 1)).is_err());
        assert!(identifier("id", "").is_err());
    }
}

use std::hash::{DefaultHasher, Hash, Hasher};

use http::{Request, header::HeaderName};
use serde::{Deserialize, Serialize};

use super::MissingKey;
use crate::context::{PeerAddr, Subject};

/// Longest key kept verbatim; longer keys (say, a huge header) are hashed, bounding memory.
const MAX_KEY_LEN: usize = 128;

/// What a request's rate-limit bucket is keyed by.
///
/// ```
/// use mesh_core::resilience::rate_limit::KeySource;
///
/// let source: KeySource = serde_json::from_str(r#"{"header": "x-api-key"}"#).unwrap();
/// assert_eq!(source, KeySource::Header("x-api-key".into()));
/// let source: KeySource = serde_json::from_str(r#""peer_ip""#).unwrap();
/// assert_eq!(source, KeySource::PeerIp);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// One bucket for every request.
    #[default]
    Global,
    /// The value of a request header (an API key, a tenant id).
    Header(String),
    /// The IP address of the connection ([`PeerAddr::of`]).
    PeerIp,
    /// The authenticated subject ([`Subject`], set by the JWT layer).
    Subject,
}

impl KeySource {
    /// The bucket key of `request`, or why there is none.
    pub fn key<B>(&self, request: &Request<B>) -> Result<String, MissingKey> {
        let raw = match self {
            Self::Global => return Ok(String::from("global")),
            Self::Header(name) => HeaderName::try_from(name.as_str())
                .ok()
                .and_then(|name| request.headers().get(name))
                .filter(|value| !value.is_empty())
                .map(|value| format!("h:{}", String::from_utf8_lossy(value.as_bytes())))
                .ok_or(MissingKey::new("header")),
            Self::PeerIp => PeerAddr::of(request.extensions())
                .map(|peer| format!("ip:{}", peer.ip()))
                .ok_or(MissingKey::new("peer address")),
            Self::Subject => request
                .extensions()
                .get::<Subject>()
                .filter(|subject| !subject.0.is_empty())
                .map(|subject| format!("sub:{}", subject.0))
                .ok_or(MissingKey::new("subject")),
        }?;
        Ok(bounded(raw))
    }
}

/// Keeps short keys readable and hashes long ones into a fixed size. The hash is SipHash with
/// fixed keys, so every replica maps a value to the same bucket.
fn bounded(key: String) -> String {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    format!("hash:{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn keys_come_from_their_source() {
        let mut request = Request::builder()
            .header("x-api-key", "team-a")
            .body(())
            .unwrap();
        let peer: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        request.extensions_mut().insert(PeerAddr(peer));
        request.extensions_mut().insert(Subject("alice".into()));

        assert_eq!(KeySource::Global.key(&request).unwrap(), "global");
        let header = KeySource::Header("x-api-key".into());
        assert_eq!(header.key(&request).unwrap(), "h:team-a");
        assert_eq!(KeySource::PeerIp.key(&request).unwrap(), "ip:10.0.0.7");
        assert_eq!(KeySource::Subject.key(&request).unwrap(), "sub:alice");
    }

    #[test]
    fn missing_sources_are_errors() {
        let request = Request::new(());
        assert!(KeySource::Header("x-api-key".into()).key(&request).is_err());
        assert!(KeySource::PeerIp.key(&request).is_err());
        assert!(KeySource::Subject.key(&request).is_err());
    }

    #[test]
    fn long_keys_are_hashed_to_a_bounded_size() {
        let long = "k".repeat(10_000);
        let request = Request::builder().header("x-id", &long).body(()).unwrap();
        let key = KeySource::Header("x-id".into()).key(&request).unwrap();
        assert!(key.len() <= MAX_KEY_LEN);
        assert_eq!(key, KeySource::Header("x-id".into()).key(&request).unwrap());
    }
}

use std::{
    fmt::{self, Write},
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
};

use http::Request;
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
        let mut key = String::new();
        self.write_key(request, &mut key)?;
        Ok(key)
    }

    /// Appends the bucket key of `request` to `key` (after a limiter's name, say), without an
    /// allocation of its own.
    pub(crate) fn write_key<B>(
        &self,
        request: &Request<B>,
        key: &mut String,
    ) -> Result<(), MissingKey> {
        // Looked up by the configured name as text: nothing to parse or allocate.
        let header = |name: &str| request.headers().get(name).map(|value| value.as_bytes());
        let parts = KeyParts {
            header: &header,
            peer: PeerAddr::of(request.extensions()),
            subject: request.extensions().get::<Subject>(),
        };
        self.write_key_of(parts, key)
    }

    /// Appends the bucket key of a request read as `parts` to `key`.
    pub(crate) fn write_key_of(
        &self,
        parts: KeyParts<'_>,
        key: &mut String,
    ) -> Result<(), MissingKey> {
        let start = key.len();
        match self {
            Self::Global => key.push_str("global"),
            Self::Header(name) => {
                let value = (parts.header)(name)
                    .filter(|value| !value.is_empty())
                    .ok_or(MissingKey::new("header"))?;
                key.push_str("h:");
                key.push_str(&String::from_utf8_lossy(value));
            }
            Self::PeerIp => {
                let peer = parts.peer.ok_or(MissingKey::new("peer address"))?;
                let _ = write!(key, "ip:{}", peer.ip());
            }
            Self::Subject => {
                let subject = parts
                    .subject
                    .filter(|subject| !subject.0.is_empty())
                    .ok_or(MissingKey::new("subject"))?;
                key.push_str("sub:");
                key.push_str(&subject.0);
            }
        }
        bound(key, start);
        Ok(())
    }
}

/// What a request's bucket key is read from, for a caller that has the request as something
/// other than an `http::Request` (a relay reading its bytes, say).
#[derive(Clone, Copy)]
pub struct KeyParts<'a> {
    /// The first value of the header field named so (any case), if any.
    pub header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// The address of the client's end of the connection.
    pub peer: Option<SocketAddr>,
    /// The authenticated subject.
    pub subject: Option<&'a Subject>,
}

impl fmt::Debug for KeyParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyParts")
            .field("peer", &self.peer)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Keeps a short key (what follows `start`) readable and hashes a long one into a fixed size.
/// The hash is SipHash with fixed keys, so every replica maps a value to the same bucket.
fn bound(key: &mut String, start: usize) {
    if key.len() - start <= MAX_KEY_LEN {
        return;
    }
    let mut hasher = DefaultHasher::new();
    key[start..].hash(&mut hasher);
    key.truncate(start);
    let _ = write!(key, "hash:{:016x}", hasher.finish());
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
        // The hash of the whole source key, as every replica computes it.
        let mut hasher = DefaultHasher::new();
        format!("h:{long}").hash(&mut hasher);
        assert_eq!(key, format!("hash:{:016x}", hasher.finish()));
    }

    #[test]
    fn a_key_written_after_a_prefix_bounds_only_its_own_part() {
        let long = "k".repeat(10_000);
        let request = Request::builder().header("x-id", &long).body(()).unwrap();
        let source = KeySource::Header("X-Id".into());
        let mut key = String::from("limiter:");
        source.write_key(&request, &mut key).unwrap();
        assert_eq!(key, format!("limiter:{}", source.key(&request).unwrap()));
        assert!(key.starts_with("limiter:hash:"));
    }
}

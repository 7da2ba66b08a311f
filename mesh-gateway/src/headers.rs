//! The fields the gateway manages on a request's way upstream: the identity it verified, the
//! forwarding fields it sets from the connection, and the cookie a browser's token comes in.
//! One set of rules for the typed path (`HeaderMap`) and the relay path (fields as bytes).
//!
//! - A client's `x-mesh-user` and `x-mesh-roles` are dropped: only the gateway says who the
//!   caller is.
//! - A field whose name has an underscore and reads as a managed name with `_` for `-`
//!   (`x_mesh_user`, `X_Forwarded_For`) is dropped: CGI and WSGI upstreams read both spellings
//!   as one.
//! - `X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`, `X-Real-IP` and `Forwarded` are
//!   trusted only from the proxies `trusted_proxies` names; from any other peer they are
//!   dropped. The gateway then sets `X-Forwarded-For` (a trusted proxy's list with the peer
//!   appended, else the peer), `X-Forwarded-Proto` and `X-Forwarded-Host` (a trusted proxy's,
//!   else the connection's scheme and the request's `Host`).

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr},
};

use http::{HeaderMap, HeaderName, HeaderValue, header, header::Entry};
use ipnet::IpNet;
use mesh_core::{auth::edge::EDGE_HEADER, http1, observe::TraceContext};

/// The identity headers the gateway sets upstream, and removes when a client sends them.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-mesh-user");
/// The caller's roles: each percent-encoded (see [`encode_roles`]), joined by commas.
pub const ROLES_HEADER: HeaderName = HeaderName::from_static("x-mesh-roles");
/// The request id every request carries, set when the client did not.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The forwarding fields a client may not set unless it is a trusted proxy.
const FORWARDING: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "forwarded",
];

/// Whether `name` concerns one connection only, never forwarded (RFC 9110 §7.6.1).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    http1::is_hop_by_hop(name.as_str().as_bytes())
}

/// Whether a field's name, as sent (any case), is `header`.
pub(crate) fn is_named(name: &[u8], header: &HeaderName) -> bool {
    name.eq_ignore_ascii_case(header.as_str().as_bytes())
}

/// Whether a name, as sent (any case), carries what the gateway vouches for: the identity it
/// verified, or its proof that the request came through it.
pub(crate) fn is_identity_name(name: &[u8]) -> bool {
    is_named(name, &USER_HEADER) || is_named(name, &ROLES_HEADER) || is_named(name, &EDGE_HEADER)
}

/// Whether a name, as sent, is a forwarding field (see the [module](self) documentation). By
/// length first, as `is_hop_by_hop` does: most names are none of these, and every field of
/// every relayed request is asked.
pub(crate) fn is_forwarding_name(name: &[u8]) -> bool {
    let named = |forwarding: &str| name.eq_ignore_ascii_case(forwarding.as_bytes());
    match name.len() {
        9 => named("x-real-ip") || named("forwarded"),
        15 => named("x-forwarded-for"),
        16 => named("x-forwarded-host") || named("x-forwarded-port"),
        17 => named("x-forwarded-proto"),
        18 => named("x-forwarded-prefix"),
        _ => false,
    }
}

/// Whether a name, as sent, has an underscore and reads as a name the gateway manages once
/// its underscores are hyphens: an upstream that folds `_` into `-` would take it for that.
pub(crate) fn is_underscored_variant(name: &[u8]) -> bool {
    if !name.contains(&b'_') {
        return false;
    }
    let managed = FORWARDING.iter().chain(&[
        "x-mesh-user",
        "x-mesh-roles",
        "x-request-id",
        "mesh-timeout",
        "content-length",
        "transfer-encoding",
    ]);
    managed.into_iter().any(|managed| {
        managed.len() == name.len()
            && managed.bytes().zip(name).all(|(managed, &byte)| {
                let byte = if byte == b'_' { b'-' } else { byte };
                managed == byte.to_ascii_lowercase()
            })
    })
}

/// Whether a client's field is dropped on its way upstream (apart from hop-by-hop fields, the
/// identity fields, dropped before auth, and the route's filters): it spoofs a managed name,
/// or forwards without the peer being trusted to.
pub(crate) fn is_dropped(name: &[u8], trusted: bool) -> bool {
    is_underscored_variant(name) || (!trusted && is_forwarding_name(name))
}

/// The proxies whose forwarding fields the gateway believes (`trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    /// Whether `peer` is one of them.
    pub(crate) fn trust(&self, peer: Option<SocketAddr>) -> bool {
        !self.0.is_empty()
            && peer.is_some_and(|peer| {
                let ip = peer.ip().to_canonical();
                self.0.iter().any(|network| network.contains(&ip))
            })
    }
}

/// Makes a typed request's fields what goes upstream: drops the hop-by-hop ones (but
/// `Connection` and `Upgrade` of a protocol switch), the client's `Host` (the upstream's is set
/// on sending) and what [`is_dropped`] picks, then sets the forwarding fields for `peer`
/// (`secure`: the request came over TLS).
pub(crate) fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    peer: Option<SocketAddr>,
    upgrade: bool,
    trusted: bool,
    secure: bool,
) {
    let host = headers.remove(header::HOST);
    let earlier = if trusted {
        headers.remove(X_FORWARDED_FOR)
    } else {
        None
    };
    strip(headers, |name| {
        (is_hop_by_hop(name)
            && !(upgrade && (name == header::CONNECTION || name == header::UPGRADE)))
            || is_dropped(name.as_str().as_bytes(), trusted)
    });
    if let Some(peer) = peer {
        let value = match earlier {
            Some(earlier) => {
                let joined = [earlier.as_bytes(), b", ", &ip_text(peer.ip())].concat();
                HeaderValue::from_bytes(&joined).ok()
            }
            None => peer_value(peer.ip()),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        let scheme = if secure { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
    if let Some(host) = host
        && !headers.contains_key(X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Removes every header whose name `drop` picks: one pass over the names when there is none
/// (requests rarely carry any), one more per name found, and no allocation.
pub(crate) fn strip(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|name| drop(name)).cloned() {
        headers.remove(&name);
    }
}

/// `x-mesh-roles` of `roles`: each role percent-encoded where it has a `%`, a `,`, a space or
/// anything but visible ASCII, then joined by commas, so a role can never read as two.
///
/// ```
/// use mesh_gateway::{decode_roles, encode_roles};
/// let roles = ["customer".to_owned(), "admin,ops".to_owned()];
/// assert_eq!(encode_roles(&roles), "customer,admin%2Cops");
/// assert_eq!(decode_roles("customer,admin%2Cops"), roles);
/// ```
pub fn encode_roles(roles: &[String]) -> String {
    let mut out = String::new();
    for (i, role) in roles.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for byte in role.bytes() {
            if byte.is_ascii_graphic() && byte != b'%' && byte != b',' {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// The roles of an `x-mesh-roles` value, as [`encode_roles`] wrote them.
pub fn decode_roles(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split(',')
        .map(|role| {
            let bytes = role.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut at = 0;
            while at < bytes.len() {
                let decoded = (bytes[at] == b'%')
                    .then(|| bytes.get(at + 1..at + 3))
                    .flatten()
                    .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
                match decoded {
                    Some(byte) => {
                        out.push(byte);
                        at += 3;
                    }
                    None => {
                        out.push(bytes[at]);
                        at += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

/// The request's ID: the client's `x-request-id` when usable, else a new one, which the
/// request then carries in place of the client's.
pub(crate) fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    // One lookup for reading and setting it.
    match headers.entry(REQUEST_ID_HEADER) {
        Entry::Occupied(given) if is_usable_request_id(given.get().as_bytes()) => {
            given.get().clone()
        }
        Entry::Occupied(mut unusable) => {
            let id = new_request_id();
            unusable.insert(id.clone());
            id
        }
        Entry::Vacant(missing) => missing.insert(new_request_id()).clone(),
    }
}

/// Whether a client's request ID is kept: not empty, and not long.
pub(crate) fn is_usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128
}

/// A new request ID: the trace's ID.
pub(crate) fn new_request_id() -> HeaderValue {
    let id =
        TraceContext::current().map_or_else(|| TraceContext::root().trace_id(), |c| c.trace_id());
    HeaderValue::try_from(id).expect("hex digits are a valid header")
}

/// The trace context a call made without the client stack (a fixed upstream, a relayed
/// request) carries: the request's own span, which such a call is part of, so the upstream's
/// span is the gateway span's child in an exported trace.
pub(crate) fn upstream_context() -> TraceContext {
    TraceContext::current().unwrap_or_else(TraceContext::root)
}

/// The value of cookie `name` in the `Cookie` fields `values`, if any.
pub(crate) fn cookie<'a>(values: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<String> {
    values
        .filter_map(visible_ascii)
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// A field value as text when it is visible ASCII (and tabs), as `HeaderValue::to_str` reads
/// one.
pub(crate) fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&byte| byte == b'\t' || (0x20..0x7f).contains(&byte))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// A peer's address as a header value. The last one is kept per thread: consecutive requests
/// mostly come from the same peer (a connection's requests, a load balancer's).
fn peer_value(ip: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((cached, value)) = last
            && *cached == ip
        {
            return Some(value.clone());
        }
        let value = HeaderValue::from_bytes(&ip_text(ip)).ok()?;
        *last = Some((ip, value.clone()));
        Some(value)
    })
}

/// An IP address as text.
fn ip_text(ip: IpAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(15);
    write_ip(&mut out, ip);
    out
}

/// Appends an IP address as text, IPv4 without the formatting machinery (it runs on every
/// request).
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscored_spellings_of_managed_names_are_dropped() {
        for spoof in [
            "x_mesh_user",
            "X_Mesh_Roles",
            "x-mesh_user",
            "X_FORWARDED_FOR",
            "x_real_ip",
            "x_request_id",
            "content_length",
        ] {
            assert!(is_underscored_variant(spoof.as_bytes()), "{spoof}");
            assert!(is_dropped(spoof.as_bytes(), true), "{spoof}");
        }
        for kept in [
            "x_custom",
            "x-mesh-user-agent",
            "x_mesh_users",
            "x-mesh-user",
        ] {
            assert!(!is_underscored_variant(kept.as_bytes()), "{kept}");
        }
    }

    #[test]
    fn forwarding_fields_are_dropped_unless_the_peer_is_trusted() {
        for name in [
            "X-Forwarded-For",
            "x-real-ip",
            "Forwarded",
            "x-forwarded-proto",
        ] {
            assert!(is_dropped(name.as_bytes(), false), "{name}");
            assert!(!is_dropped(name.as_bytes(), true), "{name}");
        }
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(proxies.trust(Some("10.1.2.3:5000".parse().unwrap())));
        assert!(proxies.trust(Some("[::ffff:10.1.2.3]:5000".parse().unwrap())));
        assert!(!proxies.trust(Some("192.0.2.1:5000".parse().unwrap())));
        assert!(!TrustedProxies::default().trust(Some("10.1.2.3:1".parse().unwrap())));
    }

    #[test]
    fn typed_requests_get_forwarding_fields_from_the_connection() {
        let peer = Some("192.0.2.7:4000".parse().unwrap());
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "shop.example"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        let mut untrusted = headers.clone();
        prepare_upstream_headers(&mut untrusted, peer, false, false, false);
        assert_eq!(untrusted["x-forwarded-for"], "192.0.2.7");
        assert_eq!(untrusted["x-forwarded-host"], "shop.example");
        assert_eq!(untrusted["x-forwarded-proto"], "http");
        assert!(!untrusted.contains_key("x-real-ip"));
        assert!(!untrusted.contains_key("forwarded"));
        assert!(!untrusted.contains_key("host"));
        prepare_upstream_headers(&mut headers, peer, false, true, true);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 192.0.2.7");
        assert_eq!(headers["x-forwarded-host"], "evil.example");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn roles_round_trip_whatever_they_hold() {
        for roles in [
            vec![],
            vec!["a".to_owned()],
            vec!["a,b".to_owned(), "c".to_owned()],
            vec!["100%".to_owned(), " spaced ".to_owned(), "é".to_owned()],
        ] {
            let encoded = encode_roles(&roles);
            assert!(HeaderValue::try_from(encoded.as_str()).is_ok(), "{encoded}");
            assert_eq!(decode_roles(&encoded), roles, "{encoded}");
        }
    }
}

//! Route predicates, compiled once from Spring Cloud Gateway's shorthand.

use std::{collections::HashMap, net::SocketAddr, time::SystemTime};

use http::{HeaderName, Method, Request};
use ipnet::IpNet;
use mesh_core::{context::PeerAddr, error::MeshError, http1::RawRequest};
use regex::Regex;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    error::invalid,
    headers::{cookie, visible_ascii},
};

/// A compiled `Path=` pattern: `/api/products/**`, `/users/{id}`, `/files/*/raw`.
#[derive(Debug, Clone)]
pub struct PathPattern {
    segments: Vec<PathSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Literal(String),
    Var(String),
    Star,
    Rest,
}

/// The variables a matched path bound, for `SetPath`.
pub type Captures = HashMap<String, String>;

impl PathPattern {
    /// Compiles a pattern; `**` may only end it.
    pub fn parse(pattern: &str) -> Result<Self, MeshError> {
        if !pattern.starts_with('/') {
            return Err(invalid(format!(
                "Path pattern `{pattern}` must start with `/`"
            )));
        }
        let parts: Vec<&str> = pattern[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "**" if i + 1 == parts.len() => PathSegment::Rest,
                "**" => {
                    return Err(invalid(format!("`**` must end the pattern `{pattern}`")));
                }
                "*" => PathSegment::Star,
                var if var.starts_with('{') && var.ends_with('}') && var.len() > 2 => {
                    PathSegment::Var(var[1..var.len() - 1].to_owned())
                }
                literal => PathSegment::Literal(literal.to_owned()),
            });
        }
        Ok(Self { segments })
    }

    /// Whether `path` matches, binding `{var}`s into `captures`.
    pub fn matches(&self, path: &str, captures: &mut Captures) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        for segment in &self.segments {
            match segment {
                PathSegment::Rest => return true,
                _ => {
                    let Some(part) = parts.next() else {
                        return false;
                    };
                    match segment {
                        PathSegment::Literal(literal) if literal == part => {}
                        PathSegment::Star if !part.is_empty() => {}
                        PathSegment::Var(name) if !part.is_empty() => {
                            captures.insert(name.clone(), part.to_owned());
                        }
                        _ => return false,
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// One predicate of a route.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Any of these paths.
    Path(Vec<PathPattern>),
    /// Any of these methods.
    Method(Vec<Method>),
    /// Any of these host patterns (`**.example.com`, `api.example.com`).
    Host(Vec<String>),
    /// A header present and, when a regex is given, matching it.
    Header(HeaderName, Option<Regex>),
    /// A query parameter present and, when a regex is given, matching it.
    Query(String, Option<Regex>),
    /// A cookie present and, when a regex is given, its value matching it.
    Cookie(String, Option<Regex>),
    /// Requests after this instant.
    After(SystemTime),
    /// Requests before this instant.
    Before(SystemTime),
    /// Requests between these instants.
    Between(SystemTime, SystemTime),
    /// Callers whose address is in any of these networks.
    RemoteAddr(Vec<IpNet>),
}

impl Predicate {
    /// Compiles `Name=args` shorthand.
    pub fn parse(text: &str) -> Result<Self, MeshError> {
        let (name, args) = text
            .split_once('=')
            .ok_or_else(|| invalid(format!("predicate `{text}` is not `Name=arguments`")))?;
        let list = || args.split(',').map(str::trim).filter(|a| !a.is_empty());
        let pair = || -> Result<(String, Option<Regex>), MeshError> {
            let (first, regex) = match args.split_once(',') {
                Some((first, regex)) => (first.trim(), Some(regex.trim())),
                None => (args.trim(), None),
            };
            let regex = regex
                .map(|r| Regex::new(&format!("^(?:{r})$")))
                .transpose()
                .map_err(|e| invalid(format!("predicate `{text}`: {e}")))?;
            Ok((first.to_owned(), regex))
        };
        Ok(match name.trim() {
            "Path" => Self::Path(list().map(PathPattern::parse).collect::<Result<_, _>>()?),
            "Method" => Self::Method(
                list()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| invalid(format!("`{m}` is not a method")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "Host" => Self::Host(list().map(|h| h.to_ascii_lowercase()).collect()),
            "Header" => {
                let (name, regex) = pair()?;
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| invalid(format!("`{name}` is not a header name")))?;
                Self::Header(name, regex)
            }
            "Query" => {
                let (name, regex) = pair()?;
                Self::Query(name, regex)
            }
            "Cookie" => {
                let (name, regex) = pair()?;
                Self::Cookie(name, regex)
            }
            "After" => Self::After(instant(args)?),
            "Before" => Self::Before(instant(args)?),
            "Between" => {
                let (start, end) = args.split_once(',').ok_or_else(|| {
                    invalid(format!("predicate `{text}`: expected two date-times"))
                })?;
                let (start, end) = (instant(start)?, instant(end)?);
                if end <= start {
                    return Err(invalid(format!(
                        "predicate `{text}`: the second date-time must be later"
                    )));
                }
                Self::Between(start, end)
            }
            "RemoteAddr" => Self::RemoteAddr(list().map(network).collect::<Result<_, _>>()?),
            other => {
                return Err(invalid(format!(
                    "unknown predicate `{other}`: expected Path, Method, Host, Header, Query, \
                     Cookie, After, Before, Between or RemoteAddr"
                )));
            }
        })
    }

    /// Whether `request` satisfies the predicate.
    pub fn test<B>(&self, request: &Request<B>, captures: &mut Captures) -> bool {
        self.test_head(request, captures)
    }

    /// Whether the request read as `request` matches, binding path variables into `captures`.
    pub(crate) fn test_head(&self, request: &impl RequestHead, captures: &mut Captures) -> bool {
        match self {
            Self::Path(patterns) => {
                let path = request.path();
                patterns.iter().any(|p| p.matches(path, captures))
            }
            Self::Method(methods) => methods.contains(request.method()),
            Self::Host(patterns) => {
                let host = request
                    .host()
                    .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
                host.is_some_and(|host| patterns.iter().any(|p| host_matches(p, &host)))
            }
            Self::Header(name, regex) => request.values(name.as_str()).any(|v| {
                regex
                    .as_ref()
                    .is_none_or(|r| visible_ascii(v).is_some_and(|v| r.is_match(v)))
            }),
            Self::Query(name, regex) => request.query().is_some_and(|query| {
                form_pairs(query)
                    .any(|(k, v)| k == *name && regex.as_ref().is_none_or(|r| r.is_match(&v)))
            }),
            Self::Cookie(name, regex) => cookie(request.values("cookie"), name)
                .is_some_and(|value| regex.as_ref().is_none_or(|r| r.is_match(&value))),
            Self::After(start) => SystemTime::now() > *start,
            Self::Before(end) => SystemTime::now() < *end,
            Self::Between(start, end) => (*start..*end).contains(&SystemTime::now()),
            Self::RemoteAddr(networks) => request.peer().is_some_and(|peer| {
                let ip = peer.ip().to_canonical();
                networks.iter().any(|network| network.contains(&ip))
            }),
        }
    }
}

/// What routing reads of a request: the same whether the request is an `http::Request` or,
/// on the relay path, its bytes.
pub(crate) trait RequestHead {
    fn method(&self) -> &Method;
    /// The path, without the query.
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// `Host`, or the target's host when it is in absolute form.
    fn host(&self) -> Option<&str>;
    /// The values of the fields named `name` (lowercase), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]>;
    fn peer(&self) -> Option<SocketAddr>;
}

impl<B> RequestHead for Request<B> {
    fn method(&self) -> &Method {
        Request::method(self)
    }

    fn path(&self) -> &str {
        self.uri().path()
    }

    fn query(&self) -> Option<&str> {
        self.uri().query()
    }

    fn host(&self) -> Option<&str> {
        self.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.uri().host())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.headers()
            .get_all(name)
            .into_iter()
            .map(|value| value.as_bytes())
    }

    fn peer(&self) -> Option<SocketAddr> {
        PeerAddr::of(self.extensions())
    }
}

impl RequestHead for RawRequest<'_> {
    fn method(&self) -> &Method {
        RawRequest::method(self)
    }

    fn path(&self) -> &str {
        RawRequest::path(self)
    }

    fn query(&self) -> Option<&str> {
        RawRequest::query(self)
    }

    fn host(&self) -> Option<&str> {
        self.value("host").and_then(visible_ascii)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        RawRequest::values(self, name).map(|value| -> &'a [u8] { value })
    }

    fn peer(&self) -> Option<SocketAddr> {
        Some(RawRequest::peer(self))
    }
}

/// A date-time as Spring writes it: RFC 3339 with an offset, optionally followed by the zone's
/// name in brackets (`2017-01-20T17:42:47.789-07:00[America/Denver]`, the offset decides).
fn instant(text: &str) -> Result<SystemTime, MeshError> {
    let text = text.trim();
    let zoned = text.split_once('[').map_or(text, |(time, _zone)| time);
    OffsetDateTime::parse(zoned, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| {
            invalid(format!(
                "`{text}` is not a date-time such as 2017-01-20T17:42:47-07:00: {e}"
            ))
        })
}

/// A network (`192.168.1.0/24`, `::1/128`) or one address (`10.0.0.7`).
pub(crate) fn network(text: &str) -> Result<IpNet, MeshError> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(format!(
                "`{text}` is not an address or a network such as 10.0.0.0/8"
            ))
        })
}

/// `**.example.com` matches any subdomain depth; `*.example.com` exactly one label.
fn host_matches(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("**.") {
        return host.ends_with(&format!(".{suffix}"));
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host
            .strip_suffix(&format!(".{suffix}"))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'));
    }
    pattern == host
}

/// The decoded `key=value` pairs of a query string.
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn path_patterns() {
        let table = [
            ("/api/products/**", "/api/products", true),
            ("/api/products/**", "/api/products/7/reviews", true),
            ("/api/products/**", "/api/productsx", false),
            ("/users/{id}", "/users/42", true),
            ("/users/{id}", "/users/", false),
            ("/users/{id}", "/users/42/orders", false),
            ("/files/*/raw", "/files/a/raw", true),
            ("/files/*/raw", "/files/raw", false),
            ("/**", "/", true),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
        ];
        for (pattern, path, expected) in table {
            let mut captures = Captures::new();
            assert_eq!(
                PathPattern::parse(pattern)
                    .unwrap()
                    .matches(path, &mut captures),
                expected,
                "{pattern} vs {path}"
            );
        }
        let mut captures = Captures::new();
        assert!(
            PathPattern::parse("/users/{id}/orders/{order}")
                .unwrap()
                .matches("/users/4/orders/9", &mut captures)
        );
        assert_eq!(captures["id"], "4");
        assert_eq!(captures["order"], "9");
        assert!(PathPattern::parse("/a/**/b").is_err());
    }

    #[test]
    fn predicate_shorthand() {
        let table: [(&str, Request<()>, bool); 12] = [
            ("Method=GET,POST", request("POST", "/", &[]), true),
            ("Method=GET", request("DELETE", "/", &[]), false),
            (
                "Host=**.example.com",
                request("GET", "/", &[("host", "a.b.example.com:8080")]),
                true,
            ),
            (
                "Host=*.example.com",
                request("GET", "/", &[("host", "a.b.example.com")]),
                false,
            ),
            (
                "Host=*.example.com",
                request("GET", "/", &[("host", "api.example.com")]),
                true,
            ),
            (
                "Header=X-Request-Id, \\d+",
                request("GET", "/", &[("x-request-id", "123")]),
                true,
            ),
            (
                "Header=X-Request-Id, \\d+",
                request("GET", "/", &[("x-request-id", "12a")]),
                false,
            ),
            (
                "Header=X-Tenant",
                request("GET", "/", &[("x-tenant", "t")]),
                true,
            ),
            ("Query=green", request("GET", "/?green", &[]), true),
            (
                "Query=color, gr.+",
                request("GET", "/?color=gre%65n", &[]),
                true,
            ),
            (
                "Query=color, gr.+",
                request("GET", "/?color=red", &[]),
                false,
            ),
            ("Path=/a/**,/b", request("GET", "/b", &[]), true),
        ];
        for (text, request, expected) in table {
            let predicate = Predicate::parse(text).unwrap();
            assert_eq!(
                predicate.test(&request, &mut Captures::new()),
                expected,
                "{text}"
            );
        }
        assert!(Predicate::parse("Header=X, (").is_err());
        assert!(Predicate::parse("Weight=group, 8").is_err());
    }

    #[test]
    fn cookie_predicates_read_the_cookie_header() {
        let with = |cookie: &str| request("GET", "/", &[("cookie", cookie)]);
        let chocolate = Predicate::parse("Cookie=chocolate, ch.p").unwrap();
        let test = |p: &Predicate, r: &Request<()>| p.test(r, &mut Captures::new());
        assert!(test(&chocolate, &with("theme=dark; chocolate=chip")));
        assert!(!test(&chocolate, &with("chocolate=mint")));
        assert!(!test(&chocolate, &request("GET", "/", &[])));
        let present = Predicate::parse("Cookie=session").unwrap();
        assert!(test(&present, &with("session=abc")));
        assert!(!test(&present, &with("sessions=abc")));
    }

    #[test]
    fn time_predicates_take_spring_date_times() {
        let test = |text: &str| {
            Predicate::parse(text)
                .unwrap()
                .test(&request("GET", "/", &[]), &mut Captures::new())
        };
        assert!(test("After=2017-01-20T17:42:47.789-07:00[America/Denver]"));
        assert!(!test("After=2999-01-20T17:42:47Z"));
        assert!(test("Before=2999-01-20T17:42:47+01:00"));
        assert!(!test(
            "Before=2017-01-20T17:42:47.789-07:00[America/Denver]"
        ));
        assert!(test(
            "Between=2017-01-20T17:42:47-07:00, 2999-01-21T17:42:47-07:00"
        ));
        assert!(!test("Between=2998-01-20T17:42:47Z, 2999-01-21T17:42:47Z"));
        for bad in [
            "After=yesterday",
            "Before=2017-01-20",
            "Between=2017-01-20T17:42:47Z",
            "Between=2999-01-20T17:42:47Z, 2017-01-20T17:42:47Z",
        ] {
            assert!(Predicate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_addr_predicates_match_the_peer_network() {
        let from = |peer: &str| {
            let mut request = request("GET", "/", &[]);
            request
                .extensions_mut()
                .insert(PeerAddr(peer.parse().unwrap()));
            request
        };
        let local = Predicate::parse("RemoteAddr=192.168.1.1/24, 10.0.0.7").unwrap();
        let test = |r: &Request<()>| local.test(r, &mut Captures::new());
        assert!(test(&from("192.168.1.200:5000")));
        assert!(test(&from("10.0.0.7:5000")));
        assert!(test(&from("[::ffff:10.0.0.7]:5000")), "IPv4-mapped IPv6");
        assert!(!test(&from("10.0.0.8:5000")));
        assert!(!test(&request("GET", "/", &[])), "no peer, no match");
        assert!(Predicate::parse("RemoteAddr=10.0.0.0/33").is_err());
        assert!(Predicate::parse("RemoteAddr=localhost").is_err());
    }
}

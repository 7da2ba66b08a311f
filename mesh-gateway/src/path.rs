//! Request paths as the gateway decides on them: normalised once, before any route is
//! matched, and forwarded as normalised, so that the route that guards a path is the route of
//! the resource the upstream serves.
//!
//! The rules are RFC 3986's (§6.2.2) as Envoy's `normalize_path` and `merge_slashes` apply them,
//! with Spring Security's firewall's refusals:
//!
//! - percent-encoded unreserved characters are decoded (`%7Euser` is `~user`, `%2e` is `.`),
//!   and the other percent-encodings are kept, in upper case;
//! - runs of slashes become one (`//admin` is `/admin`);
//! - dot segments are removed (`/a/./b/../c` is `/a/c`);
//! - refused (`400`): an encoded `/` or `\` (`%2F`, `%5C`), which an upstream may decode into a
//!   separator; a `\` (read as `/` by some servers); an encoded control character (`%00`, …);
//!   a `%` not followed by two hex digits; a `..` that would climb above the root; a dot
//!   segment with parameters (`..;x`, which Tomcat reads as `..`).
//!
//! [`PathRules`] may only make this stricter: refusing `;`, an encoded `%` (`%25`, a request
//! meant to be decoded twice) or doubled slashes instead of merging them.

use std::borrow::Cow;

use serde::Deserialize;

/// How strict the gateway is with request paths, beyond the rules every path is held to. Every
/// path is normalised (encoded unreserved characters decoded, slashes merged, dot segments
/// removed) and refused when that cannot be done safely: an encoded `/` or `\`, a `\`, an
/// encoded control character, a broken `%`, a `..` above the root, a dot segment with
/// parameters. Every option refuses more; none refuses less.
///
/// ```yaml
/// paths: { refuse_semicolons: true, refuse_encoded_percent: true, refuse_doubled_slashes: true }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathRules {
    /// Refuse a `;` anywhere in the path (Spring Security's firewall's default), instead of
    /// passing path parameters on.
    pub refuse_semicolons: bool,
    /// Refuse `%25`, an encoded `%`, instead of passing it on.
    pub refuse_encoded_percent: bool,
    /// Refuse `//` in a path, instead of merging the slashes.
    pub refuse_doubled_slashes: bool,
}

/// Why a path was refused; its message names the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRefused(&'static str);

impl std::fmt::Display for PathRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request path {}", self.0)
    }
}

impl std::error::Error for PathRefused {}

impl PathRules {
    /// `path` normalised, borrowed when it already is; an error for a path that cannot be
    /// normalised safely.
    ///
    /// ```
    /// use mesh_gateway::PathRules;
    /// let rules = PathRules::default();
    /// assert_eq!(rules.normalise("/public/x/../admin").unwrap(), "/public/admin");
    /// assert_eq!(rules.normalise("/a//b/%2e/c/").unwrap(), "/a/b/c/");
    /// assert!(rules.normalise("/a/%2F..%2Fadmin").is_err());
    /// assert!(rules.normalise("/../etc/passwd").is_err());
    /// ```
    pub fn normalise<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, PathRefused> {
        if !path.starts_with('/') {
            return Err(PathRefused("does not start with `/`"));
        }
        if self.refuse_semicolons && path.contains(';') {
            return Err(PathRefused("has a `;`"));
        }
        if self.refuse_doubled_slashes && path.contains("//") {
            return Err(PathRefused("has `//`"));
        }
        if is_normal(path) {
            return Ok(Cow::Borrowed(path));
        }
        let decoded = self.decode_unreserved(path)?;
        let normalised = remove_dot_segments(&decoded)?;
        Ok(if normalised == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(normalised)
        })
    }

    /// `path` with its percent-encoded unreserved characters decoded and the other
    /// percent-encodings in upper case; an error for what cannot be passed on safely.
    fn decode_unreserved(&self, path: &str) -> Result<String, PathRefused> {
        let bytes = path.as_bytes();
        let mut out = String::with_capacity(path.len());
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'%' => {
                    let byte = bytes
                        .get(at + 1..at + 3)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .ok_or(PathRefused("has a `%` not followed by two hex digits"))?;
                    match byte {
                        b'/' | b'\\' => return Err(PathRefused("has an encoded `/` or `\\`")),
                        0..=0x1f | 0x7f => {
                            return Err(PathRefused("has an encoded control character"));
                        }
                        b'%' if self.refuse_encoded_percent => {
                            return Err(PathRefused("has an encoded `%`"));
                        }
                        unreserved if is_unreserved(unreserved) => out.push(unreserved as char),
                        other => {
                            out.push('%');
                            out.push(hex_digit(other >> 4));
                            out.push(hex_digit(other & 0xf));
                        }
                    }
                    at += 3;
                }
                b'\\' => return Err(PathRefused("has a `\\`")),
                byte if byte < 0x20 || byte == 0x7f => {
                    return Err(PathRefused("has a control character"));
                }
                _ => {
                    // Copied up to the next byte that needs a look (UTF-8 stays whole).
                    let next = bytes[at..]
                        .iter()
                        .position(|&b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f)
                        .map_or(bytes.len(), |offset| at + offset);
                    out.push_str(&path[at..next]);
                    at = next;
                }
            }
        }
        Ok(out)
    }
}

/// Whether `path` (starting with `/`) needs no work: no percent-encoding, backslash or
/// control character, no doubled slash and no dot segment. Most paths are.
fn is_normal(path: &str) -> bool {
    // One pass: `dots` counts the dots a segment has begun with, `-1` once it has anything
    // else, so a segment that ends (at `/`, `;` or the end) with 1 or 2 is a dot segment.
    let mut dots: i32 = 0;
    let mut segment_empty = true;
    for (at, &byte) in path.as_bytes().iter().enumerate() {
        match byte {
            b'%' | b'\\' | 0..=0x1f | 0x7f => return false,
            b'/' => {
                if (at > 0 && segment_empty) || dots == 1 || dots == 2 {
                    return false;
                }
                dots = 0;
                segment_empty = true;
                continue;
            }
            b';' if dots == 1 || dots == 2 => return false,
            b'.' if dots >= 0 => dots += 1,
            _ => dots = -1,
        }
        segment_empty = false;
    }
    !(dots == 1 || dots == 2)
}

/// RFC 3986's unreserved characters: decoded, they mean the same.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble)])
}

/// `path` (decoded as [`PathRules::decode_unreserved`] leaves it) with its slashes merged and
/// its dot segments removed; an error for a `..` above the root or a dot segment with
/// parameters.
fn remove_dot_segments(path: &str) -> Result<String, PathRefused> {
    let mut segments: Vec<&str> = Vec::new();
    // Whether the path ends in a directory: a trailing `/`, `.` or `..`.
    let mut directory = false;
    for segment in path.split('/').skip(1) {
        let bare = segment.split(';').next().unwrap_or_default();
        directory = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathRefused("climbs above the root with `..`"));
                }
            }
            _ if bare == "." || bare == ".." => {
                return Err(PathRefused("has a dot segment with parameters"));
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if directory || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(path: &str) -> Result<String, PathRefused> {
        PathRules::default()
            .normalise(path)
            .map(|path| path.into_owned())
    }

    #[test]
    fn dot_segments_and_slashes_are_normalised() {
        for (given, expected) in [
            ("/", "/"),
            ("/api/items", "/api/items"),
            ("/api/items/", "/api/items/"),
            ("/.well-known/jwks.json", "/.well-known/jwks.json"),
            ("/a/...", "/a/..."),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/public/x/../admin/secret", "/public/admin/secret"),
            ("/public/./admin", "/public/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("//admin", "/admin"),
            ("/a///b//", "/a/b/"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a%7eb", "/a~b"),
            ("/a%3bb", "/a%3Bb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a;v=1/b", "/a;v=1/b"),
            ("/;", "/;"),
            ("/a/;x/.", "/a/;x/"),
            ("/a/b;x/../c", "/a/c"),
        ] {
            assert_eq!(normalised(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        let rules = PathRules::default();
        for path in ["/", "/api/items/42", "/.well-known/x", "/a/...", "/a;b"] {
            assert!(
                matches!(rules.normalise(path), Ok(Cow::Borrowed(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn what_cannot_be_normalised_safely_is_refused() {
        for path in [
            "/a/%2F../admin",
            "/a/%2f",
            "/a/%5Cadmin",
            "/a/%5c",
            "/a\\b",
            "/a/%00",
            "/a/%0A",
            "/a/%7F",
            "/a/%zz",
            "/a/%2",
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/b",
            "/public/..;/admin",
            "/public/.;x/admin",
            "/public/%2e%2e;/admin",
            "relative",
        ] {
            assert!(normalised(path).is_err(), "{path} was accepted");
        }
    }

    #[test]
    fn the_rules_only_refuse_more() {
        let strict = PathRules {
            refuse_semicolons: true,
            refuse_encoded_percent: true,
            refuse_doubled_slashes: true,
        };
        for path in ["/a;v=1", "/a/%252e%252e/b", "/a//b"] {
            assert!(strict.normalise(path).is_err(), "{path}");
            assert!(PathRules::default().normalise(path).is_ok(), "{path}");
        }
        assert_eq!(strict.normalise("/a/../b").unwrap(), "/b");
    }

    proptest::proptest! {
        /// The one-pass check agrees with the normalisation it stands in for: a path without
        /// percent-encoding is normal exactly when normalising it changes nothing.
        #[test]
        fn the_quick_check_agrees_with_normalising(path in "/[/.;a]{0,12}") {
            let unchanged = remove_dot_segments(&path).is_ok_and(|normal| normal == path);
            proptest::prop_assert_eq!(is_normal(&path), unchanged, "{}", path);
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        let rules = PathRules::default();
        for path in ["/a//b/../c/%7e/%2e", "/x/./y/", "/%41%42/..;v/../c"] {
            if let Ok(once) = rules.normalise(path) {
                assert_eq!(rules.normalise(&once).unwrap(), once, "{path}");
            }
        }
    }
}

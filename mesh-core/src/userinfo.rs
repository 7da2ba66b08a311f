//! Credentials written in a URL's userinfo (`http://user:password@host/…`), as Spring and
//! Eureka clients write them: taken out of the URL, sent as HTTP Basic, never shown.

use http::HeaderValue;

/// Splits `http://user:password@host:port/…` into the URL without its userinfo and the
/// percent-decoded user and password.
pub(crate) fn split(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}://{host}{tail}"),
        Some((percent_decode(user), percent_decode(password))),
    )
}

/// `url` with its password, if any, replaced by `***`: what errors show.
pub(crate) fn redact(url: &str) -> String {
    match split(url) {
        (base, Some((user, _))) => base.replacen("://", &format!("://{user}:***@"), 1),
        (base, None) => base,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (RFC 4648), for the Basic credentials.
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Authorization` value for `user` and `password` (HTTP Basic), marked sensitive so it is
/// never logged; `None` when they do not make a header value.
pub(crate) fn basic(user: &str, password: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    ))
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_userinfo_and_never_show() {
        assert_eq!(
            split("http://orders:s%3Acret@127.0.0.1:8761/x"),
            (
                "http://127.0.0.1:8761/x".to_string(),
                Some(("orders".to_string(), "s:cret".to_string()))
            )
        );
        assert_eq!(
            split("http://127.0.0.1:8761"),
            ("http://127.0.0.1:8761".to_string(), None)
        );
        assert_eq!(
            redact("http://orders:hunter2@registry:8761"),
            "http://orders:***@registry:8761"
        );
        assert_eq!(
            basic("orders", "hunter2").unwrap(),
            "Basic b3JkZXJzOmh1bnRlcjI="
        );
        assert!(basic("orders", "hunter2").unwrap().is_sensitive());
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }
}

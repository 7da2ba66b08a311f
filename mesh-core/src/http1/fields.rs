//! Header fields as the codec reads them: where they lie in a head, their comma-separated
//! items, `Content-Length`, and which of them concern one connection only.

use http::Method;

/// Where a header field's name and value lie in a head: offset and length of each.
pub(crate) type Span = (usize, usize, usize, usize);

/// Notes in `spans` where each of `fields`, parsed from `head`, lies in it, so that the values
/// can be taken as slices of the head once it is frozen.
pub(crate) fn field_spans(head: &[u8], fields: &[httparse::Header<'_>], spans: &mut Vec<Span>) {
    let base = head.as_ptr() as usize;
    spans.clear();
    spans.extend(fields.iter().map(|field| {
        (
            field.name.as_ptr() as usize - base,
            field.name.len(),
            field.value.as_ptr() as usize - base,
            field.value.len(),
        )
    }));
}

/// The comma-separated items of a field value, trimmed (`Connection: keep-alive, Upgrade`).
pub(crate) fn field_tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

/// A `Content-Length` value: decimal digits only (no sign, no inner space), within `u64`;
/// `None` for anything else, which the caller refuses rather than guesses at.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Methods whose empty body is announced with `Content-Length: 0`, as the upstream may expect
/// a body for them.
pub(crate) fn sends_empty_length(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Whether a header field named `name` concerns one connection only and is never forwarded
/// (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`,
/// `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`. By length first: most names are
/// none of these, and a length rules them out in one comparison.
///
/// ```
/// use mesh_core::http1::is_hop_by_hop;
///
/// assert!(is_hop_by_hop(b"Connection"));
/// assert!(is_hop_by_hop(b"keep-alive"));
/// assert!(!is_hop_by_hop(b"content-type"));
/// ```
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let named = |hop: &str| name.eq_ignore_ascii_case(hop.as_bytes());
    match name.len() {
        2 => named("te"),
        7 => named("trailer") || named("upgrade"),
        10 => named("connection") || named("keep-alive"),
        17 => named("transfer-encoding"),
        18 => named("proxy-authenticate"),
        19 => named("proxy-authorization"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_is_digits_and_nothing_else() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 0 "), Some(0));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for refused in [
            &b""[..],
            b" ",
            b"+5",
            b"-1",
            b"4 2",
            b"0x10",
            b"5,5",
            b"18446744073709551616",
        ] {
            assert_eq!(
                content_length(refused),
                None,
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn field_tokens_are_split_on_commas_and_trimmed() {
        let tokens: Vec<&[u8]> = field_tokens(b"keep-alive ,  Upgrade,,close").collect();
        assert_eq!(tokens, [&b"keep-alive"[..], b"Upgrade", b"", b"close"]);
    }
}

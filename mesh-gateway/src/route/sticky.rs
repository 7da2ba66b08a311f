//! A route's `sticky` option: the affinity of a request, from its session's query parameter
//! or cookie.

use mesh_core::balance::Affinity;

use crate::config::Sticky;

/// The affinity of a request with `query` (the target's query string) and the values of its
/// `Cookie` fields: the named query parameter's value, else the named cookie's; `None` (the
/// route's balancing decides) when the request carries neither, as a session's first request
/// does.
pub(crate) fn affinity<'a>(
    sticky: &Sticky,
    query: Option<&str>,
    cookies: impl Iterator<Item = &'a [u8]>,
) -> Option<Affinity> {
    let from_query = sticky.query.as_deref().and_then(|name| {
        query?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, value)| *key == name && !value.is_empty())
            .map(|(_, value)| value.as_bytes())
    });
    let key = from_query.or_else(|| {
        let name = sticky.cookie.as_deref()?.as_bytes();
        cookies
            .flat_map(|field| field.split(|&b| b == b';'))
            .filter_map(|pair| {
                let at = pair.iter().position(|&b| b == b'=')?;
                Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
            })
            .find(|(key, value)| *key == name && !value.is_empty())
            .map(|(_, value)| value)
    })?;
    Some(Affinity::of(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky(query: Option<&str>, cookie: Option<&str>) -> Sticky {
        Sticky {
            query: query.map(str::to_owned),
            cookie: cookie.map(str::to_owned),
        }
    }

    #[test]
    fn a_session_is_keyed_by_its_query_parameter_then_its_cookie() {
        let both = sticky(Some("sid"), Some("io"));
        let by_query = affinity(
            &both,
            Some("EIO=4&transport=polling&sid=abc"),
            [].into_iter(),
        );
        assert_eq!(by_query, Some(Affinity::of(b"abc")));
        let cookies: [&[u8]; 2] = [b"theme=dark", b"lang=en; io=xyz ; other=1"];
        let by_cookie = affinity(&both, Some("EIO=4&transport=polling"), cookies.into_iter());
        assert_eq!(by_cookie, Some(Affinity::of(b"xyz")));
        assert_eq!(
            affinity(&both, Some("sid=abc"), cookies.into_iter()),
            Some(Affinity::of(b"abc")),
            "the query wins"
        );
    }

    #[test]
    fn a_first_request_has_no_affinity() {
        let by_sid = sticky(Some("sid"), None);
        assert_eq!(
            affinity(&by_sid, Some("EIO=4&transport=polling"), [].into_iter()),
            None
        );
        assert_eq!(
            affinity(&by_sid, Some("sid="), [].into_iter()),
            None,
            "empty"
        );
        assert_eq!(affinity(&by_sid, None, [].into_iter()), None);
        let by_cookie = sticky(None, Some("io"));
        let unrelated: [&[u8]; 1] = [b"iox=1; xio=2"];
        assert_eq!(affinity(&by_cookie, None, unrelated.into_iter()), None);
    }
}

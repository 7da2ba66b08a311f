//! A route's filters in the form the relay path applies them: to heads as bytes.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use mesh_core::{
    http1::{RawRequest, is_hop_by_hop},
    resilience::timeout::TIMEOUT_HEADER,
};

use super::{filter::Filter, predicate::Captures};
use crate::headers::{
    REQUEST_ID_HEADER, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, is_identity_name,
};

/// A route's filters as the relay path applies them to heads as bytes: the path filters as
/// they are, and the header filters' net effect (a header added and then removed by a later
/// filter is not added).
#[derive(Debug, Default)]
pub(crate) struct HeadRewrite {
    pub(crate) request_removed: Vec<HeaderName>,
    pub(crate) request_added: Vec<(HeaderName, HeaderValue)>,
    pub(crate) response_removed: Vec<HeaderName>,
    pub(crate) response_added: Vec<(HeaderName, HeaderValue)>,
}

impl HeadRewrite {
    /// The relay path's form of `filters`; `None` when a filter touches a header the gateway
    /// or the connection handles itself (forwarding, identity, the token relayed, request ID,
    /// trace context, budget, framing, `Date`, `WWW-Authenticate`), which the typed path then
    /// applies in its order.
    pub(crate) fn of(filters: &[Filter]) -> Option<Self> {
        let mut rewrite = Self::default();
        for filter in filters {
            match filter {
                Filter::AddRequestHeader(name, value) if !is_managed(name) => {
                    rewrite.request_added.push((name.clone(), value.clone()));
                }
                Filter::RemoveRequestHeader(name) if !is_managed(name) => {
                    rewrite.request_added.retain(|(added, _)| added != name);
                    rewrite.request_removed.push(name.clone());
                }
                Filter::AddResponseHeader(name, value) if !is_managed(name) => {
                    rewrite.response_added.push((name.clone(), value.clone()));
                }
                Filter::RemoveResponseHeader(name) if !is_managed(name) => {
                    rewrite.response_added.retain(|(added, _)| added != name);
                    rewrite.response_removed.push(name.clone());
                }
                Filter::StripPrefix(_) | Filter::SetPath(_) | Filter::RewritePath(..) => {}
                _ => return None,
            }
        }
        Some(rewrite)
    }

    /// The target the route's path filters make of the request's, when it is plain (else the
    /// typed path takes the request).
    pub(crate) fn target<'a>(
        &self,
        request: &RawRequest<'a>,
        filters: &[Filter],
        captures: &Captures,
    ) -> Option<Cow<'a, str>> {
        let mut path = Cow::Borrowed(request.path());
        for filter in filters {
            if let Some(rewritten) = filter.rewritten_path(&path, captures) {
                path = Cow::Owned(rewritten);
            }
        }
        let target = match (path, request.query()) {
            (Cow::Borrowed(_), _) => Cow::Borrowed(request.target()),
            (Cow::Owned(path), None) => Cow::Owned(path),
            (Cow::Owned(path), Some(query)) => Cow::Owned(format!("{path}?{query}")),
        };
        is_plain_target(&target).then_some(target)
    }
}

/// Whether a header is one the gateway or the connection sets or reads on the relay path.
fn is_managed(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    is_hop_by_hop(name)
        || is_identity_name(name)
        || [
            "host",
            "authorization",
            "content-length",
            "date",
            "traceparent",
            "www-authenticate",
            TIMEOUT_HEADER.as_str(),
            REQUEST_ID_HEADER.as_str(),
            X_FORWARDED_FOR.as_str(),
            X_FORWARDED_HOST.as_str(),
            X_FORWARDED_PROTO.as_str(),
        ]
        .iter()
        .any(|managed| name.eq_ignore_ascii_case(managed.as_bytes()))
}

/// Whether `target` is in origin form (`/path?query`) and made only of the characters a URI
/// has unencoded, so that it goes upstream as the typed path would send it: anything else (a
/// fragment, a character the `http` crate refuses or reads otherwise) takes the typed path.
pub(crate) fn is_plain_target(target: &str) -> bool {
    target.starts_with('/')
        && target.bytes().all(|byte| {
            byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                        | b'%'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(filters: &[&str]) -> Option<HeadRewrite> {
        let filters: Vec<Filter> = filters.iter().map(|f| Filter::parse(f).unwrap()).collect();
        HeadRewrite::of(&filters)
    }

    #[test]
    fn header_filters_come_to_their_net_effect() {
        let added_then_removed = rewrite(&["AddRequestHeader=X-A, 1", "RemoveRequestHeader=X-A"]);
        let added_then_removed = added_then_removed.unwrap();
        assert!(added_then_removed.request_added.is_empty());
        assert_eq!(added_then_removed.request_removed, ["x-a"]);
        let removed_then_added = rewrite(&["RemoveResponseHeader=X-B", "AddResponseHeader=X-B, 2"]);
        let removed_then_added = removed_then_added.unwrap();
        assert_eq!(removed_then_added.response_removed, ["x-b"]);
        assert_eq!(removed_then_added.response_added[0].1, "2");
        let paths = rewrite(&["StripPrefix=1", "SetPath=/v2/{id}", "RewritePath=/a, /b"]);
        assert!(paths.is_some());
        for managed in [
            "RemoveRequestHeader=X-Forwarded-For",
            "AddRequestHeader=X-Mesh-User, admin",
            "AddResponseHeader=X-Request-Id, mine",
            "RemoveResponseHeader=Date",
            "RemoveRequestHeader=Connection",
            "RemoveRequestHeader=Authorization",
        ] {
            assert!(
                rewrite(&[managed]).is_none(),
                "{managed} is the typed path's"
            );
        }
    }

    #[test]
    fn only_plain_origin_form_targets_are_relayed() {
        for plain in ["/", "/api/items?page=2&sort=-price", "/a%20b/c;v=1/@me/~x"] {
            assert!(is_plain_target(plain), "{plain}");
        }
        for other in [
            "*",
            "http://host/a",
            "/a#top",
            "/a b",
            "/a<b>",
            "/a\"b",
            "/{x}",
            "/a|b",
        ] {
            assert!(!is_plain_target(other), "{other}");
        }
    }
}

//! Route filters, compiled once from Spring Cloud Gateway's shorthand.

use http::{HeaderName, HeaderValue, Request, Response, Uri, uri::PathAndQuery};
use regex::Regex;

use super::predicate::Captures;
use crate::error::invalid;
use mesh_core::error::MeshError;

/// One filter of a route.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Drops the first `n` path segments.
    StripPrefix(usize),
    /// Replaces the path with a template of the `Path` predicate's `{variables}`.
    SetPath(String),
    /// Rewrites the path with a regex and a replacement (`${name}` for named groups).
    RewritePath(Regex, String),
    /// Adds a request header.
    AddRequestHeader(HeaderName, HeaderValue),
    /// Removes a request header.
    RemoveRequestHeader(HeaderName),
    /// Adds a response header.
    AddResponseHeader(HeaderName, HeaderValue),
    /// Removes a response header.
    RemoveResponseHeader(HeaderName),
}

impl Filter {
    /// Compiles `Name=args` shorthand.
    pub fn parse(text: &str) -> Result<Self, MeshError> {
        let (name, args) = text.split_once('=').unwrap_or((text, ""));
        let header = |name: &str| {
            HeaderName::try_from(name.trim())
                .map_err(|_| invalid(format!("filter `{text}`: `{name}` is not a header name")))
        };
        let name_value = || -> Result<(HeaderName, HeaderValue), MeshError> {
            let (name, value) = args
                .split_once(',')
                .ok_or_else(|| invalid(format!("filter `{text}` is `Name=Header, value`")))?;
            let value = HeaderValue::try_from(value.trim())
                .map_err(|_| invalid(format!("filter `{text}`: invalid header value")))?;
            Ok((header(name)?, value))
        };
        Ok(match name.trim() {
            "StripPrefix" => Self::StripPrefix(args.trim().parse().map_err(|_| {
                invalid(format!(
                    "filter `{text}`: StripPrefix takes a number of segments"
                ))
            })?),
            "SetPath" => Self::SetPath(args.trim().to_owned()),
            "RewritePath" => {
                let (regex, replacement) = args.split_once(',').ok_or_else(|| {
                    invalid(format!(
                        "filter `{text}` is `RewritePath=regex, replacement`"
                    ))
                })?;
                let regex = Regex::new(regex.trim())
                    .map_err(|e| invalid(format!("filter `{text}`: {e}")))?;
                // YAML users escape `$` as Spring documents it: `$\{segment}`.
                Self::RewritePath(regex, replacement.trim().replace("$\\{", "${"))
            }
            "AddRequestHeader" => {
                let (name, value) = name_value()?;
                Self::AddRequestHeader(name, value)
            }
            "RemoveRequestHeader" => Self::RemoveRequestHeader(header(args)?),
            "AddResponseHeader" => {
                let (name, value) = name_value()?;
                Self::AddResponseHeader(name, value)
            }
            "RemoveResponseHeader" => Self::RemoveResponseHeader(header(args)?),
            other => {
                return Err(invalid(format!(
                    "unknown filter `{other}`: expected StripPrefix, SetPath, RewritePath, \
                     AddRequestHeader, RemoveRequestHeader, AddResponseHeader or RemoveResponseHeader"
                )));
            }
        })
    }

    /// Applies the filter to the request on its way upstream.
    pub fn request<B>(&self, request: &mut Request<B>, captures: &Captures) {
        if let Some(path) = self.rewritten_path(request.uri().path(), captures) {
            set_path(request, &path);
            return;
        }
        match self {
            Self::AddRequestHeader(name, value) => {
                request.headers_mut().append(name.clone(), value.clone());
            }
            Self::RemoveRequestHeader(name) => {
                request.headers_mut().remove(name);
            }
            _ => {}
        }
    }

    /// The path a path filter (`StripPrefix`, `SetPath`, `RewritePath`) makes of `path`, with
    /// the path variables in `captures`; `None` for a header filter.
    pub(crate) fn rewritten_path(&self, path: &str, captures: &Captures) -> Option<String> {
        Some(match self {
            Self::StripPrefix(n) => {
                let kept: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(*n).collect();
                format!("/{}", kept.join("/"))
            }
            Self::SetPath(template) => {
                let mut path = template.clone();
                for (name, value) in captures {
                    path = path.replace(&format!("{{{name}}}"), value);
                }
                path
            }
            Self::RewritePath(regex, replacement) => {
                let rewritten = regex.replace(path, replacement.as_str()).into_owned();
                if rewritten.starts_with('/') {
                    rewritten
                } else {
                    format!("/{rewritten}")
                }
            }
            _ => return None,
        })
    }

    /// Applies the filter to the response on its way back.
    pub fn response<B>(&self, response: &mut Response<B>) {
        match self {
            Self::AddResponseHeader(name, value) => {
                response.headers_mut().append(name.clone(), value.clone());
            }
            Self::RemoveResponseHeader(name) => {
                response.headers_mut().remove(name);
            }
            _ => {}
        }
    }
}

/// Replaces the path, keeping the query.
fn set_path<B>(request: &mut Request<B>, path: &str) {
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if let Ok(path_and_query) = PathAndQuery::try_from(format!("{path}{query}")) {
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(filter: &str, uri: &str, captures: &[(&str, &str)]) -> String {
        let mut request = Request::get(uri).body(()).unwrap();
        let captures = captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Filter::parse(filter)
            .unwrap()
            .request(&mut request, &captures);
        request.uri().to_string()
    }

    #[test]
    fn path_filters() {
        let table = [
            (
                "StripPrefix=1",
                "/api/products/7?x=1",
                vec![],
                "/products/7?x=1",
            ),
            ("StripPrefix=2", "/api/products", vec![], "/"),
            (
                "SetPath=/v2/{id}",
                "/legacy/items/9",
                vec![("id", "9")],
                "/v2/9",
            ),
            (
                "RewritePath=/red/(?<segment>.*), /$\\{segment}",
                "/red/blue?q=1",
                vec![],
                "/blue?q=1",
            ),
            (
                "RewritePath=/api/(?P<rest>.*), /${rest}",
                "/api/a/b",
                vec![],
                "/a/b",
            ),
        ];
        for (filter, uri, captures, expected) in table {
            assert_eq!(apply(filter, uri, &captures), expected, "{filter} on {uri}");
        }
    }

    #[test]
    fn header_filters() {
        let mut request = Request::get("/").header("cookie", "a=b").body(()).unwrap();
        Filter::parse("AddRequestHeader=X-Source, gateway")
            .unwrap()
            .request(&mut request, &Captures::new());
        Filter::parse("RemoveRequestHeader=Cookie")
            .unwrap()
            .request(&mut request, &Captures::new());
        assert_eq!(request.headers()["x-source"], "gateway");
        assert!(request.headers().get("cookie").is_none());

        let mut response = Response::builder()
            .header("server", "upstream")
            .body(())
            .unwrap();
        Filter::parse("AddResponseHeader=X-Served-By, mesh")
            .unwrap()
            .response(&mut response);
        Filter::parse("RemoveResponseHeader=Server")
            .unwrap()
            .response(&mut response);
        assert_eq!(response.headers()["x-served-by"], "mesh");
        assert!(response.headers().get("server").is_none());
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in [
            "StripPrefix=many",
            "RewritePath=(",
            "AddRequestHeader=NoValue",
            "Teleport=1",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}

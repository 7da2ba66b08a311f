use http::{
    Extensions, HeaderMap, HeaderValue, Method, Request, Uri, Version, header::HeaderName,
    request::Parts,
};

/// The buffer a head is first written into: a URI and a dozen short headers.
const TYPICAL_HEAD_BYTES: usize = 512;

/// A request head kept for replay: method, version and extensions as they are, the URI and
/// every header written back to back into one buffer.
///
/// Cloning [`Parts`] for every retryable call costs two allocations and a reference count per
/// URI part and header value (an atomic operation each, and an allocation for each value whose
/// bytes were not shared yet); writing the same bytes into one buffer costs one allocation and
/// no atomic. Only an actual retry pays for parsing them back into a head.
pub(super) struct ReplayHead {
    method: Method,
    version: Version,
    extensions: Extensions,
    /// Records of `[length: usize][bytes]` (and a sensitivity byte after each header value):
    /// the URI's scheme, authority and path-and-query, then name and value per header.
    bytes: Vec<u8>,
}

impl ReplayHead {
    /// The replayable copy of `parts`.
    pub(super) fn capture(parts: &Parts) -> Self {
        let uri = &parts.uri;
        let scheme = uri.scheme_str().unwrap_or_default();
        let authority = uri.authority().map_or("", |authority| authority.as_str());
        let path = uri.path_and_query().map_or("", |path| path.as_str());
        // Enough for a typical head at once; a larger one grows the buffer as it is written.
        let mut bytes = Vec::with_capacity(TYPICAL_HEAD_BYTES);
        for part in [scheme, authority, path] {
            push_record(&mut bytes, part.as_bytes());
        }
        for (name, value) in &parts.headers {
            push_record(&mut bytes, name.as_str().as_bytes());
            push_record(&mut bytes, value.as_bytes());
            bytes.push(u8::from(value.is_sensitive()));
        }
        Self {
            method: parts.method.clone(),
            version: parts.version,
            extensions: parts.extensions.clone(),
            bytes,
        }
    }

    /// The extensions the request carried.
    pub(super) fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// A head equal to the captured one, or `None` if a part no longer parses (a value that was
    /// built without validation, say): such a request is not replayed.
    pub(super) fn restore(&self) -> Option<Parts> {
        let mut records = Records(&self.bytes);
        let (scheme, authority, path) = (records.next()?, records.next()?, records.next()?);
        let mut uri = Uri::builder();
        if !scheme.is_empty() {
            uri = uri.scheme(scheme);
        }
        if !authority.is_empty() {
            uri = uri.authority(authority);
        }
        let uri = uri.path_and_query(path).build().ok()?;
        let mut headers = HeaderMap::new();
        while !records.0.is_empty() {
            let name = HeaderName::from_bytes(records.next()?).ok()?;
            let mut value = HeaderValue::from_bytes(records.next()?).ok()?;
            value.set_sensitive(records.byte()? == 1);
            headers.append(name, value);
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = uri;
        parts.version = self.version;
        parts.headers = headers;
        parts.extensions = self.extensions.clone();
        Some(parts)
    }
}

fn push_record(bytes: &mut Vec<u8>, record: &[u8]) {
    bytes.reserve(size_of::<usize>() + record.len() + 1);
    bytes.extend_from_slice(&record.len().to_ne_bytes());
    bytes.extend_from_slice(record);
}

/// Reads back what [`push_record`] wrote.
struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<{ size_of::<usize>() }>()?;
        let len = usize::from_ne_bytes(*len);
        let (record, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some(record)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::retry::Idempotent;

    fn round_trip(request: Request<()>) -> (Parts, Parts) {
        let (parts, ()) = request.into_parts();
        let restored = ReplayHead::capture(&parts).restore().unwrap();
        (parts, restored)
    }

    fn assert_same(original: &Parts, restored: &Parts) {
        assert_eq!(restored.method, original.method);
        assert_eq!(restored.uri, original.uri);
        assert_eq!(restored.version, original.version);
        assert_eq!(restored.headers, original.headers);
        let order = |parts: &Parts| -> Vec<(String, Vec<u8>, bool)> {
            parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        value.as_bytes().to_vec(),
                        value.is_sensitive(),
                    )
                })
                .collect()
        };
        assert_eq!(order(restored), order(original));
    }

    #[test]
    fn an_absolute_request_comes_back_equal_with_repeated_and_sensitive_headers() {
        let mut request = Request::put("https://inventory:8443/items/42?fields=name&x=%20")
            .version(Version::HTTP_2)
            .header("accept", "application/json")
            .header("x-tenant", "team-a")
            .header("x-tenant", "team-b")
            .header("mesh-timeout", "250m")
            .body(())
            .unwrap();
        let mut secret = HeaderValue::from_static("Bearer abc.def.ghi");
        secret.set_sensitive(true);
        request.headers_mut().insert("authorization", secret);
        request.extensions_mut().insert(Idempotent);
        let (original, restored) = round_trip(request);
        assert_same(&original, &restored);
        assert!(restored.headers["authorization"].is_sensitive());
        assert_eq!(restored.extensions.get::<Idempotent>(), Some(&Idempotent));
    }

    #[test]
    fn an_origin_form_request_without_headers_comes_back_equal() {
        let (original, restored) = round_trip(Request::get("/item").body(()).unwrap());
        assert_same(&original, &restored);
        assert_eq!(restored.uri.scheme(), None);
        assert_eq!(restored.uri.authority(), None);
    }

    #[test]
    fn an_extension_method_and_an_empty_value_come_back_equal() {
        let request = Request::builder()
            .method(Method::from_bytes(b"PURGE").unwrap())
            .uri("http://cache.internal/")
            .header("x-empty", "")
            .body(())
            .unwrap();
        let (original, restored) = round_trip(request);
        assert_same(&original, &restored);
    }

    #[test]
    fn a_head_larger_than_the_first_buffer_comes_back_equal() {
        let mut request = Request::get("/reports?period=2026").body(()).unwrap();
        for n in 0..40 {
            let name = HeaderName::try_from(format!("x-report-filter-{n}")).unwrap();
            let value = HeaderValue::try_from("a fairly long filter value".repeat(2)).unwrap();
            request.headers_mut().append(name, value);
        }
        let (original, restored) = round_trip(request);
        assert!(ReplayHead::capture(&original).bytes.len() > TYPICAL_HEAD_BYTES);
        assert_same(&original, &restored);
    }

    #[test]
    fn an_absolute_uri_without_a_path_comes_back_equal() {
        let (original, restored) = round_trip(Request::get("http://inventory").body(()).unwrap());
        assert_same(&original, &restored);
    }

    #[test]
    fn a_head_whose_bytes_do_not_parse_back_is_not_replayed() {
        let (mut parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        parts
            .headers
            .insert("x-ok", HeaderValue::from_static("fine"));
        let mut head = ReplayHead::capture(&parts);
        // The last record is the value `fine`, then its sensitivity byte.
        let at = head.bytes.len() - 2;
        head.bytes[at] = b'\n';
        assert!(head.restore().is_none());
        head.bytes.truncate(3);
        assert!(head.restore().is_none());
    }
}

//! Properties of the codec, checked on generated messages: heads encode and parse back to
//! themselves (requests through `httparse` and through the server's own reader), chunked
//! bodies decode to what was encoded however the bytes arrive, and the framing of an answer
//! and of a request is what RFC 9112 §6.3 says.

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::StreamBody;
use proptest::prelude::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    body::BodyReader,
    conn::{Conn, FramingFields, Parsed, parse_head, typed_head},
    encode::{encode_answer_head, encode_request_head, write_body},
    framing::Framing,
    request::{self, build_request, scan_request},
};

/// Field names the codec manages itself (framing, connection, date) are left out: they are
/// the encoder's to write.
fn field_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9]{1,12}(-[a-z0-9]{1,8})?"
}

/// A field value as it survives a head: visible ASCII and inner spaces, no edge whitespace.
fn field_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,30}[!-~])?"
}

fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((field_name(), field_value()), 0..12)
}

fn header_map(fields: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        map.append(
            HeaderName::try_from(name.as_str()).unwrap(),
            HeaderValue::try_from(value.as_str()).unwrap(),
        );
    }
    map
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Two ends of a loopback connection.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap());
    let (near, far) = tokio::join!(near, listener.accept());
    (near.unwrap(), far.unwrap().0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn answer_heads_encode_and_parse_back_to_themselves(
        status in prop_oneof![200u16..204, 205u16..304, 305u16..600],
        fields in fields(),
        length in 0u64..100_000,
    ) {
        let mut answer = http::Response::new(());
        *answer.status_mut() = StatusCode::from_u16(status).unwrap();
        *answer.headers_mut() = header_map(&fields);
        let (parts, ()) = answer.into_parts();
        let mut out = Vec::new();
        encode_answer_head(&mut out, &parts, Framing::Length(length), false, Some(length));
        let mut read = BytesMut::from(&out[..]);
        let mut spans = Vec::new();
        let Ok(Parsed::Head(head)) = parse_head(&mut read, &mut spans, &Method::GET) else {
            panic!("the head did not parse: {}", String::from_utf8_lossy(&out));
        };
        prop_assert!(read.is_empty(), "the whole head was read");
        let expected = if length == 0 { Framing::Empty } else { Framing::Length(length) };
        let head = typed_head(head, &spans).ok().unwrap();
        prop_assert_eq!(head.framing, expected);
        prop_assert!(head.keep_alive);
        prop_assert_eq!(head.response.status().as_u16(), status);
        let parsed = head.response.headers();
        for (name, _) in &fields {
            let sent: Vec<&HeaderValue> = parts.headers.get_all(name).iter().collect();
            let got: Vec<&HeaderValue> = parsed.get_all(name).iter().collect();
            prop_assert_eq!(sent, got, "{}", name);
        }
    }

    #[test]
    fn request_heads_encode_and_parse_back_to_themselves(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        target in "/[a-zA-Z0-9._~/-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        fields in fields(),
        length in proptest::option::of(0u64..1_000_000),
    ) {
        let mut request = http::Request::new(());
        *request.method_mut() = method.clone();
        *request.uri_mut() = target.parse().unwrap();
        *request.headers_mut() = header_map(&fields);
        let (parts, ()) = request.into_parts();
        let mut out = Vec::new();
        encode_request_head(&mut out, &parts, length, length.is_none());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        let status = parsed.parse(&out).unwrap();
        prop_assert_eq!(status, httparse::Status::Complete(out.len()));
        prop_assert_eq!(parsed.method, Some(method.as_str()));
        prop_assert_eq!(parsed.path, Some(target.as_str()));
        let mut own = Vec::new();
        let mut framing = Vec::new();
        for field in parsed.headers.iter() {
            let pair = (field.name.to_owned(), String::from_utf8(field.value.to_vec()).unwrap());
            if field.name.starts_with("x-") { own.push(pair) } else { framing.push(pair) }
        }
        let mut sent: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        sent.sort();
        own.sort();
        prop_assert_eq!(own, sent);
        let expected = match length {
            Some(length) => ("content-length".to_owned(), length.to_string()),
            None => ("transfer-encoding".to_owned(), "chunked".to_owned()),
        };
        prop_assert_eq!(framing, vec![expected]);
    }

    #[test]
    fn chunked_bodies_decode_to_what_was_encoded_however_the_bytes_arrive(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..8),
        pieces in proptest::collection::vec(1usize..200, 1..20),
    ) {
        let sent: Vec<u8> = frames.concat();
        let received = runtime().block_on(async {
            // Encoded by the writer, as it goes out on a connection.
            let (mut near, mut far) = pair().await;
            let stream = futures_util::stream::iter(
                frames.into_iter().map(|f| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(f)))),
            );
            let mut body = StreamBody::new(stream);
            let mut write = Vec::new();
            write_body(&mut near, &mut write, &mut body, None).await.ok().unwrap();
            drop(near);
            let mut encoded = Vec::new();
            far.read_to_end(&mut encoded).await.unwrap();
            // Decoded by the reader, the bytes arriving in `pieces`.
            let (mut writer, reader) = pair().await;
            writer.set_nodelay(true).unwrap();
            let feeding = tokio::spawn(async move {
                let mut rest = &encoded[..];
                for piece in pieces.iter().cycle() {
                    if rest.is_empty() { break; }
                    let (now, later) = rest.split_at((*piece).min(rest.len()));
                    writer.write_all(now).await.unwrap();
                    writer.flush().await.unwrap();
                    tokio::task::yield_now().await;
                    rest = later;
                }
                writer
            });
            let mut decoder = BodyReader::new(Conn::new(reader), Framing::Chunked);
            let mut decoded = Vec::new();
            while let Some(data) = std::future::poll_fn(|cx| decoder.poll_data(cx)).await {
                decoded.extend_from_slice(&data.unwrap());
            }
            assert!(decoder.is_done());
            drop(feeding.await.unwrap());
            decoded
        });
        prop_assert_eq!(received, sent);
    }

    #[test]
    fn an_answers_framing_is_what_rfc_9112_says(
        head in any::<bool>(),
        status in prop_oneof![Just(100u16), Just(101), Just(200), Just(204), Just(304), Just(404)],
        lengths in proptest::collection::vec(prop_oneof![Just("0"), Just("7"), Just("12"), Just("+7"), Just("x")], 0..3),
        coding in proptest::option::of(prop_oneof![Just("chunked"), Just("gzip, chunked"), Just("chunked, gzip"), Just("identity")]),
    ) {
        let mut fields = FramingFields::default();
        for length in &lengths {
            fields.see(b"Content-Length", length.as_bytes());
        }
        if let Some(coding) = coding {
            fields.see(b"transfer-encoding", coding.as_bytes());
        }
        let method = if head { Method::HEAD } else { Method::GET };
        let status = StatusCode::from_u16(status).unwrap();
        let framing = fields.framing(&method, status).ok();
        // RFC 9112 §6.3, in its order.
        let expected = if status == StatusCode::SWITCHING_PROTOCOLS {
            Some(Framing::Switched)
        } else if head || status.is_informational() || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Some(Framing::Empty)
        } else if let Some(coding) = coding {
            // Chunked when it is the final coding; else the body runs to the close.
            Some(if coding.ends_with("chunked") { Framing::Chunked } else { Framing::UntilClose })
        } else if lengths.iter().any(|l| l.parse::<u64>().is_err() || l.starts_with('+'))
            || lengths.windows(2).any(|pair| pair[0] != pair[1])
        {
            // An invalid or conflicting length: the answer is unreadable.
            None
        } else {
            Some(match lengths.first() {
                None => Framing::UntilClose,
                Some(&"0") => Framing::Empty,
                Some(length) => Framing::Length(length.parse().unwrap()),
            })
        };
        prop_assert_eq!(framing, expected);
    }

    #[test]
    fn request_heads_are_read_back_by_the_servers_own_reader(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE)],
        target in "/[a-zA-Z0-9._~/-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        fields in fields(),
        body in proptest::collection::vec(any::<u8>(), 0..2_000),
        pieces in 1usize..4,
    ) {
        let mut request = http::Request::new(());
        *request.method_mut() = method.clone();
        *request.uri_mut() = target.parse().unwrap();
        *request.headers_mut() = header_map(&fields);
        request.headers_mut().insert(http::header::HOST, HeaderValue::from_static("shop.test"));
        let (parts, ()) = request.into_parts();
        let mut out = Vec::new();
        encode_request_head(&mut out, &parts, Some(body.len() as u64), false);
        let head = out.len();
        out.extend_from_slice(&body);
        // The same request twice on one connection: the reader takes exactly the first.
        let whole = out.repeat(2);
        // Before the last byte of the body arrives, the reader waits for it.
        let mut spans = Vec::new();
        let cut = head + body.len() - body.len().min(pieces);
        let early = scan_request(&whole[..cut], &mut spans, 32 * 1024);
        let waits = matches!(early, request::Parsed::AwaitingBody | request::Parsed::Incomplete);
        prop_assert!(body.is_empty() || waits, "read before its body arrived");
        let mut read = BytesMut::from(&whole[..]);
        for _ in 0..2 {
            let request::Parsed::Request(scanned) = scan_request(&read, &mut spans, 32 * 1024) else {
                panic!("the request was not read: {}", String::from_utf8_lossy(&out));
            };
            prop_assert_eq!(scanned.length(), out.len());
            prop_assert!(scanned.keep_alive);
            let built = build_request(&mut read, &spans, scanned).expect("a request the http crate takes");
            let (got, received) = built.request.into_parts();
            prop_assert_eq!(&got.method, &method);
            prop_assert_eq!(got.uri.to_string(), target.clone());
            for (name, _) in &fields {
                let sent: Vec<&HeaderValue> = parts.headers.get_all(name).iter().collect();
                let read: Vec<&HeaderValue> = got.headers.get_all(name).iter().collect();
                prop_assert_eq!(sent, read, "{}", name);
            }
            let received = runtime().block_on(axum::body::to_bytes(received, usize::MAX)).unwrap();
            prop_assert_eq!(&received[..], &body[..]);
        }
        prop_assert!(read.is_empty(), "both requests were taken whole");
    }

    #[test]
    fn a_requests_framing_is_what_rfc_9112_says(
        lengths in proptest::collection::vec(prop_oneof![Just("0"), Just("7"), Just("12"), Just("+7"), Just("x"), Just("99999999999999999999999")], 0..3),
        coding in proptest::option::of(prop_oneof![Just("chunked"), Just("gzip, chunked"), Just("chunked, gzip"), Just("identity")]),
    ) {
        let mut head = String::from("POST /orders HTTP/1.1\r\nhost: shop.test\r\n");
        for length in &lengths {
            head.push_str(&format!("content-length: {length}\r\n"));
        }
        if let Some(coding) = coding {
            head.push_str(&format!("transfer-encoding: {coding}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.clone().into_bytes();
        bytes.extend_from_slice(&[b'a'; 12]);
        let mut spans = Vec::new();
        let read = match scan_request(&bytes, &mut spans, 32 * 1024) {
            request::Parsed::Request(scanned) => Some(scanned.length() - head.len()),
            request::Parsed::Elsewhere => None,
            _ => panic!("a whole request neither read nor handed on"),
        };
        // RFC 9112 §6.3 for a request: a Transfer-Encoding decides the framing (chunked when
        // it is the final coding, else 400), an invalid or conflicting Content-Length is a
        // 400, and no length at all is an empty body. This reader takes only the plain
        // lengths; the rest it hands to hyper, whose answers the smuggling matrix checks.
        let valid = |l: &&str| !l.starts_with('+') && l.parse::<u64>().is_ok();
        let plain = coding.is_none()
            && lengths.iter().all(valid)
            && lengths.windows(2).all(|pair| pair[0] == pair[1]);
        let expected = plain.then(|| lengths.first().map_or(0, |l| l.parse::<usize>().unwrap()));
        prop_assert_eq!(read, expected);
    }
}

//! Request smuggling: requests whose framing two servers could read two ways, each sent to a
//! mesh server on both of its paths (the requests it reads itself, and those it hands to
//! hyper: here, those with more fields than it reads itself). Each is answered as RFC 9112
//! says, the connection closed where it must be, and no byte of one request is read as
//! another: the request pipelined behind an attack (`/next`) is never served after a refusal,
//! and a path hidden in a body or a field (`/smuggled`) never reaches the service.

#![cfg(feature = "runtime")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::Request, http::StatusCode, routing::any};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves a service that notes the path of every request it reads whole, and answers `400`
/// to one whose body it cannot read (as axum's body extractors do).
async fn server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let noted = served.clone();
    let router = Router::new().fallback(any(move |request: Request| {
        let noted = noted.clone();
        async move {
            let path = request.uri().path().to_owned();
            match axum::body::to_bytes(request.into_body(), 1 << 16).await {
                Ok(body) => {
                    noted.lock().unwrap().push(path.clone());
                    (
                        StatusCode::OK,
                        format!("served {path} with {} bytes", body.len()),
                    )
                }
                Err(_) => (StatusCode::BAD_REQUEST, "unreadable body".to_owned()),
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mesh_core::server::serve_connections(
        listener,
        router,
        Duration::from_secs(30),
        std::future::pending(),
    ));
    (addr, served)
}

/// Sends `bytes` and reads until the server closes; the statuses of the answers, in order.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    // A guard against a server that neither answers nor closes, which is itself a failure.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    read.await
        .expect("the server neither answered nor closed")
        .ok();
    String::from_utf8_lossy(&answer)
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12))
        .filter_map(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .collect()
}

/// The fields that send a request to hyper's side: more than mesh reads itself.
fn hyper_side() -> String {
    (0..70).map(|i| format!("x-pad-{i}: {i}\r\n")).collect()
}

/// A request pipelined after an attack: answered only if the server went on reading.
const NEXT: &str = "GET /next HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";

/// An attack: its request line and fields (`{pad}` where the padding goes), and its body.
struct Attack {
    name: &'static str,
    head: &'static str,
    body: &'static str,
}

const REFUSED: &[Attack] = &[
    Attack {
        name: "two different Content-Lengths",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ncontent-length: 30\r\n{pad}\r\n",
        body: "abcdGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
    },
    Attack {
        name: "a Content-Length with a sign",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: +4\r\n{pad}\r\n",
        body: "abcd",
    },
    Attack {
        name: "a Transfer-Encoding whose last coding is not chunked",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n{pad}\r\n",
        body: "0\r\n\r\n",
    },
    Attack {
        name: "an unknown Transfer-Encoding",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n{pad}\r\n",
        body: "abcd",
    },
    Attack {
        name: "a chunk size that overflows",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n{pad}\r\n",
        body: "10000000000000000000000000004\r\nabcd\r\n0\r\n\r\n",
    },
    Attack {
        name: "a chunk size that is not hex",
        head: "POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n{pad}\r\n",
        body: "zz\r\nabcd\r\n0\r\n\r\n",
    },
    Attack {
        name: "obs-fold",
        head: "GET /a HTTP/1.1\r\nhost: a\r\nx-folded: one\r\n two\r\n{pad}\r\n",
        body: "",
    },
    Attack {
        name: "a bare LF hiding a request line among the fields",
        head: "GET /a HTTP/1.1\r\nhost: a\r\nx-a: b\nGET /smuggled HTTP/1.1\r\n{pad}\r\n",
        body: "",
    },
    Attack {
        name: "a bare LF ending a field, hiding a Content-Length from a proxy that splits on CRLF",
        head: "POST /a HTTP/1.1\r\nhost: a\r\nx-a: b\ncontent-length: 41\r\n{pad}\r\n",
        body: "GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
    },
    Attack {
        name: "a head of bare LFs",
        head: "POST /a HTTP/1.1\nhost: a\ncontent-length: 0\n{pad}\n",
        body: "",
    },
    Attack {
        name: "no Host",
        head: "GET /a HTTP/1.1\r\n{pad}\r\n",
        body: "",
    },
    Attack {
        name: "two Hosts",
        head: "GET /a HTTP/1.1\r\nhost: a\r\nhost: b\r\n{pad}\r\n",
        body: "",
    },
    Attack {
        name: "a space before the colon",
        head: "GET /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n{pad}\r\n",
        body: "0\r\n\r\n",
    },
];

#[tokio::test]
async fn framing_two_servers_could_read_two_ways_is_refused_and_the_connection_closed() {
    let (addr, served) = server().await;
    for attack in REFUSED {
        for (side, pad) in [("mesh", String::new()), ("hyper", hyper_side())] {
            let head = attack.head.replace("{pad}", &pad);
            let request = format!("{head}{}{NEXT}", attack.body);
            let statuses = exchange(addr, request.as_bytes()).await;
            assert_eq!(
                statuses,
                [400],
                "{} ({side}'s side): one 400, then the connection closed",
                attack.name
            );
            let served = std::mem::take(&mut *served.lock().unwrap());
            assert!(
                served.is_empty(),
                "{} ({side}'s side) reached the service: {served:?}",
                attack.name
            );
        }
    }
}

#[tokio::test]
async fn content_length_and_chunked_together_are_read_as_chunked_and_the_connection_closed() {
    // RFC 9112 §6.1: chunked wins, and the server closes the connection after answering.
    let (addr, served) = server().await;
    for (side, pad) in [("mesh", String::new()), ("hyper", hyper_side())] {
        let request = format!(
            "POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 40\r\ntransfer-encoding: chunked\r\n{pad}\r\n\
             0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n{NEXT}"
        );
        let statuses = exchange(addr, request.as_bytes()).await;
        let served = std::mem::take(&mut *served.lock().unwrap());
        match statuses.as_slice() {
            [400] => assert!(served.is_empty(), "{side}: {served:?}"),
            [200] => assert_eq!(served, ["/a"], "{side}: the body was read as chunked"),
            other => panic!("{side}: {other:?}, served {served:?}: not closed after one answer"),
        }
    }
}

#[tokio::test]
async fn well_framed_pipelined_requests_are_each_served_once() {
    // The control: the same server serves honest pipelines on both sides.
    let (addr, served) = server().await;
    for (side, pad) in [("mesh", String::new()), ("hyper", hyper_side())] {
        let request = format!(
            "POST /one HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n{pad}\r\nabcd\
             POST /two HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n\
             {NEXT}"
        );
        let statuses = exchange(addr, request.as_bytes()).await;
        assert_eq!(statuses, [200, 200, 200], "{side}");
        let served = std::mem::take(&mut *served.lock().unwrap());
        assert_eq!(served, ["/one", "/two", "/next"], "{side}");
    }
}

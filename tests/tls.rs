//! HTTPS with rustls: HTTP/2 and HTTP/1.1 by ALPN, tested with a rustls client.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh::axum::{Router, routing::get};
use serde_json::json;
use tokio_rustls::rustls::pki_types::ServerName;

use support::{TLS_CERT as CERT, TLS_KEY as KEY, tls_connector as connector};

#[tokio::test]
async fn a_service_serves_https_with_h2_and_http1_by_alpn() {
    let registry = support::registry();
    let running = support::start(
        "secure",
        Router::new().route("/hello", get(|| async { "hello over tls" })),
        &registry,
        json!({"server": {"tls": {"cert": CERT, "key": KEY}}}),
    )
    .await;
    assert!(running.instance().unwrap().secure, "registered as secure");
    let addr = running.local_addr();

    for (alpn, version) in [
        (&b"h2"[..], Version::HTTP_2),
        (b"http/1.1", Version::HTTP_11),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector(alpn)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        // HTTP/1.1 needs its `Host` even with an absolute target (RFC 9112 §3.2).
        let request = Request::get("https://localhost/hello")
            .version(version)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = if version == Version::HTTP_2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), version);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello over tls");
    }

    // A plain-HTTP client gets no answer from a TLS port.
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let plain = client.request(
        Request::get(format!("http://{addr}/hello"))
            .body(Empty::new())
            .unwrap(),
    );
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), plain)
        .await
        .expect("the TLS port closes a plain-HTTP connection");
    assert!(outcome.is_err());
}

#[tokio::test]
async fn a_missing_certificate_stops_the_service_at_build() {
    let error = mesh::Mesh::builder("secure")
        .config(mesh::config::MeshConfig::from_value(
            "secure",
            json!({"server": {"tls": {"cert": "/nonexistent/cert.pem", "key": KEY}}}),
        ))
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), mesh::error::ErrorKind::Config);
    assert!(error.message().contains("server.tls.cert"), "{error}");
}

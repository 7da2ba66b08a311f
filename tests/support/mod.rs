//! Helpers for the runtime tests: services on real sockets, in this process.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mesh::{Mesh, axum::Router, runtime::Running};
use mesh_registry::{Registry, RegistryConfig};

/// An embedded registry.
pub fn registry() -> Arc<Registry> {
    Arc::new(Registry::new(RegistryConfig::default()))
}

/// Starts `name` serving `router`, registered in `registry`, configured by `config`.
pub async fn start(
    name: &str,
    router: Router,
    registry: &Arc<Registry>,
    config: serde_json::Value,
) -> Running {
    mesh(name, registry, config)
        .await
        .server(router)
        .start()
        .await
        .unwrap()
}

/// A built (not yet serving) service.
pub async fn mesh(name: &str, registry: &Arc<Registry>, config: serde_json::Value) -> Mesh {
    mesh_testkit::mesh(name, registry.clone(), config).await
}

/// A service on a runtime of its own, so that it can crash: [`Killable::kill`] drops the
/// runtime with every connection, without deregistering.
pub struct Killable(mesh_testkit::Process);

impl Killable {
    pub fn start(name: &str, router: Router, registry: &Arc<Registry>) -> Self {
        let (name, registry) = (name.to_owned(), registry.clone());
        Self(mesh_testkit::Process::spawn(move || async move {
            let running = start(&name, router, &registry, serde_json::json!({})).await;
            (
                running.local_addr(),
                Box::new(running) as Box<dyn std::any::Any>,
            )
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    pub fn kill(self) {
        self.0.kill();
    }
}

/// A plain HTTP request to `addr`, outside the mesh: (status, headers, body).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// `GET path` on `addr`: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let (status, _, body) = call(addr, "GET", path, &[], Vec::new()).await;
    (status, body)
}

/// The test certificate (for `localhost`), its key, and the CA that signed it.
pub const TLS_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls-cert.pem");
pub const TLS_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls-key.pem");
pub const TLS_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls-ca.pem");

/// A rustls client trusting the test CA, offering `alpn`.
pub fn tls_connector(alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, pem::PemObject},
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(TLS_CA).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

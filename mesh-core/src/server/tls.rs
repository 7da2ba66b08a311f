//! TLS termination with rustls: HTTP/2 and HTTP/1.1 by ALPN.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::error::{ErrorKind, MeshError};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `server.tls` section: the certificate chain and private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsSettings {
    /// The rustls configuration: aws-lc, safe default versions, ALPN `h2` then `http/1.1`.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, MeshError> {
        let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
            MeshError::new(
                ErrorKind::Config,
                format!("server.tls.{what} `{}`: {e}", path.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| invalid("cert", &self.cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("cert", &self.cert, &e))?;
        if certs.is_empty() {
            return Err(invalid("cert", &self.cert, &"no certificate in the file"));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| invalid("key", &self.key, &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("cert", &self.cert, &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("key", &self.key, &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The TLS session on `stream` once its handshake is done, or `None` when it failed or took
/// longer than [`HANDSHAKE_TIMEOUT`]. Each connection shakes hands in its own task, so a slow
/// client delays no one else.
pub(super) async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

//! One bounded JSON GET, for the control-plane documents a service reads (config-server
//! environments, JWKS key sets).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};

/// GETs `url` asking for JSON: the body of a 2xx answer, read up to `max_bytes`, within
/// `timeout`; otherwise why not. Credentials in the URL's userinfo are sent as HTTP Basic.
pub(crate) async fn get_json_bytes(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, String> {
    let (url, credentials) = crate::userinfo::split(url);
    let mut request = Request::get(url).header(header::ACCEPT, "application/json");
    if let Some(authorization) =
        credentials.and_then(|(user, password)| crate::userinfo::basic(&user, &password))
    {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

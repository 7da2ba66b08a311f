//! The config-server layer: Spring Cloud Config's environment endpoint.

use std::time::Duration;

use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::tree::{Tree, unflatten};
use crate::{
    error::{ErrorKind, MeshError},
    fetch::get_json_bytes,
};

/// Largest config-server answer read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How long the config server has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Spring Cloud Config's `Environment`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Environment {
    #[serde(default)]
    property_sources: Vec<PropertySource>,
}

#[derive(Deserialize)]
struct PropertySource {
    #[serde(default)]
    source: Map<String, Value>,
}

/// Fetches `{url}/{name}/{profile}[/{label}]` and merges its property sources, the first
/// (highest precedence) last.
pub(super) async fn fetch(
    url: &str,
    name: &str,
    profile: &str,
    label: Option<&str>,
) -> Result<Value, MeshError> {
    let mut uri = format!("{}/{name}/{profile}", url.trim_end_matches('/'));
    if let Some(label) = label {
        uri.push('/');
        uri.push_str(label);
    }
    let shown = crate::userinfo::redact(&uri);
    let unreachable = |e: &dyn std::fmt::Display| {
        MeshError::new(
            ErrorKind::Unavailable,
            format!("config server {shown}: {e}"),
        )
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let body = get_json_bytes(&client, &uri, MAX_ANSWER_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|e| unreachable(&e))?;
    let environment: Environment = serde_json::from_slice(&body)
        .map_err(|e| unreachable(&format!("unreadable answer: {e}")))?;
    let mut tree = Tree::new();
    for source in environment.property_sources.into_iter().rev() {
        tree.merge(unflatten(source.source), "config server");
    }
    Ok(tree.root)
}

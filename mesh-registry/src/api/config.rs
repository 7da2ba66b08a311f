//! The config server's HTTP API, Spring Cloud Config's: `GET /config/{application}/{profile}
//! [/{label}]` (the environment as JSON), `GET /config/[{label}/]{application}-{profile}.yml`
//! (also `.yaml`, `.properties`, `.json`: the merged properties rendered), `POST
//! /config/encrypt` and `POST /config/decrypt` (text in, text out). A label holding `/` is
//! written with `(_)`, as Spring writes it. Every endpoint takes the credentials the registry's
//! writes take.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mesh_core::error::{ErrorKind, MeshError};

use super::ApiError;
use crate::{
    config_server::{ConfigError, ConfigServer},
    registry::Registry,
};

/// What the config routes need: the server, and the registry's credentials.
#[derive(Clone)]
struct Config {
    server: Arc<ConfigServer>,
    registry: Arc<Registry>,
}

/// The routes under `/config`.
pub(super) fn routes<S>(server: Arc<ConfigServer>, registry: Arc<Registry>) -> Router<S> {
    Router::<Config>::new()
        .route("/encrypt", post(encrypt))
        .route("/decrypt", post(decrypt))
        .route("/{file}", get(rendering))
        .route("/{first}/{second}", get(environment_or_rendering))
        .route(
            "/{application}/{profile}/{label}",
            get(labelled_environment),
        )
        .with_state(Config { server, registry })
}

/// Spring Cloud Bus's endpoints: `POST /actuator/busrefresh[/{destination}]`.
pub(super) fn actuator_routes<S>(server: Arc<ConfigServer>, registry: Arc<Registry>) -> Router<S> {
    Router::<Config>::new()
        .route("/actuator/busrefresh", post(refresh_all))
        .route("/actuator/busrefresh/{destination}", post(refresh_one))
        .with_state(Config { server, registry })
}

async fn refresh_all(
    State(config): State<Config>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refresh(&config, &headers, None).await
}

async fn refresh_one(
    State(config): State<Config>,
    Path(destination): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refresh(&config, &headers, Some(destination)).await
}

/// Publishes the refresh; `204` as Spring Cloud Bus answers.
async fn refresh(
    config: &Config,
    headers: &HeaderMap,
    destination: Option<String>,
) -> Result<Response, ApiError> {
    config.admit(headers).await?;
    let request = config.server.refresh(destination).await?;
    tracing::info!(destination = ?request.destination, version = ?request.version, "configuration refresh published");
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

impl Config {
    /// Refuses the request unless its credentials are good (or none are configured).
    async fn admit(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.registry
            .authenticator()
            .writer(headers)
            .await
            .map(|_| ())
            .map_err(ApiError)
    }
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        let kind = match &error {
            ConfigError::NoSuchLabel(_) | ConfigError::NoKey | ConfigError::NoBus => {
                ErrorKind::NotFound
            }
            ConfigError::BadName(_) | ConfigError::CannotDecrypt(_) => ErrorKind::BadRequest,
            ConfigError::Setup(_) | ConfigError::Read(_) | ConfigError::Bus(_) => {
                ErrorKind::Unavailable
            }
        };
        ApiError(MeshError::new(kind, error.to_string()))
    }
}

/// A label as Spring writes it in a path: `(_)` for `/`.
fn label(text: &str) -> String {
    text.replace("(_)", "/")
}

/// The formats a file rendering comes in.
#[derive(Clone, Copy)]
enum Format {
    Yaml,
    Properties,
    Json,
}

/// `{application}-{profile}.{extension}` (the last `-` splits, as Spring's pattern does;
/// none means the `default` profile): the application, the profile and the format.
fn file_name(file: &str) -> Option<(&str, &str, Format)> {
    let (stem, extension) = file.rsplit_once('.')?;
    let format = match extension {
        "yml" | "yaml" => Format::Yaml,
        "properties" => Format::Properties,
        "json" => Format::Json,
        _ => return None,
    };
    Some(match stem.rsplit_once('-') {
        Some((application, profile)) => (application, profile, format),
        None => (stem, "default", format),
    })
}

async fn environment_or_rendering(
    State(config): State<Config>,
    Path((first, second)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    config.admit(&headers).await?;
    if let Some((application, profile, format)) = file_name(&second) {
        return render(&config, application, profile, Some(&label(&first)), format);
    }
    Ok(Json(config.server.environment(&first, &second, None)?).into_response())
}

async fn labelled_environment(
    State(config): State<Config>,
    Path((application, profile, at)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    config.admit(&headers).await?;
    let environment = config
        .server
        .environment(&application, &profile, Some(&label(&at)))?;
    Ok(Json(environment).into_response())
}

async fn rendering(
    State(config): State<Config>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    config.admit(&headers).await?;
    let Some((application, profile, format)) = file_name(&file) else {
        return Err(ApiError::not_found(format!(
            "no route for GET \"/config/{file}\": ask for /config/{{application}}/{{profile}} or a file such as {{application}}-{{profile}}.yml"
        )));
    };
    render(&config, application, profile, None, format)
}

fn render(
    config: &Config,
    application: &str,
    profile: &str,
    at: Option<&str>,
    format: Format,
) -> Result<Response, ApiError> {
    let (body, content_type) = match format {
        Format::Json => (
            serde_json::to_string_pretty(&config.server.merged(application, profile, at)?)
                .unwrap_or_default(),
            "application/json",
        ),
        Format::Yaml => (
            serde_norway::to_string(&config.server.merged(application, profile, at)?)
                .unwrap_or_default(),
            "text/plain; charset=utf-8",
        ),
        Format::Properties => (
            crate::config_server::render_properties(&config.server.merged_flat(
                application,
                profile,
                at,
            )?),
            "text/plain; charset=utf-8",
        ),
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

async fn encrypt(
    State(config): State<Config>,
    headers: HeaderMap,
    body: String,
) -> Result<String, ApiError> {
    config.admit(&headers).await?;
    Ok(config.server.encrypt(body.trim_end_matches(['\r', '\n']))?)
}

async fn decrypt(
    State(config): State<Config>,
    headers: HeaderMap,
    body: String,
) -> Result<String, ApiError> {
    config.admit(&headers).await?;
    Ok(config.server.decrypt(body.trim())?)
}

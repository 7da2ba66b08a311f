//! `mesh-registry`: the registry server.
//!
//! - `MESH_REGISTRY_ADDR`: where to listen (default `127.0.0.1:8761`). **Without credentials
//!   the registry listens on loopback only**: a non-loopback address is replaced by
//!   `127.0.0.1` on the same port, with a warning, because anyone reaching it could re-point,
//!   cancel or forge registrations.
//! - `MESH_REGISTRY_USERS`: the writers, `name:password[:operator]`, comma-separated (a
//!   password may hold `:` but not `,`), such as `orders:s3cret,ops:0ps-s3cret:operator`.
//!   Eureka clients send them from `http://orders:s3cret@registry:8761/eureka/`, mesh
//!   services from `registry.url: http://orders:s3cret@registry:8761`. An instance may be
//!   renewed, changed or cancelled only by the user that registered it, or by an operator.
//! - `MESH_REGISTRY_JWT_SECRET`, `MESH_REGISTRY_JWT_PUBLIC_KEY` (PEM, inline or a path) or
//!   `MESH_REGISTRY_JWT_JWKS_URL`: also accept mesh JWT bearer tokens, checked against
//!   `MESH_REGISTRY_JWT_ISSUER` and `MESH_REGISTRY_JWT_AUDIENCE` when set. A token's `sub`
//!   owns what it registers (as `jwt:<sub>`); `MESH_REGISTRY_JWT_WRITE_ROLE` is the role a
//!   token needs to write at all (default: none needed), `MESH_REGISTRY_OPERATOR_ROLE` the one
//!   that makes an operator (default `registry-operator`).
//! - `MESH_REGISTRY_PROTECT_READS=true`: reads (catalogue, watches, `/metrics`) need
//!   credentials too; `/health` stays open. Default: reads are open.
//! - `MESH_REGISTRY_SERVICE_PER_IDENTITY=true`: a writer that is no operator may register
//!   instances only of the service named as it is (user `orders` registers `orders`).
//!   Default: any writer may add instances to any service (and change only its own).
//! - `MESH_REGISTRY_MAX_METADATA_ENTRIES` (default 64), `MESH_REGISTRY_MAX_METADATA_BYTES`
//!   (default 8192): per-instance metadata limits.
//! - `MESH_REGISTRY_WARMUP` (default `30s`): after starting on an empty store, how long
//!   watchers that followed the registry before are held while instances register again.
//! - `MESH_REGISTRY_REDIS_URL`: keep registrations (with their owners) in Redis, so replicas
//!   sharing it serve one registry; in memory otherwise.
//! - `--config-dir DIR` or `MESH_CONFIG_DIR`: serve Spring Cloud Config's API under `/config`
//!   from the YAML and `.properties` files of `DIR` (at a label, when `DIR` is a git
//!   repository); `MESH_CONFIG_ENCRYPT_KEY` decrypts `{cipher}` values and enables
//!   `/config/encrypt` and `/config/decrypt`; `MESH_BUS_URL` (`amqp://…`) carries the
//!   refreshes `POST /actuator/busrefresh[/{destination}]` publishes. The same credentials as
//!   writes are needed.
//! - `MESH_LOG`: the log filter (default `info`); `MESH_LOG_FORMAT` `json` (ECS lines, the
//!   default when standard output is not a terminal) or `text`.
//!
//! SIGTERM or Ctrl-C stops it gracefully.

use std::{net::SocketAddr, sync::Arc};

use mesh_registry::{Registry, RegistryConfig, auth::bind_address, config_server::ConfigServer};

/// The config server's directory: `--config-dir DIR`, else `MESH_CONFIG_DIR`.
fn config_dir() -> Result<Option<std::path::PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--config-dir") => {
            return args
                .next()
                .map(|dir| Some(dir.into()))
                .ok_or_else(|| "--config-dir needs a directory".to_owned());
        }
        Some("--help" | "-h") => {
            println!("usage: mesh-registry [--config-dir DIR]");
            std::process::exit(0);
        }
        Some(other) => return Err(format!("unknown argument `{other}`")),
        None => {}
    }
    Ok(std::env::var_os("MESH_CONFIG_DIR").map(Into::into))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    mesh_core::observe::logging::init("mesh-registry", "info")?;
    let configured =
        std::env::var("MESH_REGISTRY_ADDR").unwrap_or_else(|_| "127.0.0.1:8761".into());
    let config = RegistryConfig::from_env_with(|name| std::env::var(name).ok())?;
    let configured: SocketAddr = tokio::net::lookup_host(&configured)
        .await?
        .next()
        .ok_or_else(|| format!("MESH_REGISTRY_ADDR={configured:?} names no address"))?;
    let bind = bind_address(configured, config.auth.is_configured());
    if let Some(warning) = &bind.warning {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        users = config.auth.users.len(),
        jwt = config.auth.jwt.is_some(),
        protect_reads = config.auth.protect_reads,
        "registry credentials"
    );
    let registry = match std::env::var("MESH_REGISTRY_REDIS_URL") {
        Ok(url) => {
            let store = mesh_registry::store::RedisStore::connect(&url, "mesh:registry:").await?;
            tracing::info!("registrations kept in Redis");
            Arc::new(Registry::try_with_store(config, store)?)
        }
        Err(_) => Arc::new(Registry::try_with_store(
            config,
            Arc::new(mesh_registry::store::MemoryStore::new()),
        )?),
    };
    registry.spawn_eviction();
    let config = match config_dir()? {
        Some(dir) => {
            let key = std::env::var("MESH_CONFIG_ENCRYPT_KEY").ok();
            let mut server = ConfigServer::open(&dir, key.as_deref())?;
            // Refreshes go out on the bus `MESH_BUS_URL` names (RabbitMQ, for services in
            // other processes).
            if let Ok(url) = std::env::var("MESH_BUS_URL") {
                let settings = mesh_core::bus::BusSettings {
                    url,
                    ..Default::default()
                };
                server = server.with_bus(settings.connect(None).await?);
            }
            tracing::info!(dir = %dir.display(), encryption = key.is_some(), "config server on /config");
            Some(Arc::new(server))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(bind.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "mesh-registry listening");
    let router = mesh_registry::api::router_with(registry.clone(), config);
    let shutdown = async move {
        mesh_core::server::shutdown_signal().await;
        registry.close_streams();
    };
    mesh_registry::serve_router(listener, router, shutdown).await?;
    Ok(())
}

//! One service of the shop as its own process (`shop --service NAME`), as it would be
//! deployed: fixed local addresses by default, the registry at `registry.url`, the auth
//! service's keys at its JWKS URL. Events cross processes only on RabbitMQ (`MESH_BUS_URL`).

use std::sync::Arc;

use mesh::{
    Mesh,
    config::MeshConfig,
    error::{ErrorKind, MeshError},
    registry_server::{Registry, RegistryConfig},
};
use serde_json::json;

use crate::{
    auth::Auth,
    shop::{Service, serve_registry, service_config, start_gateway, start_service},
    store::Store,
};

/// Each process's name and default address.
pub const ADDRESSES: [(&str, &str); 8] = [
    ("registry", "127.0.0.1:8761"),
    ("gateway", "127.0.0.1:8080"),
    ("auth", "127.0.0.1:8090"),
    ("product", "127.0.0.1:8091"),
    ("inventory", "127.0.0.1:8092"),
    ("payment", "127.0.0.1:8093"),
    ("order", "127.0.0.1:8094"),
    ("notification", "127.0.0.1:8095"),
];

/// Runs the process `name` until `shutdown` completes. `env` is its environment: `MESH_*`
/// keys, and `SHOP_{NAME}_ADDR` to move a process from its default address (every process
/// reads them, to find the registry and the auth service's keys).
pub async fn run(
    name: &str,
    env: Vec<(String, String)>,
    admin_password: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MeshError> {
    let var = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    // `SHOP_{NAME}_ADDR` moves a process; the others find it there.
    let address_of = |process: &str| {
        let default = ADDRESSES
            .iter()
            .find(|(known, _)| *known == process)
            .map(|(_, address)| (*address).to_owned());
        var(&format!("SHOP_{}_ADDR", process.to_ascii_uppercase())).or(default)
    };
    let address = address_of(name).ok_or_else(|| {
        let names: Vec<&str> = ADDRESSES.iter().map(|(process, _)| *process).collect();
        MeshError::new(
            ErrorKind::Config,
            format!("no service `{name}`: one of {}", names.join(", ")),
        )
    })?;
    let registry_url = format!("http://{}", address_of("registry").unwrap_or_default());
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        address_of("auth").unwrap_or_default()
    );
    if name == "registry" {
        let addr = address.parse().map_err(|_| {
            MeshError::new(ErrorKind::Config, format!("`{address}` is not host:port"))
        })?;
        let registry = Arc::new(Registry::new(RegistryConfig::default()));
        // Its config server's refreshes go out on the bus `MESH_BUS_URL` names.
        let config = MeshConfig::builder("config-server")
            .defaults(json!({"registry": {"register": false}}))
            .env_vars(env.clone())
            .load()
            .await?;
        let bus = Mesh::builder("config-server")
            .config(config)
            .registry(registry.clone())
            .build()
            .await?
            .bus()
            .await?;
        let (addr, task) = serve_registry(addr, registry, bus, &env).await?;
        println!("registry and config server at http://{addr}");
        shutdown.await;
        task.abort();
        return Ok(());
    }
    let id = match name {
        "gateway" => "gateway".to_owned(),
        other => format!("{other}-service"),
    };
    let mut defaults = if matches!(name, "gateway" | "auth") {
        json!({})
    } else {
        service_config(&jwks_url, &format!("{registry_url}/config"))
    };
    defaults["server"]["address"] = address.into();
    defaults["registry"]["url"] = registry_url.into();
    if name == "gateway" {
        defaults["registry"]["register"] = false.into();
    }
    let config = MeshConfig::builder(id.as_str())
        .defaults(defaults)
        .env_vars(env.clone())
        .load()
        .await?;
    let mesh = Mesh::builder(id.as_str()).config(config).build().await?;
    let store = Store::from_env(&env).await?;
    let memory_bus = var("MESH_BUS_URL").is_none_or(|url| url == "memory");
    if memory_bus && matches!(name, "payment" | "order" | "notification") {
        tracing::warn!("MESH_BUS_URL is not set: this process's events stay in this process");
    }
    let (running, _subscription) = match name {
        "gateway" => (start_gateway(&mesh, &jwks_url).await?, None),
        "auth" => {
            let auth = Auth::new(&mesh, &store, admin_password).await?;
            (mesh.server(auth.router()).start().await?, None)
        }
        _ => {
            let service = Service::ALL
                .into_iter()
                .find(|service| service.id() == id)
                .ok_or_else(|| MeshError::new(ErrorKind::Config, format!("no service `{id}`")))?;
            let started = start_service(service, &mesh, &store).await?;
            (started.running, started.subscription)
        }
    };
    println!("{id} at http://{}", running.local_addr());
    shutdown.await;
    running.shutdown().await
}

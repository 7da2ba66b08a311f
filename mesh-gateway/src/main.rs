//! `mesh-gateway --config gateway.yaml`: the edge gateway. Listens on `MESH_GATEWAY_ADDR`
//! (default `127.0.0.1:8080`; `server.address` in the file wins over the default, the variable
//! over both). `/health…` and `/metrics` are served apart, on `MESH_GATEWAY_MANAGEMENT_ADDR`
//! (default `127.0.0.1:8081`, `management.address` in the file), never on the public port.
//! The same file holds the routes and the gateway's own mesh settings (`registry`, `clients`,
//! …); `MESH_*` variables override it. The file is watched: a change swaps the routes without
//! dropping a request (an invalid file is logged and ignored). `MESH_LOG` sets the log
//! filter; logs are ECS JSON lines (`mesh_core::observe::logging`), text in a terminal or with
//! `MESH_LOG_FORMAT=text`. The access log (target
//! `mesh_gateway::access`, on at the default `info`) is JSON lines on standard output, written
//! in batches off the request path (`mesh_gateway::access_log`). Requests are served by one
//! thread per core (`server.threads` to change it).

use std::path::PathBuf;

use mesh_core::{Mesh, config::MeshConfig};
use mesh_gateway::{Gateway, GatewayConfig};

/// A proxy allocates and frees buffers and headers on every request; mimalloc's per-thread
/// heaps do that with less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Events only, as ECS JSON lines (text in a terminal): a request's span would cost every
    // request its formatted fields while adding nothing a line needs (the access log names
    // the request, and the trace ids come from the request's context).
    mesh_core::observe::logging::init("mesh-gateway", "info")?;
    let mut args = std::env::args().skip(1);
    let mut file = PathBuf::from("gateway.yaml");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => file = args.next().ok_or("--config needs a path")?.into(),
            "--help" | "-h" => {
                println!("usage: mesh-gateway [--config gateway.yaml]");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    // One serving thread per core, each with its own runtime and listener, as nginx's
    // workers; this runtime only watches the configuration and the registry.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut defaults = serde_json::json!({
        "server": {"address": "127.0.0.1:8080", "threads": threads},
        "management": {"address": "127.0.0.1:8081"},
    });
    if let Ok(addr) = std::env::var("MESH_GATEWAY_ADDR") {
        defaults["server"]["address"] = addr.into();
    }
    if let Ok(addr) = std::env::var("MESH_GATEWAY_MANAGEMENT_ADDR") {
        defaults["management"]["address"] = addr.into();
    }
    let config = MeshConfig::builder("mesh-gateway")
        .file(&file)
        .defaults(defaults.clone())
        .load()
        .await?;
    if let Ok(addr) = std::env::var("MESH_GATEWAY_ADDR") {
        config.set("server.address", addr.into());
    }
    if let Ok(addr) = std::env::var("MESH_GATEWAY_MANAGEMENT_ADDR") {
        config.set("management.address", addr.into());
    }
    let routes: GatewayConfig = config.snapshot().section("")?;
    let mesh = Mesh::builder("mesh-gateway")
        .config(config.clone())
        .build()
        .await?;
    let gateway = Gateway::new(routes, &mesh)?;
    // Hot reload: a changed file swaps the routes without dropping a request.
    let _watching = config.watch_files(std::time::Duration::from_secs(2));
    let _following = gateway.follow(&config);
    tracing::info!(config = %file.display(), "mesh-gateway starting");
    // Requests on routes that only rewrite heads are relayed from their bytes; the rest go
    // through the gateway as a service.
    let served = mesh.server(gateway.clone()).relay(gateway).serve().await;
    mesh_gateway::access_log::AccessLog::stdout().flush();
    served?;
    Ok(())
}

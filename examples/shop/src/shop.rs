//! The whole shop in one process: an embedded registry, the services each as its own mesh
//! service (its own port, registration, server layers and clients), and the gateway in front.
//! On embedded defaults the services share one in-process bus (`bus.url: memory://shop-N`);
//! with `MESH_BUS_URL` (and `MESH_REDIS_URL`) each connects to RabbitMQ (and Redis) as it
//! would in its own process.

use std::{net::SocketAddr, sync::Arc};

use mesh::{
    Mesh, MeshError,
    bus::{Bus, Subscription},
    error::ErrorKind,
    gateway::{Gateway, GatewayConfig},
    registry_server::{Registry, config_server::ConfigServer},
    runtime::Running,
};
use serde_json::{Value, json};

use crate::{
    api::{CatalogServer, InventoryServer, OrdersServer, PaymentsServer},
    auth::{AUDIENCE, Auth, ISSUER},
    embedded::Embedded,
    inventory::InventoryService,
    notification::NotificationService,
    order::OrderService,
    payment::PaymentService,
    product::ProductService,
    store::Store,
};

/// The gateway's routes, with `{jwks_url}` to fill in.
const GATEWAY_ROUTES: &str = include_str!("gateway.yaml");

/// How the shop is started.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// Where the gateway listens (port 0: any free port).
    pub gateway_addr: SocketAddr,
    /// Where the registry's API (native and Eureka) and the config server are served; none:
    /// any free port.
    pub registry_addr: Option<SocketAddr>,
    /// The `admin` user's password.
    pub admin_password: String,
    /// The environment the services' configuration reads (`MESH_BUS_URL`, `MESH_REDIS_URL`,
    /// any `MESH_*` key).
    pub env: Vec<(String, String)>,
}

/// The running shop.
pub struct Shop {
    /// Where the gateway listens: the only address a client needs.
    pub gateway: SocketAddr,
    /// Where the registry's API and the config server listen.
    pub registry: SocketAddr,
    /// The auth service (to rotate its signing key).
    pub auth: Auth,
    /// The bus the services publish on.
    pub bus: Arc<dyn Bus>,
    /// Every service's bus subscription and server, stopped by [`Shop::shutdown`].
    subscription: Subscription,
    services: Vec<Running>,
    registry_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("gateway", &self.gateway)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Where the configuration the shop's config server serves lives (`order-service.yml`: the
/// payment client's breaker and retries); `SHOP_CONFIG_DIR` moves it. A binary run where this
/// checkout is not serves the copy built into it.
pub const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// The configuration built into the binary, for a binary run away from its checkout.
const BUILT_IN_CONFIG: [(&str, &str); 1] = [(
    "order-service.yml",
    include_str!("../config/order-service.yml"),
)];

/// What every service of the shop is configured with in code: tokens verified against the
/// auth service's keys, and the rest of its configuration read from the config server at
/// `config_url` (the registry's `/config`), which must answer.
pub fn service_config(jwks_url: &str, config_url: &str) -> Value {
    json!({
        "server": {
            "auth": {"jwt": {"jwks_url": jwks_url, "issuer": ISSUER, "audience": AUDIENCE}},
        },
        "config_server": {"url": config_url, "fail_fast": true},
    })
}

impl Shop {
    /// Starts the registry, the services and the gateway.
    pub async fn start(options: ShopOptions) -> Result<Shop, MeshError> {
        // One shop, one in-process bus (a process may run several shops: each its own),
        // unless the environment names a broker.
        let embedded = Embedded::new("shop", options.env.clone());
        let registry = embedded.registry.clone();
        let builder = |name: &'static str, config: Value| embedded.mesh(name, config);
        let mut services = Vec::new();

        // The registry serves the config server too; its refreshes go out on the shop's bus.
        let config_bus = builder("config-server", json!({"registry": {"register": false}}))
            .await?
            .bus()
            .await?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (registry_addr, registry_task) = serve_registry(
            options.registry_addr.unwrap_or(any),
            registry.clone(),
            config_bus,
            &options.env,
        )
        .await?;
        let config_url = format!("http://{registry_addr}/config");

        let store = Store::from_env(&options.env).await?;
        let auth_mesh = builder("auth-service", json!({})).await?;
        let auth = Auth::new(&auth_mesh, &store, &options.admin_password).await?;
        let auth_running = auth_mesh.server(auth.clone().router()).start().await?;
        let jwks_url = format!("http://{}/.well-known/jwks.json", auth_running.local_addr());
        services.push(auth_running);
        let config = service_config(&jwks_url, &config_url);
        let mut subscription = None;
        for service in Service::ALL {
            let mesh = builder(service.id(), config.clone()).await?;
            let started = start_service(service, &mesh, &store).await?;
            services.push(started.running);
            subscription = subscription.or(started.subscription);
        }
        let subscription = subscription
            .ok_or_else(|| MeshError::new(ErrorKind::Internal, "no service subscribed"))?;
        let bus = services
            .last()
            .map(|running| running.mesh().clone())
            .ok_or_else(|| MeshError::new(ErrorKind::Internal, "no service"))?
            .bus()
            .await?;

        let gateway_config = json!({
            "server": {"address": options.gateway_addr.to_string()},
            "registry": {"register": false},
        });
        let gateway_mesh = builder("gateway", gateway_config).await?;
        let gateway_running = start_gateway(&gateway_mesh, &jwks_url).await?;
        let gateway_addr = gateway_running.local_addr();
        services.push(gateway_running);
        Ok(Shop {
            gateway: gateway_addr,
            registry: registry_addr,
            auth,
            bus,
            subscription,
            services,
            registry_task,
        })
    }

    /// Stops the gateway first, then every service (each leaving the registry and draining).
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        drop(self.subscription);
        while let Some(service) = self.services.pop() {
            service.shutdown().await?;
        }
        self.registry_task.abort();
        Ok(())
    }
}

/// A service of the shop behind the auth service (which the others need first: its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The catalog.
    Product,
    /// Stock and reservations.
    Inventory,
    /// Charges.
    Payment,
    /// Orders.
    Order,
    /// Notifications from events.
    Notification,
}

impl Service {
    /// Every one, in the order they start.
    pub const ALL: [Service; 5] = [
        Service::Product,
        Service::Inventory,
        Service::Payment,
        Service::Order,
        Service::Notification,
    ];

    /// Its service ID.
    pub fn id(self) -> &'static str {
        match self {
            Service::Product => "product-service",
            Service::Inventory => "inventory-service",
            Service::Payment => "payment-service",
            Service::Order => "order-service",
            Service::Notification => "notification-service",
        }
    }
}

/// A started service, and its bus subscription when it has one.
#[derive(Debug)]
pub struct Started {
    /// The running server.
    pub running: Running,
    /// The notification service's subscription.
    pub subscription: Option<Subscription>,
}

/// Serves `service` on `mesh` (configured with [`service_config`]), its tables in `store`.
pub async fn start_service(
    service: Service,
    mesh: &Mesh,
    store: &Store,
) -> Result<Started, MeshError> {
    let mut subscription = None;
    let running = match service {
        Service::Product => {
            let server = CatalogServer::new(ProductService::new(store));
            mesh.server(server).start().await?
        }
        Service::Inventory => {
            let server = InventoryServer::new(InventoryService::new(store));
            mesh.server(server).start().await?
        }
        Service::Payment => {
            let server = PaymentsServer::new(PaymentService::new(store, mesh.bus().await?));
            mesh.server(server).start().await?
        }
        Service::Order => {
            let server = OrdersServer::new(OrderService::new(mesh, store, mesh.bus().await?));
            mesh.server(server).start().await?
        }
        Service::Notification => {
            let notifications = NotificationService::new(store);
            subscription = Some(notifications.subscribe(&mesh.bus().await?).await?);
            // The contract's routes and the WebSocket beside them.
            mesh.server(notifications).start().await?
        }
    };
    Ok(Started {
        running,
        subscription,
    })
}

/// Serves the gateway on `mesh`, verifying tokens with the keys at `jwks_url`.
pub async fn start_gateway(mesh: &Mesh, jwks_url: &str) -> Result<Running, MeshError> {
    let routes = gateway_routes(jwks_url, mesh.redis_url()?.as_deref())?;
    let gateway = Gateway::new(routes, mesh)?;
    mesh.server(gateway.clone()).relay(gateway).start().await
}

/// The gateway's routes, verifying tokens with the keys at `jwks_url`; rate limits and the
/// token cache in Redis when `redis` is set.
fn gateway_routes(jwks_url: &str, redis: Option<&str>) -> Result<GatewayConfig, MeshError> {
    let mut yaml = GATEWAY_ROUTES.replace("{jwks_url}", jwks_url);
    if let Some(url) = redis {
        yaml.push_str(&format!("redis:\n  url: \"{url}\"\n"));
    }
    GatewayConfig::from_yaml(&yaml)
}

/// Writes the built-in configuration into a directory of this process's own.
fn built_in_config() -> Result<std::path::PathBuf, MeshError> {
    let dir = std::env::temp_dir().join(format!("shop-config-{}", std::process::id()));
    let failed = |e: std::io::Error| {
        MeshError::new(
            ErrorKind::Config,
            format!("the built-in configuration: {e}"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    for (file, text) in BUILT_IN_CONFIG {
        std::fs::write(dir.join(file), text).map_err(failed)?;
    }
    Ok(dir)
}

/// Serves the registry's API on `addr`, with the config server reading [`CONFIG_DIR`] (or
/// `SHOP_CONFIG_DIR` of `env`) and publishing its refreshes on `bus`.
pub async fn serve_registry(
    addr: SocketAddr,
    registry: Arc<Registry>,
    bus: Arc<dyn Bus>,
    env: &[(String, String)],
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), MeshError> {
    let dir = match env.iter().find(|(key, _)| key == "SHOP_CONFIG_DIR") {
        Some((_, dir)) => std::path::PathBuf::from(dir),
        None if std::path::Path::new(CONFIG_DIR).is_dir() => CONFIG_DIR.into(),
        None => built_in_config()?,
    };
    let config = ConfigServer::open(&dir, None)
        .map_err(|e| MeshError::new(ErrorKind::Config, format!("the config server: {e}")))?
        .with_bus(bus);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        MeshError::new(
            ErrorKind::Config,
            format!("binding the registry's address {addr}: {e}"),
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| MeshError::new(ErrorKind::Internal, e.to_string()))?;
    let router = mesh::registry_server::api::router_with(registry, Some(Arc::new(config)));
    let task = tokio::spawn(mesh::registry_server::serve_router(
        listener,
        router,
        std::future::pending(),
    ));
    Ok((addr, task))
}

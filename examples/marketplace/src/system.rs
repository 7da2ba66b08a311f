//! The whole marketplace in one process: an embedded registry, the eight services each as its
//! own mesh service (its own port, registration, server layers and clients), the gateway in
//! front. Every service verifies the user's token (`server.auth`) and the gateway's proof
//! (`server.edge`), so none answers a request sent to it directly. On embedded defaults the
//! services share one in-process bus; `MESH_BUS_URL`, `MESH_REDIS_URL` and `DATABASE_URL` move
//! them to RabbitMQ, Redis and PostgreSQL.

use std::{net::SocketAddr, sync::Arc};

use mesh::{
    MeshError,
    auth::edge::EdgeKeyPair,
    bus::Subscription,
    gateway::{Gateway, GatewayConfig},
    registry_server::Registry,
    runtime::Running,
};
use serde_json::{Value, json};
use shop::{embedded::Embedded, store::Store};

use crate::{
    api::{GigsServer, NotificationsServer, OrdersServer, ReviewsServer, UsersServer},
    auth::{AUDIENCE, Auth, ISSUER},
    chat::ChatService,
    gigs::GigsService,
    notification::NotificationService,
    orders::OrdersService,
    reviews::ReviewsService,
    users::UsersService,
};

/// The gateway's routes, with `{jwks_url}` and `{edge_key}` to fill in.
const GATEWAY_ROUTES: &str = include_str!("gateway.yaml");

/// How the marketplace is started.
#[derive(Debug, Clone)]
pub struct MarketplaceOptions {
    /// Where the gateway listens (port 0: any free port).
    pub gateway_addr: SocketAddr,
    /// The environment the services' configuration reads (`MESH_BUS_URL`, `MESH_REDIS_URL`,
    /// `DATABASE_URL`, any `MESH_*` key), and `MARKETPLACE_NAMESPACE` (`marketplace` by
    /// default), which prefixes the tables and the Redis keys.
    pub env: Vec<(String, String)>,
}

/// The running marketplace.
pub struct Marketplace {
    /// Where the gateway listens: the only address a client needs.
    pub gateway: SocketAddr,
    /// Each service's own address, by service ID (to show that they refuse direct requests).
    pub services: Vec<(String, SocketAddr)>,
    /// The embedded registry.
    pub registry: Arc<Registry>,
    running: Vec<Running>,
    subscriptions: Vec<Subscription>,
}

impl std::fmt::Debug for Marketplace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marketplace")
            .field("gateway", &self.gateway)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Marketplace {
    /// Starts the registry, the services and the gateway.
    pub async fn start(options: MarketplaceOptions) -> Result<Marketplace, MeshError> {
        let embedded = Embedded::new("marketplace", options.env);
        let namespace = embedded
            .var("MARKETPLACE_NAMESPACE")
            .unwrap_or_else(|| "marketplace".into());
        let store = match embedded.var("DATABASE_URL") {
            Some(url) => Store::postgres(&url, &namespace).await?,
            None => Store::memory(),
        };
        // The gateway signs with the private key; the services verify with the public one.
        let edge = EdgeKeyPair::generate()?;
        let mesh = |name: &'static str, config: Value| embedded.mesh(name, config);
        let edge_only = json!({"jwt": {
            "public_key": edge.public_pem, "issuer": "mesh-gateway", "audience": "mesh-edge",
        }});
        let mut running = Vec::new();
        let mut subscriptions = Vec::new();

        // The auth service first: the others verify tokens with its keys.
        let mut auth_config = json!({"server": {"edge": edge_only.clone()}});
        auth_config["server"]["edge"]["public"] = json!(["GET /.well-known/jwks.json"]);
        let auth_mesh = mesh("auth-service", auth_config).await?;
        let auth = Auth::new(&auth_mesh, &store).await?;
        running.push(auth_mesh.server(auth.router()).start().await?);
        let jwks_url = format!("http://{}/.well-known/jwks.json", running[0].local_addr());
        let service_config = json!({"server": {
            "auth": {"jwt": {"jwks_url": jwks_url, "issuer": ISSUER, "audience": AUDIENCE}},
            "edge": edge_only,
        }});

        let users_mesh = mesh("users-service", service_config.clone()).await?;
        let users = UsersService::new(&users_mesh, &store).await?;
        subscriptions.push(users.follow_signups().await?);
        running.push(users_mesh.server(UsersServer::new(users)).start().await?);

        let gigs_mesh = mesh("gigs-service", service_config.clone()).await?;
        let gigs = GigsService::new(&gigs_mesh, &store, &namespace).await?;
        subscriptions.extend(gigs.follow().await?);
        running.push(gigs_mesh.server(GigsServer::new(gigs)).start().await?);

        let orders_mesh = mesh("orders-service", service_config.clone()).await?;
        let orders = OrdersService::new(&orders_mesh, &store).await?;
        running.push(
            orders_mesh
                .server(OrdersServer::new(orders))
                .start()
                .await?,
        );

        let reviews_mesh = mesh("reviews-service", service_config.clone()).await?;
        let reviews = ReviewsService::new(&reviews_mesh, &store).await?;
        running.push(
            reviews_mesh
                .server(ReviewsServer::new(reviews))
                .start()
                .await?,
        );

        let chat_mesh = mesh("chat-service", service_config.clone()).await?;
        let chat = ChatService::new(&chat_mesh, &store).await?;
        subscriptions.push(chat.follow_signups().await?);
        running.push(chat_mesh.server(chat).start().await?);

        let notification_mesh = mesh("notification-service", service_config).await?;
        let notifications = NotificationService::new(&notification_mesh, &store).await?;
        subscriptions.push(notifications.follow().await?);
        running.push(
            notification_mesh
                .server(NotificationsServer::new(notifications))
                .start()
                .await?,
        );

        let gateway_mesh = mesh(
            "gateway",
            json!({
                "server": {"address": options.gateway_addr.to_string()},
                "registry": {"register": false},
                // Its health and metrics on a local port of their own, not at the edge.
                "management": {"address": "127.0.0.1:0"},
            }),
        )
        .await?;
        let routes = gateway_routes(&jwks_url, &edge.private_pem, gateway_mesh.redis_url()?)?;
        let gateway = Gateway::new(routes, &gateway_mesh)?;
        running.push(
            gateway_mesh
                .server(gateway.clone())
                .relay(gateway)
                .start()
                .await?,
        );
        let services = running
            .iter()
            .map(|service| (service.mesh().name().to_string(), service.local_addr()))
            .collect();
        Ok(Marketplace {
            gateway: running[running.len() - 1].local_addr(),
            services,
            registry: embedded.registry.clone(),
            running,
            subscriptions,
        })
    }

    /// The address of the service `id`, as registered.
    pub fn service(&self, id: &str) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, addr)| *addr)
    }

    /// Stops the gateway first, then every service (each leaving the registry and draining).
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        self.subscriptions.clear();
        while let Some(service) = self.running.pop() {
            service.shutdown().await?;
        }
        Ok(())
    }
}

/// The gateway's routes: tokens verified with the keys at `jwks_url`, the proof signed with
/// `edge_key`; rate limits and the token cache in Redis when `redis` is set.
fn gateway_routes(
    jwks_url: &str,
    edge_key: &str,
    redis: Option<String>,
) -> Result<GatewayConfig, MeshError> {
    let mut yaml = GATEWAY_ROUTES
        .replace("{jwks_url}", jwks_url)
        .replace("{edge_key}", &edge_key.replace('\n', "\\n"));
    if let Some(url) = redis {
        yaml.push_str(&format!("redis:\n  url: \"{url}\"\n"));
    }
    GatewayConfig::from_yaml(&yaml)
}

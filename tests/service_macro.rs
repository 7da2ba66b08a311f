//! `#[mesh::service]` round trips over real sockets: every method, path and query parameters,
//! bodies, user errors with their status, failover to a second instance.

mod support;

use http::StatusCode;
use mesh::error::{ErrorKind, MeshError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{Killable, registry, start};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stock {
    sku: String,
    count: u32,
    warehouse: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Filter {
    warehouse: Option<String>,
    min: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Restock {
    count: u32,
}

/// An application error with its own statuses, round-tripping through the client.
#[derive(Debug, PartialEq)]
enum InventoryError {
    UnknownSku(String),
    SoldOut,
    Mesh(ErrorKind, StatusCode),
}

impl From<InventoryError> for MeshError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::UnknownSku(sku) => {
                MeshError::custom(StatusCode::NOT_FOUND, "unknown_sku", sku)
            }
            InventoryError::SoldOut => {
                MeshError::custom(StatusCode::CONFLICT, "sold_out", "nothing left")
            }
            InventoryError::Mesh(kind, _) => MeshError::new(kind, "mesh"),
        }
    }
}

impl From<MeshError> for InventoryError {
    fn from(error: MeshError) -> Self {
        match error.upstream_code().as_deref() {
            Some("unknown_sku") => InventoryError::UnknownSku(
                serde_json::from_slice::<serde_json::Value>(error.upstream_body().unwrap())
                    .unwrap()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            Some("sold_out") => InventoryError::SoldOut,
            _ => InventoryError::Mesh(error.kind(), error.status()),
        }
    }
}

/// The inventory of the shop.
#[mesh::service(name = "inventory")]
trait Inventory {
    /// One SKU's stock.
    #[get("/inventory/{sku}")]
    async fn stock(&self, sku: String) -> Result<Stock, InventoryError>;

    /// Stocks matching a filter.
    #[get("/inventory", public)]
    async fn list(&self, #[query] filter: Filter) -> Result<Vec<Stock>, MeshError>;

    /// Adds stock; safe to retry, since the count is absolute.
    #[post("/inventory/{sku}/restock", idempotent, timeout = "5s")]
    async fn restock(&self, sku: String, order: Restock) -> Result<Stock, InventoryError>;

    /// Replaces a SKU's record.
    #[put("/inventory/{sku}")]
    async fn replace(&self, sku: String, stock: Stock) -> Result<Stock, MeshError>;

    /// Moves a SKU to a warehouse.
    #[patch("/inventory/{sku}/warehouse/{warehouse}")]
    async fn relocate(&self, sku: String, warehouse: String) -> Result<Stock, MeshError>;

    /// Takes one item out.
    #[delete("/inventory/{sku}/one")]
    async fn take(&self, sku: String) -> Result<u32, InventoryError>;
}

struct Shop {
    name: &'static str,
}

impl Inventory for Shop {
    async fn stock(&self, sku: String) -> Result<Stock, InventoryError> {
        if sku == "ghost" {
            return Err(InventoryError::UnknownSku(sku));
        }
        Ok(Stock {
            sku,
            count: 3,
            warehouse: Some(self.name.into()),
        })
    }

    async fn list(&self, filter: Filter) -> Result<Vec<Stock>, MeshError> {
        Ok(vec![Stock {
            sku: format!("min-{}", filter.min.unwrap_or(0)),
            count: 1,
            warehouse: filter.warehouse,
        }])
    }

    async fn restock(&self, sku: String, order: Restock) -> Result<Stock, InventoryError> {
        Ok(Stock {
            sku,
            count: order.count,
            warehouse: None,
        })
    }

    async fn replace(&self, sku: String, stock: Stock) -> Result<Stock, MeshError> {
        if sku != stock.sku {
            return Err(MeshError::new(ErrorKind::BadRequest, "sku mismatch"));
        }
        Ok(stock)
    }

    async fn relocate(&self, sku: String, warehouse: String) -> Result<Stock, MeshError> {
        Ok(Stock {
            sku,
            count: 0,
            warehouse: Some(warehouse),
        })
    }

    async fn take(&self, sku: String) -> Result<u32, InventoryError> {
        match sku.as_str() {
            "last" => Err(InventoryError::SoldOut),
            _ => Ok(2),
        }
    }
}

/// The inventory service, its server bringing its API along, configured by `config`.
async fn described(config: serde_json::Value) -> mesh::runtime::Running {
    mesh::Mesh::builder("inventory")
        .config(mesh::config::MeshConfig::from_value("inventory", config))
        .registry(registry())
        .build()
        .await
        .unwrap()
        .server(InventoryServer::new(Shop { name: "north" }))
        .start()
        .await
        .unwrap()
}

fn shop(name: &'static str) -> mesh::axum::Router {
    InventoryServer::new(Shop { name }).into_router()
}

#[tokio::test]
async fn every_method_round_trips_through_the_typed_client() {
    let registry = registry();
    let _inventory = start("inventory", shop("north"), &registry, json!({})).await;
    let caller = support::mesh("caller", &registry, json!({})).await;
    let client = InventoryClient::new(&caller);

    let stock = client.stock("sku 1/é".into()).await.unwrap();
    assert_eq!(
        stock.sku, "sku 1/é",
        "path parameters are encoded and decoded"
    );
    assert_eq!(stock.warehouse.as_deref(), Some("north"));

    let listed = client
        .list(Filter {
            warehouse: Some("south & co".into()),
            min: Some(4),
        })
        .await
        .unwrap();
    assert_eq!(listed[0].sku, "min-4");
    assert_eq!(listed[0].warehouse.as_deref(), Some("south & co"));
    let empty = client
        .list(Filter {
            warehouse: None,
            min: None,
        })
        .await
        .unwrap();
    assert_eq!(empty[0].sku, "min-0");

    assert_eq!(
        client
            .restock("a".into(), Restock { count: 9 })
            .await
            .unwrap()
            .count,
        9
    );
    let record = Stock {
        sku: "b".into(),
        count: 5,
        warehouse: None,
    };
    assert_eq!(
        client.replace("b".into(), record.clone()).await.unwrap(),
        record
    );
    let error = client.replace("c".into(), record).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        client
            .relocate("d".into(), "east".into())
            .await
            .unwrap()
            .warehouse
            .as_deref(),
        Some("east")
    );
    assert_eq!(client.take("e".into()).await.unwrap(), 2);
}

#[tokio::test]
async fn user_errors_keep_their_status_and_come_back_as_themselves() {
    let registry = registry();
    let inventory = start("inventory", shop("north"), &registry, json!({})).await;
    let caller = support::mesh("caller", &registry, json!({})).await;
    let client = InventoryClient::new(&caller);

    assert_eq!(
        client.stock("ghost".into()).await.unwrap_err(),
        InventoryError::UnknownSku("ghost".into())
    );
    assert_eq!(
        client.take("last".into()).await.unwrap_err(),
        InventoryError::SoldOut
    );

    let (status, body) = support::get(inventory.local_addr(), "/inventory/ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["kind"], "unknown_sku");
    let (status, _, _) = support::call(
        inventory.local_addr(),
        "DELETE",
        "/inventory/last/one",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_call_fails_over_to_a_second_instance() {
    let registry = registry();
    let north = Killable::start("inventory", shop("north"), &registry);
    let _south = start("inventory", shop("south"), &registry, json!({})).await;
    let discovery = registry.discover("inventory").await;
    let mut watch = discovery.clone();
    while watch.snapshot().len() < 2 {
        watch.changed().await;
    }
    let caller = support::mesh(
        "caller",
        &registry,
        json!({"clients": {"inventory": {"retry": {"initial_backoff": "1ms", "max_backoff": "2ms"}}}}),
    )
    .await;
    let client = InventoryClient::new(&caller);
    north.kill();
    for _ in 0..20 {
        let stock = client.stock("x".into()).await.unwrap();
        assert_eq!(stock.warehouse.as_deref(), Some("south"));
    }
}

#[tokio::test]
async fn the_metadata_lists_every_route_and_registration_publishes_it() {
    let routes = InventoryServer::<Shop>::METADATA.routes;
    assert_eq!(InventoryClient::SERVICE, "inventory");
    assert_eq!(routes.len(), 6);
    assert_eq!(
        (routes[0].method, routes[0].path),
        ("GET", "/inventory/{sku}")
    );
    assert!(routes[1].public && !routes[0].public);
    assert!(routes[2].idempotent, "POST marked idempotent");
    assert!(!routes[4].idempotent, "PATCH is not idempotent by default");

    let running = described(json!({})).await;
    let published = &running.instance().unwrap().metadata["routes"];
    let published: serde_json::Value = serde_json::from_str(published).unwrap();
    assert_eq!(
        published[1],
        json!({"method": "GET", "path": "/inventory", "public": true, "idempotent": true})
    );
}

#[tokio::test]
async fn public_routes_need_no_token_when_the_service_checks_tokens() {
    let running = described(
        json!({"server": {"auth": {"jwt": {"secret": "a shared secret of at least thirty-two bytes"}}}}),
    )
    .await;
    let addr = running.local_addr();
    assert_eq!(
        support::get(addr, "/inventory?min=1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        support::get(addr, "/inventory/a").await.0,
        StatusCode::UNAUTHORIZED
    );
}

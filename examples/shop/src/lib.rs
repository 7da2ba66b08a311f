//! The online shop of the reference designs, built on mesh alone: an embedded registry, an
//! edge gateway, and the auth, product, inventory, order, payment and notification services,
//! each an ordinary mesh service. `docs/shop.md` walks through it.
//!
//! ```no_run
//! # async fn run() -> Result<(), mesh::MeshError> {
//! use shop::{Shop, ShopOptions};
//! let shop = Shop::start(ShopOptions {
//!     gateway_addr: "127.0.0.1:8080".parse().unwrap(),
//!     registry_addr: None,
//!     admin_password: "a long admin password".into(),
//!     env: std::env::vars().collect(),
//! })
//! .await?;
//! println!("the shop answers at http://{}", shop.gateway);
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod demo;
pub mod embedded;
pub mod inventory;
pub mod notification;
pub mod order;
pub mod payment;
pub mod process;
pub mod product;
pub mod shop;
pub mod store;

pub use self::shop::{Shop, ShopOptions};

//! The freelance marketplace of the reference designs (`004` in `../shared/reference`), built
//! on mesh alone: a gateway in front of the auth, users, gigs, orders, reviews, chat and
//! notification services. The gateway keeps the token in an HttpOnly cookie, signs every
//! request it lets in, and the services refuse any request without that proof; buyers and
//! sellers chat over Socket.IO through the gateway; the services tell each other what happened
//! with events; the gigs service caches sellers' profiles with `mesh::cache`.
//! `docs/marketplace.md` walks through it.
//!
//! ```no_run
//! use marketplace::{Marketplace, MarketplaceOptions, demo};
//!
//! # async fn run() -> Result<(), mesh::MeshError> {
//! let market = Marketplace::start(MarketplaceOptions {
//!     gateway_addr: "127.0.0.1:0".parse().unwrap(),
//!     env: std::env::vars().collect(),
//! })
//! .await?;
//! let outcome = demo::run(&market).await;
//! market.shutdown().await?;
//! # let _ = outcome;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod chat;
pub mod demo;
pub mod events;
pub mod gigs;
pub mod notification;
pub mod orders;
pub mod reviews;
pub mod sessions;
pub mod system;
pub mod users;

pub use self::system::{Marketplace, MarketplaceOptions};

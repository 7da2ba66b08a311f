//! The shop's contracts: one `#[mesh::service]` trait per service, and the events on the bus.
//! Each trait is both the service's router and the typed client the others call it with.

use mesh::{EventType, MeshError};
use serde::{Deserialize, Serialize};

/// A product of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its stock-keeping unit, the catalog's key.
    pub sku: String,
    /// What customers see.
    pub name: String,
    /// Its price in cents.
    pub price_cents: u64,
}

/// The catalog: anyone reads it, admins write it.
#[mesh::service(name = "product-service")]
pub trait Catalog {
    /// Every product.
    #[get("/products", public)]
    async fn list(&self) -> Result<Vec<Product>, MeshError>;

    /// One product.
    #[get("/products/{sku}", public)]
    async fn product(&self, sku: String) -> Result<Product, MeshError>;

    /// Creates or replaces a product (admin).
    #[put("/products/{sku}")]
    async fn put(&self, sku: String, product: Product) -> Result<Product, MeshError>;
}

/// How many of a product are on hand, and how many of those are reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// The product.
    pub sku: String,
    /// On hand and not reserved.
    pub available: u32,
    /// Reserved by orders not yet paid or failed.
    pub reserved: u32,
}

/// Sets a product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    /// How many are available from now on.
    pub available: u32,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Stock held for an order, all lines or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order the stock is held for: reserving twice for one order holds it once.
    pub order_id: String,
    /// What to hold.
    pub lines: Vec<Line>,
}

/// Stock, reserved synchronously by the order service and released when an order fails.
#[mesh::service(name = "inventory-service")]
pub trait Inventory {
    /// A product's stock.
    #[get("/inventory/{sku}")]
    async fn stock(&self, sku: String) -> Result<Stock, MeshError>;

    /// Sets a product's available count (admin).
    #[put("/inventory/{sku}")]
    async fn restock(&self, sku: String, restock: Restock) -> Result<Stock, MeshError>;

    /// Holds stock for an order: every line or, when one is short, none (`409 out_of_stock`).
    #[post("/inventory/reservations", idempotent)]
    async fn reserve(&self, reservation: Reservation) -> Result<Reservation, MeshError>;

    /// Gives an order's held stock back.
    #[delete("/inventory/reservations/{order_id}")]
    async fn release(&self, order_id: String) -> Result<(), MeshError>;
}

/// A charge for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The order paid for.
    pub order_id: String,
    /// The amount in cents.
    pub amount_cents: u64,
    /// Charging twice with one key charges once: the client may retry.
    pub idempotency_key: String,
}

/// A completed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment's ID.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: String,
    /// The amount in cents.
    pub amount_cents: u64,
}

/// Switches the simulated payment provider's outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Whether charges fail.
    pub on: bool,
}

/// What the payment service has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentStats {
    /// Charges that reached the service.
    pub attempted: u64,
    /// Charges that failed because of the outage.
    pub failed: u64,
    /// Charges completed (repeats of a completed charge not counted).
    pub completed: u64,
}

/// Charges for orders; an outage can be switched on to watch the order service's circuit open.
#[mesh::service(name = "payment-service")]
pub trait Payments {
    /// Charges once per idempotency key.
    #[post("/payments", idempotent, timeout = "2s")]
    async fn charge(&self, charge: Charge) -> Result<Payment, MeshError>;

    /// Switches the outage (admin).
    #[post("/admin/payment/outage")]
    async fn outage(&self, outage: Outage) -> Result<Outage, MeshError>;

    /// What the service has seen (admin).
    #[get("/admin/payment/stats")]
    async fn stats(&self) -> Result<PaymentStats, MeshError>;
}

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Paid: done.
    Paid,
    /// Stock held, payment not reachable: it will be charged once payment recovers.
    PendingPayment,
    /// Refused (out of stock, payment declined): its stock released.
    Failed,
}

/// What a customer orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// What to buy.
    pub lines: Vec<Line>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Its ID.
    pub id: String,
    /// Who placed it (the token's subject).
    pub customer: String,
    /// What was bought.
    pub lines: Vec<Line>,
    /// The total in cents.
    pub total_cents: u64,
    /// Where it is.
    pub status: OrderStatus,
    /// Why it is not paid, when it is not.
    pub reason: Option<String>,
}

/// Places orders: checks the catalog, holds stock, charges, and tells the others.
#[mesh::service(name = "order-service")]
pub trait Orders {
    /// Places an order for the caller.
    #[post("/orders")]
    async fn place(&self, order: NewOrder) -> Result<Order, MeshError>;

    /// One of the caller's orders (an admin sees any).
    #[get("/orders/{id}")]
    async fn order(&self, id: String) -> Result<Order, MeshError>;

    /// The caller's orders.
    #[get("/orders")]
    async fn mine(&self) -> Result<Vec<Order>, MeshError>;

    /// Charges one of the caller's `PENDING_PAYMENT` orders again (its idempotency key is the
    /// order, so a charge that went through before is not made twice); `409` for an order
    /// that is not pending.
    #[post("/orders/{id}/payment")]
    async fn retry_payment(&self, id: String) -> Result<Order, MeshError>;
}

/// A message for a user, from an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The event it came from (so a redelivered event is not told twice).
    pub event_id: String,
    /// The event's type (`order.paid`, …).
    pub kind: String,
    /// What the user reads.
    pub text: String,
}

/// Tells users what happened to their orders and payments.
#[mesh::service(name = "notification-service")]
pub trait Notifications {
    /// The caller's notifications, oldest first.
    #[get("/notifications")]
    async fn mine(&self) -> Result<Vec<Notification>, MeshError>;
}

/// An order was placed (paid or not yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, EventType)]
#[event(type = "order.placed")]
pub struct OrderPlaced {
    /// The order.
    pub order: Order,
}

/// An order was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, EventType)]
#[event(type = "order.paid")]
pub struct OrderPaid {
    /// The order.
    pub order: Order,
}

/// An order failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, EventType)]
#[event(type = "order.failed")]
pub struct OrderFailed {
    /// The order.
    pub order: Order,
}

/// A payment completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, EventType)]
#[event(type = "payment.completed")]
pub struct PaymentCompleted {
    /// The payment.
    pub payment: Payment,
    /// Who paid.
    pub customer: String,
}

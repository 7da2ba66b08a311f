//! The order service: prices an order from the catalog, holds its stock, charges it, and tells
//! the others. Payment goes through a circuit breaker (`clients.payment-service` in the shop's
//! configuration): when payment keeps failing the circuit opens, and the order falls back to
//! `PENDING_PAYMENT` with its stock held instead of failing.

use std::sync::Arc;

use mesh::{
    Mesh,
    auth::Caller,
    bus::{Bus, Event},
    error::{ErrorKind, MeshError},
};

use crate::{
    api::{
        CatalogClient, Charge, InventoryClient, Line, NewOrder, Order, OrderFailed, OrderPaid,
        OrderPlaced, OrderStatus, Orders, PaymentsClient, Reservation,
    },
    store::{Store, Table},
};

/// The most lines an order may have.
const MAX_LINES: usize = 50;

/// Orders, and the clients of the services an order needs.
#[derive(Clone)]
pub struct OrderService {
    orders: Arc<Table<Order>>,
    catalog: CatalogClient,
    inventory: InventoryClient,
    payments: PaymentsClient,
    bus: Arc<dyn Bus>,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService").finish_non_exhaustive()
    }
}

impl OrderService {
    /// The service, its table in `store`, calling the others through `mesh` and telling
    /// `bus`.
    pub fn new(mesh: &Mesh, store: &Store, bus: Arc<dyn Bus>) -> Self {
        Self {
            orders: Arc::new(store.table("order-service", "orders")),
            catalog: CatalogClient::new(mesh),
            inventory: InventoryClient::new(mesh),
            payments: PaymentsClient::new(mesh),
            bus,
        }
    }

    async fn publish<T: mesh::bus::EventType>(
        &self,
        order: &Order,
        event: &T,
    ) -> Result<(), MeshError> {
        let mut event = Event::new("order-service", event)?.with_subject(order.customer.clone());
        // One ID per order and kind of event: told twice (two payments retried at once, say),
        // the consumers' dedupe tells it once.
        event.id = format!("{}/{}", T::TYPE, order.id);
        self.bus.publish(event).await?;
        Ok(())
    }

    /// Tells the others how a charge ended: `order.paid` or `order.failed` (nothing while it
    /// is pending).
    async fn tell_outcome(&self, order: &Order) -> Result<(), MeshError> {
        match order.status {
            OrderStatus::Paid => {
                self.publish(
                    order,
                    &OrderPaid {
                        order: order.clone(),
                    },
                )
                .await
            }
            OrderStatus::Failed => {
                self.publish(
                    order,
                    &OrderFailed {
                        order: order.clone(),
                    },
                )
                .await
            }
            OrderStatus::PendingPayment => Ok(()),
        }
    }

    /// Prices the lines from the catalog.
    async fn total(&self, lines: &[Line]) -> Result<u64, MeshError> {
        let mut total = 0u64;
        for line in lines {
            let product = self.catalog.product(line.sku.clone()).await?;
            total =
                total.saturating_add(product.price_cents.saturating_mul(u64::from(line.quantity)));
        }
        Ok(total)
    }

    /// Charges `order`: paid, pending (payment unreachable, stock still held) or failed
    /// (declined, stock released).
    async fn pay(&self, mut order: Order) -> Result<Order, MeshError> {
        let charge = Charge {
            order_id: order.id.clone(),
            amount_cents: order.total_cents,
            idempotency_key: order.id.clone(),
        };
        match self.payments.charge(charge).await {
            Ok(_) => {
                order.status = OrderStatus::Paid;
                order.reason = None;
            }
            Err(error) if unreachable(&error) => {
                // The fallback: the order stands, its payment waits for the provider.
                order.status = OrderStatus::PendingPayment;
                order.reason = Some(format!("payment unavailable ({})", error.kind().as_str()));
            }
            Err(error) => {
                order.status = OrderStatus::Failed;
                order.reason = Some(error.message().to_owned());
                self.inventory.release(order.id.clone()).await?;
            }
        }
        Ok(order)
    }
}

/// Whether a payment error means "not now" rather than "no": an outage on the way (the circuit
/// is open, the call timed out or could not connect), a rate limit, or the provider down.
fn unreachable(error: &MeshError) -> bool {
    error.kind().is_outage()
        || error.kind() == ErrorKind::RateLimited
        || error.status().is_server_error()
}

impl Orders for OrderService {
    async fn place(&self, order: NewOrder) -> Result<Order, MeshError> {
        let customer = Caller::require()?.subject.clone();
        if order.lines.is_empty()
            || order.lines.len() > MAX_LINES
            || order.lines.iter().any(|line| line.quantity == 0)
        {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                format!("an order has 1 to {MAX_LINES} lines, each of at least one item"),
            ));
        }
        let id = format!("ord-{}", mesh::auth::random_token(6)?);
        let total_cents = self.total(&order.lines).await?;
        let mut placed = Order {
            id: id.clone(),
            customer,
            lines: order.lines.clone(),
            total_cents,
            status: OrderStatus::PendingPayment,
            reason: None,
        };
        if let Err(error) = self
            .inventory
            .reserve(Reservation {
                order_id: id.clone(),
                lines: order.lines,
            })
            .await
        {
            placed.status = OrderStatus::Failed;
            placed.reason = Some(error.message().to_owned());
            self.orders.put(&id, placed.clone()).await?;
            self.publish(
                &placed,
                &OrderFailed {
                    order: placed.clone(),
                },
            )
            .await?;
            return Err(error);
        }
        let order = self.pay(placed).await?;
        self.orders.put(&id, order.clone()).await?;
        self.publish(
            &order,
            &OrderPlaced {
                order: order.clone(),
            },
        )
        .await?;
        self.tell_outcome(&order).await?;
        Ok(order)
    }

    async fn order(&self, id: String) -> Result<Order, MeshError> {
        let me = Caller::require()?;
        match self.orders.get(&id).await? {
            Some(order) if order.customer == me.subject || me.has_role("admin") => Ok(order),
            _ => Err(MeshError::new(
                ErrorKind::NotFound,
                format!("no order `{id}`"),
            )),
        }
    }

    async fn retry_payment(&self, id: String) -> Result<Order, MeshError> {
        let order = self.order(id.clone()).await?;
        if order.status != OrderStatus::PendingPayment {
            return Err(MeshError::custom(
                mesh::axum::http::StatusCode::CONFLICT,
                "not_pending",
                format!("order `{id}` is not waiting for its payment"),
            ));
        }
        let order = self.pay(order).await?;
        self.orders.put(&id, order.clone()).await?;
        self.tell_outcome(&order).await?;
        Ok(order)
    }

    async fn mine(&self) -> Result<Vec<Order>, MeshError> {
        let me = Caller::require()?;
        Ok(self
            .orders
            .values()
            .await?
            .into_iter()
            .filter(|order| order.customer == me.subject)
            .collect())
    }
}

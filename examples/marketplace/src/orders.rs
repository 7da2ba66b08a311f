//! The orders service: a buyer orders a gig (read from the gigs service while the order is
//! placed), its seller delivers it; `order.placed` and `order.completed` tell the others.

use std::sync::Arc;

use mesh::{
    Mesh,
    auth::{Caller, random_token},
    bus::Bus,
    error::{ErrorKind, MeshError},
};
use shop::store::{Store, Table};

use crate::{
    api::{
        GigsClient, Order, OrderCompleted, OrderForm, OrderPlaced, OrderStatus, Orders, check_id,
    },
    events::publish,
};

/// The orders.
#[derive(Debug, Clone)]
pub struct OrdersService {
    orders: Arc<Table<Order>>,
    gigs: GigsClient,
    bus: Arc<dyn Bus>,
}

impl OrdersService {
    /// The service on `mesh`, its orders in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        Ok(Self {
            orders: Arc::new(store.table("orders-service", "orders")),
            gigs: GigsClient::new(mesh),
            bus: mesh.bus().await?,
        })
    }

    /// The order `id`, if the caller is its buyer or its seller (anyone else is told it does
    /// not exist).
    async fn mine(&self, id: &str) -> Result<(Order, String), MeshError> {
        let me = Caller::require()?;
        check_id("order", id)?;
        match self.orders.get(id).await? {
            Some(order) if order.buyer == me.subject || order.seller == me.subject => {
                Ok((order, me.subject.clone()))
            }
            _ => Err(MeshError::new(
                ErrorKind::NotFound,
                format!("no order `{id}`"),
            )),
        }
    }
}

impl Orders for OrdersService {
    async fn place(&self, form: OrderForm) -> Result<Order, MeshError> {
        let me = Caller::require()?;
        check_id("gig", &form.gig_id)?;
        // The gigs service's own answer, a 404 among them, is this call's.
        let gig = self.gigs.gig(form.gig_id).await?;
        if gig.seller == me.subject {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a seller does not order their own gig",
            ));
        }
        let order = Order {
            id: random_token(9)?,
            gig_id: gig.id,
            title: gig.title,
            buyer: me.subject.clone(),
            seller: gig.seller,
            price_cents: gig.price_cents,
            status: OrderStatus::Placed,
        };
        self.orders.put(&order.id, order.clone()).await?;
        let placed = OrderPlaced {
            order: order.clone(),
        };
        publish(
            &self.bus,
            "orders-service",
            &order.id,
            &order.seller,
            &placed,
        )
        .await?;
        Ok(order)
    }

    async fn order(&self, id: String) -> Result<Order, MeshError> {
        Ok(self.mine(&id).await?.0)
    }

    async fn complete(&self, id: String) -> Result<Order, MeshError> {
        let (order, me) = self.mine(&id).await?;
        if order.seller != me {
            return Err(MeshError::new(
                ErrorKind::Forbidden,
                "only the seller completes an order",
            ));
        }
        let completed = self
            .orders
            .update(&id, |row| {
                let row = row.as_mut()?;
                row.status = OrderStatus::Completed;
                Some(row.clone())
            })
            .await?
            .ok_or_else(|| MeshError::new(ErrorKind::NotFound, format!("no order `{id}`")))?;
        let told = OrderCompleted {
            order: completed.clone(),
        };
        publish(&self.bus, "orders-service", &id, &completed.buyer, &told).await?;
        Ok(completed)
    }
}

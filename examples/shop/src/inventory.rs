//! The inventory service: stock per product, held for orders all lines or none.

use std::{collections::BTreeMap, sync::Arc};

use mesh::{MeshError, auth::Caller, axum::http::StatusCode};

use crate::{
    api::{Inventory, Reservation, Restock, Stock},
    store::{Store, Table},
};

/// Stock, and what each order holds.
#[derive(Debug, Clone)]
pub struct InventoryService {
    stock: Arc<Table<Stock>>,
    held: Arc<Table<Reservation>>,
}

impl InventoryService {
    /// The inventory, its tables in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            stock: Arc::new(store.table("inventory-service", "stock")),
            held: Arc::new(store.table("inventory-service", "reservations")),
        }
    }
}

impl Inventory for InventoryService {
    async fn stock(&self, sku: String) -> Result<Stock, MeshError> {
        Caller::require()?;
        Ok(self.stock.get(&sku).await?.unwrap_or(Stock {
            sku,
            available: 0,
            reserved: 0,
        }))
    }

    async fn restock(&self, sku: String, restock: Restock) -> Result<Stock, MeshError> {
        Caller::require_role("admin")?;
        let stock = self
            .stock
            .update(&sku.clone(), |row| {
                let stock = row.get_or_insert(Stock {
                    sku,
                    available: 0,
                    reserved: 0,
                });
                stock.available = restock.available;
                stock.clone()
            })
            .await?;
        Ok(stock)
    }

    async fn reserve(&self, reservation: Reservation) -> Result<Reservation, MeshError> {
        Caller::require()?;
        if let Some(held) = self.held.get(&reservation.order_id).await? {
            return Ok(held);
        }
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for line in &reservation.lines {
            *wanted.entry(&line.sku).or_default() += line.quantity;
        }
        self.stock
            .transact(|rows| {
                for (sku, quantity) in &wanted {
                    let available = rows.get(*sku).map_or(0, |stock| stock.available);
                    if available < *quantity {
                        return Err(MeshError::custom(
                            StatusCode::CONFLICT,
                            "out_of_stock",
                            format!("`{sku}`: {available} available, {quantity} wanted"),
                        ));
                    }
                }
                for (sku, quantity) in &wanted {
                    if let Some(stock) = rows.get_mut(*sku) {
                        stock.available -= quantity;
                        stock.reserved += quantity;
                    }
                }
                Ok(())
            })
            .await??;
        self.held
            .put(&reservation.order_id, reservation.clone())
            .await?;
        Ok(reservation)
    }

    async fn release(&self, order_id: String) -> Result<(), MeshError> {
        Caller::require()?;
        let Some(reservation) = self.held.update(&order_id, Option::take).await? else {
            return Ok(());
        };
        self.stock
            .transact(|rows| {
                for line in &reservation.lines {
                    if let Some(stock) = rows.get_mut(&line.sku) {
                        stock.reserved -= line.quantity.min(stock.reserved);
                        stock.available += line.quantity;
                    }
                }
            })
            .await?;
        Ok(())
    }
}

//! The product service: the catalog. Anyone reads it; an admin writes it.

use std::sync::Arc;

use mesh::{
    auth::Caller,
    error::{ErrorKind, MeshError},
};

use crate::{
    api::{Catalog, Product},
    store::{Store, Table},
};

/// The catalog.
#[derive(Debug, Clone)]
pub struct ProductService {
    products: Arc<Table<Product>>,
}

impl ProductService {
    /// The catalog, its table in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            products: Arc::new(store.table("product-service", "products")),
        }
    }
}

impl Catalog for ProductService {
    async fn list(&self) -> Result<Vec<Product>, MeshError> {
        self.products.values().await
    }

    async fn product(&self, sku: String) -> Result<Product, MeshError> {
        self.products
            .get(&sku)
            .await?
            .ok_or_else(|| MeshError::new(ErrorKind::NotFound, format!("no product `{sku}`")))
    }

    async fn put(&self, sku: String, product: Product) -> Result<Product, MeshError> {
        Caller::require_role("admin")?;
        if product.sku != sku || product.name.trim().is_empty() {
            return Err(MeshError::new(
                ErrorKind::BadRequest,
                "a product needs a name, and its sku as in the path",
            ));
        }
        self.products.put(&sku, product.clone()).await?;
        Ok(product)
    }
}

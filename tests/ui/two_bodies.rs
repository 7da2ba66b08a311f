use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[post("/stock/{sku}")]
    async fn restock(&self, sku: String, count: u32, note: String) -> Result<u32, MeshError>;
}

fn main() {}

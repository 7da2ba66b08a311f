use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock/{sku}")]
    async fn stock(&self, sku: String, warehouse: String) -> Result<u32, MeshError>;
}

fn main() {}

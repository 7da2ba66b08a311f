use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock/{sku}")]
    async fn stock(&self, sku: String) -> Result<u32, MeshError>;

    #[get("/stock/{id}")]
    async fn by_id(&self, id: String) -> Result<u32, MeshError>;
}

fn main() {}

use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock")]
    async fn stock(&self, #[body] filter: String) -> Result<u32, MeshError>;
}

fn main() {}

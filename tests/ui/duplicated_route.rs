use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock")]
    #[post("/stock")]
    async fn stock(&self) -> Result<u32, MeshError>;
}

fn main() {}

use mesh::error::MeshError;

#[mesh::service]
trait Inventory {
    #[get("/stock")]
    async fn stock(&self) -> Result<u32, MeshError>;
}

fn main() {}

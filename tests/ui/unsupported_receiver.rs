use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock")]
    async fn stock(&mut self) -> Result<u32, MeshError>;
}

fn main() {}

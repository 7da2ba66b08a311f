use mesh::error::MeshError;

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock")]
    fn stock(&self) -> Result<u32, MeshError>;
}

fn main() {}

#[mesh::service(name = "inventory")]
trait Inventory {
    #[get("/stock")]
    async fn stock(&self) -> u32;
}

fn main() {}

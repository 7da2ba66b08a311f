pub async fn run(_m: &crate::Marketplace) -> Result<(), String> { Ok(()) }

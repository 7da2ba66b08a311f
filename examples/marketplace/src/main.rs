//! `cargo run --release -p marketplace`: the whole marketplace in one process on embedded
//! defaults, its gateway on 127.0.0.1:8080, until Ctrl-C; `-- --demo` runs the scripted
//! scenario against it (any free ports) and exits 0 only if every step behaved.
//! `MESH_BUS_URL`, `MESH_REDIS_URL` and `DATABASE_URL` move it to RabbitMQ, Redis and
//! PostgreSQL.

use marketplace::{Marketplace, MarketplaceOptions, demo};

#[tokio::main]
async fn main() {
    if let Err(error) = mesh::observe::logging::init("marketplace", "warn,marketplace=info") {
        eprintln!("marketplace: logging: {error}");
    }
    let demo = std::env::args().skip(1).any(|arg| arg == "--demo");
    let gateway_addr = if demo {
        ([127, 0, 0, 1], 0).into()
    } else {
        ([127, 0, 0, 1], 8080).into()
    };
    let options = MarketplaceOptions {
        gateway_addr,
        env: std::env::vars().collect(),
    };
    let started = std::time::Instant::now();
    let market = match Marketplace::start(options).await {
        Ok(market) => market,
        Err(error) => {
            eprintln!("marketplace: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "The marketplace answers at http://{} (started in {} ms); Socket.IO at /socket.io/.",
        market.gateway,
        started.elapsed().as_millis()
    );
    let outcome = if demo {
        demo::run(&market).await
    } else {
        println!("Ctrl-C stops.");
        mesh::server::shutdown_signal().await;
        Ok(())
    };
    let stopped = market.shutdown().await;
    if let Err(failed) = outcome {
        eprintln!("\nA step did not behave: {failed}");
        std::process::exit(1);
    }
    if let Err(error) = stopped {
        eprintln!("marketplace: stopping: {error}");
        std::process::exit(1);
    }
}

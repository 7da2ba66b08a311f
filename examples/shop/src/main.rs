//! `cargo run --release -p shop`: the whole shop in one process on embedded defaults, until
//! Ctrl-C. `-- --demo` runs the scripted scenario against it through the gateway and exits 0
//! only if every step behaved. `MESH_BUS_URL`, `MESH_REDIS_URL` move it to RabbitMQ and Redis.

use std::net::SocketAddr;

use shop::{Shop, ShopOptions};

/// What the command line asks for.
struct Args {
    demo: bool,
    service: Option<String>,
    gateway: SocketAddr,
    registry: SocketAddr,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        demo: false,
        service: None,
        gateway: "127.0.0.1:8080".parse().map_err(|_| "address")?,
        registry: "127.0.0.1:8761".parse().map_err(|_| "address")?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut address = |what: &str| -> Result<SocketAddr, String> {
            let value = args.next().ok_or(format!("{what} needs host:port"))?;
            value
                .parse()
                .map_err(|_| format!("{what}: `{value}` is not host:port"))
        };
        match arg.as_str() {
            "--demo" => parsed.demo = true,
            "--service" => {
                parsed.service = Some(args.next().ok_or("--service needs a name")?);
            }
            "--gateway" => parsed.gateway = address("--gateway")?,
            "--registry" => parsed.registry = address("--registry")?,
            "--help" | "-h" => {
                println!(
                    "usage: shop [--demo] [--gateway 127.0.0.1:8080] [--registry 127.0.0.1:8761]\n       \
                     shop --service registry|gateway|auth|product|inventory|payment|order|notification\n\n\
                     Runs the whole shop in one process, or one service of it as its own\n\
                     process (registry first, then auth). --demo runs the scripted scenario\n\
                     against it (any free ports) and exits 0 only if every step behaved.\n\
                     MESH_BUS_URL=amqp://… and MESH_REDIS_URL=redis://… move its events to\n\
                     RabbitMQ and its shared state to Redis."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() {
    if let Err(error) = mesh::observe::logging::init("shop", "warn,shop=info") {
        eprintln!("shop: logging: {error}");
    }
    let args = match args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("shop: {error}");
            std::process::exit(2);
        }
    };
    let admin_password = match std::env::var("SHOP_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => match mesh::auth::random_token(12) {
            Ok(password) => password,
            Err(error) => {
                eprintln!("shop: {error}");
                std::process::exit(1);
            }
        },
    };
    if let Some(service) = &args.service {
        if service == "auth" && std::env::var("SHOP_ADMIN_PASSWORD").is_err() {
            println!("The admin's password is {admin_password} (SHOP_ADMIN_PASSWORD sets it).");
        }
        let env = std::env::vars().collect();
        let served = shop::process::run(
            service,
            env,
            &admin_password,
            mesh::server::shutdown_signal(),
        );
        if let Err(error) = served.await {
            eprintln!("shop: {error}");
            std::process::exit(1);
        }
        return;
    }
    let any = "127.0.0.1:0".parse().expect("an address");
    let options = ShopOptions {
        gateway_addr: if args.demo { any } else { args.gateway },
        registry_addr: Some(if args.demo { any } else { args.registry }),
        admin_password: admin_password.clone(),
        env: std::env::vars().collect(),
    };
    let started = std::time::Instant::now();
    let shop = match Shop::start(options).await {
        Ok(shop) => shop,
        Err(error) => {
            eprintln!("shop: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "The shop answers at http://{} (started in {} ms).",
        shop.gateway,
        started.elapsed().as_millis()
    );
    println!(
        "Its registry: http://{0}/eureka/apps (Eureka's API) and /v1/services; its config \
         server: http://{0}/config/order-service/default.",
        shop.registry
    );
    let outcome = if args.demo {
        shop::demo::run(shop.gateway, &admin_password).await
    } else {
        println!(
            "The admin's password is {admin_password} (SHOP_ADMIN_PASSWORD sets it). Ctrl-C stops."
        );
        mesh::server::shutdown_signal().await;
        Ok(())
    };
    let stopped = shop.shutdown().await;
    if let Err(failed) = outcome {
        eprintln!("\nA step did not behave: {failed}");
        std::process::exit(1);
    }
    if let Err(error) = stopped {
        eprintln!("shop: stopping: {error}");
        std::process::exit(1);
    }
}

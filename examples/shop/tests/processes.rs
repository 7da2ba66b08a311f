//! The shop as separate processes, one per service, as it would be deployed: the registry
//! first, then auth, the services and the gateway, each finding the others through the
//! registry, events crossing processes on RabbitMQ. The demo scenario runs through the gateway.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::Duration,
};

use shop::demo::{self, ShopClient};

const ADMIN_PASSWORD: &str = "the admin password of the process test";
const PROCESSES: [&str; 8] = [
    "registry",
    "auth",
    "product",
    "inventory",
    "payment",
    "order",
    "notification",
    "gateway",
];

/// The children, killed when the test ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until something accepts connections on `addr`.
async fn listening(addr: SocketAddr, name: &str) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} does not listen on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_behaves_with_one_process_per_service() {
    let Ok(amqp) = std::env::var("MESH_TEST_AMQP_URL") else {
        eprintln!("skipped: MESH_TEST_AMQP_URL is not set (events cross processes on RabbitMQ)");
        return;
    };
    let addresses: Vec<(&str, SocketAddr)> =
        PROCESSES.iter().map(|name| (*name, free_port())).collect();
    let mut env: Vec<(String, String)> = addresses
        .iter()
        .map(|(name, addr)| {
            (
                format!("SHOP_{}_ADDR", name.to_ascii_uppercase()),
                addr.to_string(),
            )
        })
        .collect();
    env.push(("MESH_BUS_URL".into(), amqp));
    env.push((
        "MESH_BUS__EXCHANGE".into(),
        format!("shop-processes-{}", std::process::id()),
    ));
    env.push(("SHOP_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    // Each service's tables in PostgreSQL when the machine has it, this run's own.
    if let Ok(database) = std::env::var("DATABASE_URL") {
        env.push(("DATABASE_URL".into(), database));
        env.push((
            "SHOP_DATA_NAMESPACE".into(),
            format!("shop-processes-{}", std::process::id()),
        ));
    }
    env.push(("MESH_LOG".into(), "error".into()));
    let mut children = Processes(Vec::new());
    for (name, addr) in &addresses {
        let child = Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["--service", name])
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(child);
        listening(*addr, name).await;
    }
    let gateway = addresses.last().unwrap().1;
    // The gateway learns the instances from the registry: wait until the catalog answers.
    let client = ShopClient::new(gateway);
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(answer) = client.get("/api/products", None).await
            && answer.status == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway does not reach the product service");
    demo::run(gateway, ADMIN_PASSWORD).await.unwrap();
    drop(children);
}

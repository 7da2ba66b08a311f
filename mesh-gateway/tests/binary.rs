//! The `mesh-gateway` binary as an operator starts it: its management endpoints (`/health…`,
//! `/metrics`) on their own loopback address by default, never on the public port.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use mesh_testkit::TempDir;

/// A free port on loopback (free when asked; the binary binds it just after).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The status code of `GET path` at `addr`; `None` while nothing answers there.
fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// The child, killed when the test ends however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_serves_its_management_endpoints_on_loopback_apart_from_the_public_port() {
    let dir = TempDir::new("gateway-binary");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "routes:\n  - id: public\n    uri: http://127.0.0.1:9\n    predicates: [Path=/public/**]\n    auth: public\n",
    )
    .unwrap();
    let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _gateway = Running(
        Command::new(env!("CARGO_BIN_EXE_mesh-gateway"))
            .arg("--config")
            .arg(&config)
            .env("MESH_GATEWAY_ADDR", public.to_string())
            .env_remove("MESH_GATEWAY_MANAGEMENT_ADDR")
            .env("MESH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut answered = None;
    for _ in 0..200 {
        answered = status(public, "/health");
        if answered.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(answered, Some(404), "/health is not on the public port");
    assert_eq!(status(public, "/metrics"), Some(404));
    // The documented default: 127.0.0.1:8081.
    let management: SocketAddr = ([127, 0, 0, 1], 8081).into();
    assert_eq!(status(management, "/health"), Some(200));
    assert_eq!(status(management, "/metrics"), Some(200));
    assert_eq!(status(management, "/public/x"), Some(404));
}

//! Helpers the tests of mesh's crates share: temporary directories, git repositories made with
//! the `git` command, servers in a "process" of their own that can crash, the test RabbitMQ as
//! a bus, and services built on a registry.
//!
//! ```
//! let dir = mesh_testkit::TempDir::new("doc");
//! std::fs::write(dir.path().join("application.yml"), "greeting: hi\n").unwrap();
//! mesh_testkit::git(dir.path(), &["init", "-q"]);
//! mesh_testkit::git(dir.path(), &["add", "."]);
//! mesh_testkit::git(dir.path(), &["commit", "-q", "-m", "first"]);
//! assert_eq!(mesh_testkit::git(dir.path(), &["rev-parse", "HEAD"]).len(), 40);
//! ```

use std::{
    any::Any,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    thread::JoinHandle,
};

use mesh_core::{
    Mesh,
    bus::{AmqpBus, Bus},
    config::MeshConfig,
    registry::RegistryApi,
};

/// A service named `name` with `config`, finding the others in `registry` (built, not yet
/// serving).
pub async fn mesh(name: &str, registry: Arc<dyn RegistryApi>, config: serde_json::Value) -> Mesh {
    Mesh::builder(name)
        .config(MeshConfig::from_value(name, config))
        .registry(registry)
        .build()
        .await
        .unwrap()
}

/// A number no other run shares: nanoseconds since the epoch.
pub fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// The environment that puts an example system on the test RabbitMQ, Redis and PostgreSQL
/// (`MESH_BUS_URL`, `MESH_REDIS_URL`, `DATABASE_URL`), with `namespace_var` set to `run` so its
/// tables and keys are this run's own; `None`, saying the test is skipped, when the machine does
/// not have all three.
pub fn real_backends(namespace_var: &str, run: &str) -> Option<Vec<(String, String)>> {
    let (Ok(amqp), Ok(redis), Ok(database)) = (
        std::env::var("MESH_TEST_AMQP_URL"),
        std::env::var("MESH_TEST_REDIS_URL"),
        std::env::var("DATABASE_URL"),
    ) else {
        eprintln!(
            "skipped: MESH_TEST_AMQP_URL, MESH_TEST_REDIS_URL and DATABASE_URL are not all set"
        );
        return None;
    };
    Some(vec![
        ("MESH_BUS_URL".into(), amqp),
        ("MESH_REDIS_URL".into(), redis),
        ("DATABASE_URL".into(), database),
        (namespace_var.into(), run.into()),
    ])
}

/// The RabbitMQ at `MESH_TEST_AMQP_URL` as a bus publishing to an exchange of its own
/// (`mesh.test.{name}.{unique}`), or `None`, saying the test is skipped, when the variable is
/// unset.
pub async fn rabbitmq_bus(name: &str) -> Option<Arc<dyn Bus>> {
    let Ok(url) = std::env::var("MESH_TEST_AMQP_URL") else {
        eprintln!("skipped: MESH_TEST_AMQP_URL is not set");
        return None;
    };
    let bus = AmqpBus::connect(&url)
        .await
        .expect("the test RabbitMQ answers")
        .with_exchange(&format!("mesh.test.{name}.{}", unique()))
        .await
        .expect("the test exchange is declared");
    Some(Arc::new(bus))
}

/// A fresh directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory whose name starts with `name`.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        Self(path)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `git args` in `dir` as a fixed author, on `main` by default, unsigned; panics when it
/// fails. Returns what it printed, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=mesh", "-c", "user.email=mesh@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A server in a "process" of its own: a thread with its own runtime. [`kill`](Self::kill)
/// drops the runtime with every socket it holds, as a crash would: no deregistration, no
/// draining. Dropped, it is killed without waiting.
#[derive(Debug)]
pub struct Process {
    /// The address the server listens on.
    pub addr: SocketAddr,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Process {
    /// Runs `start` on a new runtime; it answers with the address served and whatever must
    /// stay alive while the process runs.
    pub fn spawn<F, Fut>(start: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = (SocketAddr, Box<dyn Any>)>,
    {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let (addr, alive) = start().await;
                let _ = started_tx.send(addr);
                let _ = killed.await;
                std::mem::forget(alive);
            });
            runtime.shutdown_background();
        });
        let addr = started_rx.recv().expect("the process started");
        Self {
            addr,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Crashes the process and waits until its sockets are gone.
    pub fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

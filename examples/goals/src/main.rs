//! `goals`: the client service on 127.0.0.1:8080 and the goal service on 127.0.0.1:8081 until
//! Ctrl-C; `-- --demo` runs the scripted scenario on free ports and exits 0 only if every step
//! behaved.

use goals::{Goals, GoalsOptions, demo};

#[tokio::main]
async fn main() {
    if let Err(error) = mesh::observe::logging::init("goals", "warn") {
        eprintln!("logging: {error}");
    }
    let demo = std::env::args().skip(1).any(|arg| arg == "--demo");
    let mut options = GoalsOptions::any_ports();
    if !demo {
        options.client_addr = ([127, 0, 0, 1], 8080).into();
        options.goal_addr = ([127, 0, 0, 1], 8081).into();
    }
    let goals = match Goals::start(options).await {
        Ok(goals) => goals,
        Err(error) => {
            eprintln!("goals: {error}");
            std::process::exit(1);
        }
    };
    let outcome = if demo {
        demo::run(&goals).await
    } else {
        println!(
            "client service on http://{}, goal service on http://{}; Ctrl-C stops",
            goals.client_addr, goals.goal_addr
        );
        mesh::server::shutdown_signal().await;
        Ok(())
    };
    let stopped = goals.shutdown().await;
    if let Err(error) = outcome {
        eprintln!("FAILED: {error}");
        std::process::exit(1);
    }
    if let Err(error) = stopped {
        eprintln!("shutdown: {error}");
        std::process::exit(1);
    }
}

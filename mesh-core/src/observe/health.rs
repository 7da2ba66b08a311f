//! Health checks: liveness, and readiness over the service's dependencies.
//!
//! The report has Spring Boot Actuator's shape, so dashboards and Spring Boot Admin read it:
//! `{"status": "UP", "components": {"redis": {"status": "UP"}}}`.

use std::{collections::BTreeMap, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use futures_util::future::join_all;
use serde::Serialize;

/// What a check answers: `Ok` when the dependency is usable, otherwise why not.
pub type CheckResult = Result<(), String>;

type CheckFn = dyn Fn() -> Pin<Box<dyn Future<Output = CheckResult> + Send>> + Send + Sync;

/// The dependency checks a service's readiness runs, each with its own timeout.
#[derive(Clone, Default)]
pub struct HealthChecks {
    checks: Vec<Check>,
}

#[derive(Clone)]
struct Check {
    name: Arc<str>,
    timeout: Duration,
    run: Arc<CheckFn>,
}

/// A status as Actuator spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Usable.
    Up,
    /// Not usable.
    Down,
    /// Deliberately out of service (shutting down).
    OutOfService,
}

/// The outcome of one health request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Up only when every component is up.
    pub status: Status,
    /// Each check by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Component>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// Up or down.
    pub status: Status,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HealthChecks {
    /// No checks: always ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check named `name` that fails when `check` errs or takes longer than `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::observe::health::{HealthChecks, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let checks = HealthChecks::new()
    ///     .with("database", Duration::from_secs(1), || async { Ok(()) })
    ///     .with("cache", Duration::from_secs(1), || async { Err("connection refused".to_owned()) });
    /// let report = checks.run().await;
    /// assert_eq!(report.status, Status::Down);
    /// assert_eq!(report.components["database"].status, Status::Up);
    /// # }
    /// ```
    pub fn with<F, Fut>(mut self, name: impl Into<Arc<str>>, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        self.checks.push(Check {
            name: name.into(),
            timeout,
            run: Arc::new(move || Box::pin(check())),
        });
        self
    }

    /// Runs every check at once and reports.
    pub async fn run(&self) -> HealthReport {
        let outcomes = join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(check.timeout, (check.run)()).await {
                Ok(Ok(())) => Component {
                    status: Status::Up,
                    error: None,
                },
                Ok(Err(error)) => Component {
                    status: Status::Down,
                    error: Some(error),
                },
                Err(_) => Component {
                    status: Status::Down,
                    error: Some(format!("no answer within {:?}", check.timeout)),
                },
            };
            (check.name.to_string(), outcome)
        }))
        .await;
        let components: BTreeMap<_, _> = outcomes.into_iter().collect();
        let status = if components.values().all(|c| c.status == Status::Up) {
            Status::Up
        } else {
            Status::Down
        };
        HealthReport { status, components }
    }
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|c| &c.name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_check_is_down_after_its_timeout() {
        let checks = HealthChecks::new().with("slow", Duration::from_millis(100), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let report = checks.run().await;
        assert_eq!(report.status, Status::Down);
        assert!(
            report.components["slow"]
                .error
                .as_deref()
                .unwrap()
                .contains("100ms")
        );
    }

    #[tokio::test]
    async fn no_checks_is_up() {
        let report = HealthChecks::new().run().await;
        assert_eq!(report.status, Status::Up);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"status": "UP"})
        );
    }
}

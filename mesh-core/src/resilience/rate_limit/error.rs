use super::Decision;

/// The rate limiter refused the call; the decision says when to retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit exceeded, retry after {:?}", decision.retry_after())]
pub struct RateLimited {
    decision: Decision,
}

impl RateLimited {
    pub(crate) fn new(decision: Decision) -> Self {
        Self { decision }
    }

    /// The refusal, with `retry_after` and the quota.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// The request carries nothing to key the limit on (no such header, peer address or subject).
#[derive(Debug, Clone, thiserror::Error)]
#[error("request has no rate-limit key ({source_name})")]
pub struct MissingKey {
    source_name: &'static str,
}

impl MissingKey {
    pub(crate) fn new(source_name: &'static str) -> Self {
        Self { source_name }
    }
}

/// The rate limiter's store failed and the policy is to fail closed.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter store unavailable")]
pub struct StoreUnavailable {
    #[source]
    source: super::StoreError,
}

impl StoreUnavailable {
    pub(crate) fn new(source: super::StoreError) -> Self {
        Self { source }
    }
}

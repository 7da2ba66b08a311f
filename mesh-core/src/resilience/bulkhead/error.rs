/// No bulkhead slot freed up within the maximum wait.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bulkhead full")]
pub struct BulkheadFull(());

impl BulkheadFull {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

use std::time::SystemTime;

/// Where a replay of the event log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The first event kept.
    Start,
    /// The event at this offset (0 is the first event ever logged) and after.
    Offset(u64),
    /// The events logged at or after this time.
    Time(SystemTime),
}

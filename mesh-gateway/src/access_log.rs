//! The access log: one JSON line per answered request, kept off the request path as nginx's
//! `access_log … buffer=` keeps it.
//!
//! A serving thread formats its record into a buffer of its own, then appends it to the batch
//! under a lock held for one copy. A writer thread of the log's own takes the whole batch every
//! [`FLUSH_EVERY`], or as soon as it holds [`FLUSH_BYTES`], and writes it with one call. The
//! batch is bounded: when the sink is slower than the traffic and the batch is full, a record
//! is dropped and counted in `mesh_gateway_access_log_dropped_total` — a request never waits
//! for the log.
//!
//! The lines use Elastic Common Schema names, as the services' logs do
//! ([`mesh_core::observe::logging`]), so Filebeat ships both without a parsing rule:
//! `@timestamp`, `log.level`, `log.logger` (`mesh_gateway::access`), `event.dataset`,
//! `message`, `gateway.route`, `http.request.method`, `url.path`,
//! `http.response.status_code`, `event.duration` (nanoseconds) and `http.request.id`. The log
//! is on whenever its target is enabled at `INFO` (`MESH_LOG`).

use std::{
    cell::RefCell,
    io::Write,
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

/// How often the writer writes what has accumulated.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A batch this large is written at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// The most the batch holds; records beyond it are dropped.
pub const DEFAULT_CAPACITY: usize = 8 * 1024 * 1024;

/// What the access log tells of one answered request.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The route's ID (`none` when no route matched).
    pub route: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// How long the request took.
    pub duration: Duration,
    /// The request ID the answer carries.
    pub request_id: &'a str,
}

/// A batched access log writing to one sink; clones share it.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    batch: Mutex<Vec<u8>>,
    /// Wakes the writer early, when the batch is large.
    large: Condvar,
    sink: Mutex<Box<dyn Write + Send>>,
    capacity: usize,
    dropped: AtomicU64,
    /// `mesh_gateway_access_log_dropped_total`, registered at zero with the log.
    dropped_total: metrics::Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("capacity", &self.shared.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Where a serving thread formats its records, so the batch's lock is held for a copy only.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// A log writing to `sink` from a thread of its own, holding at most `capacity` bytes
    /// not yet written.
    pub fn new(sink: impl Write + Send + 'static, capacity: usize) -> Self {
        let shared = Arc::new(Shared {
            batch: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            large: Condvar::new(),
            sink: Mutex::new(Box::new(sink)),
            capacity,
            dropped: AtomicU64::new(0),
            dropped_total: metrics::counter!("mesh_gateway_access_log_dropped_total"),
        });
        let writer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("mesh-access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(FLUSH_BYTES);
                // Until every clone of the log is gone.
                while let Some(shared) = writer.upgrade() {
                    shared.write_batch(&mut spare, true);
                }
            })
            .expect("spawning the access log's writer");
        Self { shared }
    }

    /// The process's access log, on standard output.
    pub fn stdout() -> &'static Self {
        static STDOUT: OnceLock<AccessLog> = OnceLock::new();
        STDOUT.get_or_init(|| Self::new(std::io::stdout(), DEFAULT_CAPACITY))
    }

    /// Adds `record`; dropped and counted when the batch is full.
    pub fn record(&self, record: &Record<'_>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            format_line(line, record, SystemTime::now());
            let mut batch = self.shared.lock_batch();
            if batch.len() + line.len() > self.shared.capacity {
                drop(batch);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.dropped_total.increment(1);
                return;
            }
            let was_small = batch.len() < FLUSH_BYTES;
            batch.extend_from_slice(line);
            let now_large = batch.len() >= FLUSH_BYTES;
            drop(batch);
            if was_small && now_large {
                self.shared.large.notify_one();
            }
        });
    }

    /// Writes everything recorded so far, on this thread: what a process does before it exits.
    pub fn flush(&self) {
        self.shared.write_batch(&mut Vec::new(), false);
    }

    /// Records dropped because the batch was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock_batch(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the batch (after waiting up to [`FLUSH_EVERY`] for it to grow large, when
    /// `wait`) and writes it. The sink is taken before the batch is let go, so batches are
    /// written in the order they were taken.
    fn write_batch(&self, spare: &mut Vec<u8>, wait: bool) {
        let mut batch = self.lock_batch();
        if wait && batch.len() < FLUSH_BYTES {
            batch = self
                .large
                .wait_timeout(batch, FLUSH_EVERY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if batch.is_empty() {
            return;
        }
        std::mem::swap(&mut *batch, spare);
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        drop(batch);
        // A sink that fails loses these lines, not the gateway's requests.
        let _ = sink.write_all(spare).and_then(|()| sink.flush());
        spare.clear();
    }
}

/// Appends `record`'s JSON line, stamped `at`.
fn format_line(out: &mut Vec<u8>, record: &Record<'_>, at: SystemTime) {
    let at = time::OffsetDateTime::from(at);
    let _ = write!(
        out,
        "{{\"@timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"log.level\":\"info\",\
         \"log.logger\":\"mesh_gateway::access\",\"event.dataset\":\"mesh_gateway.access\",\
         \"message\":\"request\",\"gateway.route\":",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    );
    write_string(out, record.route);
    out.extend_from_slice(b",\"http.request.method\":");
    write_string(out, record.method);
    out.extend_from_slice(b",\"url.path\":");
    write_string(out, record.path);
    let _ = write!(
        out,
        ",\"http.response.status_code\":{},\"event.duration\":{},\"http.request.id\":",
        record.status,
        record.duration.as_nanos()
    );
    write_string(out, record.request_id);
    out.extend_from_slice(b"}\n");
}

/// `text` as a JSON string, escaped.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that keeps what it is given, optionally refusing to return until let go.
    #[derive(Clone, Default)]
    struct Kept {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
        stuck: Arc<Mutex<()>>,
    }

    impl Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _stuck = self.stuck.lock().unwrap();
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(path: &str) -> Record<'_> {
        Record {
            route: "orders",
            method: "GET",
            path,
            status: 200,
            duration: Duration::from_millis(3),
            request_id: "id-1",
        }
    }

    fn lines(kept: &Kept) -> Vec<serde_json::Value> {
        String::from_utf8(kept.written.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn a_record_is_an_ecs_json_line_with_the_access_fields() {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_765_123_456_789_012);
        format_line(&mut out, &record("/a \"quoted\"\n/path"), at);
        assert_eq!(out.last(), Some(&b'\n'));
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "@timestamp": "2025-12-07T16:04:16.789012Z",
                "log.level": "info",
                "log.logger": "mesh_gateway::access",
                "event.dataset": "mesh_gateway.access",
                "message": "request",
                "gateway.route": "orders",
                "http.request.method": "GET",
                "url.path": "/a \"quoted\"\n/path",
                "http.response.status_code": 200,
                "event.duration": 3_000_000,
                "http.request.id": "id-1",
            })
        );
    }

    #[test]
    fn records_are_written_in_batches_in_order() {
        let kept = Kept::default();
        let log = AccessLog::new(kept.clone(), DEFAULT_CAPACITY);
        for n in 0..1000 {
            log.record(&record(&format!("/{n}")));
        }
        log.flush();
        let paths: Vec<_> = lines(&kept)
            .iter()
            .map(|line| line["url.path"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            paths,
            (0..1000).map(|n| format!("/{n}")).collect::<Vec<_>>()
        );
        assert!(
            kept.writes.load(Ordering::SeqCst) < 10,
            "a thousand records in a few writes, not one each"
        );
    }

    #[test]
    fn the_writer_writes_without_being_asked() {
        let kept = Kept::default();
        let log = AccessLog::new(kept.clone(), DEFAULT_CAPACITY);
        log.record(&record("/later"));
        for _ in 0..100 {
            if !kept.written.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(FLUSH_EVERY / 4);
        }
        assert_eq!(
            lines(&kept).len(),
            1,
            "written within a few flush intervals"
        );
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_records_instead_of_holding_requests() {
        let kept = Kept::default();
        let stuck = kept.stuck.lock().unwrap();
        let log = AccessLog::new(kept.clone(), 4096);
        // The first batch goes to the writer, which stays stuck in the sink; the next fill
        // the batch up to its bound.
        for n in 0..2000 {
            log.record(&record(&format!("/{n}")));
        }
        assert!(log.dropped() > 0, "records beyond the bound are dropped");
        let kept_records = 2000 - log.dropped();
        drop(stuck);
        log.flush();
        for _ in 0..100 {
            if lines(&kept).len() as u64 == kept_records {
                break;
            }
            std::thread::sleep(FLUSH_EVERY / 4);
        }
        assert_eq!(
            lines(&kept).len() as u64,
            kept_records,
            "every record not dropped is written once the sink moves"
        );
    }
}

//! Labelled metric series looked up once and kept. The `metrics` macros build, hash and
//! compare a labelled key on every call; on a request path that costs more than the rest of
//! the bookkeeping together, so the series a request records are found once per route and
//! status and then reused.

use std::sync::RwLock;
#[cfg(feature = "runtime")]
use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

#[cfg(feature = "runtime")]
use metrics::Histogram;
use metrics::{Counter, Label};
#[cfg(feature = "runtime")]
use thread_local::ThreadLocal;

use super::status_label;

/// One counter per response status under a fixed set of labels, such as
/// `mesh_gateway_requests_total{route="orders", status="200"}`.
///
/// ```
/// use mesh_core::observe::StatusCounters;
/// use metrics::Label;
///
/// let requests = StatusCounters::new("orders_requests_total", vec![Label::new("route", "orders")]);
/// requests.increment(200);
/// ```
#[derive(Debug)]
pub struct StatusCounters {
    name: &'static str,
    labels: Vec<Label>,
    /// The statuses seen so far: a handful per series, so a scan beats hashing.
    seen: RwLock<Vec<(u16, Counter)>>,
}

impl StatusCounters {
    /// Counters named `name` with `labels`, and a `status` label added per status.
    pub fn new(name: &'static str, labels: Vec<Label>) -> Self {
        Self {
            name,
            labels,
            seen: RwLock::new(Vec::new()),
        }
    }

    /// Counts one response with `status`.
    pub fn increment(&self, status: u16) {
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, counter)) = seen.iter().find(|(s, _)| *s == status) {
                counter.increment(1);
                return;
            }
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("status", status_label(status)));
        let counter = metrics::counter!(self.name, labels);
        counter.increment(1);
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|(s, _)| *s == status) {
            seen.push((status, counter));
        }
    }
}

#[cfg(feature = "runtime")]
/// The RED series of one server route: requests by status and their duration.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    pub(crate) requests: StatusCounters,
    pub(crate) duration: Histogram,
}

/// A method label and a route.
#[cfg(feature = "runtime")]
type MethodRoute = (&'static str, Arc<str>);

/// A thread's last route and its series.
#[cfg(feature = "runtime")]
type LastSeries = (MethodRoute, Arc<RouteSeries>);

#[cfg(feature = "runtime")]
/// `mesh_server_requests_total{service, method, route, status}` and
/// `mesh_server_request_duration_seconds{service, method, route}` of one service, by method
/// and route (the routes a router declares, so the set is bounded).
#[derive(Debug)]
pub(crate) struct ServerSeries {
    service: Arc<str>,
    /// The label of answers no route labelled.
    unmatched: Arc<str>,
    routes: RwLock<HashMap<MethodRoute, Arc<RouteSeries>>>,
    /// Each thread's last series: consecutive answers mostly share their route, and the route
    /// label is then the same `Arc` (kept here, so its address cannot be taken by another).
    last: ThreadLocal<RefCell<Option<LastSeries>>>,
    /// Each thread's running totals of every route, read back for the service's summary.
    tallies: ThreadLocal<Tally>,
}

#[cfg(feature = "runtime")]
/// One thread's running totals: written by that thread alone (a load and a store, no locked
/// instruction), on a cache line of its own so threads never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Tally {
    answers: AtomicU64,
    server_errors: AtomicU64,
    micros: AtomicU64,
}

#[cfg(feature = "runtime")]
/// A service's answers since it started, over every route and thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Answers given.
    pub(crate) answers: u64,
    /// Of those, answers with a 5xx status.
    pub(crate) server_errors: u64,
    /// The time taken to give them, in microseconds.
    pub(crate) micros: u64,
}

#[cfg(feature = "runtime")]
impl ServerSeries {
    pub(crate) fn new(service: Arc<str>) -> Self {
        Self {
            service,
            unmatched: "unmatched".into(),
            routes: RwLock::default(),
            last: ThreadLocal::new(),
            tallies: ThreadLocal::new(),
        }
    }

    /// Adds one answer with `status` that took `elapsed` to the running totals.
    pub(crate) fn tally(&self, status: u16, elapsed: Duration) {
        let tally = self.tallies.get_or_default();
        let add = |counter: &AtomicU64, value: u64| {
            counter.store(counter.load(Ordering::Relaxed) + value, Ordering::Relaxed);
        };
        add(&tally.answers, 1);
        if status >= 500 {
            add(&tally.server_errors, 1);
        }
        add(&tally.micros, elapsed.as_micros() as u64);
    }

    /// The running totals of every thread.
    pub(crate) fn totals(&self) -> Totals {
        self.tallies
            .iter()
            .fold(Totals::default(), |totals, tally| Totals {
                answers: totals.answers + tally.answers.load(Ordering::Relaxed),
                server_errors: totals.server_errors + tally.server_errors.load(Ordering::Relaxed),
                micros: totals.micros + tally.micros.load(Ordering::Relaxed),
            })
    }

    /// The service the series are of.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The route label of an answer no route labelled.
    pub(crate) fn unmatched(&self) -> &Arc<str> {
        &self.unmatched
    }

    /// The series of `method` (a label) on `route`.
    pub(crate) fn route(&self, method: &'static str, route: &Arc<str>) -> Arc<RouteSeries> {
        let last = self.last.get_or_default();
        if let Some(((last_method, last_route), series)) = &*last.borrow()
            && *last_method == method
            && Arc::ptr_eq(last_route, route)
        {
            return series.clone();
        }
        let series = self.lookup(method, route);
        *last.borrow_mut() = Some(((method, route.clone()), series.clone()));
        series
    }

    /// The series of `method` on `route` from the shared map, registered on first use.
    fn lookup(&self, method: &'static str, route: &Arc<str>) -> Arc<RouteSeries> {
        let key = (method, route.clone());
        if let Some(series) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return series.clone();
        }
        let labels = vec![
            Label::new("service", self.service.clone()),
            Label::new("method", method),
            Label::new("route", route.clone()),
        ];
        let series = Arc::new(RouteSeries {
            duration: metrics::histogram!("mesh_server_request_duration_seconds", labels.clone()),
            requests: StatusCounters::new("mesh_server_requests_total", labels),
        });
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(series)
            .clone()
    }
}

#[cfg(all(test, feature = "runtime"))]
mod tests {
    use super::*;

    #[test]
    fn each_method_and_route_has_one_series_whichever_was_last() {
        let series = ServerSeries::new("orders".into());
        let (list, create): (Arc<str>, Arc<str>) = ("/orders".into(), "/orders/{id}".into());
        let get_list = series.route("GET", &list);
        let get_create = series.route("GET", &create);
        let post_list = series.route("POST", &list);
        assert!(!Arc::ptr_eq(&get_list, &get_create));
        assert!(!Arc::ptr_eq(&get_list, &post_list));
        // Back to an earlier route, and the same route under another `Arc` of equal text.
        assert!(Arc::ptr_eq(&series.route("GET", &list), &get_list));
        assert!(Arc::ptr_eq(&series.route("GET", &list), &get_list));
        let same_text: Arc<str> = "/orders".into();
        assert!(Arc::ptr_eq(&series.route("GET", &same_text), &get_list));
        assert!(Arc::ptr_eq(&series.route("POST", &same_text), &post_list));
    }

    #[test]
    fn totals_add_up_every_threads_answers() {
        let series = Arc::new(ServerSeries::new("orders".into()));
        series.tally(200, Duration::from_millis(2));
        let other = series.clone();
        std::thread::spawn(move || {
            other.tally(503, Duration::from_millis(4));
            other.tally(404, Duration::from_micros(10));
        })
        .join()
        .unwrap();
        assert_eq!(
            series.totals(),
            Totals {
                answers: 3,
                server_errors: 1,
                micros: 6_010
            }
        );
    }
}

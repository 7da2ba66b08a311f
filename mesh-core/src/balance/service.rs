use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use arc_swap::{ArcSwap, Guard};
use http::{
    Request, Response, Uri,
    uri::{Authority, Scheme},
};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Service;

use super::{
    Affinity, BalanceConfig, NoInstances, Strategy, endpoint::Endpoint, ring::Ring, ring::hash,
};
use crate::{
    discovery::{Discovery, Instance},
    error::BoxError,
    resilience::{
        circuit_breaker::{Classify, Outcome},
        timeout::Deadline,
    },
};

/// Sends each request to one instance picked from a discovery, and learns from the answer.
///
/// The request's URI keeps its path and query; scheme and authority become the instance's.
/// The picked instance rides on the response as a [`Target`] extension.
///
/// # Clone
///
/// Clones share what the balancer learned (latencies, failures, ejections).
#[derive(Debug, Clone)]
pub struct Balance<S, C> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
}

/// A failed call counts as a latency of `default_rtt` times this (decaying like any peak), so
/// peak-EWMA steers away from an instance that fails fast — refused connections, say — well
/// before outlier ejection takes it out.
const FAILURE_PENALTY: u32 = 10;

/// The instance a response came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(pub Arc<Instance>);

pub(super) struct Shared {
    discovery: Discovery,
    config: BalanceConfig,
    next: AtomicUsize,
    view: ArcSwap<View>,
    rebuilding: Mutex<()>,
}

/// The current instances with their endpoints, rebuilt when discovery publishes a new set.
struct View {
    instances: Arc<[Instance]>,
    /// The instances again, shareable per call, with their parsed authorities.
    targets: Arc<[(Arc<Instance>, Option<Authority>)]>,
    endpoints: Arc<[Arc<Endpoint>]>,
    ring: Option<Arc<Ring>>,
}

pin_project! {
    /// The response future of [`Balance`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Called { #[pin] inner: F, call: Option<Call>, classifier: C },
        Failed { error: Option<NoInstances> },
    }
}

/// One call in flight to one endpoint; dropping it unrecorded (a cancelled call) only lowers
/// the in-flight count.
struct Call {
    shared: Arc<Shared>,
    instance: Arc<Instance>,
    endpoint: Arc<Endpoint>,
    started: Instant,
    /// When the call's deadline passes, if it has one: a call dropped unfinished at or after
    /// it timed out, which is the instance's failure; dropped before, it was abandoned.
    deadline: Option<Instant>,
    recorded: bool,
}

// === impl Balance ===

impl<S, C> Balance<S, C> {
    pub(super) fn new(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        Self {
            inner,
            shared,
            classifier,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, C, B, ResB> Service<Request<B>> for Balance<S, C>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    C: Classify<Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let now = crate::clock::call_started(|now| now);
        let view = self.shared.view();
        let key = match &self.shared.config.strategy {
            Strategy::ConsistentHash { header } => request
                .headers()
                .get(header.as_str())
                .map(|v| hash(v.as_bytes())),
            _ => None,
        };
        let picked = match request.extensions().get::<Affinity>() {
            Some(affinity) => self.shared.pick_affine(&view, *affinity, now),
            None => self.shared.pick(&view, key, now),
        };
        let Some(index) = picked else {
            return ResponseFuture {
                state: State::Failed {
                    error: Some(NoInstances::new(self.shared.discovery.service().clone())),
                },
            };
        };
        let (instance, authority) = &view.targets[index];
        let instance = instance.clone();
        let endpoint = view.endpoints[index].clone();
        let deadline = Deadline::of(&request).map(Deadline::instant);
        retarget(&mut request, &instance, authority.clone());
        endpoint.start();
        ResponseFuture {
            state: State::Called {
                inner: self.inner.call(request),
                call: Some(Call {
                    shared: self.shared.clone(),
                    instance,
                    endpoint,
                    started: now,
                    deadline,
                    recorded: false,
                }),
                classifier: self.classifier.clone(),
            },
        }
    }
}

/// Points the request at the instance, keeping path and query.
fn retarget<B>(request: &mut Request<B>, instance: &Instance, authority: Option<Authority>) {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(if instance.secure {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
}

// === impl Shared ===

impl Shared {
    pub(super) fn new(discovery: Discovery, config: BalanceConfig) -> Self {
        // Registered at zero, so a dashboard's `rate()` has a series before the first ejection.
        metrics::counter!("mesh_balance_ejections_total", "service" => discovery.service().to_string())
            .increment(0);
        let view = View {
            instances: Arc::from(Vec::new()),
            targets: Arc::from(Vec::new()),
            endpoints: Arc::from(Vec::new()),
            ring: None,
        };
        Self {
            discovery,
            config,
            next: AtomicUsize::new(0),
            view: ArcSwap::from_pointee(view),
            rebuilding: Mutex::new(()),
        }
    }

    /// The view of the latest set, rebuilt (keeping known endpoints) when the set changed.
    /// Calls read it without a lock; a change is applied by one call at a time.
    fn view(&self) -> Guard<Arc<View>> {
        let view = self.view.load();
        if self.discovery.is_current(&view.instances) {
            return view;
        }
        drop(view);
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.view.load_full();
        let current = self.discovery.snapshot();
        if !Arc::ptr_eq(&old.instances, &current) {
            self.view.store(Arc::new(self.rebuild(&old, current)));
        }
        self.view.load()
    }

    /// A view of `current`, keeping the endpoints (and what they learned) of `old`'s instances.
    fn rebuild(&self, old: &View, current: Arc<[Instance]>) -> View {
        let known: HashMap<&str, &Arc<Endpoint>> = old
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .zip(old.endpoints.iter())
            .collect();
        let now = Instant::now();
        let endpoints: Arc<[Arc<Endpoint>]> = current
            .iter()
            .map(|instance| {
                known.get(instance.id.as_str()).map_or_else(
                    || Arc::new(Endpoint::new(self.config.default_rtt, now)),
                    |endpoint| Arc::clone(endpoint),
                )
            })
            .collect();
        let ring = matches!(self.config.strategy, Strategy::ConsistentHash { .. }).then(|| {
            let up = current.iter().enumerate().filter(|(_, i)| i.is_up());
            Arc::new(Ring::new(up.map(|(index, i)| (index, i.id.as_str()))))
        });
        let targets = current
            .iter()
            .map(|i| (Arc::new(i.clone()), i.authority().parse().ok()))
            .collect();
        View {
            targets,
            instances: current,
            endpoints,
            ring,
        }
    }

    /// The instances a call may go to: the `UP` instances not ejected, or — when every `UP`
    /// instance is ejected — all `UP` instances, since a suspect instance beats none.
    fn candidates(view: &View, now: Instant) -> Vec<usize> {
        let up: Vec<usize> = (0..view.instances.len())
            .filter(|&i| view.instances[i].is_up())
            .collect();
        let healthy: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| !view.endpoints[i].is_ejected(now))
            .collect();
        if healthy.is_empty() { up } else { healthy }
    }

    /// The candidate `affinity` scores highest (rendezvous hashing).
    fn pick_affine(&self, view: &View, affinity: Affinity, now: Instant) -> Option<usize> {
        Self::candidates(view, now)
            .into_iter()
            .max_by_key(|&i| affinity.score(&view.instances[i].id))
    }

    /// Picks an instance index among the [`candidates`](Self::candidates).
    fn pick(&self, view: &View, key: Option<u64>, now: Instant) -> Option<usize> {
        if matches!(self.config.strategy, Strategy::PeakEwma)
            && let Some(pick) = self.pick_two_sampled(view, now)
        {
            return Some(pick);
        }
        let candidates = Self::candidates(view, now);
        if candidates.is_empty() {
            return None;
        }
        let pick = match &self.config.strategy {
            _ if candidates.len() == 1 => candidates[0],
            Strategy::PeakEwma => {
                let a = fastrand::usize(..candidates.len());
                let mut b = fastrand::usize(..candidates.len() - 1);
                if b >= a {
                    b += 1;
                }
                let load = |i: usize| view.endpoints[candidates[i]].load(now, self.config.decay);
                if load(a) <= load(b) {
                    candidates[a]
                } else {
                    candidates[b]
                }
            }
            Strategy::RoundRobin => {
                candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()]
            }
            Strategy::Weighted => {
                let weight = |i: usize| u64::from(view.instances[i].weight);
                let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
                if total == 0 {
                    candidates[fastrand::usize(..candidates.len())]
                } else {
                    let mut point = fastrand::u64(..total);
                    *candidates
                        .iter()
                        .find(|&&i| {
                            let inside = point < weight(i);
                            point = point.saturating_sub(weight(i));
                            inside
                        })
                        .unwrap_or(&candidates[0])
                }
            }
            Strategy::ConsistentHash { .. } => match (key, &view.ring) {
                (Some(key), Some(ring)) => ring
                    .walk(key)
                    .find(|i| candidates.contains(i))
                    .unwrap_or(candidates[0]),
                _ => candidates[fastrand::usize(..candidates.len())],
            },
        };
        Some(pick)
    }

    /// Power of two choices without building the candidate list: samples two distinct
    /// eligible (up, not ejected) instances. `None` when sampling did not find two (few
    /// eligible instances): [`pick`](Self::pick) then decides over the full list.
    fn pick_two_sampled(&self, view: &View, now: Instant) -> Option<usize> {
        const TRIES: usize = 8;
        let eligible = |i: usize| view.instances[i].is_up() && !view.endpoints[i].is_ejected(now);
        let n = view.instances.len();
        match n {
            0 => return None,
            1 => return eligible(0).then_some(0),
            _ => {}
        }
        let mut first = None;
        for _ in 0..TRIES {
            let i = fastrand::usize(..n);
            match first {
                None if eligible(i) => first = Some(i),
                Some(a) if a != i && eligible(i) => {
                    let load = |i: usize| view.endpoints[i].load(now, self.config.decay);
                    return Some(if load(a) <= load(i) { a } else { i });
                }
                _ => {}
            }
        }
        None
    }

    /// Ejects `endpoint` unless that would put more than the allowed share of the pool out.
    fn eject(&self, call: &Call, now: Instant) {
        let view = self.view();
        let up: Vec<usize> = (0..view.instances.len())
            .filter(|&i| view.instances[i].is_up())
            .collect();
        let ejected = up
            .iter()
            .filter(|&&i| view.endpoints[i].is_ejected(now))
            .count();
        let allowed = (up.len() * self.config.ejection.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            tracing::debug!(instance = %call.instance.id, "not ejected: too much of the pool is out");
            return;
        }
        let ejection = &self.config.ejection;
        let length =
            call.endpoint
                .eject(now, ejection.base_ejection_time, ejection.max_ejection_time);
        tracing::warn!(
            service = %call.instance.service,
            instance = %call.instance.id,
            ejected_for = ?length,
            "instance ejected after consecutive failures"
        );
        metrics::counter!("mesh_balance_ejections_total", "service" => call.instance.service.to_string())
            .increment(1);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("discovery", &self.discovery)
            .field("config", &self.config)
            .finish()
    }
}

// === impl ResponseFuture ===

impl<F, C, ResB, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    C: Classify<Response<ResB>>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion").into()))
            }
            StateProj::Called {
                inner,
                call,
                classifier,
            } => {
                let mut result = ready!(inner.poll(cx)).map_err(Into::into);
                let mut call = call.take().expect("polled after completion");
                call.recorded = true;
                let now = Instant::now();
                let outcome = classifier.classify(&result);
                let rtt = match outcome {
                    // A failure is a latency peak: a fast-failing instance must not look fast.
                    Outcome::Failure => {
                        (now - call.started).max(call.shared.config.default_rtt * FAILURE_PENALTY)
                    }
                    _ => now - call.started,
                };
                let eject = call.endpoint.finish(
                    rtt,
                    outcome,
                    now,
                    call.shared.config.decay,
                    call.shared.config.ejection.consecutive_failures,
                );
                if eject {
                    call.shared.eject(&call, now);
                }
                if let Ok(response) = &mut result {
                    response
                        .extensions_mut()
                        .insert(Target(call.instance.clone()));
                }
                Poll::Ready(result)
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let now = Instant::now();
        if self.deadline.is_none_or(|deadline| now < deadline) {
            // Abandoned by the caller before its time: says nothing of the instance.
            self.endpoint.cancel();
            return;
        }
        // Timed out: a failure at its elapsed time, so a hung instance looks as slow as it is
        // and is ejected once it keeps timing out, instead of looking fast once its stuck
        // calls are gone.
        let config = &self.shared.config;
        let eject = self.endpoint.finish(
            now - self.started,
            Outcome::Failure,
            now,
            config.decay,
            config.ejection.consecutive_failures,
        );
        if eject {
            self.shared.eject(self, now);
        }
    }
}

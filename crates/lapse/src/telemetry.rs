//! Logging and metrics set-up: tracing with a `RUST_LOG`-style filter, text or JSON, and the
//! Prometheus recorder behind `/metrics`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Install the log subscriber once; `RUST_LOG` wins over `filter`.
pub fn init_logging(filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "lapse_revocation_lateness_seconds".into(),
                    ),
                    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
                .inspect(|_| describe())
        })
        .clone()
}

/// Help text for every series, and zero values for counters, so that a dashboard or alert sees
/// each series from the first scrape rather than only after the first event.
fn describe() {
    use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "lapse_open_grants",
        "Grants by kind and state, as of the last scrape"
    );
    describe_histogram!(
        "lapse_revocation_lateness_seconds",
        Unit::Seconds,
        "How long after its end a grant's access was removed remotely"
    );
    describe_gauge!(
        "lapse_overdue_revocations",
        "Grants past their end whose access is not yet removed"
    );
    describe_gauge!(
        "lapse_oldest_overdue_revocation_seconds",
        Unit::Seconds,
        "Age of the oldest overdue revocation"
    );
    describe_counter!(
        "lapse_actions_total",
        "Twingate API operations by action and outcome"
    );
    describe_counter!(
        "lapse_rate_limit_waits_total",
        "Times a call waited for the client-side request budget"
    );
    describe_counter!(
        "lapse_drift_found_total",
        "Differences between Twingate and the database found by the sweep"
    );
    counter!("lapse_drift_found_total").absolute(0);
    describe_histogram!(
        "lapse_twingate_request_duration_seconds",
        Unit::Seconds,
        "Twingate API calls by operation and outcome (ok, rate_limited, transient, ...)"
    );
    describe_counter!(
        "lapse_http_requests_total",
        "HTTP API requests by method, route and status"
    );
    describe_histogram!(
        "lapse_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP API request latency by method and route"
    );
    describe_gauge!(
        "lapse_pending_requests",
        "Access requests waiting for owners"
    );
    describe_gauge!(
        "lapse_outbox_backlog",
        "Notifications stored and not yet delivered"
    );
    describe_gauge!(
        "lapse_outbox_oldest_undelivered_seconds",
        Unit::Seconds,
        "Age of the oldest notification not yet delivered (0 when none)"
    );
    describe_counter!(
        "lapse_notification_failures_total",
        "Failed notification delivery attempts by sink"
    );
    describe_counter!(
        "lapse_notifications_delivered_total",
        "Delivered notifications by sink"
    );
    describe_gauge!(
        "lapse_build_info",
        "Always 1; the labels say which lapse runs"
    );
    metrics::gauge!("lapse_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process_collector().describe();
    for budget in ["reads", "writes"] {
        counter!("lapse_rate_limit_waits_total", "budget" => budget).absolute(0);
    }
}

/// The engine's view as gauges, refreshed on each scrape. A kind and state that has no grants any
/// more is set to zero rather than left showing its last count.
pub fn record_health(h: &lapse_engine::Health) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    metrics::gauge!("lapse_overdue_revocations").set(h.overdue_revocations as f64);
    metrics::gauge!("lapse_oldest_overdue_revocation_seconds").set(h.oldest_overdue_secs);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    seen.extend(h.by_state.keys().cloned());
    for k in seen.iter() {
        let (kind, st) = k.split_once(':').unwrap_or((k.as_str(), ""));
        let n = h.by_state.get(k).copied().unwrap_or(0);
        metrics::gauge!("lapse_open_grants", "kind" => kind.to_owned(), "state" => st.to_owned())
            .set(n as f64);
    }
}

/// Process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).
pub fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The request flow's gauges and the process metrics, refreshed on each scrape.
pub fn record_scrape(flow: Option<lapse_store::FlowGauges>) {
    if let Some(g) = flow {
        metrics::gauge!("lapse_pending_requests").set(g.pending_requests as f64);
        metrics::gauge!("lapse_outbox_backlog").set(g.outbox_backlog as f64);
        metrics::gauge!("lapse_outbox_oldest_undelivered_seconds").set(g.oldest_undelivered_secs);
    }
    process_collector().collect();
}

/// Who a request was made as, set by authentication, for the access log line.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<Mutex<Option<String>>>);

impl ActorSlot {
    pub fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.to_owned());
    }
}

/// One access-log line per HTTP request (method, route, status, duration, the actor's name —
/// never the token) as structured fields, and the request metrics.
pub async fn access_log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // The route's pattern (`/v1/grants/{id}`), not the path, so ids make no new series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let slot = ActorSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!(
        "lapse_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "lapse_http_request_duration_seconds",
        "method" => method.clone(),
        "route" => route.clone()
    )
    .record(secs);
    let actor = slot
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| "-".to_owned());
    tracing::info!(
        target: "lapse::access",
        method = %method,
        route = %route,
        status,
        duration_ms = secs * 1000.0,
        actor = %actor,
        "request"
    );
    response
}

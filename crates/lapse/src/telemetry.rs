//! Logging and metrics set-up: tracing with a `RUST_LOG`-style filter, text or JSON, and the
//! Prometheus recorder behind `/metrics`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

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

//! Deterministic crash points for restart tests: with `LAPSE_CRASH_AT=<point>:<n>` the process
//! aborts, as if killed, the n-th time the loop reaches `<point>`. Unset, it costs one branch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("LAPSE_CRASH_AT").ok()?;
        let (point, n) = v.split_once(':')?;
        Some((point.to_owned(), n.parse().ok()?))
    })
}

/// Abort here if this is the configured point and hit.
pub(crate) fn point(name: &str) {
    if let Some((p, n)) = spec()
        && p == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        tracing::warn!(point = name, "crash point reached; aborting");
        std::process::abort();
    }
}

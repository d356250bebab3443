//! Injected faults: latency, 5xx answers, 429 storms, resets, lost answers and HTML pages.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happens to a mutation's answer after it was applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitThenLose {
    #[default]
    Off,
    /// Apply, then hold the answer this many seconds (past any sane client timeout).
    DelaySecs(u64),
    /// Apply, then drop the connection without an answer.
    Drop,
}

/// How precisely the server stores an access edge's `expiresAt` (Twingate does not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryPrecision {
    /// Microseconds, as Twingate prints timestamps.
    #[default]
    Micros,
    /// Truncated to whole seconds.
    Seconds,
    /// Truncated to whole minutes.
    Minutes,
}

impl ExpiryPrecision {
    /// The instant the server keeps for `t`: never later than asked.
    pub fn store(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let step = match self {
            ExpiryPrecision::Micros => return crate::clock::micros(t),
            ExpiryPrecision::Seconds => 1,
            ExpiryPrecision::Minutes => 60,
        };
        let secs = t.timestamp().div_euclid(step) * step;
        DateTime::from_timestamp(secs, 0).unwrap_or(t)
    }
}

/// Faults in force; `Faults::default()` is none. Durations are milliseconds in JSON.
/// Unknown settings are refused, so a misspelt fault never silently does nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every request.
    #[serde(rename = "latency_ms", with = "ms")]
    pub latency: Duration,
    /// Added to requests by operation, keyed by the operation names the journal shows
    /// (`Resource`, `GroupUpdateUsers`); see [`Faults::check`].
    #[serde(rename = "latency_per_operation_ms", with = "ms_map")]
    pub latency_per_operation: HashMap<String, Duration>,
    /// Share of requests answered 502 or 503 without being applied.
    pub error_5xx_rate: f64,
    /// Every request before this instant (simulated clock) is answered 429.
    pub rate_limit_storm_until: Option<DateTime<Utc>>,
    /// Share of requests whose connection is dropped without an answer, nothing applied.
    pub reset_rate: f64,
    pub commit_then_lose: CommitThenLose,
    /// Operations (journal names) `commit_then_lose` applies to; empty means every mutation.
    #[serde(alias = "commit_then_lose_fields")]
    pub commit_then_lose_operations: Vec<String>,
    /// Serve an HTML page with HTTP 200 for every request, as a wrong network name does.
    pub html_200: bool,
    /// Answer every successful mutation with `entity: null` (the real schema allows it).
    pub null_entities: bool,
    /// How `expiresAt` of access edges is stored.
    pub expiry_precision: ExpiryPrecision,
    /// Answer every request (API and base URL alike) with a 308 to this base URL, as a network
    /// moved to another region does.
    pub redirect_to: Option<String>,
    /// Operations (journal names) answered HTTP 503 without being applied.
    pub fail_operations: Vec<String>,
    /// Mutations (journal names) refused with `ok: false` and an error, without being applied.
    pub refuse_operations: Vec<String>,
    /// Mutations (journal names) applied, then answered with a top-level error and no data, as
    /// a server failing after the write does.
    pub error_after_commit_operations: Vec<String>,
}

impl Faults {
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Refuses per-operation keys that cannot be an operation name the journal shows: a
    /// GraphQL name starting with an upper-case letter (`Resource`, not the root field
    /// `resource`), so a key that would never match is an error, not silence.
    pub fn check(&self) -> Result<(), String> {
        let keys = self
            .latency_per_operation
            .keys()
            .map(|k| ("latency_per_operation_ms", k))
            .chain(
                self.commit_then_lose_operations
                    .iter()
                    .map(|k| ("commit_then_lose_operations", k)),
            )
            .chain(self.fail_operations.iter().map(|k| ("fail_operations", k)))
            .chain(
                self.refuse_operations
                    .iter()
                    .map(|k| ("refuse_operations", k)),
            )
            .chain(
                self.error_after_commit_operations
                    .iter()
                    .map(|k| ("error_after_commit_operations", k)),
            );
        for (setting, key) in keys {
            let mut chars = key.chars();
            let named = chars.next().is_some_and(|c| c.is_ascii_uppercase())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !named {
                return Err(format!(
                    "{setting}: unknown operation {key:?}; key by the operation name the journal \
                     shows (for example \"Resource\" or \"ResourceAccessAdd\"), not the root field"
                ));
            }
        }
        Ok(())
    }
}

mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod ms_map {
    use std::collections::HashMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        m: &HashMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let millis: HashMap<&String, u64> = m
            .iter()
            .map(|(k, v)| (k, u64::try_from(v.as_millis()).unwrap_or(u64::MAX)))
            .collect();
        millis.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<String, Duration>, D::Error> {
        let millis = HashMap::<String, u64>::deserialize(d)?;
        Ok(millis
            .into_iter()
            .map(|(k, v)| (k, Duration::from_millis(v)))
            .collect())
    }
}

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

/// Faults in force; `Faults::default()` is none. Durations are milliseconds in JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every request.
    #[serde(rename = "latency_ms", with = "ms")]
    pub latency: Duration,
    /// Added to requests whose document selects this root field.
    #[serde(rename = "latency_per_operation_ms", with = "ms_map")]
    pub latency_per_operation: HashMap<String, Duration>,
    /// Share of requests answered 502 or 503 without being applied.
    pub error_5xx_rate: f64,
    /// Every request before this instant (simulated clock) is answered 429.
    pub rate_limit_storm_until: Option<DateTime<Utc>>,
    /// Share of requests whose connection is dropped without an answer, nothing applied.
    pub reset_rate: f64,
    pub commit_then_lose: CommitThenLose,
    /// Root fields `commit_then_lose` applies to; empty means every mutation.
    pub commit_then_lose_fields: Vec<String>,
    /// Serve an HTML page with HTTP 200 for every request, as a wrong network name does.
    pub html_200: bool,
}

impl Faults {
    pub fn none() -> Faults {
        Faults::default()
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

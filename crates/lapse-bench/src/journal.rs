//! Following the sim's journal across polls: the sim keeps only its newest 100,000 entries, so
//! long phases poll it and keep what is new, counting any entries that fell out unseen.

use chrono::{DateTime, Duration, Utc};
use twingate_sim::{JournalEntry, Outcome};

use crate::procs::Sim;

#[derive(Default)]
pub struct JournalTail {
    last_seq: Option<u64>,
    pub entries: Vec<JournalEntry>,
    /// Entries that were dropped by the sim before a poll saw them.
    pub lost: u64,
}

impl JournalTail {
    /// Fetch the journal and keep the entries not seen before.
    pub async fn poll(&mut self, sim: &Sim) -> anyhow::Result<usize> {
        let fetched = sim.journal().await?;
        let mut added = 0;
        for e in fetched {
            match self.last_seq {
                Some(last) if e.seq <= last => continue,
                Some(last) if added == 0 && e.seq > last + 1 => self.lost += e.seq - last - 1,
                _ => {}
            }
            self.last_seq = Some(e.seq);
            self.entries.push(e);
            added += 1;
        }
        Ok(added)
    }
}

pub fn is_op(e: &JournalEntry, field: &str) -> bool {
    e.root_fields.iter().any(|f| f == field)
}

/// When the mutation took effect: the journal stamps a request on arrival, and the sim applies
/// it after its injected latency. `offset` is the sim clock's lead over the wall clock.
pub fn applied_at(e: &JournalEntry, latency_ms: u64, offset_secs: f64) -> DateTime<Utc> {
    e.at + Duration::milliseconds(latency_ms as i64)
        - Duration::milliseconds((offset_secs * 1000.0) as i64)
}

pub fn rate_limited(e: &JournalEntry) -> bool {
    e.outcome == Outcome::RateLimited
}

pub fn var<'a>(e: &'a JournalEntry, name: &str) -> Option<&'a str> {
    e.variables.get(name)?.as_str()
}

pub fn var_list(e: &JournalEntry, name: &str) -> Vec<String> {
    e.variables
        .get(name)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

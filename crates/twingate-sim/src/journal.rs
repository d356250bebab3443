//! The journal: one entry per API request, with what it asked and how it ended.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a request ended, by failure channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    /// A mutation payload answered `ok: false`; the payload's error string.
    Rejected(String),
    /// Top-level GraphQL errors (or an unreadable body); the messages joined by "; ".
    Errors(String),
    RateLimited,
    /// 401 for a missing or unknown key, 403 for a key whose level forbids the operation.
    Unauthorized,
    /// An injected fault; names which one.
    Fault(String),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub api_key_name: Option<String>,
    pub operation_name: Option<String>,
    pub root_fields: Vec<String>,
    pub is_mutation: bool,
    pub variables: serde_json::Value,
    /// 0 when the connection was dropped without an answer.
    pub http_status: u16,
    pub outcome: Outcome,
    pub mutation_applied: bool,
}

/// Keeps the newest entries only, so a long benchmark cannot grow memory without bound.
pub(crate) const JOURNAL_CAPACITY: usize = 100_000;

#[derive(Default)]
pub(crate) struct Journal {
    next_seq: u64,
    entries: VecDeque<JournalEntry>,
}

impl Journal {
    pub fn push(&mut self, mut entry: JournalEntry) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        if self.entries.len() == JOURNAL_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.iter().cloned().collect()
    }

    /// Clearing keeps the sequence going, so entries are never confused across clears.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

//! `[access]`: where access lists live and the request flow's defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    #[serde(default = "default_lists_dir")]
    pub lists_dir: PathBuf,
    /// How long before a grant's end its requester is warned.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub expiring_soon_lead: Duration,
    /// How long a pending request waits before it lapses, for lists that do not say.
    #[serde(default = "default_pending", with = "humantime_serde")]
    pub pending_wait: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            lists_dir: default_lists_dir(),
            expiring_soon_lead: default_lead(),
            pending_wait: default_pending(),
        }
    }
}

fn default_lists_dir() -> PathBuf {
    PathBuf::from("/etc/lapse/access-lists.d")
}

fn default_lead() -> Duration {
    Duration::from_secs(600)
}

fn default_pending() -> Duration {
    Duration::from_secs(3600)
}

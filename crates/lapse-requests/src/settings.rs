//! `[access]`: where access lists and grant policies live, and the request flow's defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    #[serde(default = "default_lists_dir")]
    pub lists_dir: PathBuf,
    /// Grant policies: who may grant what directly, to whom, for how long.
    #[serde(default = "default_policies_dir")]
    pub policies_dir: PathBuf,
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
            policies_dir: default_policies_dir(),
            expiring_soon_lead: default_lead(),
            pending_wait: default_pending(),
        }
    }
}

fn default_lists_dir() -> PathBuf {
    PathBuf::from("/etc/lapse/access-lists.d")
}

fn default_policies_dir() -> PathBuf {
    PathBuf::from("/etc/lapse/grant-policies.d")
}

fn default_lead() -> Duration {
    Duration::from_secs(600)
}

fn default_pending() -> Duration {
    Duration::from_secs(3600)
}

/// `[slack]`: the Slack app lapse posts requests with and takes clicks from. The bot token and
/// the signing secret come from credential files, never from the TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Slack's Web API; `https://slack.com/api`.
    #[serde(default = "default_slack_api")]
    pub api_base_url: String,
    /// A file holding the bot token (`xoxb-…`).
    pub bot_token_file: Option<PathBuf>,
    /// A systemd credential holding the bot token.
    pub bot_token_credential: Option<String>,
    /// A file holding the app's signing secret.
    pub signing_secret_file: Option<PathBuf>,
    /// A systemd credential holding the signing secret.
    pub signing_secret_credential: Option<String>,
    /// Each call to Slack gives up after this long (a notification is then retried).
    #[serde(default = "default_slack_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

fn default_slack_timeout() -> Duration {
    Duration::from_secs(5)
}

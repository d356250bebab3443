//! Who is on call now: the answer the request flow is given for lists with
//! `auto_approve_on_call`, and PagerDuty's REST API v2 as its first source.
//!
//! The flow treats every failure (unreachable, slow, an error answer) as "no answer": the
//! request then waits for its owners. Nothing is ever approved by default.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapse_core::access_list::normalize_identity;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Someone found on call: which schedule and which user of the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnCallMatch {
    /// `pagerduty`.
    pub provider: String,
    pub schedule_id: String,
    pub schedule_name: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
}

pub type OnCallFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<OnCallMatch>, String>> + Send + 'a>>;

/// A source of on-call answers. `Ok(None)`: the person is not on call on any of the schedules.
pub trait OnCall: Send + Sync {
    fn on_call<'a>(&'a self, schedules: &'a [String], email: &'a str) -> OnCallFuture<'a>;
}

/// `[pagerduty]`: the API key comes from a credential file, never from the TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    #[serde(default = "default_base")]
    pub base_url: String,
    /// A file holding the REST API key.
    pub api_key_file: Option<PathBuf>,
    /// A systemd credential holding the REST API key.
    pub api_key_credential: Option<String>,
    /// Longer than this and the request waits for its owners.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_base() -> String {
    "https://api.pagerduty.com".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

/// PagerDuty's `GET /oncalls` for the schedules at this instant, users included, matched by
/// email.
pub struct PagerDuty {
    http: reqwest::Client,
    base: String,
    key: SecretString,
    pub timeout: Duration,
}

#[derive(Deserialize)]
struct OnCallsPage {
    #[serde(default)]
    oncalls: Vec<OnCallEntry>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct OnCallEntry {
    user: Option<PdUser>,
    schedule: Option<PdRef>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct PdUser {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct PdRef {
    id: String,
    #[serde(default)]
    summary: Option<String>,
}

const PAGE: usize = 100;

impl PagerDuty {
    pub fn from_settings(s: &PagerDutySettings) -> Result<Self, String> {
        let key = crate::credential::load(
            s.api_key_file.as_deref(),
            s.api_key_credential.as_deref(),
            "pagerduty.api_key_file",
            "pagerduty.api_key_credential",
        )?;
        Self::new(&s.base_url, key, s.timeout)
    }

    pub fn new(base: &str, key: SecretString, timeout: Duration) -> Result<Self, String> {
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "pagerduty.base_url = {base:?} is not an http(s) URL; leave it out for https://api.pagerduty.com"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self {
            http,
            base,
            key,
            timeout,
        })
    }

    async fn find(&self, schedules: &[String], email: &str) -> Result<Option<OnCallMatch>, String> {
        let me = normalize_identity(email);
        let now = Utc::now();
        let mut offset = 0usize;
        loop {
            let mut query: Vec<(&str, String)> = schedules
                .iter()
                .map(|s| ("schedule_ids[]", s.clone()))
                .collect();
            query.push(("include[]", "users".into()));
            query.push(("time_zone", "UTC".into()));
            query.push(("limit", PAGE.to_string()));
            query.push(("offset", offset.to_string()));
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            let answer = self
                .http
                .get(format!("{}/oncalls?{query}", self.base))
                .header(
                    "Authorization",
                    format!("Token token={}", self.key.expose_secret()),
                )
                .header("Accept", "application/vnd.pagerduty+json;version=2")
                .send()
                .await
                .map_err(|e| format!("PagerDuty could not be asked: {}", e.without_url()))?;
            let status = answer.status();
            if !status.is_success() {
                let text = answer.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                return Err(format!("PagerDuty answered {status}: {text}"));
            }
            let page: OnCallsPage = answer
                .json()
                .await
                .map_err(|e| format!("PagerDuty's answer is not an on-call list: {e}"))?;
            let count = page.oncalls.len();
            for o in page.oncalls {
                let (Some(user), Some(schedule)) = (o.user, o.schedule) else {
                    continue;
                };
                let on_now = o.start.is_none_or(|s| s <= now) && o.end.is_none_or(|e| now < e);
                let matches = user
                    .email
                    .as_deref()
                    .is_some_and(|e| normalize_identity(e) == me);
                if on_now && matches && schedules.contains(&schedule.id) {
                    return Ok(Some(OnCallMatch {
                        provider: "pagerduty".into(),
                        schedule_name: schedule.summary.unwrap_or_else(|| schedule.id.clone()),
                        schedule_id: schedule.id,
                        user_name: user.name.or(user.summary).unwrap_or_default(),
                        user_id: user.id,
                        user_email: me,
                    }));
                }
            }
            if !page.more || count == 0 {
                return Ok(None);
            }
            offset += count;
        }
    }
}

impl OnCall for PagerDuty {
    fn on_call<'a>(&'a self, schedules: &'a [String], email: &'a str) -> OnCallFuture<'a> {
        Box::pin(self.find(schedules, email))
    }
}

//! The Slack Web API as a notification channel: the delivery task (the outbox) posts requests
//! to their list's channel and updates the message in place when they are decided. A Slack
//! outage or rate limit therefore delays only these messages, never a grant or a revocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapse_requests::notify::{Channel, Delivery, Undelivered};
use lapse_store::{OutboxItem, RequestChange, Store};
use serde_json::{Value, json};
use tracing::warn;

use crate::api::{SlackApi, SlackError};
use crate::message;

/// The sink name Slack rows carry in the outbox.
pub const SINK: &str = "slack";

/// The events posted or shown on a list's channel.
const EVENTS: &[&str] = &[
    "request-created",
    "break-glass",
    "request-approved-on-call",
    "request-approved",
    "request-denied",
    "request-lapsed",
];

/// Where the message of request `id` was posted: `{"channel", "ts", "summary"}`.
pub fn mark_key(id: &str) -> String {
    format!("slack.message.{id}")
}

pub struct SlackChannel {
    api: Arc<SlackApi>,
    /// After a 429, no call until then: every row waits, not only the one refused.
    quiet_until: Mutex<Option<Instant>>,
}

impl SlackChannel {
    pub fn new(api: Arc<SlackApi>) -> Self {
        Self {
            api,
            quiet_until: Mutex::new(None),
        }
    }

    fn undelivered(&self, e: SlackError) -> Undelivered {
        match e {
            SlackError::RateLimited(d) => {
                if let Ok(mut q) = self.quiet_until.lock() {
                    *q = Some(Instant::now() + d);
                }
                Undelivered {
                    error: e.to_string(),
                    retry_after: Some(d),
                }
            }
            other => Undelivered::new(other.to_string()),
        }
    }

    async fn post(
        &self,
        store: &Store,
        item: &OutboxItem,
        channel: &str,
        (text, blocks): (String, Value),
    ) -> Result<(), Undelivered> {
        let id = item.payload["request"].as_str().unwrap_or_default();
        let (ch, ts) = self
            .api
            .post_message(channel, &text, &blocks)
            .await
            .map_err(|e| self.undelivered(e))?;
        if item.event == "request-created" && !id.is_empty() {
            let mark =
                json!({ "channel": ch, "ts": ts, "summary": message::summary(&item.payload) });
            store
                .commit_requests(RequestChange {
                    marks: vec![(mark_key(id), mark.to_string())],
                    ..RequestChange::default()
                })
                .await
                .map_err(|e| Undelivered::new(format!("recording the message: {e}")))?;
        }
        Ok(())
    }

    async fn decide(
        &self,
        store: &Store,
        item: &OutboxItem,
        channel: &str,
    ) -> Result<(), Undelivered> {
        let p = &item.payload;
        let id = p["request"].as_str().unwrap_or_default();
        let line = message::decision(&item.event, p);
        let posted = store
            .mark(&mark_key(id))
            .await
            .map_err(|e| Undelivered::new(e.to_string()))?
            .and_then(|m| serde_json::from_str::<Value>(&m).ok());
        let Some(posted) = posted else {
            // Never posted (the list had no channel then): say it once, in the channel.
            let text = format!(
                "Request `{}` on `{}`: {line}",
                lapse_core::text::slack_escape(id),
                lapse_core::text::slack_escape(p["list"].as_str().unwrap_or(""))
            );
            return self
                .post(
                    store,
                    item,
                    channel,
                    (
                        text.clone(),
                        json!([{ "type": "section", "text": { "type": "mrkdwn", "text": text } }]),
                    ),
                )
                .await;
        };
        let (text, blocks) = message::decided(posted["summary"].as_str().unwrap_or(""), &line);
        let (ch, ts) = (
            posted["channel"].as_str().unwrap_or(channel),
            posted["ts"].as_str().unwrap_or(""),
        );
        match self.api.update(ch, ts, &text, &blocks).await {
            Ok(()) => Ok(()),
            Err(SlackError::Api(code))
                if code == "message_not_found" || code == "channel_not_found" =>
            {
                warn!(
                    request = id,
                    code, "the request's Slack message is gone; posting the decision anew"
                );
                self.post(store, item, channel, (text, blocks)).await
            }
            Err(e) => Err(self.undelivered(e)),
        }
    }
}

impl Channel for SlackChannel {
    fn name(&self) -> &str {
        SINK
    }

    fn takes(&self, event: &str, payload: &Value) -> bool {
        EVENTS.contains(&event)
            && payload
                .get("slack_channel")
                .and_then(Value::as_str)
                .is_some()
    }

    fn deliver<'a>(&'a self, store: &'a Store, item: &'a OutboxItem) -> Delivery<'a> {
        Box::pin(async move {
            let wait = self
                .quiet_until
                .lock()
                .ok()
                .and_then(|q| *q)
                .and_then(|t| t.checked_duration_since(Instant::now()));
            if let Some(wait) = wait.filter(|w| *w > Duration::ZERO) {
                return Err(Undelivered {
                    error: "waiting out Slack's rate limit".into(),
                    retry_after: Some(wait),
                });
            }
            let channel = item.payload["slack_channel"].as_str().unwrap_or_default();
            match item.event.as_str() {
                "request-created" => {
                    let id = item.payload["request"].as_str().unwrap_or_default();
                    // Posted before, its mark written: a repeat of this row posts nothing.
                    if store.mark(&mark_key(id)).await.ok().flatten().is_some() {
                        return Ok(());
                    }
                    self.post(store, item, channel, message::request(&item.payload))
                        .await
                }
                "break-glass" => {
                    self.post(store, item, channel, message::break_glass(&item.payload))
                        .await
                }
                "request-approved-on-call" => {
                    self.post(store, item, channel, message::on_call(&item.payload))
                        .await
                }
                _ => self.decide(store, item, channel).await,
            }
        })
    }
}

//! Notifications: webhook sinks (generic JSON and Slack incoming-webhook format), the outbox rows
//! events are written as, and the task that delivers them with retries.
//!
//! A webhook URL carries a secret: it is read from a file, held as a secret, and never logged or
//! stored; logs and the outbox name the sink only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapse_store::{NewOutbox, OutboxItem, Store};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{debug, warn};

/// `[notify]`: where notifications go and how delivery is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    #[serde(default)]
    pub webhook: Vec<WebhookSettings>,
    /// First retry delay; the ceiling doubles per failed attempt up to `retry_cap`, and each
    /// wait is drawn below it (full jitter, `lapse_core::backoff`), so sinks that failed together
    /// are not retried in step.
    #[serde(default = "default_retry_base", with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(default = "default_retry_cap", with = "humantime_serde")]
    pub retry_cap: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            webhook: Vec::new(),
            retry_base: default_retry_base(),
            retry_cap: default_retry_cap(),
        }
    }
}

fn default_retry_base() -> Duration {
    Duration::from_secs(2)
}

fn default_retry_cap() -> Duration {
    Duration::from_secs(300)
}

/// `[[notify.webhook]]`: one sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Named in logs and in the outbox instead of the URL.
    pub name: String,
    /// A file holding the URL.
    pub url_file: Option<PathBuf>,
    /// A systemd credential (`$CREDENTIALS_DIRECTORY/<credential>`) holding the URL.
    pub credential: Option<String>,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The event as a JSON object.
    #[default]
    Json,
    /// `{"text": ...}` for Slack incoming webhooks.
    Slack,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.webhook `{name}`: {problem}")]
    Sink { name: String, problem: String },
}

/// A configured sink with its URL read.
pub struct Sink {
    pub name: String,
    url: SecretString,
    pub format: Format,
}

/// Reads every sink's URL. Errors name the sink and the file, never the URL.
pub fn load_sinks(s: &NotifySettings) -> Result<Vec<Sink>, NotifyError> {
    let mut sinks = Vec::new();
    for w in &s.webhook {
        let bad = |problem: String| NotifyError::Sink {
            name: w.name.clone(),
            problem,
        };
        if sinks.iter().any(|x: &Sink| x.name == w.name) {
            return Err(bad("the name is used twice".into()));
        }
        let path = match (&w.url_file, &w.credential) {
            (Some(p), None) => p.clone(),
            (None, Some(c)) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => PathBuf::from(dir).join(c),
                None => {
                    return Err(bad(
                        "credential is set but $CREDENTIALS_DIRECTORY is not".into()
                    ));
                }
            },
            _ => return Err(bad("give exactly one of url_file or credential".into())),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(format!("reading {}: {e}", path.display())))?;
        let url = text.trim().to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(bad(format!(
                "{} does not hold an http(s) URL",
                path.display()
            )));
        }
        sinks.push(Sink {
            name: w.name.clone(),
            url: SecretString::from(url),
            format: w.format,
        });
    }
    Ok(sinks)
}

/// Turns events into outbox rows, one per sink.
#[derive(Clone)]
pub struct Notifier {
    sinks: Arc<Vec<Sink>>,
}

impl Notifier {
    pub fn new(sinks: Vec<Sink>) -> Self {
        Self {
            sinks: Arc::new(sinks),
        }
    }

    /// The rows announcing `event` to `to` (identities), with a one-line `text` for people.
    pub fn rows(
        &self,
        event: &str,
        to: &[String],
        text: String,
        mut detail: Value,
    ) -> Vec<NewOutbox> {
        if let Some(o) = detail.as_object_mut() {
            o.insert("event".into(), json!(event));
            o.insert("to".into(), json!(to));
            o.insert("text".into(), json!(text));
            o.insert("at".into(), json!(Utc::now()));
        }
        self.sinks
            .iter()
            .map(|s| NewOutbox {
                sink: s.name.clone(),
                event: event.to_owned(),
                payload: detail.clone(),
            })
            .collect()
    }
}

fn body(format: Format, item: &OutboxItem) -> Value {
    match format {
        Format::Json => {
            let mut v = item.payload.clone();
            if let Some(o) = v.as_object_mut() {
                // Lets a receiver drop a repeat should a delivery's answer be lost.
                o.insert("id".into(), json!(item.id));
            }
            v
        }
        Format::Slack => {
            // Reasons and names are the sender's text: Slack must not read `<!channel>` or
            // `<https://...|label>` in them as mentions or links.
            let text = item
                .payload
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or(&item.event);
            json!({ "text": lapse_core::text::slack_escape(text) })
        }
    }
}

/// Delivers due outbox rows until `stop` turns true. Runs beside the engine, so a slow or
/// failing webhook never holds up a grant or a revocation.
pub async fn deliver(
    store: Store,
    notifier: Notifier,
    settings: NotifySettings,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e.without_url(), "notifications disabled: no HTTP client");
            return;
        }
    };
    loop {
        if let Err(e) = deliver_due(&store, &notifier, &settings, &http).await {
            warn!(error = %e, "delivering notifications");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn deliver_due(
    store: &Store,
    notifier: &Notifier,
    s: &NotifySettings,
    http: &reqwest::Client,
) -> Result<(), lapse_store::StoreError> {
    for item in store.outbox_due(Utc::now(), 50).await? {
        let Some(sink) = notifier.sinks.iter().find(|x| x.name == item.sink) else {
            // The sink was removed from the settings: keep the row, try again much later.
            let next = Utc::now() + chrono::Duration::hours(1);
            store
                .outbox_attempted(
                    item.id,
                    Err((next, format!("no sink named `{}` is configured", item.sink))),
                )
                .await?;
            continue;
        };
        let sent = http
            .post(sink.url.expose_secret())
            .json(&body(sink.format, &item))
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => Ok(Utc::now()),
            Ok(r) => Err(format!("answered {}", r.status())),
            // The error's text would include the URL, which holds the secret.
            Err(e) => Err(e.without_url().to_string()),
        };
        match outcome {
            Ok(at) => {
                metrics::counter!("lapse_notifications_delivered_total", "sink" => sink.name.clone())
                    .increment(1);
                debug!(sink = %sink.name, event = %item.event, id = item.id, "notification delivered");
                store.outbox_attempted(item.id, Ok(at)).await?;
            }
            Err(error) => {
                let delay = lapse_core::backoff::backoff(
                    item.attempts,
                    s.retry_base,
                    s.retry_cap,
                    rand::random::<f64>(),
                );
                let next = Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::minutes(5));
                metrics::counter!("lapse_notification_failures_total", "sink" => sink.name.clone())
                    .increment(1);
                warn!(sink = %sink.name, event = %item.event, id = item.id, attempts = item.attempts + 1, %error, "notification not delivered; will retry");
                store.outbox_attempted(item.id, Err((next, error))).await?;
            }
        }
    }
    Ok(())
}

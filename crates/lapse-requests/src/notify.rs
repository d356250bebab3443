//! Notifications: channels that deliver them (webhook sinks in generic JSON or Slack
//! incoming-webhook format here; others, such as the Slack Web API, implement [`Channel`] at the
//! edge), the outbox rows events are written as, and the task that delivers them with retries.
//!
//! A webhook URL carries a secret: it is read from a file, held as a secret, and never logged or
//! stored; logs and the outbox name the sink only. Generic webhooks are signed (see
//! [`signature`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use lapse_store::{NewOutbox, OutboxItem, Store};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The header carrying the Unix time (seconds) a generic webhook was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Lapse-Timestamp";
/// The header carrying `v1=` and the hex HMAC-SHA256 of `v1:{timestamp}:{body}`.
pub const SIGNATURE_HEADER: &str = "X-Lapse-Signature";
/// The notification's stable id (the same on every retry), for de-duplication.
pub const ID_HEADER: &str = "X-Lapse-Delivery";
/// The notification's type (`request-created`, ...).
pub const EVENT_HEADER: &str = "X-Lapse-Event";

/// `v1=` and the hex HMAC-SHA256, keyed with the sink's secret, of the bytes
/// `v1:{timestamp}:{body}` (the timestamp in decimal, the body exactly as sent).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // An HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery did not happen, and at the earliest when to try again.
#[derive(Debug, Clone)]
pub struct Undelivered {
    pub error: String,
    /// The receiver asked to wait this long (a 429's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Undelivered {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            retry_after: None,
        }
    }
}

pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), Undelivered>> + Send + 'a>>;

/// Somewhere notifications go. The delivery task calls `deliver` for each due outbox row of
/// this channel's name; a failure is retried with backoff, never dropped.
pub trait Channel: Send + Sync {
    /// Named in logs and in the outbox instead of any address.
    fn name(&self) -> &str;
    /// Whether this channel wants a row for `event` with `payload` (asked when rows are made).
    fn takes(&self, _event: &str, _payload: &Value) -> bool {
        true
    }
    /// Delivers one row; `store` is there for channels that keep state across rows (the Slack
    /// message a later decision updates).
    fn deliver<'a>(&'a self, store: &'a Store, item: &'a OutboxItem) -> Delivery<'a>;
}

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
    /// A file holding the secret generic (`json`) webhooks are signed with; required for them.
    pub secret_file: Option<PathBuf>,
    /// A systemd credential holding that secret.
    pub secret_credential: Option<String>,
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

/// A configured webhook sink with its URL (and signing secret) read.
pub struct Sink {
    pub name: String,
    url: SecretString,
    pub format: Format,
    secret: Option<SecretString>,
    http: reqwest::Client,
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
        let secret = match w.format {
            Format::Json => Some(
                crate::credential::load(
                    w.secret_file.as_deref(),
                    w.secret_credential.as_deref(),
                    "secret_file",
                    "secret_credential",
                )
                .map_err(|e| {
                    bad(format!(
                        "{e} (generic webhooks are signed; make one with `openssl rand -hex 32`)"
                    ))
                })?,
            ),
            Format::Slack if w.secret_file.is_some() || w.secret_credential.is_some() => {
                return Err(bad(
                    "Slack incoming webhooks are not signed: remove secret_file/secret_credential"
                        .into(),
                ));
            }
            Format::Slack => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(format!("no HTTP client: {}", e.without_url())))?;
        sinks.push(Sink {
            name: w.name.clone(),
            url: SecretString::from(url),
            format: w.format,
            secret,
            http,
        });
    }
    Ok(sinks)
}

impl Channel for Sink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, _store: &'a Store, item: &'a OutboxItem) -> Delivery<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(&body(self.format, item))
                .map_err(|e| Undelivered::new(format!("encoding the body: {e}")))?;
            let mut req = self
                .http
                .post(self.url.expose_secret())
                .header("Content-Type", "application/json");
            if let Some(secret) = &self.secret {
                let ts = Utc::now().timestamp();
                req = req
                    .header(TIMESTAMP_HEADER, ts.to_string())
                    .header(
                        SIGNATURE_HEADER,
                        signature(secret.expose_secret().as_bytes(), ts, &body),
                    )
                    .header(ID_HEADER, item.id.to_string())
                    .header(EVENT_HEADER, item.event.as_str());
            }
            match req.body(body).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(Undelivered {
                    error: format!("answered {}", r.status()),
                    retry_after: retry_after(r.headers()),
                }),
                // The error's text would include the URL, which holds the secret.
                Err(e) => Err(Undelivered::new(e.without_url().to_string())),
            }
        })
    }
}

/// A `Retry-After` in seconds, as Slack and most receivers send it.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Turns events into outbox rows, one per channel that takes them.
#[derive(Clone)]
pub struct Notifier {
    sinks: Arc<Vec<Arc<dyn Channel>>>,
}

impl Notifier {
    /// The webhook sinks.
    pub fn new(sinks: Vec<Sink>) -> Self {
        Self::with_channels(
            sinks
                .into_iter()
                .map(|s| Arc::new(s) as Arc<dyn Channel>)
                .collect(),
        )
    }

    /// Any channels (webhook sinks, the Slack Web API, ...); names must be distinct.
    pub fn with_channels(channels: Vec<Arc<dyn Channel>>) -> Self {
        Self {
            sinks: Arc::new(channels),
        }
    }

    /// This notifier with `channel` added.
    pub fn and(self, channel: Arc<dyn Channel>) -> Self {
        let mut all: Vec<Arc<dyn Channel>> = self.sinks.iter().cloned().collect();
        all.push(channel);
        Self::with_channels(all)
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
            .filter(|s| s.takes(event, &detail))
            .map(|s| NewOutbox {
                sink: s.name().to_owned(),
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
                o.insert("type".into(), json!(item.event));
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
/// failing channel never holds up a grant or a revocation.
pub async fn deliver(
    store: Store,
    notifier: Notifier,
    settings: NotifySettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = deliver_due(&store, &notifier, &settings).await {
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
) -> Result<(), lapse_store::StoreError> {
    for item in store.outbox_due(Utc::now(), 50).await? {
        let Some(sink) = notifier.sinks.iter().find(|x| x.name() == item.sink) else {
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
        match sink.deliver(store, &item).await {
            Ok(()) => {
                metrics::counter!("lapse_notifications_delivered_total", "sink" => sink.name().to_owned())
                    .increment(1);
                debug!(sink = %sink.name(), event = %item.event, id = item.id, "notification delivered");
                store.outbox_attempted(item.id, Ok(Utc::now())).await?;
            }
            Err(Undelivered { error, retry_after }) => {
                let delay = lapse_core::backoff::backoff(
                    item.attempts,
                    s.retry_base,
                    s.retry_cap,
                    rand::random::<f64>(),
                )
                .max(retry_after.unwrap_or_default());
                let next = Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::minutes(5));
                metrics::counter!("lapse_notification_failures_total", "sink" => sink.name().to_owned())
                    .increment(1);
                warn!(sink = %sink.name(), event = %item.event, id = item.id, attempts = item.attempts + 1, %error, "notification not delivered; will retry");
                store.outbox_attempted(item.id, Err((next, error))).await?;
            }
        }
    }
    Ok(())
}

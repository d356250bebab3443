//! The few Slack Web API methods lapse calls, with the bot token as a bearer. Slack answers
//! HTTP 200 with `ok: false` and an error code for refusals, and 429 with `Retry-After` when
//! rate limited; both are typed here.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SlackError {
    /// 429: wait this long before calling again.
    #[error("Slack is rate limiting; retry after {0:?}")]
    RateLimited(Duration),
    /// `ok: false` with this error code.
    #[error("Slack answered ok:false, error {0}")]
    Api(String),
    /// No answer, or not Slack's shape.
    #[error("Slack could not be asked: {0}")]
    Transport(String),
}

/// Slack's Web API with the bot token.
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl SlackApi {
    pub fn new(base: &str, token: SecretString, timeout: Duration) -> Result<Self, String> {
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "slack.api_base_url = {base:?} is not an http(s) URL; leave it out for https://slack.com/api"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self { http, base, token })
    }

    /// One call with a JSON body (Slack accepts JSON for its write methods) or, for reads, a
    /// form body; the answer when `ok` is true.
    async fn call(&self, method: &str, args: Value, json_body: bool) -> Result<Value, SlackError> {
        let req = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(self.token.expose_secret());
        let req = if json_body {
            req.header("Content-Type", "application/json; charset=utf-8")
                .body(args.to_string())
        } else {
            let mut f = form_urlencoded::Serializer::new(String::new());
            for (k, v) in args.as_object().into_iter().flatten() {
                f.append_pair(k, v.as_str().unwrap_or_default());
            }
            req.header("Content-Type", "application/x-www-form-urlencoded")
                .body(f.finish())
        };
        let r = req
            .send()
            .await
            .map_err(|e| SlackError::Transport(e.without_url().to_string()))?;
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait =
                lapse_requests::notify::retry_after(r.headers()).unwrap_or(Duration::from_secs(1));
            return Err(SlackError::RateLimited(wait));
        }
        if !r.status().is_success() {
            return Err(SlackError::Transport(format!("answered {}", r.status())));
        }
        let v: Value = r
            .json()
            .await
            .map_err(|e| SlackError::Transport(format!("not JSON: {e}")))?;
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(SlackError::Api(
                v["error"].as_str().unwrap_or("unknown_error").to_owned(),
            ))
        }
    }

    /// `chat.postMessage`: the message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(String, String), SlackError> {
        let v = self
            .call(
                "chat.postMessage",
                json!({ "channel": channel, "text": text, "blocks": blocks, "unfurl_links": false }),
                true,
            )
            .await?;
        let ts = v["ts"].as_str().unwrap_or_default().to_owned();
        let ch = v["channel"].as_str().unwrap_or(channel).to_owned();
        Ok((ch, ts))
    }

    /// `chat.update` of the message `ts` in `channel`.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.update",
            json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks }),
            true,
        )
        .await
        .map(|_| ())
    }

    /// `chat.postEphemeral`: `text` shown to `user` only.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.postEphemeral",
            json!({ "channel": channel, "user": user, "text": text }),
            true,
        )
        .await
        .map(|_| ())
    }

    /// `users.info`: the user's profile email (needs `users:read.email`), `None` without one.
    pub async fn user_email(&self, user: &str) -> Result<Option<String>, SlackError> {
        let v = self
            .call("users.info", json!({ "user": user }), false)
            .await?;
        Ok(v["user"]["profile"]["email"].as_str().map(str::to_owned))
    }
}

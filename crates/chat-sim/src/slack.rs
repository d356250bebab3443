//! Slack's Web API as lapse uses it, and Slack's side of interactivity.
//!
//! Methods answer as Slack documents: HTTP 200 with `{"ok": true, ...}` or
//! `{"ok": false, "error": "<code>"}` (`not_authed`, `invalid_auth`, `channel_not_found`,
//! `message_not_found`, `user_not_found`, `no_text`, or one set with [`SlackSim::fail_next`]);
//! HTTP 429 with `Retry-After` while rate limited. Arguments are read from the query string,
//! a form body or a JSON body; the token from `Authorization: Bearer` (or a `token` argument).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// A Slack user: `users.info` answers its email in `profile.email`.
#[derive(Debug, Clone)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

/// A message posted by the bot, as it stands after any updates.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Value,
    /// `chat.update` calls that changed it.
    pub updates: u32,
}

#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
}

/// One call as received (the token left out) and the HTTP status it was answered with.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub args: Value,
    pub status: u16,
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    token: String,
    users: HashMap<String, SlackUser>,
    channels: HashSet<String>,
    messages: Vec<Message>,
    ephemerals: Vec<Ephemeral>,
    calls: Vec<Call>,
    /// Calls still to be answered 429, and the `Retry-After` (seconds) they carry.
    rate_limited: u32,
    retry_after: u64,
    fail: HashMap<String, String>,
    seq: u64,
}

#[derive(Clone)]
pub struct SlackSim {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

/// Team and app ids the stand-in answers with.
pub const TEAM: &str = "T0SIM";
pub const APP: &str = "A0SIM";

impl SlackSim {
    /// A workspace whose bot token is `token`, with `channels` the bot may post to.
    pub async fn start(token: &str, channels: &[&str]) -> std::io::Result<SlackSim> {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .route("/api/{method}", any(method))
            .with_state(inner.clone());
        let addr = crate::serve(app).await?;
        Ok(SlackSim {
            addr,
            inner,
            http: reqwest::Client::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Web API's base, as `https://slack.com/api` is for Slack.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn add_user(&self, id: &str, name: &str, email: Option<&str>) {
        self.lock().users.insert(
            id.to_owned(),
            SlackUser {
                id: id.to_owned(),
                name: name.to_owned(),
                email: email.map(str::to_owned),
            },
        );
    }

    /// The next `calls` calls are answered 429 with `Retry-After: retry_after`.
    pub fn rate_limit(&self, calls: u32, retry_after: u64) {
        let mut i = self.lock();
        i.rate_limited = calls;
        i.retry_after = retry_after;
    }

    /// The next call of `method` answers `{"ok": false, "error": error}`.
    pub fn fail_next(&self, method: &str, error: &str) {
        self.lock().fail.insert(method.to_owned(), error.to_owned());
    }

    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.lock().ephemerals.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Sends `body` to `url` signed as Slack signs requests: `X-Slack-Request-Timestamp` and
    /// `X-Slack-Signature: v0=` hex HMAC-SHA256 of `v0:{timestamp}:{body}` keyed with the
    /// signing secret. Answers the status and body.
    pub async fn send_signed(
        &self,
        url: &str,
        secret: &str,
        timestamp: i64,
        body: String,
    ) -> (u16, String) {
        let sig = sign(secret, timestamp, body.as_bytes());
        self.send_raw(url, &timestamp.to_string(), &sig, body).await
    }

    /// Sends `body` with the given headers as they are (for refused signatures).
    pub async fn send_raw(
        &self,
        url: &str,
        timestamp: &str,
        signature: &str,
        body: String,
    ) -> (u16, String) {
        let r = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", timestamp)
            .header("X-Slack-Signature", signature)
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// The `block_actions` payload Slack sends when `user` clicks the button `action_id` of
    /// the message `ts`, form-encoded as `payload=…`. `None` when there is no such button.
    pub fn click_body(&self, user: &str, ts: &str, action_id: &str) -> Option<String> {
        let i = self.lock();
        let m = i.messages.iter().find(|m| m.ts == ts)?;
        let (block_id, button) = find_button(&m.blocks, action_id)?;
        let u = i.users.get(user).cloned().unwrap_or(SlackUser {
            id: user.to_owned(),
            name: user.to_lowercase(),
            email: None,
        });
        let action_ts = format!("{}.{:06}", chrono::Utc::now().timestamp(), 1);
        let payload = json!({
            "type": "block_actions",
            "user": { "id": u.id, "username": u.name, "name": u.name, "team_id": TEAM },
            "api_app_id": APP,
            "token": "deprecated-verification-token",
            "container": { "type": "message", "message_ts": m.ts, "channel_id": m.channel, "is_ephemeral": false },
            "trigger_id": "1.2.3",
            "team": { "id": TEAM, "domain": "sim" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": m.channel, "name": m.channel.to_lowercase() },
            "message": { "type": "message", "user": "U0BOT", "ts": m.ts, "bot_id": "B0SIM", "text": m.text, "blocks": m.blocks },
            "state": { "values": {} },
            "response_url": format!("http://{}/actions/{TEAM}/1/sim", self.addr),
            "actions": [{
                "action_id": action_id,
                "block_id": block_id,
                "text": button["text"],
                "value": button["value"],
                "style": button["style"],
                "type": "button",
                "action_ts": action_ts,
            }],
        });
        Some(form(&[("payload", &payload.to_string())]))
    }

    /// `user` clicks `action_id` on message `ts`; Slack's request to `url`, signed now.
    pub async fn click(
        &self,
        url: &str,
        secret: &str,
        user: &str,
        ts: &str,
        action_id: &str,
    ) -> (u16, String) {
        let Some(body) = self.click_body(user, ts, action_id) else {
            return (0, format!("no button {action_id} on message {ts}"));
        };
        self.send_signed(url, secret, chrono::Utc::now().timestamp(), body)
            .await
    }

    /// The form body Slack sends for a slash command.
    pub fn command_body(&self, user: &str, channel: &str, command: &str, text: &str) -> String {
        let name = self
            .lock()
            .users
            .get(user)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| user.to_lowercase());
        let response_url = format!("http://{}/commands/{TEAM}/1/sim", self.addr);
        form(&[
            ("token", "deprecated-verification-token"),
            ("team_id", TEAM),
            ("team_domain", "sim"),
            ("channel_id", channel),
            ("channel_name", &channel.to_lowercase()),
            ("user_id", user),
            ("user_name", &name),
            ("command", command),
            ("text", text),
            ("api_app_id", APP),
            ("is_enterprise_install", "false"),
            ("response_url", &response_url),
            ("trigger_id", "1.2.3"),
        ])
    }

    /// `user` types `/lapse <text>` in `channel`; Slack's request to `url`, signed now.
    pub async fn command(
        &self,
        url: &str,
        secret: &str,
        user: &str,
        channel: &str,
        text: &str,
    ) -> (u16, String) {
        let body = self.command_body(user, channel, "/lapse", text);
        self.send_signed(url, secret, chrono::Utc::now().timestamp(), body)
            .await
    }
}

/// `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`, as Slack signs requests.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The block id and the button element with `action_id` in `blocks`.
fn find_button(blocks: &Value, action_id: &str) -> Option<(Value, Value)> {
    for b in blocks.as_array()? {
        for e in b["elements"].as_array().into_iter().flatten() {
            if e["action_id"] == action_id && e["type"] == "button" {
                return Some((b["block_id"].clone(), e.clone()));
            }
        }
    }
    None
}

fn answer(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

fn parse_form(text: &str, into: &mut Map<String, Value>) {
    for (k, v) in form_urlencoded::parse(text.as_bytes()) {
        into.insert(k.into_owned(), Value::String(v.into_owned()));
    }
}

async fn method(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut args = Map::new();
    if let Some(q) = &query {
        parse_form(q, &mut args);
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => args.extend(o),
            _ => {
                return answer(
                    StatusCode::OK,
                    json!({ "ok": false, "error": "invalid_json" }),
                );
            }
        }
    } else if !body.is_empty() {
        parse_form(&String::from_utf8_lossy(&body), &mut args);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.or_else(|| {
        args.remove("token")
            .and_then(|t| t.as_str().map(str::to_owned))
    });
    let mut i = inner.lock().unwrap_or_else(|p| p.into_inner());
    let (status, v) = if i.rate_limited > 0 {
        i.rate_limited -= 1;
        let after = i.retry_after;
        i.calls.push(Call {
            method: method.clone(),
            args: Value::Object(args),
            status: 429,
            error: Some("ratelimited".into()),
        });
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, after.to_string()),
                (
                    header::CONTENT_TYPE,
                    "application/json; charset=utf-8".into(),
                ),
            ],
            json!({ "ok": false, "error": "ratelimited" }).to_string(),
        )
            .into_response();
    } else {
        (
            StatusCode::OK,
            run(&mut i, &method, token.as_deref(), &args),
        )
    };
    i.calls.push(Call {
        method,
        args: Value::Object(args),
        status: status.as_u16(),
        error: v["error"].as_str().map(str::to_owned),
    });
    answer(status, v)
}

fn err(code: &str) -> Value {
    json!({ "ok": false, "error": code })
}

fn text_of(args: &Map<String, Value>) -> (String, Value) {
    let text = args
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let blocks = match args.get("blocks") {
        // A form body carries blocks as a JSON string.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(b) => b.clone(),
        None => Value::Null,
    };
    (text, blocks)
}

fn run(i: &mut Inner, method: &str, token: Option<&str>, args: &Map<String, Value>) -> Value {
    let Some(token) = token else {
        return err("not_authed");
    };
    if token != i.token {
        return err("invalid_auth");
    }
    if let Some(e) = i.fail.remove(method) {
        return err(&e);
    }
    let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match method {
        "chat.postMessage" => {
            let channel = arg("channel");
            if !i.channels.contains(&channel) {
                return err("channel_not_found");
            }
            let (text, blocks) = text_of(args);
            if text.is_empty() && blocks.is_null() {
                return err("no_text");
            }
            i.seq += 1;
            let ts = format!("{}.{:06}", chrono::Utc::now().timestamp(), i.seq);
            i.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                text: text.clone(),
                blocks: blocks.clone(),
                updates: 0,
            });
            json!({ "ok": true, "channel": channel, "ts": ts,
                "message": { "type": "message", "bot_id": "B0SIM", "text": text, "blocks": blocks, "ts": ts } })
        }
        "chat.update" => {
            let (channel, ts) = (arg("channel"), arg("ts"));
            let (text, blocks) = text_of(args);
            let Some(m) = i
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return err(if i.channels.contains(&channel) {
                    "message_not_found"
                } else {
                    "channel_not_found"
                });
            };
            if text.is_empty() && blocks.is_null() {
                return err("no_text");
            }
            m.text = text.clone();
            m.blocks = blocks;
            m.updates += 1;
            json!({ "ok": true, "channel": channel, "ts": ts, "text": text,
                "message": { "type": "message", "text": text, "blocks": m.blocks } })
        }
        "chat.postEphemeral" => {
            let (channel, user) = (arg("channel"), arg("user"));
            if !i.channels.contains(&channel) {
                return err("channel_not_found");
            }
            if !i.users.contains_key(&user) {
                return err("user_not_in_channel");
            }
            let (text, blocks) = text_of(args);
            if text.is_empty() && blocks.is_null() {
                return err("no_text");
            }
            i.seq += 1;
            i.ephemerals.push(Ephemeral {
                channel,
                user,
                text,
            });
            json!({ "ok": true, "message_ts": format!("{}.{:06}", chrono::Utc::now().timestamp(), i.seq) })
        }
        "users.info" => {
            let Some(u) = i.users.get(&arg("user")) else {
                return err("user_not_found");
            };
            let mut profile = json!({ "real_name": u.name, "display_name": u.name, "team": TEAM });
            if let Some(e) = &u.email {
                profile["email"] = json!(e);
            }
            json!({ "ok": true, "user": {
                "id": u.id, "team_id": TEAM, "name": u.name, "deleted": false,
                "real_name": u.name, "is_bot": false, "profile": profile } })
        }
        _ => err("unknown_method"),
    }
}

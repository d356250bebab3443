//! lapse's Slack app, at the edge: requests are posted to their list's channel with Approve
//! and Deny buttons (through the outbox, [`SlackChannel`]), and clicks and the `/lapse`
//! command come back to [`router`], which checks Slack's signature, maps the Slack user to a
//! lapse identity by the email on their profile (`users.info`) and calls the same
//! `RequestService` as the HTTP API: owners only, never their own request.

pub mod api;
pub mod channel;
pub mod message;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lapse_core::AccessProvider;
use lapse_requests::wire::{CreateBody, DecisionBody, RequestView};
use lapse_requests::{Actor, FlowError, GrantEngine, RequestService, SlackSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

pub use api::{SlackApi, SlackError};
pub use channel::SlackChannel;

/// The bot token and signing secret read, and the Web API client built.
pub struct SlackConfig {
    pub api: Arc<SlackApi>,
    pub signing_secret: SecretString,
}

impl SlackConfig {
    /// Reads the credentials named by `[slack]`; errors name the setting and the file.
    pub fn load(s: &SlackSettings) -> Result<Self, String> {
        let token = lapse_requests::credential::load(
            s.bot_token_file.as_deref(),
            s.bot_token_credential.as_deref(),
            "slack.bot_token_file",
            "slack.bot_token_credential",
        )?;
        let signing_secret = lapse_requests::credential::load(
            s.signing_secret_file.as_deref(),
            s.signing_secret_credential.as_deref(),
            "slack.signing_secret_file",
            "slack.signing_secret_credential",
        )?;
        let api = Arc::new(SlackApi::new(&s.api_base_url, token, s.timeout)?);
        Ok(Self {
            api,
            signing_secret,
        })
    }
}

/// What the routes need: the request flow and Slack.
pub struct SlackApp<P, E> {
    flow: Arc<RequestService<P, E>>,
    api: Arc<SlackApi>,
    secret: SecretString,
}

impl<P, E> SlackApp<P, E> {
    pub fn new(flow: Arc<RequestService<P, E>>, config: &SlackConfig) -> Arc<Self> {
        Arc::new(Self {
            flow,
            api: config.api.clone(),
            secret: config.signing_secret.clone(),
        })
    }
}

/// `POST /v1/slack/interactions` (Block Kit buttons) and `POST /v1/slack/commands` (`/lapse`).
pub fn router<P: AccessProvider + 'static, E: GrantEngine + 'static>(
    app: Arc<SlackApp<P, E>>,
) -> Router {
    Router::new()
        .route("/v1/slack/interactions", post(interactions::<P, E>))
        .route("/v1/slack/commands", post(commands::<P, E>))
        .with_state(app)
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": { "code": code, "message": message, "fix": "requests here must come from Slack, signed with the app's signing secret" } }).to_string(),
    )
        .into_response()
}

/// Slack's signature on the raw body, checked before anything is read from it.
fn signed<P, E>(
    app: &SlackApp<P, E>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), verify::Unsigned> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    verify::verify(
        app.secret.expose_secret().as_bytes(),
        h("x-slack-request-timestamp"),
        h("x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    )
    .inspect_err(|e| warn!(problem = %e, "a request to the Slack endpoint was refused"))
}

fn unsigned(e: verify::Unsigned) -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        "bad_slack_signature",
        e.to_string(),
    )
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: IdOnly,
    #[serde(default)]
    channel: Option<IdOnly>,
    #[serde(default)]
    container: Value,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: String,
}

/// The lapse identity of a Slack user: the email on their profile.
async fn identity<P, E>(app: &SlackApp<P, E>, user: &str) -> Result<Actor, String> {
    let mut tries = 0;
    loop {
        match app.api.user_email(user).await {
            Ok(Some(email)) => return Ok(Actor::new(format!("slack:{user}"), &email)),
            Ok(None) => {
                return Err(
                    "your Slack profile shows lapse no email, so lapse cannot tell who you are; the app needs the users:read.email scope".into(),
                );
            }
            // A short wait is waited out; Slack wants an answer within three seconds.
            Err(SlackError::RateLimited(d)) if tries == 0 && d <= Duration::from_secs(2) => {
                tries += 1;
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(format!("lapse could not look you up in Slack: {e}")),
        }
    }
}

/// Answers the clicker alone, off the request path.
fn ephemeral(api: Arc<SlackApi>, channel: String, user: String, text: String) {
    tokio::spawn(async move {
        for _ in 0..3 {
            match api.post_ephemeral(&channel, &user, &text).await {
                Ok(()) => return,
                Err(SlackError::RateLimited(d)) => tokio::time::sleep(d).await,
                Err(e) => {
                    warn!(error = %e, "could not answer a Slack click");
                    return;
                }
            }
        }
    });
}

fn explain(e: &FlowError) -> String {
    format!("lapse refused: {e}")
}

async fn interactions<P: AccessProvider + 'static, E: GrantEngine + 'static>(
    State(app): State<Arc<SlackApp<P, E>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = signed(&app, &headers, &body) {
        return unsigned(e);
    }
    let f = form(&body);
    let Some(p) = field(&f, "payload").and_then(|p| serde_json::from_str::<Payload>(p).ok()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "payload: is not a Slack interaction payload".into(),
        );
    };
    if p.kind != "block_actions" {
        return StatusCode::OK.into_response();
    }
    let channel = p
        .channel
        .as_ref()
        .map(|c| c.id.clone())
        .or_else(|| p.container["channel_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let user = p.user.id.clone();
    let Some(action) = p
        .actions
        .iter()
        .find(|a| a.action_id == message::APPROVE || a.action_id == message::DENY)
    else {
        return StatusCode::OK.into_response();
    };
    let who = match identity(&app, &user).await {
        Ok(w) => w,
        Err(why) => {
            ephemeral(app.api.clone(), channel, user, why);
            return StatusCode::OK.into_response();
        }
    };
    let approve = action.action_id == message::APPROVE;
    let outcome: Result<RequestView, FlowError> = if approve {
        let b = DecisionBody {
            reason: "approved in Slack".into(),
        };
        app.flow.approve(&who, &action.value, &b).await
    } else {
        let b = DecisionBody {
            reason: "denied in Slack".into(),
        };
        app.flow.deny(&who, &action.value, &b).await
    };
    match outcome {
        Ok(v) => {
            info!(request = %v.id, by = %who.identity, state = %v.state, "decision taken in Slack");
            if v.state == "pending" {
                // Counted, more owners needed: the final decision updates the message later.
                let text = format!(
                    "Your approval of request {} was counted ({} of {} needed).",
                    v.id,
                    v.approvals.len(),
                    v.approvals_needed
                );
                ephemeral(app.api.clone(), channel, user, text);
            }
        }
        Err(e) => ephemeral(app.api.clone(), channel, user, explain(&e)),
    }
    StatusCode::OK.into_response()
}

fn reply(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "response_type": "ephemeral", "text": text }).to_string(),
    )
        .into_response()
}

const USAGE: &str = "Usage: `/lapse request <list> <duration> <reason>`, e.g. `/lapse request prod-db 1h INC-4211 restart the replica`";

async fn commands<P: AccessProvider + 'static, E: GrantEngine + 'static>(
    State(app): State<Arc<SlackApp<P, E>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = signed(&app, &headers, &body) {
        return unsigned(e);
    }
    let f = form(&body);
    let text = field(&f, "text").unwrap_or("").trim();
    let user = field(&f, "user_id").unwrap_or("").to_owned();
    let mut words = text.split_whitespace();
    let (Some("request"), Some(list), Some(duration)) = (words.next(), words.next(), words.next())
    else {
        return reply(USAGE.into());
    };
    let reason = words.collect::<Vec<_>>().join(" ");
    let who = match identity(&app, &user).await {
        Ok(w) => w,
        Err(why) => return reply(why),
    };
    let b = CreateBody {
        list: list.to_owned(),
        duration: Some(duration.to_owned()),
        reason,
        break_glass: false,
    };
    match app.flow.create(&who, &b).await {
        Ok(v) => reply(format!(
            "Request `{}` on `{}` is {}.",
            v.id,
            lapse_core::text::slack_escape(&v.list),
            v.state
        )),
        Err(e) => reply(lapse_core::text::slack_escape(&explain(&e)).into_owned()),
    }
}

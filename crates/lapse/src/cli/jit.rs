//! Client commands of the just-in-time request flow: requests, approvals, extensions, reviews.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use lapse_requests::wire::{CreateBody, DecisionBody, ExtendBody, ReviewBody};
use serde::Serialize;
use serde_json::Value;

use super::client::{ApiClient, Failure, emit};
use lapse_output::{Style, jit};

/// Ask for access on an access list.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The list's name (`lapse lists`).
    pub list: String,
    /// How long, e.g. `2h`; the list's default when left out, never past its maximum.
    // `--for -5m` reaches the daemon, which names the duration rule and its fix.
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Why you need it, in the form the list asks for (e.g. an incident number).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Apply at once without approval, on lists that allow it; the owners are told at once.
    #[arg(long)]
    pub break_glass: bool,
}

/// Requests: by default the pending ones waiting for you to decide.
#[derive(Debug, Clone, Args)]
pub struct RequestsArgs {
    /// Every request, not only those waiting for you.
    #[arg(long)]
    pub all: bool,
    /// Only requests in this state (pending, approved, denied, cancelled, lapsed).
    #[arg(long)]
    pub state: Option<String>,
    /// Only your own requests (by the token's identity), in any state unless --state.
    #[arg(long)]
    pub mine: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DecisionArgs {
    /// The request's id.
    pub id: String,
    /// Why, recorded in the history with the decision.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Extend a grant that came from an access list, following the list's approval rule.
#[derive(Debug, Clone, Args)]
pub struct ExtendArgs {
    /// The grant's id.
    pub id: String,
    /// How much longer, e.g. `30m`.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub by: String,
    /// Why longer, in the form the list asks for.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `lapse review due` lists reviews due; `lapse review LIST --keep .. --remove ..` records one.
#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    /// `due`, or the name of the list being reviewed.
    pub target: String,
    /// Members who keep their place (comma-separated emails).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
    /// Members to take off the list (comma-separated emails).
    #[arg(long, value_delimiter = ',')]
    pub remove: Vec<String>,
}

/// How one answer of this flow is shown in the chosen format.
type Render = fn(Style, &Value, DateTime<Utc>) -> anyhow::Result<String>;

async fn post(
    api: &ApiClient,
    segments: &[&str],
    body: &impl Serialize,
    format: Style,
    render: Render,
) -> Result<ExitCode, Failure> {
    let url = api.url(segments, &[])?;
    let reply = api.send(api.http.post(url).json(body)).await?;
    emit(&render(format, &reply.body, Utc::now())?)?;
    Ok(ExitCode::SUCCESS)
}

async fn get(
    api: &ApiClient,
    segments: &[&str],
    query: &[(&str, Option<String>)],
    format: Style,
    render: Render,
) -> Result<ExitCode, Failure> {
    let url = api.url(segments, query)?;
    let reply = api.send(api.http.get(url)).await?;
    emit(&render(format, &reply.body, Utc::now())?)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn request(
    api: &ApiClient,
    a: &RequestArgs,
    format: Style,
) -> Result<ExitCode, Failure> {
    let body = CreateBody {
        list: a.list.clone(),
        duration: a.duration.clone(),
        reason: a.reason.clone(),
        break_glass: a.break_glass,
    };
    post(api, &["v1", "requests"], &body, format, jit::render_request).await
}

pub(super) async fn requests(
    api: &ApiClient,
    a: &RequestsArgs,
    format: Style,
) -> Result<ExitCode, Failure> {
    let waiting = (!a.all && !a.mine && a.state.is_none()).then(|| "true".to_owned());
    get(
        api,
        &["v1", "requests"],
        &[
            ("waiting", waiting),
            ("state", a.state.clone()),
            ("mine", a.mine.then(|| "true".to_owned())),
        ],
        format,
        jit::render_request_list,
    )
    .await
}

pub(super) async fn decide(
    api: &ApiClient,
    verb: &str,
    a: &DecisionArgs,
    format: Style,
) -> Result<ExitCode, Failure> {
    post(
        api,
        &["v1", "requests", &a.id, verb],
        &DecisionBody {
            reason: a.reason.clone(),
        },
        format,
        jit::render_request,
    )
    .await
}

pub(super) async fn extend(
    api: &ApiClient,
    a: &ExtendArgs,
    format: Style,
) -> Result<ExitCode, Failure> {
    post(
        api,
        &["v1", "grants", &a.id, "extend"],
        &ExtendBody {
            by: a.by.clone(),
            reason: a.reason.clone(),
        },
        format,
        jit::render_request,
    )
    .await
}

pub(super) async fn review(
    api: &ApiClient,
    a: &ReviewArgs,
    format: Style,
) -> Result<ExitCode, Failure> {
    if a.target == "due" && a.keep.is_empty() && a.remove.is_empty() {
        return get(
            api,
            &["v1", "reviews"],
            &[("due", Some("true".to_owned()))],
            format,
            jit::render_reviews,
        )
        .await;
    }
    post(
        api,
        &["v1", "reviews"],
        &ReviewBody {
            list: a.target.clone(),
            keep: a.keep.clone(),
            remove: a.remove.clone(),
        },
        format,
        jit::render_review_recorded,
    )
    .await
}

pub(super) async fn lists(api: &ApiClient, format: Style) -> Result<ExitCode, Failure> {
    get(api, &["v1", "lists"], &[], format, jit::render_lists).await
}

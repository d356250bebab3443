//! The pages and the forms behind them. Each handler finds the session, asks the request-flow
//! service or the store exactly as the API's handler for the same thing does, and renders.

// A refusal is the page to show, built once on the way out of a handler; boxing it would only
// add an allocation to every refused request.
#![allow(clippy::result_large_err)]

use std::str::FromStr as _;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use chrono::{DateTime, Utc};
use lapse_core::{AccessProvider, GrantId, Role};
use lapse_requests::wire::{
    CreateBody, DecisionBody, ExtendBody, GrantView, HistoryView, RequestView,
};
use lapse_requests::{Actor, FlowError, GrantEngine};
use lapse_store::{GrantFilter, HistoryFilter};
use serde::Deserialize;

use crate::Web;
use crate::session::{self, Session};
use crate::view::{GrantRow, HistoryLine, ListRow, RequestRow};

/// History rows per page.
const PAGE: usize = 50;
/// How often the History page walks the chain again.
const CHAIN_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Rows read from the store for one history page's filtering.
const HISTORY_WINDOW: u32 = 5000;

/// What every page's frame shows.
pub(crate) struct Chrome {
    pub title: String,
    pub me: Option<Session>,
    pub can_audit: bool,
    pub notice: Option<&'static str>,
}

impl Chrome {
    fn new(title: &str, me: Option<&Session>) -> Self {
        Self {
            title: title.to_owned(),
            can_audit: me.is_some_and(|s| s.role != Role::Requester),
            me: me.cloned(),
            notice: None,
        }
    }
}

fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOut {
    c: Chrome,
}

pub(crate) fn signed_out() -> Response {
    render(
        StatusCode::OK,
        &SignedOut {
            c: Chrome::new("Sign in", None),
        },
    )
}

#[derive(Template)]
#[template(path = "continue.html")]
struct Continue {
    c: Chrome,
    to: &'static str,
}

pub(crate) struct Page;

impl Page {
    pub(crate) fn continue_to(to: &'static str) -> Response {
        render(
            StatusCode::OK,
            &Continue {
                c: Chrome::new("Signed in", None),
                to,
            },
        )
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: Chrome,
    message: String,
    fix: String,
}

pub(crate) fn error_page(status: u16, message: &str, fix: &str) -> Response {
    render(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &ErrorPage {
            c: Chrome::new("Not done", None),
            message: message.to_owned(),
            fix: fix.to_owned(),
        },
    )
}

fn flow_error(e: FlowError) -> Response {
    let (status, fix) = match &e {
        FlowError::Refused(_) | FlowError::NotAuthorized(_) => (403, String::new()),
        FlowError::Field(f) => (400, f.fix.clone()),
        FlowError::NotFound(_) => (404, String::new()),
        FlowError::Conflict(_) => (409, String::new()),
        FlowError::Unavailable(_) => (503, "try again in a minute".into()),
        _ => {
            tracing::error!(error = %e, "a console action failed");
            (500, String::new())
        }
    };
    error_page(status, &e.to_string(), &fix)
}

/// The session, or the page to sign in.
fn me<P, E>(w: &Web<P, E>, headers: &HeaderMap) -> Result<Session, Response> {
    session::session(headers, &w.key, Utc::now()).ok_or_else(signed_out)
}

/// The session of a POST whose form carries its CSRF token; a person whose role only reads
/// is refused here as the API's `Writer` refuses them.
fn writer<P, E>(w: &Web<P, E>, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
    let Some(s) = session::session(headers, &w.key, Utc::now()) else {
        return Err(error_page(
            401,
            "you are not signed in",
            "sign in and try again",
        ));
    };
    if !session::csrf_ok(&s, csrf) {
        return Err(error_page(
            403,
            "the form's CSRF token is missing or wrong",
            "reload the page and submit the form again",
        ));
    }
    if s.role == Role::Auditor {
        return Err(error_page(
            403,
            "the auditor role may only read",
            "ask for a role that may request or approve",
        ));
    }
    Ok(s)
}

fn actor(s: &Session) -> Actor {
    // Named as the API names a caller signed in at the issuer.
    Actor::new(caller_name(s), &s.identity)
}

fn caller_name(s: &Session) -> String {
    lapse_core::text::oidc_caller_name(&s.identity)
}

/// `?done=…` → a fixed notice (never text from the URL).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "requested" => Some("Request sent."),
            "approved" => Some("Approved."),
            "denied" => Some("Denied."),
            "extension" => Some("Extension asked for."),
            "revoked" => Some("Revoked: the access is being removed."),
            "reviewed" => Some("Review recorded."),
            _ => None,
        }
    }
}

pub(crate) async fn to_home() -> Redirect {
    Redirect::permanent("/ui/")
}

pub(crate) async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/css"))],
        include_str!("../static/lapse.css"),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "mine.html")]
struct Mine {
    c: Chrome,
    grants: Vec<GrantRow>,
    requests: Vec<RequestRow>,
}

pub(crate) async fn mine<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = Utc::now();
    let grants = match w
        .store
        .list_grants(&GrantFilter {
            user: Some(s.identity.clone()),
            limit: Some(200),
            ..GrantFilter::default()
        })
        .await
    {
        Ok(g) => g,
        Err(e) => return flow_error(e.into()),
    };
    let grants = grants
        .iter()
        .map(|g| GrantRow::new(&GrantView::from(g), now))
        .collect();
    let requests = match w.flow.list_requests(None, false, None).await {
        Ok(l) => l
            .requests
            .iter()
            .filter(|r| r.requester == s.identity)
            .map(RequestRow::new)
            .collect(),
        Err(e) => return flow_error(e),
    };
    let mut c = Chrome::new("My access", Some(&s));
    c.notice = done.notice();
    render(
        StatusCode::OK,
        &Mine {
            c,
            grants,
            requests,
        },
    )
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestForm {
    c: Chrome,
    csrf: String,
    lists: Vec<ListRow>,
}

pub(crate) async fn request_form<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lists = match w.flow.lists().await {
        Ok(l) => l,
        Err(e) => return flow_error(e),
    };
    let mine = lists
        .lists
        .iter()
        .filter(|l| {
            !l.suspended
                && l.members.iter().any(|m| {
                    lapse_core::access_list::normalize_identity(m) == s.identity
                        && !l.removed_by_review.contains(m)
                })
        })
        .map(ListRow::new)
        .collect();
    render(
        StatusCode::OK,
        &RequestForm {
            csrf: s.csrf.clone(),
            c: Chrome::new("Request access", Some(&s)),
            lists: mine,
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequestSubmit {
    #[serde(default)]
    csrf: String,
    list: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    break_glass: Option<String>,
}

pub(crate) async fn request_submit<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Form(f): Form<RequestSubmit>,
) -> Response {
    let s = match writer(&w, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = CreateBody {
        list: f.list,
        duration: Some(f.duration.trim().to_owned()).filter(|d| !d.is_empty()),
        reason: f.reason,
        break_glass: f.break_glass.as_deref() == Some("true"),
    };
    match w.flow.create(&actor(&s), &body).await {
        Ok(r) => Redirect::to(&format!("/ui/requests/{}?done=requested", r.id)).into_response(),
        Err(e) => flow_error(e),
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct Approvals {
    c: Chrome,
    csrf: String,
    requests: Vec<RequestRow>,
}

pub(crate) async fn approvals<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Waiting for me: lists I own, never my own requests, not yet approved by me.
    let requests = match w.flow.list_requests(None, true, Some(&s.identity)).await {
        Ok(l) => l.requests.iter().map(RequestRow::new).collect(),
        Err(e) => return flow_error(e),
    };
    render(
        StatusCode::OK,
        &Approvals {
            csrf: s.csrf.clone(),
            c: Chrome::new("Approvals", Some(&s)),
            requests,
        },
    )
}

#[derive(Template)]
#[template(path = "request_detail.html")]
struct RequestDetail {
    c: Chrome,
    csrf: String,
    r: RequestRow,
    approvals: Vec<String>,
    can_decide: bool,
}

/// Whether `s` owns the list `list`.
async fn owns<P: AccessProvider + 'static, E: GrantEngine>(
    w: &Web<P, E>,
    s: &Session,
    list: &str,
) -> bool {
    w.flow.lists().await.is_ok_and(|l| {
        l.lists.iter().any(|l| {
            l.name == list
                && l.owners
                    .iter()
                    .any(|o| lapse_core::access_list::normalize_identity(o) == s.identity)
        })
    })
}

pub(crate) async fn request_detail<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let r: RequestView = match w.flow.show(&id).await {
        Ok(r) => r,
        Err(e) => return flow_error(e),
    };
    let owner = owns(&w, &s, &r.list).await;
    // As on the API: a requester sees their own requests and those of lists they own.
    if s.role == Role::Requester && r.requester != s.identity && !owner {
        return error_page(404, &format!("no request {id}"), "");
    }
    let approved_by_me = r.approvals.iter().any(|a| a.approver == s.identity);
    let can_decide = owner
        && r.state == "pending"
        && r.requester != s.identity
        && !approved_by_me
        && s.role != Role::Auditor;
    let mut approvals: Vec<String> = r
        .approvals
        .iter()
        .map(|a| {
            let why = if a.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", a.reason)
            };
            format!(
                "approved by {} at {}{why}",
                a.approver,
                crate::view::when(a.at)
            )
        })
        .collect();
    if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at)
        && r.state != "approved"
    {
        let why = r.decision_reason.clone().unwrap_or_default();
        approvals.push(format!(
            "{} by {by} at {}: {why}",
            r.state,
            crate::view::when(at)
        ));
    }
    let mut c = Chrome::new(&format!("Request {}", r.id), Some(&s));
    c.notice = done.notice();
    render(
        StatusCode::OK,
        &RequestDetail {
            csrf: s.csrf.clone(),
            c,
            r: RequestRow::new(&r),
            approvals,
            can_decide,
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub(crate) async fn decide<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let s = match writer(&w, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = DecisionBody { reason: f.reason };
    // The same service calls as `POST /v1/requests/{id}/approve|deny|cancel`: it refuses
    // self-approval, non-owners and decided requests.
    let (result, done) = match decision.as_str() {
        "approve" => (w.flow.approve(&actor(&s), &id, &body).await, "approved"),
        "deny" => (w.flow.deny(&actor(&s), &id, &body).await, "denied"),
        "cancel" => (w.flow.cancel(&actor(&s), &id, &body).await, "requested"),
        _ => return error_page(404, "no such action", ""),
    };
    match result {
        Ok(r) => Redirect::to(&format!("/ui/requests/{}?done={done}", r.id)).into_response(),
        Err(e) => flow_error(e),
    }
}

#[derive(Template)]
#[template(path = "grant_detail.html")]
struct GrantDetail {
    c: Chrome,
    csrf: String,
    g: GrantRow,
    history: Vec<HistoryLine>,
    can_extend: bool,
    can_revoke: bool,
}

pub(crate) async fn grant_detail<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(gid) = GrantId::from_str(&id) else {
        return error_page(404, &format!("no grant {id}"), "");
    };
    let grant = match w.store.get_grant(gid).await {
        Ok(Some(g)) => g,
        Ok(None) => return error_page(404, &format!("no grant {id}"), ""),
        Err(e) => return flow_error(e.into()),
    };
    // The API's rule, so the button shows exactly when the server would accept the action.
    let can_revoke = !grant.state.is_terminal()
        && s.role != Role::Auditor
        && lapse_requests::may_revoke(&caller_name(&s), Some(&s.identity), s.role, &grant)
            == lapse_requests::RevokeRule::Allowed;
    let g = GrantView::from(&grant);
    let mine = g.requester == caller_name(&s)
        || g.requester == s.identity
        || g.users.iter().any(|u| u == &s.identity);
    if s.role == Role::Requester && !mine {
        return error_page(404, &format!("no grant {id}"), "");
    }
    let history = match w
        .store
        .history(&HistoryFilter {
            grant: Some(gid),
            ..HistoryFilter::default()
        })
        .await
    {
        Ok(rows) => rows
            .into_iter()
            .map(|h| HistoryLine::new(&HistoryView::from(h)))
            .collect(),
        Err(e) => return flow_error(e.into()),
    };
    let can_extend = mine && g.state == "active" && s.role != Role::Auditor;
    let mut c = Chrome::new(&format!("Grant {}", g.id), Some(&s));
    c.notice = done.notice();
    render(
        StatusCode::OK,
        &GrantDetail {
            csrf: s.csrf.clone(),
            c,
            g: GrantRow::new(&g, Utc::now()),
            history,
            can_extend,
            can_revoke,
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn revoke<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RevokeForm>,
) -> Response {
    let s = match writer(&w, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // The same rule as `POST /v1/grants/{id}/revoke`: admins any grant, others their own.
    match w
        .flow
        .revoke_as(&caller_name(&s), Some(&s.identity), s.role, &id, &f.reason)
        .await
    {
        Ok(g) => Redirect::to(&format!("/ui/grants/{}?done=revoked", g.id)).into_response(),
        Err(e) => flow_error(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExtendForm {
    #[serde(default)]
    csrf: String,
    by: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn extend<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ExtendForm>,
) -> Response {
    let s = match writer(&w, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = ExtendBody {
        by: f.by,
        reason: f.reason,
    };
    match w.flow.extend(&actor(&s), &id, &body).await {
        Ok(r) => Redirect::to(&format!("/ui/requests/{}?done=extension", r.id)).into_response(),
        Err(e) => flow_error(e),
    }
}

/// The history page's filters, as the query string carries them.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub list: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub page: usize,
}

impl HistoryQuery {
    fn encode(&self, page: usize) -> String {
        let mut u = reqwest::Url::parse("http://x/").expect("a constant URL");
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in [
                ("user", &self.user),
                ("resource", &self.resource),
                ("list", &self.list),
                ("actor", &self.actor),
                ("event", &self.event),
                ("since", &self.since),
                ("until", &self.until),
            ] {
                if !v.is_empty() {
                    q.append_pair(k, v);
                }
            }
            if page > 0 {
                q.append_pair("page", &page.to_string());
            }
        }
        u.query().unwrap_or_default().to_owned()
    }
}

fn time(field: &str, v: &str) -> Result<Option<DateTime<Utc>>, Response> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            error_page(
                400,
                &format!("{field}: {v:?} is not a time"),
                "write it as RFC 3339, e.g. 2026-12-01T09:00:00Z",
            )
        })
}

/// The rows of one page of the filtered history, newest first, and whether older rows remain.
async fn history_page<P: AccessProvider + 'static, E: GrantEngine>(
    w: &Web<P, E>,
    s: &Session,
    q: &HistoryQuery,
) -> Result<(Vec<HistoryView>, bool), Response> {
    // As on the API: a requester reads the history of their own grants only (grant pages).
    if s.role == Role::Requester {
        return Err(error_page(
            403,
            "the requester role does not read the whole history",
            "see your grants' history on their pages",
        ));
    }
    let filter = HistoryFilter {
        user: Some(q.user.trim().to_lowercase()).filter(|u| !u.is_empty()),
        resource: Some(q.resource.trim().to_owned()).filter(|r| !r.is_empty()),
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        limit: Some(HISTORY_WINDOW),
        newest_first: true,
        ..HistoryFilter::default()
    };
    let rows = w
        .store
        .history(&filter)
        .await
        .map_err(|e| flow_error(e.into()))?;
    let list = q.list.trim();
    let rows: Vec<HistoryView> = rows.into_iter().map(HistoryView::from).collect();
    // A list's rows: its requests' rows, and every row of the grants it authorized.
    let of_list: std::collections::HashSet<String> = rows
        .iter()
        .filter(|h| {
            h.detail
                .get("rule")
                .and_then(|v| v.as_str())
                .is_some_and(|r| r == format!("list:{list}") || r == format!("break-glass:{list}"))
        })
        .filter_map(|h| h.grant_id.clone())
        .collect();
    let rows: Vec<HistoryView> = rows
        .into_iter()
        .filter(|h| q.actor.trim().is_empty() || h.actor.contains(q.actor.trim()))
        .filter(|h| q.event.trim().is_empty() || h.event == q.event.trim())
        .filter(|h| {
            list.is_empty()
                || h.detail.get("list").and_then(|v| v.as_str()) == Some(list)
                || h.grant_id.as_ref().is_some_and(|g| of_list.contains(g))
        })
        .collect();
    let start = q.page.saturating_mul(PAGE).min(rows.len());
    let end = (start + PAGE).min(rows.len());
    let more = end < rows.len();
    Ok((rows[start..end].to_vec(), more))
}

#[derive(Template)]
#[template(path = "history.html")]
struct History {
    c: Chrome,
    q: HistoryQuery,
    query: String,
    rows: Vec<HistoryLine>,
    chain: String,
    chain_ok: bool,
    prev: Option<String>,
    next: Option<String>,
}

pub(crate) async fn history<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (rows, more) = match history_page(&w, &s, &q).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (chain, chain_ok) = w.chain_status().await;
    render(
        StatusCode::OK,
        &History {
            c: Chrome::new("History", Some(&s)),
            query: q.encode(q.page),
            prev: (q.page > 0).then(|| q.encode(q.page - 1)),
            next: more.then(|| q.encode(q.page + 1)),
            rows: rows.iter().map(HistoryLine::new).collect(),
            q,
            chain,
            chain_ok,
        },
    )
}

impl<P, E> Web<P, E> {
    /// The chain's verification, walked at most once per [`CHAIN_CHECK_EVERY`]: a page view
    /// does not read the whole history each time.
    async fn chain_status(&self) -> (String, bool) {
        let mut last = self.chain.lock().await;
        if let Some((at, status)) = &*last
            && at.elapsed() < CHAIN_CHECK_EVERY
        {
            return status.clone();
        }
        let status = match self.store.verify_history().await {
            Ok(v) => match v.first_broken {
                None => (
                    format!(
                        "The history's hash chain verifies: {} rows.",
                        v.rows_checked
                    ),
                    true,
                ),
                Some(b) => (
                    format!("The history's hash chain is broken at row {}.", b.seq),
                    false,
                ),
            },
            Err(e) => (format!("The history could not be verified: {e}"), false),
        };
        let status = (
            format!("{} (checked {})", status.0, crate::view::when(Utc::now())),
            status.1,
        );
        *last = Some((std::time::Instant::now(), status.clone()));
        status
    }
}

/// Exactly the rows the same page shows, as CSV.
pub(crate) async fn history_csv<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rows = match history_page(&w, &s, &q).await {
        Ok((rows, _)) => rows,
        Err(r) => return r,
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut write = || -> Result<Vec<u8>, csv::Error> {
        out.write_record(["seq", "at", "grant_id", "actor", "event", "detail"])?;
        for h in &rows {
            out.write_record([
                h.seq.to_string(),
                h.at.to_rfc3339(),
                h.grant_id.clone().unwrap_or_default(),
                lapse_core::text::csv_cell(&h.actor).into_owned(),
                h.event.clone(),
                lapse_core::text::csv_cell(&h.detail.to_string()).into_owned(),
            ])?;
        }
        out.flush()?;
        Ok(out.get_ref().clone())
    };
    match write() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"lapse-history.csv\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_page(500, &format!("writing CSV: {e}"), ""),
    }
}

/// Exactly the rows the same page shows, as JSON.
pub(crate) async fn history_json<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match history_page(&w, &s, &q).await {
        Ok((rows, _)) => {
            axum::Json(lapse_requests::wire::HistoryList { history: rows }).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Template)]
#[template(path = "lists.html")]
struct Lists {
    c: Chrome,
    csrf: String,
    lists: Vec<ListRow>,
}

pub(crate) async fn lists<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let s = match me(&w, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match w.flow.lists().await {
        Ok(l) => {
            let lists = l
                .lists
                .iter()
                .map(|l| {
                    let mut row = ListRow::new(l);
                    row.mine = l
                        .owners
                        .iter()
                        .any(|o| lapse_core::access_list::normalize_identity(o) == s.identity);
                    row
                })
                .collect();
            let mut c = Chrome::new("Lists", Some(&s));
            c.notice = done.notice();
            render(
                StatusCode::OK,
                &Lists {
                    csrf: s.csrf.clone(),
                    c,
                    lists,
                },
            )
        }
        Err(e) => flow_error(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    csrf: String,
    list: String,
    /// The members whose box stayed ticked.
    #[serde(default)]
    keep: Vec<String>,
    /// Every member the form showed.
    #[serde(default)]
    shown: Vec<String>,
}

/// An owner's review: the members left ticked keep their place, the others are taken off.
/// The same service call as `POST /v1/reviews`, which refuses non-owners.
pub(crate) async fn review<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Form(f): Form<ReviewForm>,
) -> Response {
    let s = match writer(&w, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let remove = f
        .shown
        .iter()
        .filter(|m| !f.keep.contains(m))
        .cloned()
        .collect();
    let body = lapse_requests::wire::ReviewBody {
        list: f.list,
        keep: f.keep,
        remove,
    };
    match w.flow.review(&actor(&s), &body).await {
        Ok(_) => Redirect::to("/ui/lists?done=reviewed").into_response(),
        Err(e) => flow_error(e),
    }
}

//! Just-in-time requests on access lists: the routes, loading lists from their directory, and
//! the background work (lapsing pending requests, reviews due, expiring-soon and ended notices).
//!
//! Decisions on requests are serialised by one lock, so two owners approving at once cannot
//! both create the grant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use lapse_core::access_list::{
    self, AccessList, ListFileError, ListSet, Refusal, normalize_identity,
};
use lapse_core::policy::FieldError;
use lapse_core::{AccessProvider, GrantId, GrantState};
use lapse_engine::EngineError;
use lapse_store::{
    ApprovalRecord, Idempotency, NewHistory, NewOutbox, NewReview, RequestChange, RequestRecord,
    Role, StoreError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{ApiState, GrantRequest};
use crate::notify::{Notifier, NotifyError, NotifySettings};
use crate::settings::Settings;

/// `[access]`: where access lists live and the request flow's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    #[serde(default = "default_lists_dir")]
    pub lists_dir: PathBuf,
    /// How long before a grant's end its requester is warned.
    #[serde(default = "default_lead", with = "humantime_serde")]
    pub expiring_soon_lead: StdDuration,
    /// How long a pending request waits before it lapses, for lists that do not say.
    #[serde(default = "default_pending", with = "humantime_serde")]
    pub pending_wait: StdDuration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            lists_dir: default_lists_dir(),
            expiring_soon_lead: default_lead(),
            pending_wait: default_pending(),
        }
    }
}

fn default_lists_dir() -> PathBuf {
    PathBuf::from("/etc/lapse/access-lists.d")
}

fn default_lead() -> StdDuration {
    StdDuration::from_secs(600)
}

fn default_pending() -> StdDuration {
    StdDuration::from_secs(3600)
}

/// The daemon's own actor name in the history.
const DAEMON: &str = "lapse";

/// The request flow's state, shared by the routes and the background task.
pub struct Requests<P> {
    api: Arc<ApiState<P>>,
    settings: AccessSettings,
    notify: NotifySettings,
    notifier: Notifier,
    lists: RwLock<ListSet>,
    refused: Mutex<Vec<ListFileError>>,
    flow: tokio::sync::Mutex<()>,
}

/// Errors of the request flow answer in the same shape as the rest of the API.
pub(crate) use crate::api::ApiError as ReqError;

impl ReqError {
    fn forbidden(r: Refusal) -> Self {
        let code = match r {
            Refusal::SelfApproval => "self_approval",
            Refusal::Suspended { .. } => "list_suspended",
            _ => "forbidden",
        };
        Self::new(StatusCode::FORBIDDEN, code, r.to_string())
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

type ReqResult<T> = Result<T, ReqError>;

/// Who is calling: the token's name (the history actor), its role and its identity.
struct Who {
    name: String,
    role: Role,
    identity: Option<String>,
}

impl Who {
    fn identity(&self) -> ReqResult<&str> {
        self.identity
            .as_deref()
            .ok_or_else(|| ReqError::forbidden(Refusal::NoIdentity))
    }
    fn writer(&self) -> ReqResult<()> {
        if self.role == Role::Auditor {
            return Err(ReqError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} has the auditor role, which may only read",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> ReqResult<T> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ReqError::field(FieldError::new(
            "body",
            format!("is not a valid {what}: {e}"),
            "see `lapse --help`",
        ))
    })
}

pub fn router<P: AccessProvider + 'static>(state: Arc<Requests<P>>) -> Router {
    Router::new()
        .route("/v1/lists", get(lists::<P>))
        .route("/v1/requests", post(create::<P>).get(list_requests::<P>))
        .route("/v1/requests/{id}", get(show::<P>))
        .route("/v1/requests/{id}/approve", post(approve::<P>))
        .route("/v1/requests/{id}/deny", post(deny::<P>))
        .route("/v1/requests/{id}/cancel", post(cancel::<P>))
        .route("/v1/grants/{id}/extend", post(extend::<P>))
        .route("/v1/reviews", get(reviews::<P>).post(record_review::<P>))
        .with_state(state)
}

fn history(grant: Option<GrantId>, actor: &str, event: &str, detail: Value) -> NewHistory {
    NewHistory {
        at: Utc::now(),
        grant_id: grant,
        actor: actor.to_owned(),
        event: event.to_owned(),
        detail,
    }
}

fn secs(d: StdDuration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::hours(1))
}

impl<P: AccessProvider + 'static> Requests<P> {
    /// Reads the webhook sinks and loads the lists; a missing lists directory is no lists (with
    /// a warning), not a failure.
    pub async fn start(
        settings: &Settings,
        api: Arc<ApiState<P>>,
    ) -> Result<Arc<Self>, NotifyError> {
        let notifier = Notifier::new(crate::notify::load_sinks(&settings.notify)?);
        let me = Arc::new(Self {
            api,
            settings: settings.access.clone(),
            notify: settings.notify.clone(),
            notifier,
            lists: RwLock::new(ListSet::new()),
            refused: Mutex::new(Vec::new()),
            flow: tokio::sync::Mutex::new(()),
        });
        me.reload().await;
        Ok(me)
    }

    /// Starts the background work and notification delivery; both end when `stop` turns true.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        tokio::spawn(run(self.clone(), stop.clone()));
        tokio::spawn(crate::notify::deliver(
            self.api.store.clone(),
            self.notifier.clone(),
            self.notify.clone(),
            stop,
        ));
    }

    fn read_dir(&self) -> Vec<(String, String)> {
        let dir = &self.settings.lists_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "no access lists loaded: cannot read the directory");
                return Vec::new();
            }
        };
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((name, text)),
                // Unreadable is treated as refused, so the file's old lists stay in force.
                Err(e) => files.push((name, format!("unreadable = \"{e}\"\n[[["))),
            }
        }
        files
    }

    /// Re-reads the lists directory. A refused file keeps its old lists in force; every change
    /// of the loaded set and every refusal is written to the history.
    pub async fn reload(&self) {
        let files = self.read_dir();
        let previous = self.lists.read().map(|l| l.clone()).unwrap_or_default();
        let loaded = access_list::load(&files, &previous);
        let changes = access_list::diff(&previous, &loaded.lists);
        let mut rows = Vec::new();
        for e in &loaded.errors {
            error!(file = %e.file, line = ?e.line, problem = %e.problem, "access list file refused; its previous lists stay in force");
            rows.push(history(
                None,
                DAEMON,
                "list-file-refused",
                json!({ "file": e.file, "line": e.line, "problem": e.problem }),
            ));
        }
        if !changes.is_empty() {
            info!(added = ?changes.added, changed = ?changes.changed, removed = ?changes.removed, "access lists changed");
            rows.push(history(None, DAEMON, "lists-loaded", json!({ "added": changes.added, "changed": changes.changed, "removed": changes.removed, "lists": loaded.lists.keys().collect::<Vec<_>>() })));
        }
        if !rows.is_empty()
            && let Err(e) = self
                .api
                .store
                .commit_requests(RequestChange {
                    history: rows,
                    ..RequestChange::default()
                })
                .await
        {
            error!(error = %e, "recording the access lists' change");
        }
        if let Ok(mut l) = self.lists.write() {
            *l = loaded.lists;
        }
        if let Ok(mut r) = self.refused.lock() {
            *r = loaded.errors;
        }
    }

    fn list(&self, name: &str) -> ReqResult<AccessList> {
        self.lists
            .read()
            .ok()
            .and_then(|l| l.get(name.trim()).cloned())
            .ok_or_else(|| {
                ReqError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no access list named {name:?}"),
                )
            })
    }

    async fn who(&self, headers: &HeaderMap) -> ReqResult<Who> {
        let info = crate::api::authenticate(&self.api, headers).await?;
        let identity = self
            .api
            .store
            .token_identity(&info.name)
            .await?
            .map(|i| normalize_identity(&i));
        Ok(Who {
            name: info.name,
            role: info.role,
            identity,
        })
    }

    fn outbox(&self, event: &str, to: &[String], text: String, detail: Value) -> Vec<NewOutbox> {
        self.notifier.rows(event, to, text, detail)
    }

    /// Turns an approved request into access: a new grant through the same path as
    /// `POST /v1/grants`, or, for an extension, a later end of the existing grant.
    async fn activate(
        &self,
        list: &AccessList,
        mut req: RequestRecord,
        actor: &str,
        mut change: RequestChange,
    ) -> ReqResult<RequestRecord> {
        let now = Utc::now();
        req.state = "approved".into();
        req.decided_at = Some(now);
        req.decided_by.get_or_insert_with(|| actor.to_owned());
        let detail = json!({ "request": req.id, "list": list.name, "break_glass": req.break_glass, "reason": req.reason });
        if let Some(gid) = &req.extends_grant {
            let id = GrantId::from_str(gid).map_err(ReqError::internal)?;
            let g = self
                .api
                .store
                .get_grant(id)
                .await?
                .ok_or_else(|| ReqError::conflict(format!("grant {id} is gone")))?;
            // An approval retried after a crash must not extend twice: the engine records the
            // request on its `extended` event, so a done extension is found and reused.
            let done = self
                .api
                .store
                .history(&lapse_store::HistoryFilter {
                    grant: Some(id),
                    ..lapse_store::HistoryFilter::default()
                })
                .await?
                .into_iter()
                .find(|h| h.event == "extended" && h.detail["request"] == req.id.as_str())
                .and_then(|h| serde_json::from_value(h.detail["to"].clone()).ok());
            let end = match done {
                Some(end) => end,
                None => list
                    .extension_end(
                        g.starts_at,
                        g.expires_at,
                        Duration::seconds(req.duration_secs),
                    )
                    .map_err(ReqError::field)?,
            };
            match self
                .api
                .engine
                .extend(id, end, &req.token_name, &req.reason, Some(req.id.as_str()))
                .await
            {
                Ok(_) => {}
                Err(EngineError::Finished { id, state }) => {
                    return Err(ReqError::conflict(format!(
                        "grant {id} has ended ({state}) and cannot be extended"
                    )));
                }
                Err(e) => return Err(ReqError::internal(e)),
            }
            change
                .history
                .push(history(Some(id), actor, "extension-approved", detail));
            change.outbox.extend(self.outbox(
                "request-approved",
                std::slice::from_ref(&req.requester),
                format!("Extension of grant {id} on `{}` approved: it now ends at {}", list.name, end.to_rfc3339()),
                json!({ "request": req.id, "list": list.name, "grant": id.to_string(), "expires_at": end, "extension": true }),
            ));
            req.grant_id = Some(id.to_string());
            change.request = Some(req.clone());
            self.api.store.commit_requests(change).await?;
            return Ok(req);
        }
        let target = &list.target;
        let submission = GrantRequest {
            kind: target.kind.as_str().to_owned(),
            users: if target.names_requester() {
                vec![req.requester.clone()]
            } else {
                Vec::new()
            },
            resources: target.resources.clone(),
            group: target.group.clone(),
            service_account: target.service_account.clone(),
            duration: Some(format!("{}s", req.duration_secs)),
            expires_at: None,
            starts_at: None,
            reason: format!("{} (request {} on list {})", req.reason, req.id, list.name),
        };
        let grant = crate::api::build_grant(&self.api, &submission, &req.token_name, now)
            .await
            .map_err(|e| {
                let r = e.into_response();
                ReqError::new(
                    r.status(),
                    "grant_refused",
                    format!(
                        "the list's target could not be granted (see the daemon log); status {}",
                        r.status()
                    ),
                )
            })?;
        // Keyed by the request, so a retry after a lost answer finds the same grant.
        let idem = Idempotency {
            key: format!("request:{}", req.id),
            request_hash: req.id.clone(),
        };
        let event = if req.break_glass {
            "break-glass-granted"
        } else {
            "request-approved"
        };
        // The grant, the request marked approved, its history and notifications commit
        // together: a crash in between would leave access with a request still pending.
        let stored = self
            .api
            .store
            .insert_grant_for_request(&grant, idem, |g| {
                let gid = g.id;
                let mut req = req.clone();
                req.grant_id = Some(gid.to_string());
                change
                    .history
                    .push(history(Some(gid), actor, event, detail));
                if req.break_glass {
                    change.outbox.extend(self.outbox(
                        "break-glass",
                        &list.owners,
                        format!("BREAK-GLASS: {} took `{}` for {}s without approval: {}", req.requester, list.name, req.duration_secs, req.reason),
                        json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "requester": req.requester, "reason": req.reason, "expires_at": g.expires_at }),
                    ));
                } else {
                    change.outbox.extend(self.outbox(
                        "request-approved",
                        std::slice::from_ref(&req.requester),
                        format!("Your request {} on `{}` was approved; access until {}", req.id, list.name, g.expires_at.to_rfc3339()),
                        json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "expires_at": g.expires_at }),
                    ));
                }
                change.request = Some(req);
                change
            })
            .await?;
        req.grant_id = Some(stored.grant().id.to_string());
        // A grant stored by an earlier attempt is already known to the engine.
        if stored.is_created() {
            self.api
                .engine
                .submitted(stored.into_grant())
                .await
                .map_err(ReqError::internal)?;
        }
        Ok(req)
    }

    async fn request_view(&self, r: &RequestRecord) -> ReqResult<Value> {
        let approvals = self.api.store.approvals(&r.id).await?;
        let mut v = serde_json::to_value(r).map_err(ReqError::internal)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "approvals".into(),
                serde_json::to_value(&approvals).map_err(ReqError::internal)?,
            );
        }
        Ok(v)
    }

    async fn pending(&self, id: &str) -> ReqResult<(RequestRecord, AccessList)> {
        let r = self
            .api
            .store
            .get_request(id.trim())
            .await?
            .ok_or_else(|| {
                ReqError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no request {id}"),
                )
            })?;
        if r.state != "pending" {
            return Err(ReqError::conflict(format!(
                "request {} is {}, no longer pending",
                r.id, r.state
            )));
        }
        let list = self.list(&r.list)?;
        Ok((r, list))
    }

    /// One pass of the background work; each part is level-triggered and safe to repeat.
    async fn tick(&self) -> Result<(), StoreError> {
        self.lapse_pending().await?;
        self.scan_history().await?;
        self.expiring_soon().await?;
        self.reviews_due().await
    }

    async fn lapse_pending(&self) -> Result<(), StoreError> {
        let now = Utc::now();
        let _flow = self.flow.lock().await;
        for mut r in self.api.store.list_requests(Some("pending"), 1000).await? {
            if r.wait_until > now {
                continue;
            }
            r.state = "lapsed".into();
            r.decided_at = Some(now);
            r.decided_by = Some(DAEMON.into());
            let outbox = self.outbox(
                "request-lapsed",
                std::slice::from_ref(&r.requester),
                format!(
                    "Your request {} on `{}` lapsed without a decision",
                    r.id, r.list
                ),
                json!({ "request": r.id, "list": r.list }),
            );
            let h = history(
                None,
                DAEMON,
                "request-lapsed",
                json!({ "request": r.id, "list": r.list, "waited_until": r.wait_until }),
            );
            self.api
                .store
                .commit_requests(RequestChange {
                    request: Some(r),
                    history: vec![h],
                    outbox,
                    ..RequestChange::default()
                })
                .await?;
        }
        Ok(())
    }

    /// Ended grants and failing revocations are found in the history the engine writes.
    async fn scan_history(&self) -> Result<(), StoreError> {
        const CURSOR: &str = "notify.history_seq";
        let Some(cursor) = self.api.store.mark(CURSOR).await? else {
            // First start with notifications: announce only what happens from now on.
            let last = self.api.store.last_history_seq().await?;
            let marks = vec![(CURSOR.to_owned(), last.to_string())];
            return self
                .api
                .store
                .commit_requests(RequestChange {
                    marks,
                    ..RequestChange::default()
                })
                .await;
        };
        let cursor: i64 = cursor.parse().unwrap_or(0);
        let rows = self.api.store.history_after(cursor, 500).await?;
        let Some(last) = rows.last().map(|h| h.seq) else {
            return Ok(());
        };
        let mut outbox = Vec::new();
        for h in &rows {
            let Some(gid) = h.grant_id else { continue };
            if !matches!(
                h.event.as_str(),
                "expired" | "revoked" | "failed" | "revocation-failing"
            ) {
                continue;
            }
            let origin = self
                .api
                .store
                .requests_of_grant(gid)
                .await?
                .into_iter()
                .find(|r| r.extends_grant.is_none());
            let list = origin.as_ref().and_then(|r| self.list(&r.list).ok());
            if h.event == "revocation-failing" {
                let mut to: Vec<String> = list.map(|l| l.owners).unwrap_or_default();
                to.extend(origin.as_ref().map(|r| r.requester.clone()));
                outbox.extend(self.outbox(
                    "revocation-failing",
                    &to,
                    format!("ALARM: revoking grant {gid} keeps failing; lapse is still retrying"),
                    json!({ "grant": gid.to_string(), "detail": h.detail }),
                ));
            } else if let Some(r) = origin {
                outbox.extend(self.outbox(
                    "ended",
                    std::slice::from_ref(&r.requester),
                    format!("Your access from request {} on `{}` has ended ({})", r.id, r.list, h.event),
                    json!({ "grant": gid.to_string(), "request": r.id, "list": r.list, "how": h.event }),
                ));
            }
        }
        let marks = vec![(CURSOR.to_owned(), last.to_string())];
        self.api
            .store
            .commit_requests(RequestChange {
                marks,
                outbox,
                ..RequestChange::default()
            })
            .await
    }

    async fn expiring_soon(&self) -> Result<(), StoreError> {
        let now = Utc::now();
        let lead = secs(self.settings.expiring_soon_lead);
        let _flow = self.flow.lock().await;
        for mut r in self.api.store.list_requests(Some("approved"), 1000).await? {
            if r.extends_grant.is_some() {
                continue;
            }
            let Some(gid) = r
                .grant_id
                .as_deref()
                .and_then(|g| GrantId::from_str(g).ok())
            else {
                continue;
            };
            let Some(g) = self.api.store.get_grant(gid).await? else {
                continue;
            };
            let live = matches!(g.state, GrantState::Active | GrantState::Applying)
                && g.revoked_at.is_none();
            if !live
                || g.expires_at <= now
                || g.expires_at - now > lead
                || r.warned_expiry == Some(g.expires_at)
            {
                continue;
            }
            r.warned_expiry = Some(g.expires_at);
            let outbox = self.outbox(
                "expiring-soon",
                std::slice::from_ref(&r.requester),
                format!("Your access on `{}` (grant {gid}) ends at {}; `lapse extend {gid} --by 30m --reason ...` to extend", r.list, g.expires_at.to_rfc3339()),
                json!({ "grant": gid.to_string(), "request": r.id, "list": r.list, "expires_at": g.expires_at }),
            );
            self.api
                .store
                .commit_requests(RequestChange {
                    request: Some(r),
                    outbox,
                    ..RequestChange::default()
                })
                .await?;
        }
        Ok(())
    }

    /// Owners of a list whose review is due are told once a day until they record it.
    async fn reviews_due(&self) -> Result<(), StoreError> {
        let now = Utc::now();
        let lists: Vec<AccessList> = self
            .lists
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        for l in lists {
            let Some(rule) = &l.review else { continue };
            let (recorded, _) = self.api.store.review_state(&l.name).await?;
            let Some(due) = l.review_due(recorded) else {
                continue;
            };
            if due > now {
                continue;
            }
            let key = format!("review-reminded.{}", l.name);
            let day = now.format("%Y-%m-%d").to_string();
            if self.api.store.mark(&key).await?.as_deref() == Some(day.as_str()) {
                continue;
            }
            let outbox = self.outbox(
                "review-due",
                &l.owners,
                format!(
                    "The review of access list `{}` was due {}; {}",
                    l.name,
                    due.to_rfc3339(),
                    match rule.on_missed {
                        access_list::MissedReview::Suspend =>
                            "new requests are refused until it is recorded",
                        access_list::MissedReview::Notify => "record it with `lapse review`",
                    }
                ),
                json!({ "list": l.name, "due": due, "on_missed": rule.on_missed }),
            );
            let h = history(
                None,
                DAEMON,
                "review-due",
                json!({ "list": l.name, "due": due, "on_missed": rule.on_missed }),
            );
            self.api
                .store
                .commit_requests(RequestChange {
                    marks: vec![(key, day)],
                    history: vec![h],
                    outbox,
                    ..RequestChange::default()
                })
                .await?;
        }
        Ok(())
    }
}

/// Runs the background work until `stop` turns true.
pub async fn run<P: AccessProvider + 'static>(
    state: Arc<Requests<P>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = state.tick().await {
            warn!(error = %e, "request flow background work");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(StdDuration::from_millis(250)) => {}
        }
    }
}

#[utoipa::path(
    get, path = "/v1/lists", tag = "requests",
    responses((status = 200, body = crate::openapi::ListsReply), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn lists<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    headers: HeaderMap,
) -> ReqResult<Response> {
    s.who(&headers).await?;
    let now = Utc::now();
    let all: Vec<AccessList> = s
        .lists
        .read()
        .map(|l| l.values().cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for l in all {
        let (recorded, removed) = s.api.store.review_state(&l.name).await?;
        let mut v = serde_json::to_value(&l).map_err(ReqError::internal)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("review_due".into(), json!(l.review_due(recorded)));
            o.insert(
                "suspended".into(),
                json!(l.suspension(recorded, now).is_err()),
            );
            o.insert("removed_by_review".into(), json!(removed));
        }
        out.push(v);
    }
    let refused = s.refused.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Json(json!({ "lists": out, "refused_files": refused })).into_response())
}

/// A request for access on an access list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// The list's name.
    list: String,
    /// How long, e.g. `2h`; the list's default when left out, never past its maximum.
    duration: Option<String>,
    /// Why; the list may require one matching its pattern.
    #[serde(default)]
    reason: String,
    /// Apply at once without approval, on lists that allow it; the owners are told at once.
    #[serde(default)]
    break_glass: bool,
}

#[utoipa::path(
    post, path = "/v1/requests", tag = "requests",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Pending; or approved at once (break-glass, automatic lists)", body = crate::openapi::RequestView),
        (status = 400, description = "Bad input: the field and the fix", body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Not a member, no identity, suspended list, or break-glass not allowed", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such list", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: CreateBody = parse_body(&body, "request")?;
    let list = s.list(&b.list)?;
    let now = Utc::now();
    let (recorded, removed) = s.api.store.review_state(&list.name).await?;
    list.may_request(&me, &removed, b.break_glass, recorded, now)
        .map_err(ReqError::forbidden)?;
    let reason = list.check_reason(&b.reason).map_err(ReqError::field)?;
    if b.break_glass && reason.is_empty() {
        return Err(ReqError::field(FieldError::new(
            "reason",
            "is required for break-glass",
            "say why the access cannot wait for approval",
        )));
    }
    let duration = list
        .duration(b.duration.as_deref())
        .map_err(ReqError::field)?;
    let _flow = s.flow.lock().await;
    let req = RequestRecord {
        id: GrantId::from_parts(now, rand::random()).to_string(),
        list: list.name.clone(),
        requester: me.clone(),
        token_name: who.name.clone(),
        reason: reason.clone(),
        duration_secs: duration.num_seconds(),
        break_glass: b.break_glass,
        extends_grant: None,
        state: "pending".into(),
        approvals_needed: i64::from(list.approvals),
        created_at: now,
        wait_until: now + list.wait(secs(s.settings.pending_wait)),
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        grant_id: None,
        warned_expiry: None,
    };
    let detail = json!({ "request": req.id, "list": list.name, "requester": me, "reason": reason, "duration_secs": req.duration_secs, "break_glass": b.break_glass });
    let created = history(None, &who.name, "request-created", detail.clone());
    let req = if b.break_glass || list.auto_approve {
        let change = RequestChange {
            history: vec![created],
            ..RequestChange::default()
        };
        let mut r = req;
        r.decision_reason = Some(
            if b.break_glass {
                "break-glass"
            } else {
                "approved automatically by the list"
            }
            .into(),
        );
        s.activate(&list, r, &who.name, change).await?
    } else {
        let outbox = s.outbox(
            "request-created",
            &list.owners,
            format!(
                "{me} requests `{}` for {}s: {} — `lapse approve {}`",
                list.name, req.duration_secs, reason, req.id
            ),
            detail,
        );
        s.api
            .store
            .commit_requests(RequestChange {
                request: Some(req.clone()),
                history: vec![created],
                outbox,
                ..RequestChange::default()
            })
            .await?;
        req
    };
    Ok((StatusCode::CREATED, Json(s.request_view(&req).await?)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only requests in this state: pending, approved, denied, cancelled or lapsed.
    state: Option<String>,
    /// Only pending requests the caller may approve.
    #[serde(default)]
    waiting: bool,
}

#[utoipa::path(
    get, path = "/v1/requests", tag = "requests",
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = crate::openapi::RequestList), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list_requests<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    let state = if q.waiting {
        Some("pending")
    } else {
        q.state.as_deref()
    };
    let mut out = Vec::new();
    for r in s.api.store.list_requests(state, 1000).await? {
        if q.waiting {
            let me = who.identity()?;
            let mine_to_approve = s.list(&r.list).is_ok_and(|l| l.is_owner(me))
                && normalize_identity(&r.requester) != me;
            let done = s
                .api
                .store
                .approvals(&r.id)
                .await?
                .iter()
                .any(|a| a.approver == me);
            if !mine_to_approve || done {
                continue;
            }
        }
        out.push(s.request_view(&r).await?);
    }
    Ok(Json(json!({ "requests": out })).into_response())
}

#[utoipa::path(
    get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = crate::openapi::RequestView), (status = 401, body = crate::openapi::ErrorBody), (status = 404, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn show<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ReqResult<Response> {
    s.who(&headers).await?;
    let r = s.api.store.get_request(id.trim()).await?.ok_or_else(|| {
        ReqError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no request {id}"),
        )
    })?;
    Ok(Json(s.request_view(&r).await?).into_response())
}

/// An approval, denial or cancellation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    /// Why; required to deny.
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post, path = "/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Still pending until enough owners approve, else approved with its grant", body = crate::openapi::RequestView),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Not an owner, already approved by this owner, or the requester's own request", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "No longer pending", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn approve<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: DecisionBody = parse_body(&body, "approval")?;
    let _flow = s.flow.lock().await;
    let (r, list) = s.pending(&id).await?;
    let earlier: Vec<String> = s
        .api
        .store
        .approvals(&r.id)
        .await?
        .into_iter()
        .map(|a| a.approver)
        .collect();
    let enough = match list.approve(&r.requester, &me, &earlier) {
        Ok(e) => e,
        Err(refusal) => {
            // A refused approval is itself worth an auditor's eye.
            let h = history(
                None,
                &who.name,
                "approval-refused",
                json!({ "request": r.id, "list": list.name, "approver": me, "why": refusal.to_string() }),
            );
            s.api
                .store
                .commit_requests(RequestChange {
                    history: vec![h],
                    ..RequestChange::default()
                })
                .await?;
            return Err(ReqError::forbidden(refusal));
        }
    };
    let reason = b.reason.trim().to_owned();
    let approval = ApprovalRecord {
        approver: me.clone(),
        token_name: who.name.clone(),
        at: Utc::now(),
        reason: reason.clone(),
    };
    let h = history(
        None,
        &who.name,
        "request-approval",
        json!({ "request": r.id, "list": list.name, "approver": me, "reason": reason, "approvals": earlier.len() + 1, "needed": list.approvals }),
    );
    let change = RequestChange {
        approval: Some((r.id.clone(), approval)),
        history: vec![h],
        ..RequestChange::default()
    };
    let r = if enough {
        let mut r = r;
        r.decided_by = Some(who.name.clone());
        r.decision_reason = Some(reason);
        s.activate(&list, r, &who.name, change).await?
    } else {
        s.api.store.commit_requests(change).await?;
        r
    };
    Ok(Json(s.request_view(&r).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, body = crate::openapi::RequestView),
        (status = 400, description = "A denial needs a reason", body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Not an owner of the list", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "No longer pending", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn deny<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: DecisionBody = parse_body(&body, "denial")?;
    let reason =
        lapse_core::policy::check_reason(&b.reason, &s.api.limits).map_err(ReqError::field)?;
    let _flow = s.flow.lock().await;
    let (mut r, list) = s.pending(&id).await?;
    if !list.is_owner(&me) {
        return Err(ReqError::forbidden(Refusal::NotOwner {
            who: me,
            list: list.name,
        }));
    }
    r.state = "denied".into();
    r.decided_at = Some(Utc::now());
    r.decided_by = Some(who.name.clone());
    r.decision_reason = Some(reason.clone());
    let h = history(
        None,
        &who.name,
        "request-denied",
        json!({ "request": r.id, "list": list.name, "by": me, "reason": reason }),
    );
    let outbox = s.outbox(
        "request-denied",
        std::slice::from_ref(&r.requester),
        format!(
            "Your request {} on `{}` was denied by {me}: {reason}",
            r.id, list.name
        ),
        json!({ "request": r.id, "list": list.name, "by": me, "reason": reason }),
    );
    s.api
        .store
        .commit_requests(RequestChange {
            request: Some(r.clone()),
            history: vec![h],
            outbox,
            ..RequestChange::default()
        })
        .await?;
    Ok(Json(s.request_view(&r).await?).into_response())
}

#[utoipa::path(
    post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, body = crate::openapi::RequestView),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Only the requester cancels", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "No longer pending", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: DecisionBody = parse_body(&body, "cancellation")?;
    let _flow = s.flow.lock().await;
    let (mut r, list) = s.pending(&id).await?;
    if normalize_identity(&r.requester) != me {
        return Err(ReqError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the requester may cancel a request",
        ));
    }
    r.state = "cancelled".into();
    r.decided_at = Some(Utc::now());
    r.decided_by = Some(who.name.clone());
    r.decision_reason = Some(b.reason.trim().to_owned());
    let h = history(
        None,
        &who.name,
        "request-cancelled",
        json!({ "request": r.id, "list": list.name, "reason": b.reason.trim() }),
    );
    s.api
        .store
        .commit_requests(RequestChange {
            request: Some(r.clone()),
            history: vec![h],
            ..RequestChange::default()
        })
        .await?;
    Ok(Json(s.request_view(&r).await?).into_response())
}

/// An extension of a grant that came from an access list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtendBody {
    /// How much longer, e.g. `30m`; never past the list's maximum total duration.
    by: String,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post, path = "/v1/grants/{id}/extend", tag = "requests",
    params(("id" = String, Path, description = "Grant id")),
    request_body = ExtendBody,
    responses(
        (status = 201, description = "An extension request: pending until the list's owners approve, or applied at once on an automatic list", body = crate::openapi::RequestView),
        (status = 400, description = "Bad input, or past the list's maximum total duration", body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Neither the requester nor an owner", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "The grant has ended or did not come from an access list", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn extend<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: ExtendBody = parse_body(&body, "extension")?;
    let gid = GrantId::from_str(&id).map_err(|_| {
        ReqError::field(FieldError::new(
            "id",
            format!("{id:?} is not a grant id"),
            "use the id shown by `lapse list`",
        ))
    })?;
    let grant = s.api.store.get_grant(gid).await?.ok_or_else(|| {
        ReqError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no grant {gid}"),
        )
    })?;
    let origin = s
        .api
        .store
        .requests_of_grant(gid)
        .await?
        .into_iter()
        .find(|r| r.extends_grant.is_none() && r.state == "approved")
        .ok_or_else(|| ReqError::conflict(format!("grant {gid} did not come from an access list request, so it has no list to extend it by")))?;
    let list = s.list(&origin.list)?;
    if normalize_identity(&origin.requester) != me && !list.is_owner(&me) {
        return Err(ReqError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the requester or an owner of the list may extend this grant",
        ));
    }
    let by = humantime::parse_duration(b.by.trim())
        .ok()
        .and_then(|d| Duration::from_std(d).ok())
        .ok_or_else(|| {
            ReqError::field(FieldError::new(
                "by",
                format!("{:?} is not a duration", b.by),
                "give e.g. `30m`",
            ))
        })?;
    // Refused here already, so nobody is asked to approve what could never be applied.
    list.extension_end(grant.starts_at, grant.expires_at, by)
        .map_err(ReqError::field)?;
    if grant.state.is_terminal() || grant.revoked_at.is_some() {
        return Err(ReqError::conflict(format!(
            "grant {gid} has ended ({})",
            grant.state
        )));
    }
    let reason = list.check_reason(&b.reason).map_err(ReqError::field)?;
    let now = Utc::now();
    let _flow = s.flow.lock().await;
    let req = RequestRecord {
        id: GrantId::from_parts(now, rand::random()).to_string(),
        list: list.name.clone(),
        requester: normalize_identity(&origin.requester),
        token_name: who.name.clone(),
        reason: reason.clone(),
        duration_secs: by.num_seconds(),
        break_glass: false,
        extends_grant: Some(gid.to_string()),
        state: "pending".into(),
        approvals_needed: i64::from(list.approvals),
        created_at: now,
        wait_until: now + list.wait(secs(s.settings.pending_wait)),
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        grant_id: Some(gid.to_string()),
        warned_expiry: None,
    };
    let detail = json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "by_secs": req.duration_secs, "reason": reason, "asked_by": me });
    let created = history(Some(gid), &who.name, "extension-requested", detail.clone());
    let req = if list.auto_approve {
        let mut r = req;
        r.decision_reason = Some("approved automatically by the list".into());
        s.activate(
            &list,
            r,
            &who.name,
            RequestChange {
                history: vec![created],
                ..RequestChange::default()
            },
        )
        .await?
    } else {
        let outbox = s.outbox(
            "request-created",
            &list.owners,
            format!(
                "{me} asks to extend grant {gid} on `{}` by {}s: {reason} — `lapse approve {}`",
                list.name, req.duration_secs, req.id
            ),
            detail,
        );
        s.api
            .store
            .commit_requests(RequestChange {
                request: Some(req.clone()),
                history: vec![created],
                outbox,
                ..RequestChange::default()
            })
            .await?;
        req
    };
    Ok((StatusCode::CREATED, Json(s.request_view(&req).await?)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReviewQuery {
    /// Only lists whose review is due or overdue.
    #[serde(default)]
    due: bool,
}

#[utoipa::path(
    get, path = "/v1/reviews", tag = "requests",
    params(ReviewQuery),
    responses((status = 200, body = crate::openapi::ReviewList), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn reviews<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    Query(q): Query<ReviewQuery>,
    headers: HeaderMap,
) -> ReqResult<Response> {
    s.who(&headers).await?;
    let now = Utc::now();
    let all: Vec<AccessList> = s
        .lists
        .read()
        .map(|l| l.values().cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for l in all {
        let (recorded, _) = s.api.store.review_state(&l.name).await?;
        let Some(due) = l.review_due(recorded) else {
            continue;
        };
        if q.due && due > now {
            continue;
        }
        out.push(json!({ "list": l.name, "due": due, "overdue": due <= now, "suspended": l.suspension(recorded, now).is_err(), "owners": l.owners, "members": l.members }));
    }
    Ok(Json(json!({ "reviews": out })).into_response())
}

/// An owner's review of a list's membership.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewBody {
    list: String,
    /// Members who keep their place.
    #[serde(default)]
    keep: Vec<String>,
    /// Members taken off the list until its file drops them.
    #[serde(default)]
    remove: Vec<String>,
}

#[utoipa::path(
    post, path = "/v1/reviews", tag = "requests",
    request_body = ReviewBody,
    responses(
        (status = 200, body = crate::openapi::ReviewRecorded),
        (status = 400, body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, description = "Not an owner of the list", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "The list has no review period", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn record_review<P: AccessProvider + 'static>(
    State(s): State<Arc<Requests<P>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = s.who(&headers).await?;
    who.writer()?;
    let me = who.identity()?.to_owned();
    let b: ReviewBody = parse_body(&body, "review")?;
    let list = s.list(&b.list)?;
    if !list.is_owner(&me) {
        return Err(ReqError::forbidden(Refusal::NotOwner {
            who: me,
            list: list.name,
        }));
    }
    let Some(rule) = &list.review else {
        return Err(ReqError::conflict(format!(
            "list `{}` has no review period",
            list.name
        )));
    };
    let kept: Vec<String> = b
        .keep
        .iter()
        .map(|k| normalize_identity(k))
        .filter(|k| !k.is_empty())
        .collect();
    let removed: Vec<String> = b
        .remove
        .iter()
        .map(|k| normalize_identity(k))
        .filter(|k| !k.is_empty())
        .collect();
    let mut seen = BTreeMap::new();
    for m in kept.iter().chain(&removed) {
        if seen.insert(m.clone(), ()).is_some() {
            return Err(ReqError::field(FieldError::new(
                "keep",
                format!("{m} is both kept and removed"),
                "name each member once",
            )));
        }
    }
    let next_due = Utc::now() + rule.every;
    let h = history(
        None,
        &who.name,
        "list-reviewed",
        json!({ "list": list.name, "reviewer": me, "kept": kept, "removed": removed, "next_due": next_due }),
    );
    let review = NewReview {
        list: list.name.clone(),
        reviewer: me,
        kept,
        removed,
        next_due,
    };
    s.api
        .store
        .commit_requests(RequestChange {
            review: Some(review),
            history: vec![h],
            ..RequestChange::default()
        })
        .await?;
    Ok(Json(json!({ "list": list.name, "next_due": next_due })).into_response())
}

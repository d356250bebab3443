//! The request flow: creating, deciding, extending and reviewing requests on access lists, and
//! the level-triggered background work (lapsing due requests, reviews due, expiring-soon and
//! ended notices).
//!
//! Decisions on requests are serialised by one lock, so two owners approving at once cannot
//! both create the grant.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use lapse_core::access_list::{
    self, AccessList, ListFileError, ListSet, Refusal, normalize_identity,
};
use lapse_core::grant_policy::{self, DirectRule, Granter, PolicySet};
use lapse_core::request::{self as lifecycle, RequestState, Transition};
use lapse_core::{AccessProvider, Grant, GrantId, HistoryEvent};
use lapse_engine::EngineError;
use lapse_store::{
    ApprovalRecord, HistoryFilter, Idempotency, NewHistory, NewOutbox, NewReview, RequestChange,
    RequestRecord, Store, StoreError,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::engine::GrantEngine;
use crate::error::{FlowError, FlowResult};
use crate::notify::{Notifier, NotifySettings};
use crate::oncall::{OnCall, OnCallMatch};
use crate::settings::AccessSettings;
use crate::submit::Submitter;
use crate::wire::{
    AccessListView, CreateBody, DecisionBody, ExtendBody, GrantRequest, ListsReply, RefusedFile,
    RequestList, RequestView, ReviewBody, ReviewList, ReviewRecorded, ReviewView,
};

/// The daemon's own actor name in the history.
const DAEMON: &str = "lapse";

/// Ended grants are found in the history the engine writes; it is read at least this often.
const HISTORY_POLL: StdDuration = StdDuration::from_secs(1);

/// Due rows handled per query; the tick repeats the query until nothing is due.
const BATCH: u32 = 500;

/// Whether a caller may end a grant early: the one rule for the API and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeRule {
    Allowed,
    /// A requester learns nothing of others' grants, not even that they exist.
    Hidden,
    /// Only an admin ends another's grant.
    NotYours,
}

/// The requester recorded for a caller: the person the token speaks for, or the token's name
/// when it is bound to nobody (a CI token). Grants and requests record the same.
pub fn requester_of(token: &str, identity: Option<&str>) -> String {
    identity.map_or_else(|| token.to_owned(), normalize_identity)
}

/// Whether a grant is the caller's own: recorded with their identity, or with the token's
/// name (a token bound to nobody, or a grant recorded before grants carried identities).
pub fn is_own(grant: &Grant, token: &str, identity: Option<&str>) -> bool {
    grant.requester == token || identity.is_some_and(|i| grant.requester == normalize_identity(i))
}

/// An admin may end any grant; anyone else only the grants they asked for ([`is_own`]).
/// Auditors never reach this: they may not write.
pub fn may_revoke(
    caller: &str,
    identity: Option<&str>,
    role: lapse_core::Role,
    grant: &Grant,
) -> RevokeRule {
    use lapse_core::Role;
    if role == Role::Admin || is_own(grant, caller, identity) {
        RevokeRule::Allowed
    } else if role == Role::Requester {
        RevokeRule::Hidden
    } else {
        RevokeRule::NotYours
    }
}

/// Who decides: the token's name (the history actor) and the person it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub token: String,
    /// Normalised identity (an email).
    pub identity: String,
}

impl Actor {
    pub fn new(token: impl Into<String>, identity: &str) -> Self {
        Self {
            token: token.into(),
            identity: normalize_identity(identity),
        }
    }
}

/// What one pass of the background work did, and when the next is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Pending requests lapsed in this pass.
    pub lapsed: usize,
    /// Expiring-soon notices queued in this pass.
    pub warned: usize,
    /// The earliest time something becomes due (never later than the history poll).
    pub next_wake: DateTime<Utc>,
}

/// The request flow's state, shared by the routes and the background task.
pub struct RequestService<P, E> {
    store: Store,
    engine: E,
    submitter: Arc<Submitter<P>>,
    settings: AccessSettings,
    notify: NotifySettings,
    notifier: Notifier,
    lists: RwLock<ListSet>,
    policies: RwLock<PolicySet>,
    refused: Mutex<Vec<ListFileError>>,
    flow: tokio::sync::Mutex<()>,
    /// A new pending request may be due before the planned wake-up.
    wake: Notify,
    /// Who is on call, for lists with `auto_approve_on_call`; `None`: nobody is asked.
    on_call: Option<Arc<dyn OnCall>>,
    /// How long the on-call answer may take before the request waits for owners instead.
    on_call_timeout: StdDuration,
}

/// The actor name of approvals made by a list's on-call rule.
pub const ON_CALL_RULE: &str = "on-call rule";

fn history(grant: Option<GrantId>, actor: &str, event: HistoryEvent, detail: Value) -> NewHistory {
    NewHistory {
        at: Utc::now(),
        grant_id: grant,
        actor: actor.to_owned(),
        event: event.as_str().to_owned(),
        detail,
    }
}

/// Adds `extra`'s fields to the object `v`.
fn merge(v: &mut Value, extra: &Value) {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
}

fn with(mut v: Value, extra: &Value) -> Value {
    merge(&mut v, extra);
    v
}

fn secs(d: StdDuration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::hours(1))
}

/// A stored request's state; the store refuses unknown ones on read, so this only fails on a
/// record built in memory by mistake.
fn state_of(r: &RequestRecord) -> FlowResult<RequestState> {
    RequestState::from_str(&r.state).map_err(FlowError::Internal)
}

/// A refused transition of request `id`: no longer pending is a conflict, the rest refusals.
fn refused(id: &str, r: Refusal) -> FlowError {
    match r {
        Refusal::NotPending { state } => {
            FlowError::Conflict(format!("request {id} is {state}, no longer pending"))
        }
        other => FlowError::Refused(other),
    }
}

fn decide(r: &mut RequestRecord, to: RequestState, by: &str, reason: Option<String>) {
    r.state = to.as_str().to_owned();
    r.decided_at = Some(Utc::now());
    r.decided_by = Some(by.to_owned());
    if reason.is_some() {
        r.decision_reason = reason;
    }
}

/// The `.toml` files of `dir` as (file name, text); a missing or unreadable directory is none.
fn read_toml_dir(dir: &std::path::Path) -> Vec<(String, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "nothing loaded: cannot read the directory");
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

/// What `lapse doctor` says of the access-list and grant-policy directories, read as the daemon
/// reads them (without writing anything): how many lists and policies load, and every refused
/// file with its line and problem.
pub fn check_access_files(settings: &AccessSettings, cap: Duration) -> AccessFilesCheck {
    let lists = access_list::load(&read_toml_dir(&settings.lists_dir), &ListSet::new(), cap);
    let (policies, policy_errors) = grant_policy::load(
        &read_toml_dir(&settings.policies_dir),
        &PolicySet::new(),
        cap,
    );
    let refused = lists
        .errors
        .iter()
        .chain(&policy_errors)
        .map(|e| match e.line {
            Some(line) => format!("{}:{line}: {}", e.file, e.problem),
            None => format!("{}: {}", e.file, e.problem),
        })
        .collect();
    AccessFilesCheck {
        lists: lists.lists.len(),
        policies: policies.len(),
        refused,
    }
}

/// See [`check_access_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFilesCheck {
    pub lists: usize,
    pub policies: usize,
    /// `file:line: problem` for each refused file.
    pub refused: Vec<String>,
}

impl<P: AccessProvider + 'static, E: GrantEngine> RequestService<P, E> {
    /// The flow over `store`, with the lists in `settings.lists_dir` loaded (a missing
    /// directory is no lists, with a warning, not a failure).
    pub async fn start(
        store: Store,
        engine: E,
        submitter: Arc<Submitter<P>>,
        settings: AccessSettings,
        notify: NotifySettings,
        notifier: Notifier,
    ) -> Arc<Self> {
        Self::start_with(
            store,
            engine,
            submitter,
            settings,
            notify,
            notifier,
            None,
            StdDuration::from_secs(3),
        )
        .await
    }

    /// [`start`](Self::start) with an on-call source, asked for at most `on_call_timeout`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_with(
        store: Store,
        engine: E,
        submitter: Arc<Submitter<P>>,
        settings: AccessSettings,
        notify: NotifySettings,
        notifier: Notifier,
        on_call: Option<Arc<dyn OnCall>>,
        on_call_timeout: StdDuration,
    ) -> Arc<Self> {
        let me = Arc::new(Self {
            store,
            engine,
            submitter,
            settings,
            notify,
            notifier,
            lists: RwLock::new(ListSet::new()),
            policies: RwLock::new(PolicySet::new()),
            refused: Mutex::new(Vec::new()),
            flow: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            on_call,
            on_call_timeout,
        });
        me.reload().await;
        me
    }

    /// Starts the background work and notification delivery; both end when `stop` turns true.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        tokio::spawn(run(self.clone(), stop.clone()));
        tokio::spawn(crate::notify::deliver(
            self.store.clone(),
            self.notifier.clone(),
            self.notify.clone(),
            stop,
        ));
    }

    fn read_dir(dir: &std::path::Path) -> Vec<(String, String)> {
        read_toml_dir(dir)
    }

    /// Re-reads the lists directory. A refused file keeps its old lists in force; every change
    /// of the loaded set and every refusal is written to the history.
    pub async fn reload(&self) {
        let files = Self::read_dir(&self.settings.lists_dir);
        let previous = self.lists.read().map(|l| l.clone()).unwrap_or_default();
        let cap = self.submitter.limits().max_ttl;
        let loaded = access_list::load(&files, &previous, cap);
        let changes = access_list::diff(&previous, &loaded.lists);
        let mut rows = Vec::new();
        for e in &loaded.errors {
            error!(file = %e.file, line = ?e.line, problem = %e.problem, "access list file refused; its previous lists stay in force");
            rows.push(history(
                None,
                DAEMON,
                HistoryEvent::ListFileRefused,
                json!({ "file": e.file, "line": e.line, "problem": e.problem }),
            ));
        }
        if !changes.is_empty() {
            info!(added = ?changes.added, changed = ?changes.changed, removed = ?changes.removed, "access lists changed");
            rows.push(history(None, DAEMON, HistoryEvent::ListsLoaded, json!({ "added": changes.added, "changed": changes.changed, "removed": changes.removed, "lists": loaded.lists.keys().collect::<Vec<_>>() })));
        }
        rows.extend(self.reload_policies(cap));
        if !rows.is_empty()
            && let Err(e) = self
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
        self.wake.notify_one();
    }

    /// Re-reads the grant policies; the history rows saying what changed or was refused.
    fn reload_policies(&self, cap: Duration) -> Vec<NewHistory> {
        let files = Self::read_dir(&self.settings.policies_dir);
        let previous = self.policies.read().map(|p| p.clone()).unwrap_or_default();
        let (set, errors) = grant_policy::load(&files, &previous, cap);
        let mut rows = Vec::new();
        for e in &errors {
            error!(file = %e.file, line = ?e.line, problem = %e.problem, "grant policy file refused; its previous policies stay in force");
            rows.push(history(
                None,
                DAEMON,
                HistoryEvent::PolicyFileRefused,
                json!({ "file": e.file, "line": e.line, "problem": e.problem }),
            ));
        }
        let changed = |a: &PolicySet, b: &PolicySet| -> Vec<String> {
            a.iter()
                .filter(|(k, v)| b.get(*k).is_some_and(|o| o != *v))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let added: Vec<&String> = set.keys().filter(|k| !previous.contains_key(*k)).collect();
        let removed: Vec<&String> = previous.keys().filter(|k| !set.contains_key(*k)).collect();
        let changed = changed(&set, &previous);
        if !added.is_empty() || !removed.is_empty() || !changed.is_empty() {
            info!(?added, ?changed, ?removed, "grant policies changed");
            rows.push(history(None, DAEMON, HistoryEvent::PoliciesLoaded, json!({ "added": added, "changed": changed, "removed": removed, "policies": set.values().collect::<Vec<_>>() })));
        }
        if let Ok(mut r) = self.refused.lock() {
            r.extend(errors);
        }
        if let Ok(mut p) = self.policies.write() {
            *p = set;
        }
        rows
    }

    /// The rule that allows `grant` to be granted directly by `who`, or why nothing does.
    pub fn authorize_direct(&self, who: Granter<'_>, grant: &Grant) -> FlowResult<DirectRule> {
        let lists = self.all_lists();
        let policies = self.policies.read().map(|p| p.clone()).unwrap_or_default();
        grant_policy::authorize_direct(who, grant, &lists, &policies)
            .map_err(FlowError::NotAuthorized)
    }

    fn list(&self, name: &str) -> FlowResult<AccessList> {
        self.lists
            .read()
            .ok()
            .and_then(|l| l.get(name.trim()).cloned())
            .ok_or_else(|| FlowError::NotFound(format!("no access list named {name:?}")))
    }

    fn all_lists(&self) -> Vec<AccessList> {
        self.lists
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Notices of `event`; those about a list with a Slack channel carry it
    /// (`slack_channel`), so that the Slack channel takes them.
    fn outbox(
        &self,
        event: &str,
        to: &[String],
        text: String,
        mut detail: Value,
    ) -> Vec<NewOutbox> {
        let channel = detail
            .get("list")
            .and_then(Value::as_str)
            .and_then(|l| self.list(l).ok())
            .and_then(|l| l.slack_channel);
        if let (Some(c), Some(o)) = (channel, detail.as_object_mut()) {
            o.insert("slack_channel".into(), json!(c));
        }
        self.notifier.rows(event, to, text, detail)
    }

    /// Whether `me` is on call now on one of the list's schedules. Every failure is no:
    /// the request then waits for its owners. The second value says why nobody was found,
    /// for the history.
    async fn on_call_now(&self, list: &AccessList, me: &str) -> (Option<OnCallMatch>, Value) {
        let Some(rule) = &list.auto_approve_on_call else {
            return (None, Value::Null);
        };
        let Some(source) = &self.on_call else {
            warn!(list = %list.name, "the list has auto_approve_on_call but no [pagerduty] is configured; the request waits for its owners");
            return (None, json!({ "error": "no on-call source is configured" }));
        };
        let asked = tokio::time::timeout(
            self.on_call_timeout,
            source.on_call(&rule.pagerduty_schedules, me),
        )
        .await;
        match asked {
            Ok(Ok(Some(m))) => (Some(m), Value::Null),
            Ok(Ok(None)) => (
                None,
                json!({ "on_call": false, "schedules": rule.pagerduty_schedules }),
            ),
            Ok(Err(e)) => {
                warn!(list = %list.name, error = %e, "the on-call answer failed; the request waits for its owners");
                (
                    None,
                    json!({ "error": e, "schedules": rule.pagerduty_schedules }),
                )
            }
            Err(_) => {
                warn!(list = %list.name, timeout = ?self.on_call_timeout, "the on-call answer took too long; the request waits for its owners");
                (
                    None,
                    json!({ "error": format!("no answer within {:?}", self.on_call_timeout), "schedules": rule.pagerduty_schedules }),
                )
            }
        }
    }

    /// Stores a request that waits for its owners, with its history row and their notices.
    async fn store_pending(
        &self,
        req: RequestRecord,
        created: NewHistory,
        outbox: Vec<NewOutbox>,
    ) -> FlowResult<RequestRecord> {
        self.store
            .commit_requests(RequestChange {
                request: Some(req.clone()),
                history: vec![created],
                outbox,
                ..RequestChange::default()
            })
            .await?;
        self.wake.notify_one();
        Ok(req)
    }

    async fn view(&self, r: RequestRecord) -> FlowResult<RequestView> {
        let approvals = self.store.approvals(&r.id).await?;
        Ok(RequestView::new(r, approvals))
    }

    /// A request by id, and its list.
    async fn find(&self, id: &str) -> FlowResult<(RequestRecord, AccessList)> {
        let r = self
            .store
            .get_request(id.trim())
            .await?
            .ok_or_else(|| FlowError::NotFound(format!("no request {id}")))?;
        if state_of(&r)? != RequestState::Pending {
            return Err(refused(
                &r.id,
                Refusal::NotPending {
                    state: state_of(&r)?,
                },
            ));
        }
        let list = self.list(&r.list)?;
        Ok((r, list))
    }

    /// Every loaded list with its review state, and the files refused.
    pub async fn lists(&self) -> FlowResult<ListsReply> {
        let now = Utc::now();
        let mut lists = Vec::new();
        for l in self.all_lists() {
            let (recorded, removed) = self.store.review_state(&l.name).await?;
            lists.push(AccessListView::new(
                &l,
                l.review_due(recorded),
                l.suspension(recorded, now).is_err(),
                removed,
            ));
        }
        let refused_files = self
            .refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|e| RefusedFile {
                file: e.file,
                line: e.line.map(|l| l as u64),
                problem: e.problem,
            })
            .collect();
        Ok(ListsReply {
            lists,
            refused_files,
        })
    }

    /// A new request: pending, or approved at once (break-glass, automatic lists).
    pub async fn create(&self, who: &Actor, b: &CreateBody) -> FlowResult<RequestView> {
        let me = who.identity.clone();
        let list = self.list(&b.list)?;
        let now = Utc::now();
        let (recorded, removed) = self.store.review_state(&list.name).await?;
        list.may_request(&me, &removed, b.break_glass, recorded, now)?;
        let reason = list.check_reason(&b.reason)?;
        if b.break_glass && reason.is_empty() {
            return Err(FlowError::field(
                "reason",
                "is required for break-glass",
                "say why the access cannot wait for approval",
            ));
        }
        let duration = list.duration(b.duration.as_deref())?;
        // Asked before the lock: a slow answer holds up no other decision.
        let (on_call, on_call_note) = if b.break_glass || list.auto_approve {
            (None, Value::Null)
        } else {
            self.on_call_now(&list, &me).await
        };
        let _flow = self.flow.lock().await;
        let req = RequestRecord {
            id: GrantId::from_parts(now, rand::random()).to_string(),
            list: list.name.clone(),
            requester: me.clone(),
            token_name: who.token.clone(),
            reason: reason.clone(),
            duration_secs: duration.num_seconds(),
            break_glass: b.break_glass,
            extends_grant: None,
            state: RequestState::Pending.as_str().to_owned(),
            approvals_needed: i64::from(list.approvals),
            created_at: now,
            wait_until: now + list.wait(secs(self.settings.pending_wait)),
            decided_at: None,
            decided_by: None,
            decision_reason: None,
            grant_id: None,
            warned_expiry: None,
        };
        let mut detail = json!({ "request": req.id, "list": list.name, "requester": me, "reason": reason, "duration_secs": req.duration_secs, "break_glass": b.break_glass });
        if !on_call_note.is_null() {
            detail["on_call_check"] = on_call_note;
        }
        let created = history(
            None,
            &who.token,
            HistoryEvent::RequestCreated,
            detail.clone(),
        );
        let req = if b.break_glass || list.auto_approve {
            let change = RequestChange {
                history: vec![created],
                ..RequestChange::default()
            };
            let mut r = req;
            // The list's rule decided an automatic approval, not the requester; break-glass
            // is the requester's own decision.
            if !b.break_glass {
                r.decided_by = Some(format!("list:{}", list.name));
            }
            r.decision_reason = Some(
                if b.break_glass {
                    "break-glass"
                } else {
                    "approved automatically by the list"
                }
                .into(),
            );
            self.activate(&list, r, &who.token, change, json!({}))
                .await?
        } else if let Some(m) = on_call {
            let mut change = RequestChange {
                history: vec![created],
                ..RequestChange::default()
            };
            let mut r = req;
            r.decided_by = Some(ON_CALL_RULE.into());
            r.decision_reason = Some(format!(
                "approved by the on-call rule: {} is on call on PagerDuty schedule {} ({}) as user {}",
                me, m.schedule_name, m.schedule_id, m.user_id
            ));
            change.outbox.extend(self.outbox(
                "request-approved-on-call",
                &list.owners,
                format!(
                    "{me} is on call on {} ({}) and was let into `{}` for {}s by the on-call rule: {}",
                    m.schedule_name, m.schedule_id, list.name, r.duration_secs, reason
                ),
                json!({ "request": r.id, "list": list.name, "requester": me, "reason": reason, "duration_secs": r.duration_secs, "on_call": m }),
            ));
            let how = json!({ "approved_by": ON_CALL_RULE, "by": ON_CALL_RULE, "on_call": m });
            self.activate(&list, r, DAEMON, change, how).await?
        } else {
            let outbox = self.outbox(
                "request-created",
                &list.owners,
                format!(
                    "{me} requests `{}` for {}s: {} — `lapse approve {}`",
                    list.name, req.duration_secs, reason, req.id
                ),
                detail,
            );
            self.store_pending(req, created, outbox).await?
        };
        self.view(req).await
    }

    /// Requests, newest first: those in `state` when given, or with `waiting_for` only the
    /// pending ones that identity may still approve (`None` there: the caller has no identity).
    pub async fn list_requests(
        &self,
        state: Option<&str>,
        waiting: bool,
        identity: Option<&str>,
    ) -> FlowResult<RequestList> {
        let state = if waiting {
            Some(RequestState::Pending.as_str())
        } else {
            state
        };
        let mut requests = Vec::new();
        for r in self.store.list_requests(state, 1000).await? {
            if waiting {
                let me = identity.ok_or(FlowError::Refused(Refusal::NoIdentity))?;
                let mine_to_approve = self.list(&r.list).is_ok_and(|l| l.is_owner(me))
                    && normalize_identity(&r.requester) != me;
                let done = self
                    .store
                    .approvals(&r.id)
                    .await?
                    .iter()
                    .any(|a| a.approver == me);
                if !mine_to_approve || done {
                    continue;
                }
            }
            requests.push(self.view(r).await?);
        }
        Ok(RequestList { requests })
    }

    pub async fn show(&self, id: &str) -> FlowResult<RequestView> {
        let r = self
            .store
            .get_request(id.trim())
            .await?
            .ok_or_else(|| FlowError::NotFound(format!("no request {id}")))?;
        self.view(r).await
    }

    /// One owner's approval; the grant is created when enough owners have approved.
    pub async fn approve(
        &self,
        who: &Actor,
        id: &str,
        b: &DecisionBody,
    ) -> FlowResult<RequestView> {
        let me = who.identity.clone();
        let _flow = self.flow.lock().await;
        let (r, list) = self.find(id).await?;
        let earlier: Vec<String> = self
            .store
            .approvals(&r.id)
            .await?
            .into_iter()
            .map(|a| a.approver)
            .collect();
        // An extension is asked for by a token that may belong to an owner, not the grant's
        // requester: whoever asked may not approve it either.
        let asked_by_me = r.extends_grant.is_some()
            && self
                .store
                .token_identity(&r.token_name)
                .await?
                .map(|i| normalize_identity(&i))
                .as_deref()
                == Some(me.as_str());
        let decision = if asked_by_me {
            Err(Refusal::SelfApproval)
        } else {
            lifecycle::approve(state_of(&r)?, &list, &r.requester, &me, &earlier)
        };
        let enough = match decision {
            Ok(t) => t == Transition::To(RequestState::Approved),
            Err(refusal) => {
                // A refused approval is itself worth an auditor's eye.
                let h = history(
                    None,
                    &who.token,
                    HistoryEvent::ApprovalRefused,
                    json!({ "request": r.id, "list": list.name, "approver": me, "why": refusal.to_string() }),
                );
                self.store
                    .commit_requests(RequestChange {
                        history: vec![h],
                        ..RequestChange::default()
                    })
                    .await?;
                return Err(refused(&r.id, refusal));
            }
        };
        let reason = b.reason.trim().to_owned();
        lapse_core::text::check_reason("reason", &reason)
            .map_err(lapse_core::policy::FieldError::from)?;
        let approval = ApprovalRecord {
            approver: me.clone(),
            token_name: who.token.clone(),
            at: Utc::now(),
            reason: reason.clone(),
        };
        let h = history(
            None,
            &who.token,
            HistoryEvent::RequestApproval,
            json!({ "request": r.id, "list": list.name, "approver": me, "reason": reason, "approvals": earlier.len() + 1, "needed": list.approvals }),
        );
        let change = RequestChange {
            approval: Some((r.id.clone(), approval)),
            history: vec![h],
            ..RequestChange::default()
        };
        let r = if enough {
            let mut r = r;
            r.decided_by = Some(who.token.clone());
            r.decision_reason = Some(reason);
            let mut by = earlier.clone();
            by.push(me.clone());
            self.activate(&list, r, &who.token, change, json!({ "by": by.join(", ") }))
                .await?
        } else {
            self.store.commit_requests(change).await?;
            // Another owner may have approved at the same moment on another daemon, each
            // seeing the other's approval missing: read them again, and whoever sees the
            // quorum complete lets the request in (the store takes one such decision only).
            let all: Vec<String> = self
                .store
                .approvals(&r.id)
                .await?
                .into_iter()
                .map(|a| normalize_identity(&a.approver))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if all.len() >= list.approvals as usize {
                let mut r = r;
                r.decided_by = Some(who.token.clone());
                r.decision_reason = Some(reason);
                let how = json!({ "by": all.join(", ") });
                match self
                    .activate(&list, r.clone(), &who.token, RequestChange::default(), how)
                    .await
                {
                    Ok(r) => r,
                    // Let in by the other approval's daemon meanwhile.
                    Err(FlowError::Conflict(_)) => {
                        self.store.get_request(&r.id).await?.unwrap_or(r)
                    }
                    Err(e) => return Err(e),
                }
            } else {
                r
            }
        };
        self.view(r).await
    }

    /// A denial by an owner; it needs a reason.
    pub async fn deny(&self, who: &Actor, id: &str, b: &DecisionBody) -> FlowResult<RequestView> {
        let me = who.identity.clone();
        let reason = lapse_core::policy::check_reason(&b.reason, self.submitter.limits())?;
        let _flow = self.flow.lock().await;
        let (mut r, list) = self.find(id).await?;
        let Transition::To(to) =
            lifecycle::deny(state_of(&r)?, &list, &me).map_err(|e| refused(&r.id, e))?
        else {
            return Err(FlowError::Internal("a denial that does not decide".into()));
        };
        decide(&mut r, to, &who.token, Some(reason.clone()));
        let h = history(
            None,
            &who.token,
            HistoryEvent::RequestDenied,
            json!({ "request": r.id, "list": list.name, "by": me, "reason": reason }),
        );
        let outbox = self.outbox(
            "request-denied",
            std::slice::from_ref(&r.requester),
            format!(
                "Your request {} on `{}` was denied by {me}: {reason}",
                r.id, list.name
            ),
            json!({ "request": r.id, "list": list.name, "by": me, "reason": reason }),
        );
        self.store
            .commit_requests(RequestChange {
                request: Some(r.clone()),
                history: vec![h],
                decides: true,
                outbox,
                ..RequestChange::default()
            })
            .await?;
        self.view(r).await
    }

    /// A cancellation by the requester.
    pub async fn cancel(&self, who: &Actor, id: &str, b: &DecisionBody) -> FlowResult<RequestView> {
        lapse_core::text::check_reason("reason", b.reason.trim())
            .map_err(lapse_core::policy::FieldError::from)?;
        let _flow = self.flow.lock().await;
        let (mut r, list) = self.find(id).await?;
        let Transition::To(to) = lifecycle::cancel(state_of(&r)?, &r.requester, &who.identity)
            .map_err(|e| refused(&r.id, e))?
        else {
            return Err(FlowError::Internal(
                "a cancellation that does not decide".into(),
            ));
        };
        decide(&mut r, to, &who.token, Some(b.reason.trim().to_owned()));
        let h = history(
            None,
            &who.token,
            HistoryEvent::RequestCancelled,
            json!({ "request": r.id, "list": list.name, "reason": b.reason.trim() }),
        );
        self.store
            .commit_requests(RequestChange {
                request: Some(r.clone()),
                history: vec![h],
                decides: true,
                ..RequestChange::default()
            })
            .await?;
        self.view(r).await
    }

    /// An extension request for a grant that came from a list: pending until its owners
    /// approve, or applied at once on an automatic list.
    pub async fn extend(&self, who: &Actor, id: &str, b: &ExtendBody) -> FlowResult<RequestView> {
        let me = who.identity.clone();
        let gid = GrantId::from_str(id).map_err(|_| {
            FlowError::field(
                "id",
                format!("{id:?} is not a grant id"),
                "use the id shown by `lapse list`",
            )
        })?;
        let grant = self
            .store
            .get_grant(gid)
            .await?
            .ok_or_else(|| FlowError::NotFound(format!("no grant {gid}")))?;
        let origin = self
            .store
            .requests_of_grant(gid)
            .await?
            .into_iter()
            .find(|r| r.extends_grant.is_none() && r.state == RequestState::Approved.as_str())
            .ok_or_else(|| FlowError::Conflict(format!("grant {gid} did not come from an access list request, so it has no list to extend it by")))?;
        let list = self.list(&origin.list)?;
        if normalize_identity(&origin.requester) != me && !list.is_owner(&me) {
            return Err(FlowError::Refused(Refusal::NotRequesterOrOwner));
        }
        let by = humantime::parse_duration(b.by.trim())
            .ok()
            .and_then(|d| Duration::from_std(d).ok())
            .ok_or_else(|| {
                FlowError::field(
                    "by",
                    format!("{:?} is not a duration", b.by),
                    "give e.g. `30m`",
                )
            })?;
        // Refused here already, so nobody is asked to approve what could never be applied.
        list.extension_end(grant.starts_at, grant.expires_at, by)?;
        if grant.state.is_terminal() || grant.revoked_at.is_some() {
            return Err(FlowError::Conflict(format!(
                "grant {gid} has ended ({})",
                grant.state
            )));
        }
        let reason = list.check_reason(&b.reason)?;
        let now = Utc::now();
        let _flow = self.flow.lock().await;
        let req = RequestRecord {
            id: GrantId::from_parts(now, rand::random()).to_string(),
            list: list.name.clone(),
            requester: normalize_identity(&origin.requester),
            token_name: who.token.clone(),
            reason: reason.clone(),
            duration_secs: by.num_seconds(),
            break_glass: false,
            extends_grant: Some(gid.to_string()),
            state: RequestState::Pending.as_str().to_owned(),
            approvals_needed: i64::from(list.approvals),
            created_at: now,
            wait_until: now + list.wait(secs(self.settings.pending_wait)),
            decided_at: None,
            decided_by: None,
            decision_reason: None,
            grant_id: Some(gid.to_string()),
            warned_expiry: None,
        };
        let detail = json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "by_secs": req.duration_secs, "reason": reason, "asked_by": me });
        let created = history(
            Some(gid),
            &who.token,
            HistoryEvent::ExtensionRequested,
            detail.clone(),
        );
        let req = if list.auto_approve {
            let mut r = req;
            r.decision_reason = Some("approved automatically by the list".into());
            self.activate(
                &list,
                r,
                &who.token,
                RequestChange {
                    history: vec![created],
                    ..RequestChange::default()
                },
                json!({}),
            )
            .await?
        } else {
            let outbox = self.outbox(
                "request-created",
                &list.owners,
                format!(
                    "{me} asks to extend grant {gid} on `{}` by {}s: {reason} — `lapse approve {}`",
                    list.name, req.duration_secs, req.id
                ),
                detail,
            );
            self.store_pending(req, created, outbox).await?
        };
        self.view(req).await
    }

    /// Lists with a review period, with their due dates; only those due by now with `due_only`.
    pub async fn reviews(&self, due_only: bool) -> FlowResult<ReviewList> {
        let now = Utc::now();
        let mut reviews = Vec::new();
        for l in self.all_lists() {
            let (recorded, _) = self.store.review_state(&l.name).await?;
            let Some(due) = l.review_due(recorded) else {
                continue;
            };
            if due_only && due > now {
                continue;
            }
            reviews.push(ReviewView {
                list: l.name.clone(),
                due,
                overdue: due <= now,
                suspended: l.suspension(recorded, now).is_err(),
                owners: l.owners.clone(),
                members: l.members.clone(),
            });
        }
        Ok(ReviewList { reviews })
    }

    /// An owner's review of a list's membership; it moves the list's next due date on.
    pub async fn review(&self, who: &Actor, b: &ReviewBody) -> FlowResult<ReviewRecorded> {
        let me = who.identity.clone();
        let list = self.list(&b.list)?;
        if !list.is_owner(&me) {
            return Err(FlowError::Refused(Refusal::NotOwner {
                who: me,
                list: list.name,
            }));
        }
        let Some(rule) = &list.review else {
            return Err(FlowError::Conflict(format!(
                "list `{}` has no review period",
                list.name
            )));
        };
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|k| normalize_identity(k))
                .filter(|k| !k.is_empty())
                .collect()
        };
        let kept = clean(&b.keep);
        let removed = clean(&b.remove);
        let mut seen = BTreeSet::new();
        for m in kept.iter().chain(&removed) {
            if !seen.insert(m.clone()) {
                return Err(FlowError::field(
                    "keep",
                    format!("{m} is both kept and removed"),
                    "name each member once",
                ));
            }
        }
        let next_due = Utc::now() + rule.every;
        let h = history(
            None,
            &who.token,
            HistoryEvent::ListReviewed,
            json!({ "list": list.name, "reviewer": me, "kept": kept, "removed": removed, "next_due": next_due }),
        );
        let review = NewReview {
            list: list.name.clone(),
            reviewer: me,
            kept,
            removed,
            next_due,
        };
        self.store
            .commit_requests(RequestChange {
                review: Some(review),
                history: vec![h],
                ..RequestChange::default()
            })
            .await?;
        self.wake.notify_one();
        Ok(ReviewRecorded {
            list: list.name,
            next_due,
        })
    }

    /// Turns an approved request into access: a new grant through the same submission path as
    /// `POST /v1/grants`, or, for an extension, a later end of the existing grant.
    async fn activate(
        &self,
        list: &AccessList,
        mut req: RequestRecord,
        actor: &str,
        mut change: RequestChange,
        how: Value,
    ) -> FlowResult<RequestRecord> {
        let now = Utc::now();
        req.state = RequestState::Approved.as_str().to_owned();
        req.decided_at = Some(now);
        req.decided_by.get_or_insert_with(|| actor.to_owned());
        let mut detail = json!({ "request": req.id, "list": list.name, "break_glass": req.break_glass, "reason": req.reason });
        merge(&mut detail, &how);
        if let Some(gid) = &req.extends_grant {
            let id = GrantId::from_str(gid).map_err(|e| FlowError::Internal(e.to_string()))?;
            let g = self
                .store
                .get_grant(id)
                .await?
                .ok_or_else(|| FlowError::Conflict(format!("grant {id} is gone")))?;
            // An approval retried after a crash must not extend twice: the engine records the
            // request on its `extended` event, so a done extension is found and reused.
            let done = self
                .store
                .history(&HistoryFilter {
                    grant: Some(id),
                    ..HistoryFilter::default()
                })
                .await?
                .into_iter()
                .find(|h| {
                    h.event == HistoryEvent::Extended.as_str()
                        && h.detail["request"] == req.id.as_str()
                })
                .and_then(|h| serde_json::from_value(h.detail["to"].clone()).ok());
            let end = match done {
                Some(end) => end,
                None => list.extension_end(
                    g.starts_at,
                    g.expires_at,
                    Duration::seconds(req.duration_secs),
                )?,
            };
            match self
                .engine
                .extend(id, end, &req.token_name, &req.reason, Some(req.id.as_str()))
                .await
            {
                Ok(_) => {}
                Err(EngineError::Finished { id, state }) => {
                    return Err(FlowError::Conflict(format!(
                        "grant {id} has ended ({state}) and cannot be extended"
                    )));
                }
                Err(e) => return Err(FlowError::Engine(e)),
            }
            change.history.push(history(
                Some(id),
                actor,
                HistoryEvent::ExtensionApproved,
                detail,
            ));
            change.outbox.extend(self.outbox(
                "request-approved",
                std::slice::from_ref(&req.requester),
                format!("Extension of grant {id} on `{}` approved: it now ends at {}", list.name, end.to_rfc3339()),
                with(json!({ "request": req.id, "list": list.name, "grant": id.to_string(), "expires_at": end, "extension": true }), &how),
            ));
            req.grant_id = Some(id.to_string());
            change.request = Some(req.clone());
            change.decides = true;
            self.store.commit_requests(change).await?;
            self.wake.notify_one();
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
        let grant = self
            .submitter
            .build(&submission, &req.requester, now)
            .await
            .map_err(|e| {
                warn!(request = %req.id, list = %list.name, error = %e, "the list's target could not be granted");
                FlowError::GrantRefused(Box::new(e))
            })?;
        // Keyed by the request, so a retry after a lost answer finds the same grant.
        let idem = Idempotency::for_request(&req.id);
        let rule = if req.break_glass {
            format!("break-glass:{}", list.name)
        } else if req.decided_by.as_deref() == Some(ON_CALL_RULE) {
            format!("on-call:{}", list.name)
        } else {
            format!("list:{}", list.name)
        };
        let event = if req.break_glass {
            HistoryEvent::BreakGlassGranted
        } else {
            HistoryEvent::RequestApproved
        };
        // The grant, the request marked approved, its history and notifications commit
        // together: a crash in between would leave access with a request still pending.
        let stored = self
            .store
            .insert_grant_for_request(&grant, idem, &rule, |g| {
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
                        json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "requester": req.requester, "reason": req.reason, "duration_secs": req.duration_secs, "expires_at": g.expires_at }),
                    ));
                } else {
                    change.outbox.extend(self.outbox(
                        "request-approved",
                        std::slice::from_ref(&req.requester),
                        format!("Your request {} on `{}` was approved; access until {}", req.id, list.name, g.expires_at.to_rfc3339()),
                        with(json!({ "request": req.id, "list": list.name, "grant": gid.to_string(), "expires_at": g.expires_at }), &how),
                    ));
                }
                change.request = Some(req);
                change.decides = true;
                change
            })
            .await?;
        req.grant_id = Some(stored.grant().id.to_string());
        // A grant stored by an earlier attempt is already known to the engine.
        if stored.is_created() {
            self.engine.submitted(stored.into_grant()).await?;
        }
        self.wake.notify_one();
        Ok(req)
    }

    /// Ends grant `id` early for `caller` (its name and role, bound to nobody).
    pub async fn revoke(
        &self,
        caller: &str,
        role: lapse_core::Role,
        id: &str,
        reason: &str,
    ) -> FlowResult<Grant> {
        self.revoke_as(caller, None, role, id, reason).await
    }

    /// Ends grant `id` early for `caller` (its name, identity and role), by [`may_revoke`].
    pub async fn revoke_as(
        &self,
        caller: &str,
        identity: Option<&str>,
        role: lapse_core::Role,
        id: &str,
        reason: &str,
    ) -> FlowResult<Grant> {
        let gid = GrantId::from_str(id).map_err(|_| {
            FlowError::field(
                "id",
                format!("{id:?} is not a grant id"),
                "copy it from the grant",
            )
        })?;
        let reason = lapse_core::policy::check_reason(reason, self.submitter.limits())?;
        let g = self
            .store
            .get_grant(gid)
            .await?
            .ok_or_else(|| FlowError::NotFound(format!("no grant {id}")))?;
        match may_revoke(caller, identity, role, &g) {
            RevokeRule::Allowed => {}
            RevokeRule::Hidden => return Err(FlowError::NotFound(format!("no grant {id}"))),
            RevokeRule::NotYours => {
                return Err(FlowError::Conflict(
                    "only an admin ends another's grant".into(),
                ));
            }
        }
        match self.engine.revoke(gid, caller, &reason).await {
            Ok(g) => Ok(g),
            Err(EngineError::NotFound(_)) => Err(FlowError::NotFound(format!("no grant {id}"))),
            Err(EngineError::Finished { id, state }) => Err(FlowError::Conflict(format!(
                "grant {id} has already ended ({state})"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// One pass of the background work at `now`: each part asks the store for what is due,
    /// is safe to repeat, and says when it is next due.
    ///
    /// The parts run independently: one that fails (an unreadable row, say) is logged and
    /// retried at the next tick without holding back the others; the first error is returned
    /// after all have run.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, StoreError> {
        let mut first_error = None;
        let mut keep = |part: &str, e: StoreError| {
            warn!(part, error = %e, "request flow background work");
            first_error.get_or_insert(e);
        };
        let lapsed = self.lapse_due(now).await.unwrap_or_else(|e| {
            keep("lapsing pending requests", e);
            0
        });
        if let Err(e) = self.scan_history().await {
            keep("reading the history for notices", e);
        }
        let warned = self.expiring_soon(now).await.unwrap_or_else(|e| {
            keep("warning of grants ending soon", e);
            0
        });
        let review_wake = self.reviews_due(now).await.unwrap_or_else(|e| {
            keep("reminding owners of reviews", e);
            None
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        let lead = secs(self.settings.expiring_soon_lead);
        let mut next_wake = now + secs(HISTORY_POLL);
        let candidates = [
            self.store.next_pending_wait().await?,
            self.store
                .next_approved_end(now + lead)
                .await?
                .map(|end| end - lead),
            review_wake,
        ];
        for at in candidates.into_iter().flatten() {
            next_wake = next_wake.min(at.max(now));
        }
        Ok(Tick {
            lapsed,
            warned,
            next_wake,
        })
    }

    /// Lapses every pending request whose wait has run out, however many there are.
    async fn lapse_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let _flow = self.flow.lock().await;
        let mut lapsed = 0;
        loop {
            let due = self.store.due_pending_requests(now, BATCH).await?;
            if due.is_empty() {
                return Ok(lapsed);
            }
            let before = lapsed;
            let mut change = RequestChange::default();
            for mut r in due {
                let Ok(state) = state_of(&r) else { continue };
                let Ok(Transition::To(to)) = lifecycle::lapse(state, r.wait_until, now) else {
                    continue;
                };
                decide(&mut r, to, DAEMON, None);
                change.outbox.extend(self.outbox(
                    "request-lapsed",
                    std::slice::from_ref(&r.requester),
                    format!(
                        "Your request {} on `{}` lapsed without a decision",
                        r.id, r.list
                    ),
                    json!({ "request": r.id, "list": r.list }),
                ));
                change.history.push(history(
                    None,
                    DAEMON,
                    HistoryEvent::RequestLapsed,
                    json!({ "request": r.id, "list": r.list, "waited_until": r.wait_until }),
                ));
                change.request = Some(r);
                change.decides = true;
                // One request per transaction, as `RequestChange` carries one request row.
                match self
                    .store
                    .commit_requests(std::mem::take(&mut change))
                    .await
                {
                    // Decided meanwhile on another daemon: nothing left to lapse.
                    Err(StoreError::RequestDecided { .. }) => continue,
                    r => r?,
                }
                lapsed += 1;
            }
            // A batch of rows that could none of them be lapsed would come back for ever.
            if lapsed == before {
                return Ok(lapsed);
            }
        }
    }

    /// Ended grants and failing revocations are found in the history the engine writes.
    async fn scan_history(&self) -> Result<(), StoreError> {
        const CURSOR: &str = "notify.history_seq";
        let Some(cursor) = self.store.mark(CURSOR).await? else {
            // First start with notifications: announce only what happens from now on.
            let last = self.store.last_history_seq().await?;
            let marks = vec![(CURSOR.to_owned(), last.to_string())];
            return self
                .store
                .commit_requests(RequestChange {
                    marks,
                    ..RequestChange::default()
                })
                .await;
        };
        let cursor: i64 = cursor.parse().unwrap_or(0);
        let rows = self.store.history_after(cursor, 500).await?;
        let Some(last) = rows.last().map(|h| h.seq) else {
            return Ok(());
        };
        let mut outbox = Vec::new();
        for h in &rows {
            let Some(gid) = h.grant_id else { continue };
            let Ok(event) = h.event.parse::<HistoryEvent>() else {
                continue;
            };
            if !matches!(
                event,
                HistoryEvent::Expired
                    | HistoryEvent::Revoked
                    | HistoryEvent::Failed
                    | HistoryEvent::RevocationFailing
            ) {
                continue;
            }
            let of_grant = self.store.requests_of_grant(gid).await?;
            if event != HistoryEvent::RevocationFailing {
                self.close_extensions(&of_grant, &h.event).await?;
            }
            let origin = of_grant.into_iter().find(|r| r.extends_grant.is_none());
            let list = origin.as_ref().and_then(|r| self.list(&r.list).ok());
            if event == HistoryEvent::RevocationFailing {
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
        self.store
            .commit_requests(RequestChange {
                marks,
                outbox,
                ..RequestChange::default()
            })
            .await
    }

    /// Closes (`lapsed`) the extension requests still pending on a grant that has ended
    /// (`how`: expired, revoked, failed), so they leave the owners' queues at once rather than
    /// when their wait runs out. Safe to repeat: only pending ones are touched.
    async fn close_extensions(
        &self,
        of_grant: &[RequestRecord],
        how: &str,
    ) -> Result<(), StoreError> {
        let _flow = self.flow.lock().await;
        for r in of_grant.iter().filter(|r| r.extends_grant.is_some()) {
            // Read again under the lock: an owner may have decided it meanwhile.
            let Some(mut r) = self.store.get_request(&r.id).await? else {
                continue;
            };
            if state_of(&r).ok() != Some(RequestState::Pending) {
                continue;
            }
            let grant = r.extends_grant.clone().unwrap_or_default();
            decide(
                &mut r,
                RequestState::Lapsed,
                DAEMON,
                Some(format!("its grant {grant} ended ({how}) before a decision")),
            );
            let mut change = RequestChange::default();
            change.outbox.extend(self.outbox(
                "request-lapsed",
                std::slice::from_ref(&r.requester),
                format!(
                    "Your request {} to extend grant {grant} on `{}` was closed: the grant ended ({how})",
                    r.id, r.list
                ),
                json!({ "request": r.id, "list": r.list, "grant": grant }),
            ));
            change.history.push(history(
                GrantId::from_str(&grant).ok(),
                DAEMON,
                HistoryEvent::RequestLapsed,
                json!({ "request": r.id, "list": r.list, "grant": grant, "grant_ended": how }),
            ));
            change.request = Some(r);
            change.decides = true;
            match self.store.commit_requests(change).await {
                // Decided meanwhile on another daemon: nothing left to close.
                Err(StoreError::RequestDecided { .. }) => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Warns requesters whose live grant ends within the lead, once per end.
    async fn expiring_soon(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let lead = secs(self.settings.expiring_soon_lead);
        let _flow = self.flow.lock().await;
        let mut warned = 0;
        loop {
            let due = self
                .store
                .approved_ending_between(now, now + lead + Duration::microseconds(1), BATCH)
                .await?;
            if due.is_empty() {
                return Ok(warned);
            }
            let before = warned;
            for (mut r, end) in due {
                let Some(gid) = r
                    .grant_id
                    .as_deref()
                    .and_then(|g| GrantId::from_str(g).ok())
                else {
                    continue;
                };
                r.warned_expiry = Some(end);
                let outbox = self.outbox(
                    "expiring-soon",
                    std::slice::from_ref(&r.requester),
                    format!("Your access on `{}` (grant {gid}) ends at {}; `lapse extend {gid} --by 30m --reason ...` to extend", r.list, end.to_rfc3339()),
                    json!({ "grant": gid.to_string(), "request": r.id, "list": r.list, "expires_at": end }),
                );
                self.store
                    .commit_requests(RequestChange {
                        request: Some(r),
                        outbox,
                        ..RequestChange::default()
                    })
                    .await?;
                warned += 1;
            }
            if warned == before {
                return Ok(warned);
            }
        }
    }

    /// Owners of a list whose review is due are told once a day until they record it. Answers
    /// the next review falling due.
    async fn reviews_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut next: Option<DateTime<Utc>> = None;
        for l in self.all_lists() {
            let Some(rule) = &l.review else { continue };
            let (recorded, _) = self.store.review_state(&l.name).await?;
            let Some(due) = l.review_due(recorded) else {
                continue;
            };
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let key = format!("review-reminded.{}", l.name);
            let day = now.format("%Y-%m-%d").to_string();
            if self.store.mark(&key).await?.as_deref() == Some(day.as_str()) {
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
                HistoryEvent::ReviewDue,
                json!({ "list": l.name, "due": due, "on_missed": rule.on_missed }),
            );
            self.store
                .commit_requests(RequestChange {
                    marks: vec![(key, day)],
                    history: vec![h],
                    outbox,
                    ..RequestChange::default()
                })
                .await?;
        }
        Ok(next)
    }
}

/// Runs the background work until `stop` turns true, sleeping until the next wake-up the tick
/// answers, or until the flow records something that may be due sooner.
pub async fn run<P: AccessProvider + 'static, E: GrantEngine>(
    service: Arc<RequestService<P, E>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let now = Utc::now();
        let next = match service.tick(now).await {
            Ok(t) => t.next_wake,
            Err(e) => {
                warn!(error = %e, "request flow background work");
                now + secs(HISTORY_POLL)
            }
        };
        let sleep = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.changed() => return,
            _ = service.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

//! The executor: one reconcile pass plans, records intent, performs remote calls (revocations,
//! then reads, then new access) and records each outcome; `run_until_stopped` repeats passes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lapse_core::plan::{self, Action, Container, DeleteReason, Observed, World};
use lapse_core::provider::{
    CreatedKey, ErrorClass, KeyInfo, KeyStatus, MembershipChange, PrincipalKind, Priority,
    ProviderError, WriteTerms,
};
use lapse_core::{
    AccessProvider, Edge, EdgeKind, Grant, GrantId, GrantState, HistoryEvent, ObjectKind,
    OwnedEdge, OwnedObject, RemoteId, RetryState,
};
use lapse_store::{Batch, GrantChange, NewHistory, Store};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::observe::{self, Reading};
use crate::{Command, EngineConfig, EngineError, EngineHandle, GrantEvent};

/// New-access writes per pass, per unit of concurrency (see `Engine::pass`).
const APPLIES_PER_SLOT: usize = 8;

/// The actor recorded in the history for the engine's own changes.
const ENGINE: &str = "lapse";

/// Passes in a row in which `catch_up` may fail to read one grant before it skips that row.
const UNREADABLE_TRIES: u32 = 3;

/// A vector with a key index: the planner reads slices, the executor updates by key.
struct Indexed<K, V> {
    items: Vec<V>,
    index: HashMap<K, usize>,
    key: fn(&V) -> K,
}

impl<K: Hash + Eq + Clone, V> Indexed<K, V> {
    fn new(items: Vec<V>, key: fn(&V) -> K) -> Self {
        let index = items.iter().enumerate().map(|(i, v)| (key(v), i)).collect();
        Self { items, index, key }
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.index.get(k).map(|&i| &self.items[i])
    }
    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.index.get(k).map(|&i| &mut self.items[i])
    }
    fn upsert(&mut self, v: V) {
        let k = (self.key)(&v);
        match self.index.get(&k) {
            Some(&i) => self.items[i] = v,
            None => {
                self.index.insert(k, self.items.len());
                self.items.push(v);
            }
        }
    }
    fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)?;
        let v = self.items.swap_remove(i);
        if i < self.items.len() {
            let moved = (self.key)(&self.items[i]);
            self.index.insert(moved, i);
        }
        Some(v)
    }
}

/// What a successful remote call produced.
enum Effect {
    Done,
    Created(RemoteId),
    Key(CreatedKey),
    Read(Reading),
}

/// One group's grants, ownership records and reading, copied out of the engine so that its
/// membership update can be planned again when the write permit is handed out.
struct GroupWorld {
    group: RemoteId,
    grants: Vec<Grant>,
    edges: Vec<OwnedEdge>,
    observed: Observed,
}

impl GroupWorld {
    /// The update's removals as of `now`, with the change to send.
    fn removals(
        &self,
        now: DateTime<Utc>,
        cfg: &plan::PlanConfig,
    ) -> Option<(Action, MembershipChange)> {
        let world = World {
            grants: &self.grants,
            edges: &self.edges,
            objects: &[],
            observed: &self.observed,
        };
        let action = plan::group_removals(world, &self.group, now, cfg)?;
        let Action::UpdateGroupUsers { remove, .. } = &action else {
            return None;
        };
        let change = MembershipChange {
            add: Vec::new(),
            remove: remove.clone(),
        };
        Some((action, change))
    }
}

/// The result of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub writes: usize,
    /// Writes that took access away.
    pub revocations: usize,
    pub reads: usize,
    pub transitions: usize,
    pub failures: usize,
    /// Whether anything changed, so another pass may have more to do at once.
    pub progressed: bool,
    pub next_wake: Option<DateTime<Utc>>,
}

/// The leader's subscription to work other daemons announce (PostgreSQL LISTEN/NOTIFY). A
/// dropped connection is made again before each pass; meanwhile the tick (and the history read
/// at every pass) stands in for it.
struct Listening {
    store: Store,
    listener: Option<lapse_store::WorkListener>,
    warned: bool,
    /// No new connection is tried before this.
    next_try: tokio::time::Instant,
}

impl Listening {
    fn new(store: Store) -> Self {
        Self {
            store,
            listener: None,
            warned: false,
            next_try: tokio::time::Instant::now(),
        }
    }

    async fn connect(&mut self) {
        let now = tokio::time::Instant::now();
        if self.listener.is_some() || now < self.next_try {
            return;
        }
        self.next_try = now + std::time::Duration::from_secs(1);
        match self.store.listen_for_work().await {
            Ok(l) => {
                if self.warned {
                    info!("listening for work announced by other daemons again");
                }
                self.listener = Some(l);
                self.warned = false;
            }
            Err(e) => {
                if !self.warned {
                    warn!(error = %e, "cannot listen for work announced by other daemons; relying on the tick until it can");
                    self.warned = true;
                }
            }
        }
    }

    /// Resolves when work was announced, or when the connection dropped (so that the loop
    /// connects again); never while there is no connection.
    async fn next(&mut self) {
        let Some(l) = &mut self.listener else {
            return std::future::pending().await;
        };
        if let Err(e) = l.next().await {
            warn!(error = %e, "lost the connection listening for work; relying on the tick until it is back");
            self.warned = true;
            self.listener = None;
        }
    }
}

/// The reconcile loop and everything it holds in memory.
pub struct Engine<P> {
    store: Store,
    provider: Arc<P>,
    cfg: EngineConfig,
    grants: Indexed<GrantId, Grant>,
    edges: Indexed<Edge, OwnedEdge>,
    objects: Indexed<(GrantId, ObjectKind), OwnedObject>,
    observed: Observed,
    rx: mpsc::Receiver<Command>,
    handle: EngineHandle,
    read_backoff: HashMap<Container, DateTime<Utc>>,
    /// Backoff of writes that belong to no grant lapse holds (clean-up of what ended grants
    /// left), which have no grant to keep it on. Keyed by the write itself; kept across passes.
    orphan_retry: HashMap<String, RetryState>,
    sweep_limiter: DefaultDirectRateLimiter,
    reported: HashSet<String>,
    alarmed: HashSet<GrantId>,
    /// The ownership records this pass's intents replaced (`None`: there was none), restored
    /// when an apply is not sent after all.
    prior_claims: HashMap<Edge, Option<OwnedEdge>>,
    /// When each container was last written to (kept for `container_spacing`).
    /// When each container was last written to, and whether that write took access away.
    last_write: HashMap<Container, (DateTime<Utc>, Priority)>,
    /// Grants, edges and objects held at the last pruning of observations, and whether a
    /// listing brought in groups since: observations of what lapse no longer manages are
    /// dropped when either says so (`observe::retain_managed`).
    managed_size: usize,
    listed: bool,
    passes: u64,
    /// The last history row read for changes other daemons recorded ([`Engine::catch_up`]).
    seen: i64,
    /// The history row `catch_up` could not read its grant for, and in how many passes in a row.
    unreadable: (i64, u32),
}

fn grant_key(g: &Grant) -> GrantId {
    g.id
}
fn edge_key(e: &OwnedEdge) -> Edge {
    e.edge.clone()
}
fn object_key(o: &OwnedObject) -> (GrantId, ObjectKind) {
    (o.grant, o.kind)
}

fn history(
    grant: Option<GrantId>,
    actor: &str,
    event: HistoryEvent,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> NewHistory {
    NewHistory {
        at,
        grant_id: grant,
        actor: actor.to_owned(),
        event: event.as_str().to_owned(),
        detail,
    }
}

impl<P: AccessProvider + 'static> Engine<P> {
    pub(crate) async fn load(
        store: Store,
        provider: Arc<P>,
        cfg: EngineConfig,
        rx: mpsc::Receiver<Command>,
        handle: EngineHandle,
    ) -> Result<Self, EngineError> {
        // Read before the grants, so that nothing another daemon records meanwhile is missed.
        let seen = store.history_head_seq().await.map_err(EngineError::Load)?;
        let mut grants = store.load_open_grants().await.map_err(EngineError::Load)?;
        let edges = store.load_edges().await.map_err(EngineError::Load)?;
        let objects = store.load_objects().await.map_err(EngineError::Load)?;
        // A grant that failed while it owned an object (a key whose create answer was lost, say)
        // is not open, but the planner needs it to find and remove that object, as it does
        // before a restart: without it a key made under lapse's name would be forgotten, active.
        let open: HashSet<GrantId> = grants.iter().map(|g| g.id).collect();
        let owners: HashSet<GrantId> = objects
            .iter()
            .map(|o| o.grant)
            .filter(|id| !open.contains(id))
            .collect();
        for id in owners {
            if let Some(g) = store.get_grant(id).await.map_err(EngineError::Load)? {
                grants.push(g);
            }
        }
        info!(
            grants = grants.len(),
            edges = edges.len(),
            objects = objects.len(),
            "loaded state"
        );
        let per_minute =
            NonZeroU32::new(cfg.sweep_reads_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            store,
            provider,
            sweep_limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
            cfg,
            grants: Indexed::new(grants, grant_key),
            edges: Indexed::new(edges, edge_key),
            objects: Indexed::new(objects, object_key),
            observed: Observed::default(),
            rx,
            handle,
            read_backoff: HashMap::new(),
            orphan_retry: HashMap::new(),
            reported: HashSet::new(),
            alarmed: HashSet::new(),
            prior_claims: HashMap::new(),
            last_write: HashMap::new(),
            managed_size: 0,
            listed: false,
            passes: 0,
            seen,
            unreadable: (0, 0),
        })
    }

    /// Run passes until `shutdown` completes. A pass in flight is finished first, so every call
    /// it made is recorded.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), EngineError> {
        tokio::pin!(shutdown);
        let _leading = self.handle.leading_here();
        let mut listener = Listening::new(self.store.clone());
        loop {
            listener.connect().await;
            self.drain_commands().await?;
            let span = info_span!("pass", n = self.passes + 1);
            let report = self.pass().instrument(span).await?;
            if report.progressed {
                // After revoking, a short pause lets revocations that fall due together share one
                // call per group; a new command still wakes the loop at once.
                let pause = if report.revocations > 0 {
                    self.cfg.batch_window
                } else {
                    std::time::Duration::ZERO
                };
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return Ok(()),
                    cmd = self.rx.recv(), if !pause.is_zero() => match cmd {
                        Some(cmd) => self.command(cmd).await?,
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            let now = Utc::now();
            let tick = Duration::from_std(self.cfg.tick).unwrap_or(Duration::seconds(1));
            let wake = report.next_wake.map_or(now + tick, |w| w.min(now + tick));
            let sleep = (wake - now).to_std().unwrap_or_default();
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await?,
                    None => return Ok(()),
                },
                () = listener.next() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn drain_commands(&mut self) -> Result<(), EngineError> {
        while let Ok(cmd) = self.rx.try_recv() {
            self.command(cmd).await?;
        }
        Ok(())
    }

    async fn command(&mut self, cmd: Command) -> Result<(), EngineError> {
        match cmd {
            Command::Submitted(grant) => {
                // Already held when a pass took it in from the store first: that copy may
                // have moved on.
                if !grant.state.is_terminal() && self.grants.get(&grant.id).is_none() {
                    self.grants.upsert(*grant);
                }
            }
            Command::Revoke {
                id,
                actor,
                reason,
                reply,
            } => {
                let result = self.revoke(id, &actor, &reason).await;
                let _ = reply.send(result);
            }
            Command::Extend {
                id,
                new_expires_at,
                actor,
                reason,
                request,
                reply,
            } => {
                let result = self
                    .extend(id, new_expires_at, &actor, &reason, request.as_deref())
                    .await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    /// The grant `id` as this engine holds it, or why a change cannot be made to it. A live
    /// grant that is stored but not held yet (submitted to another daemon, not read in by a
    /// pass yet) is taken in now: only a grant that has ended is refused as finished.
    async fn held(&mut self, id: GrantId) -> Result<&Grant, EngineError> {
        if self.grants.get(&id).is_none() {
            match self.store.get_grant(id).await? {
                Some(g) if g.state.is_terminal() => {
                    return Err(EngineError::Finished { id, state: g.state });
                }
                Some(g) => {
                    info!(grant = %id, "took in a grant recorded by another daemon");
                    self.grants.upsert(crate::rules::taken_in(g, Utc::now()));
                }
                None => return Err(EngineError::NotFound(id)),
            }
        }
        self.grants.get(&id).ok_or(EngineError::NotFound(id))
    }

    /// Records a change decided by [`crate::rules`] and holds the grant as changed.
    async fn record(&mut self, change: GrantChange) -> Result<Grant, EngineError> {
        let (g, row) = match change {
            GrantChange::Unchanged(g) => return Ok(g),
            GrantChange::Changed(g, row) => (g, row),
        };
        let batch = Batch {
            grants: vec![g.clone()],
            history: vec![row],
            ..Batch::default()
        };
        self.store.commit(batch).await?;
        self.grants.upsert(g.clone());
        Ok(g)
    }

    async fn revoke(
        &mut self,
        id: GrantId,
        actor: &str,
        reason: &str,
    ) -> Result<Grant, EngineError> {
        let change = crate::rules::revoke(self.held(id).await?, Utc::now(), actor, reason);
        self.record(change).await
    }

    async fn extend(
        &mut self,
        id: GrantId,
        new_expires_at: DateTime<Utc>,
        actor: &str,
        reason: &str,
        request: Option<&str>,
    ) -> Result<Grant, EngineError> {
        let current = self.held(id).await?;
        let change =
            crate::rules::extend(current, Utc::now(), new_expires_at, actor, reason, request)?;
        self.record(change).await
    }

    /// Brings in what other daemons recorded since the last look (grants submitted, revoked or
    /// extended on a standby), so that a pass plans with it. Nothing on SQLite.
    async fn catch_up(&mut self) {
        loop {
            let changed = match self.store.grants_changed_after(self.seen, 512).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "could not read what other daemons recorded; trying again next pass");
                    return;
                }
            };
            // Counted before any row is skipped, so that a page with skipped rows still asks
            // for the next one.
            let more = changed.len() == 512;
            for (seq, id) in changed {
                let Some(id) = id else {
                    error!(
                        seq,
                        "a history row another daemon wrote names no readable grant; skipped"
                    );
                    metrics::counter!("lapse_catch_up_skipped_total").increment(1);
                    self.seen = seq;
                    continue;
                };
                let stored = match self.store.get_grant(id).await {
                    Ok(Some(g)) => g,
                    Ok(None) => {
                        self.seen = seq;
                        continue;
                    }
                    Err(e) => {
                        // Tried again in the next passes, in case the failure passes; a row that
                        // stays unreadable is skipped so that the rows after it are read.
                        let tries = if self.unreadable.0 == seq {
                            self.unreadable.1 + 1
                        } else {
                            1
                        };
                        self.unreadable = (seq, tries);
                        if tries < UNREADABLE_TRIES {
                            warn!(error = %e, grant = %id, "could not read a grant another daemon changed; trying again next pass");
                            return;
                        }
                        error!(error = %e, grant = %id, seq, tries, "a grant another daemon changed stays unreadable; skipped");
                        metrics::counter!("lapse_catch_up_skipped_total").increment(1);
                        self.seen = seq;
                        continue;
                    }
                };
                let now = Utc::now();
                match self.grants.get(&id) {
                    Some(held) => {
                        if let Some(g) = crate::rules::merge(held, &stored, now) {
                            info!(grant = %id, "took in a change recorded by another daemon");
                            self.grants.upsert(g);
                        }
                    }
                    None if !stored.state.is_terminal() => {
                        self.grants.upsert(crate::rules::taken_in(stored, now));
                    }
                    None => {}
                }
                self.seen = seq;
            }
            if !more {
                return;
            }
        }
    }

    /// One reconcile pass. Public so tests can step the loop.
    pub async fn pass(&mut self) -> Result<PassReport, EngineError> {
        self.passes += 1;
        self.handle.beat();
        self.catch_up().await;
        self.prior_claims.clear();
        let now = Utc::now();
        let planned = plan::plan(
            World {
                grants: &self.grants.items,
                edges: &self.edges.items,
                objects: &self.objects.items,
                observed: &self.observed,
            },
            now,
            &self.cfg.plan,
        );
        let mut report = PassReport {
            next_wake: planned.next_wake,
            ..PassReport::default()
        };
        let mut batch = Batch::default();
        let (mut revokes, mut reads, mut applies) = (Vec::new(), Vec::new(), Vec::new());
        let mut orphans_planned = HashSet::new();
        for action in planned.actions {
            match action {
                Action::Transition { grant, to } => {
                    if self.transition(grant, to, now, None, &mut batch) {
                        report.transitions += 1;
                    }
                }
                Action::ReleaseEdges { edges } => {
                    for e in edges {
                        self.edges.remove(&e);
                        batch.release_edges.push(e);
                    }
                }
                Action::ForgetObject { grant, kind } => self.forget_object(grant, kind, &mut batch),
                Action::AdoptObject {
                    grant,
                    kind,
                    remote_id,
                } => {
                    if let Some(o) = self.objects.get_mut(&(grant, kind)) {
                        o.remote_id = Some(remote_id.clone());
                        batch.put_objects.push(o.clone());
                        batch.history.push(history(
                            Some(grant),
                            ENGINE,
                            HistoryEvent::Adopted,
                            json!({ "kind": kind.as_str(), "remote_id": remote_id, "name": o.name }),
                            now,
                        ));
                    }
                }
                Action::ReportDrift { detail } => {
                    if self.reported.insert(detail.clone()) {
                        warn!(%detail, "drift");
                        metrics::counter!("lapse_drift_found_total").increment(1);
                        batch.history.push(history(
                            None,
                            ENGINE,
                            HistoryEvent::Drift,
                            json!({ "detail": detail }),
                            now,
                        ));
                    }
                }
                Action::Observe { container, sweep } => {
                    if self.read_backoff.get(&container).is_some_and(|t| *t > now) {
                        continue;
                    }
                    if sweep && self.sweep_limiter.check().is_err() {
                        continue;
                    }
                    reads.push(Action::Observe { container, sweep });
                }
                a => {
                    if let Some(key) = self.orphan_key(&a) {
                        let wait = self
                            .orphan_retry
                            .get(&key)
                            .and_then(|r| r.next_attempt_at)
                            .filter(|t| *t > now);
                        orphans_planned.insert(key);
                        if let Some(t) = wait {
                            report.next_wake = Some(report.next_wake.map_or(t, |w| w.min(t)));
                            continue;
                        }
                    }
                    if let Some(until) = self.spaced_until(&a, now) {
                        // The container was written to a moment ago: what falls due meanwhile
                        // goes into one call when its turn comes (no intent recorded yet).
                        report.next_wake = Some(report.next_wake.map_or(until, |w| w.min(until)));
                        continue;
                    }
                    if a.priority() == Priority::Revoke {
                        self.record_intent(&a, &mut batch);
                        revokes.push(a);
                    } else if applies.len() < self.cfg.concurrency.max(1) * APPLIES_PER_SLOT {
                        self.record_intent(&a, &mut batch);
                        applies.push(a);
                    }
                    // Beyond the cap, new access waits for the next pass (its intent is not
                    // recorded): deadlines are checked between passes, so a large backlog of
                    // applies never delays a revocation by more than one bounded pass.
                }
            }
        }
        // A clean-up the planner no longer asks for needs no backoff any more.
        self.orphan_retry.retain(|k, _| orphans_planned.contains(k));
        // Intent is durable before any remote call it describes.
        let intents = !batch.is_empty();
        self.commit(std::mem::take(&mut batch)).await?;
        if intents {
            crate::crash::point("intent-committed");
        }
        report.progressed = report.transitions > 0;

        for (phase, actions) in [("revoke", revokes), ("read", reads), ("apply", applies)] {
            if actions.is_empty() {
                continue;
            }
            report.progressed = true;
            let n = actions.len();
            match phase {
                "read" => report.reads += n,
                "revoke" => {
                    report.writes += n;
                    report.revocations += n;
                }
                _ => report.writes += n,
            }
            debug!(phase, n, "performing");
            crate::crash::point("before-call");
            let results = self.perform_all(actions).await;
            crate::crash::point("after-call");
            let now = Utc::now();
            for (action, result) in results {
                if result.is_err() {
                    report.failures += 1;
                }
                if result.is_ok()
                    && let Some(c) = spaced_container(&action)
                {
                    self.last_write.insert(c, (now, action.priority()));
                }
                self.outcome(action, result, now, &mut batch);
            }
            self.commit(std::mem::take(&mut batch)).await?;
            crate::crash::point("outcome-committed");
        }
        let size = self.grants.items.len() + self.edges.items.len() + self.objects.items.len();
        if size < self.managed_size || self.listed {
            observe::retain_managed(
                &mut self.observed,
                &self.grants.items,
                &self.edges.items,
                &self.objects.items,
            );
            self.listed = false;
        }
        self.managed_size = size;
        let spacing = Duration::from_std(self.cfg.container_spacing).unwrap_or_default();
        self.last_write.retain(|_, (t, _)| now - *t < spacing);
        self.update_health(now);
        Ok(report)
    }

    async fn commit(&mut self, batch: Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let finished: Vec<(GrantId, GrantState)> = batch
            .grants
            .iter()
            .filter(|g| g.state.is_terminal())
            .map(|g| (g.id, g.state))
            .collect();
        let changed: Vec<(GrantId, GrantState)> =
            batch.grants.iter().map(|g| (g.id, g.state)).collect();
        self.store.commit(batch).await?;
        for (id, _) in &finished {
            self.drop_if_done(*id);
        }
        let at = Utc::now();
        for (grant, state) in changed {
            let _ = self.handle.events.send(GrantEvent { grant, state, at });
        }
        Ok(())
    }

    fn transition(
        &mut self,
        id: GrantId,
        to: GrantState,
        now: DateTime<Utc>,
        error: Option<&str>,
        batch: &mut Batch,
    ) -> bool {
        let Some(g) = self.grants.get_mut(&id) else {
            return false;
        };
        if g.state == to || g.state.is_terminal() {
            return false;
        }
        let from = g.state;
        g.state = to;
        if matches!(
            to,
            GrantState::Active | GrantState::Expired | GrantState::Revoked
        ) {
            g.retry = Default::default();
        }
        let mut detail = json!({ "from": from.as_str(), "kind": g.kind().as_str() });
        match to {
            GrantState::Expired | GrantState::Revoked => {
                let late = (now - g.ends_at()).num_milliseconds() as f64 / 1000.0;
                detail["lateness_seconds"] = json!(late);
                metrics::histogram!("lapse_revocation_lateness_seconds", "kind" => g.kind().as_str()).record(late.max(0.0));
                if let Some(r) = &g.revoke_reason {
                    detail["reason"] = json!(r);
                }
            }
            GrantState::Failed => {
                detail["error"] = json!(error.unwrap_or("unknown"));
                error!(grant = %id, error = error.unwrap_or("unknown"), "grant failed; anything it applied will be removed");
            }
            _ => {}
        }
        info!(grant = %id, from = from.as_str(), to = to.as_str(), "grant state");
        batch.grants.push(g.clone());
        batch.history.push(history(
            Some(id),
            ENGINE,
            HistoryEvent::entered(to),
            detail,
            now,
        ));
        true
    }

    /// A finished grant leaves memory once it owns no object: a failed grant whose key or group
    /// may exist under its name stays, so the planner (which needs the grant's service account
    /// to find a key) revokes and deletes what it made.
    fn drop_if_done(&mut self, id: GrantId) {
        let finished = self.grants.get(&id).is_some_and(|g| g.state.is_terminal());
        if finished && !self.objects.items.iter().any(|o| o.grant == id) {
            self.grants.remove(&id);
            self.alarmed.remove(&id);
        }
    }

    fn forget_object(&mut self, grant: GrantId, kind: ObjectKind, batch: &mut Batch) {
        if let Some(o) = self.objects.remove(&(grant, kind)) {
            self.drop_if_done(grant);
            if let (ObjectKind::Group, Some(gid)) = (kind, &o.remote_id) {
                // Edges that hung on lapse's own group went with it.
                let hanging: Vec<Edge> = self
                    .edges
                    .items
                    .iter()
                    .filter(|e| e.edge.kind == EdgeKind::Access && &e.edge.member == gid)
                    .map(|e| e.edge.clone())
                    .collect();
                for e in hanging {
                    self.edges.remove(&e);
                    batch.release_edges.push(e);
                }
            }
            batch.remove_objects.push((grant, kind));
        }
    }

    /// Write the ownership record (or the object's intent) before the call that needs it.
    fn record_intent(&mut self, action: &Action, batch: &mut Batch) {
        match action {
            Action::CreateGroup { grant, name, .. } | Action::CreateKey { grant, name, .. } => {
                let kind = if matches!(action, Action::CreateGroup { .. }) {
                    ObjectKind::Group
                } else {
                    ObjectKind::Key
                };
                let o = OwnedObject {
                    grant: *grant,
                    kind,
                    name: name.clone(),
                    remote_id: None,
                    revoked: false,
                };
                self.objects.upsert(o.clone());
                batch.put_objects.push(o);
            }
            Action::UpdateGroupUsers { claims, .. }
            | Action::AddAccess { claims, .. }
            | Action::UpdateServiceResources { claims, .. } => {
                for c in claims {
                    let prior = self.edges.get(&c.edge).cloned();
                    self.prior_claims.entry(c.edge.clone()).or_insert(prior);
                    self.edges.upsert(c.clone());
                    batch.claim_edges.push(c.clone());
                }
            }
            _ => {}
        }
    }

    async fn perform_all(
        &self,
        actions: Vec<Action>,
    ) -> Vec<(Action, Result<Effect, ProviderError>)> {
        let provider = self.provider.clone();
        let margin = Duration::from_std(self.cfg.apply_margin).unwrap_or_default();
        let calls: Vec<(Action, WriteTerms, Option<GroupWorld>)> = actions
            .into_iter()
            .map(|a| {
                let not_after =
                    plan::add_deadline(&a, |id| self.grants.get(id)).map(|t| t - margin);
                let terms = WriteTerms {
                    priority: a.priority(),
                    not_after,
                };
                let late = self.late_bound(&a);
                (a, terms, late)
            })
            .collect();
        let plan_cfg = self.cfg.plan.clone();
        let done: Vec<Vec<(Action, Result<Effect, ProviderError>)>> = futures::stream::iter(calls)
            .map(|(a, terms, late)| {
                let p = provider.clone();
                let handle = self.handle.clone();
                let plan_cfg = plan_cfg.clone();
                async move {
                    if let (Some(world), Action::UpdateGroupUsers { group, .. }) = (late, &a) {
                        // Built when the permit is handed out: every member due by then.
                        let sent = p
                            .update_group_users_when_sent(group, terms, move || {
                                world.removals(Utc::now(), &plan_cfg)
                            })
                            .await;
                        handle.beat();
                        return match sent {
                            Some((action, r)) => vec![(action, r.map(|()| Effect::Done))],
                            // Nothing left to remove by then: nothing sent, nothing to record.
                            None => Vec::new(),
                        };
                    }
                    let r = perform(p.as_ref(), &a, terms).await;
                    handle.beat();
                    match r {
                        // Too late for its additions: the removals it carried still go,
                        // alone, and the additions are recorded as not sent.
                        Err(ProviderError::NotSent(why)) => match split_removals(a) {
                            (adds, Some(removals)) => {
                                let r =
                                    perform(p.as_ref(), &removals, Priority::Revoke.into()).await;
                                handle.beat();
                                vec![(adds, Err(ProviderError::NotSent(why))), (removals, r)]
                            }
                            (adds, None) => vec![(adds, Err(ProviderError::NotSent(why)))],
                        },
                        r => vec![(a, r)],
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        done.into_iter().flatten().collect()
    }

    /// For a membership update that only removes, from a group that is not lapse's own: the
    /// slice of the world its removals depend on, so the update can be rebuilt when its write
    /// permit is handed out. Other writes are built when planned (additions need their intent
    /// recorded before the call; lapse's own groups are repaired or deleted whole).
    fn late_bound(&self, action: &Action) -> Option<GroupWorld> {
        let Action::UpdateGroupUsers {
            group, add, remove, ..
        } = action
        else {
            return None;
        };
        if !add.is_empty() || remove.is_empty() {
            return None;
        }
        let own = self
            .objects
            .items
            .iter()
            .any(|o| o.kind == ObjectKind::Group && o.remote_id.as_ref() == Some(group));
        if own {
            return None;
        }
        let grants = self
            .grants
            .items
            .iter()
            .filter(|g| {
                matches!(&g.spec, lapse_core::GrantSpec::GroupMembership { group: on, .. } if &on.id == group)
            })
            .cloned()
            .collect();
        let edges = self
            .edges
            .items
            .iter()
            .filter(|e| e.edge.kind == EdgeKind::Membership && &e.edge.container == group)
            .cloned()
            .collect();
        let mut observed = Observed::default();
        if let Some(o) = self.observed.groups.get(group) {
            observed.groups.insert(group.clone(), o.clone());
        }
        Some(GroupWorld {
            group: group.clone(),
            grants,
            edges,
            observed,
        })
    }

    /// An apply that was not sent because its grants had ended (or were about to): nothing
    /// happened remotely, so its intents are undone, and its grants wait for their end, where
    /// the planner moves them to revocation.
    fn not_sent(&mut self, action: &Action, now: DateTime<Utc>, batch: &mut Batch) {
        info!(
            action = action_name(action),
            "apply not sent: its grant ends before it would arrive"
        );
        match action {
            Action::CreateGroup { grant, .. } | Action::CreateKey { grant, .. } => {
                let kind = if matches!(action, Action::CreateGroup { .. }) {
                    ObjectKind::Group
                } else {
                    ObjectKind::Key
                };
                let never_sent = self
                    .objects
                    .get(&(*grant, kind))
                    .is_some_and(|o| o.remote_id.is_none());
                if never_sent {
                    self.objects.remove(&(*grant, kind));
                    batch.remove_objects.push((*grant, kind));
                }
            }
            Action::UpdateGroupUsers { claims, .. }
            | Action::AddAccess { claims, .. }
            | Action::UpdateServiceResources { claims, .. } => {
                for c in claims {
                    match self.prior_claims.remove(&c.edge) {
                        Some(Some(prior)) => {
                            self.edges.upsert(prior.clone());
                            batch.claim_edges.push(prior);
                        }
                        Some(None) => {
                            self.edges.remove(&c.edge);
                            batch.release_edges.push(c.edge.clone());
                        }
                        // Not this pass's intent: left as it is (an unconfirmed claim is
                        // removed once no grant needs it).
                        None => {}
                    }
                }
            }
            _ => {}
        }
        let margin = Duration::from_std(self.cfg.apply_margin).unwrap_or_default();
        for id in action_grants(action) {
            if let Some(g) = self.grants.get_mut(&id)
                && now < g.ends_at()
                && now + margin >= g.ends_at()
            {
                g.retry.next_attempt_at = Some(g.ends_at());
                batch.grants.push(g.clone());
            }
        }
    }

    /// Record what a call did, in memory and in the batch.
    fn outcome(
        &mut self,
        action: Action,
        result: Result<Effect, ProviderError>,
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) {
        let result = match result {
            // Removing what is already gone is what a removal wanted.
            Err(ProviderError::AlreadyGone(_))
                if action.priority() == Priority::Revoke && !has_additions(&action) =>
            {
                Ok(Effect::Done)
            }
            r => r,
        };
        match result {
            Ok(effect) => self.succeeded(action, effect, now, batch),
            Err(err) => self.failed(action, err, now, batch),
        }
    }

    fn succeeded(&mut self, action: Action, effect: Effect, now: DateTime<Utc>, batch: &mut Batch) {
        metrics::counter!("lapse_actions_total", "action" => action_name(&action), "outcome" => "ok").increment(1);
        if let Some(key) = self.orphan_key(&action) {
            self.orphan_retry.remove(&key);
        }
        match action {
            Action::Observe { container, .. } => self.succeeded_read(container, effect, now),
            Action::CreateGroup { .. }
            | Action::DeleteGroup { .. }
            | Action::UpdateGroupUsers { .. } => self.succeeded_group(action, effect, now, batch),
            Action::AddAccess { .. }
            | Action::RemoveAccess { .. }
            | Action::UpdateServiceResources { .. } => self.succeeded_access(action, now, batch),
            Action::CreateKey { .. } | Action::RevokeKey { .. } | Action::DeleteKey { .. } => {
                self.succeeded_key(action, effect, now, batch)
            }
            _ => {}
        }
    }

    /// A reading: kept as the latest observation of its container.
    fn succeeded_read(&mut self, container: Container, effect: Effect, now: DateTime<Utc>) {
        self.read_backoff.remove(&container);
        self.listed |= matches!(
            container,
            Container::LapseGroups | Container::GroupsNamed(_)
        );
        if let Effect::Read(reading) = effect {
            let objects: Vec<&OwnedObject> = self.objects.items.iter().collect();
            observe::record(&mut self.observed, &container, reading, &objects, now);
        }
    }

    /// lapse's own groups and group membership.
    fn succeeded_group(
        &mut self,
        action: Action,
        effect: Effect,
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) {
        match action {
            Action::CreateGroup {
                grant,
                name,
                users,
                resources,
            } => {
                if let Effect::Created(id) = effect {
                    observe::group_created(&mut self.observed, &id, &name, &users, &resources, now);
                    if let Some(o) = self.objects.get_mut(&(grant, ObjectKind::Group)) {
                        o.remote_id = Some(id.clone());
                        batch.put_objects.push(o.clone());
                    }
                    batch.history.push(history(
                        Some(grant),
                        ENGINE,
                        HistoryEvent::GroupCreated,
                        json!({ "name": name, "group": id }),
                        now,
                    ));
                    self.succeeded_for(&[grant], batch);
                }
            }
            Action::DeleteGroup {
                grant,
                group,
                reason,
            } => {
                observe::group_deleted(&mut self.observed, &group, now);
                let ours = self
                    .objects
                    .get(&(grant, ObjectKind::Group))
                    .is_some_and(|o| o.remote_id.as_ref() == Some(&group));
                if ours {
                    self.forget_object(grant, ObjectKind::Group, batch);
                }
                let event = match reason {
                    DeleteReason::Revoke => HistoryEvent::GroupDeleted,
                    DeleteReason::Duplicate => HistoryEvent::DuplicateDeleted,
                };
                batch.history.push(history(
                    Some(grant),
                    ENGINE,
                    event,
                    json!({ "group": group }),
                    now,
                ));
                self.succeeded_for(&[grant], batch);
            }
            Action::UpdateGroupUsers {
                group,
                add,
                remove,
                claims,
                releases,
                grants,
            } => {
                observe::group_users_changed(&mut self.observed, &group, &add, &remove);
                self.settle_edges(&claims, &releases, batch);
                if !remove.is_empty() || !add.is_empty() {
                    batch.history.push(history(
                        None,
                        ENGINE,
                        HistoryEvent::MembershipChanged,
                        json!({ "group": group, "added": add, "removed": remove, "grants": grants }),
                        now,
                    ));
                }
                self.succeeded_for(&grants, batch);
            }
            _ => {}
        }
    }

    /// Access edges of resources, for groups and service accounts.
    fn succeeded_access(&mut self, action: Action, now: DateTime<Utc>, batch: &mut Batch) {
        match action {
            Action::AddAccess {
                resource,
                add,
                claims,
                grants,
            } => {
                observe::access_added(&mut self.observed, &resource, &add, PrincipalKind::Group);
                self.settle_edges(&claims, &[], batch);
                batch.history.push(history(
                    None,
                    ENGINE,
                    HistoryEvent::AccessAdded,
                    json!({ "resource": resource, "principals": add.iter().map(|a| json!({"principal": a.principal, "expires_at": a.expires_at})).collect::<Vec<_>>(), "grants": grants }),
                    now,
                ));
                self.succeeded_for(&grants, batch);
            }
            Action::RemoveAccess {
                resource,
                principals,
                releases,
                grants,
            } => {
                observe::access_removed(&mut self.observed, &resource, &principals);
                self.settle_edges(&[], &releases, batch);
                batch.history.push(history(
                    None,
                    ENGINE,
                    HistoryEvent::AccessRemoved,
                    json!({ "resource": resource, "principals": principals, "grants": grants }),
                    now,
                ));
                self.succeeded_for(&grants, batch);
            }
            Action::UpdateServiceResources {
                service_account,
                add,
                remove,
                claims,
                releases,
                grants,
            } => {
                observe::service_resources_changed(
                    &mut self.observed,
                    &service_account,
                    &add,
                    &remove,
                );
                self.settle_edges(&claims, &releases, batch);
                batch.history.push(history(
                    None,
                    ENGINE,
                    HistoryEvent::ServiceResourcesChanged,
                    json!({ "service_account": service_account, "added": add, "removed": remove, "grants": grants }),
                    now,
                ));
                self.succeeded_for(&grants, batch);
            }
            _ => {}
        }
    }

    /// Service keys: the token is handed to the requester, never stored.
    fn succeeded_key(
        &mut self,
        action: Action,
        effect: Effect,
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) {
        match action {
            Action::CreateKey {
                grant,
                service_account,
                name,
                expiration_days,
            } => {
                if let Effect::Key(created) = effect {
                    observe::key_changed(&mut self.observed, &service_account, created.key.clone());
                    if let Some(o) = self.objects.get_mut(&(grant, ObjectKind::Key)) {
                        o.remote_id = Some(created.key.id.clone());
                        batch.put_objects.push(o.clone());
                    }
                    if let Ok(mut tokens) = self.handle.tokens.lock() {
                        tokens.insert(grant, (created.token, now));
                    }
                    batch.history.push(history(
                        Some(grant),
                        ENGINE,
                        HistoryEvent::KeyCreated,
                        json!({ "name": name, "key": created.key.id, "expiration_days": expiration_days }),
                        now,
                    ));
                    self.succeeded_for(&[grant], batch);
                }
            }
            Action::RevokeKey { grant, key, owned } => {
                if owned && let Some(o) = self.objects.get_mut(&(grant, ObjectKind::Key)) {
                    o.revoked = true;
                    batch.put_objects.push(o.clone());
                }
                let sa = self.key_service_account(grant);
                if let Some(sa) = sa {
                    observe::key_changed(
                        &mut self.observed,
                        &sa,
                        KeyInfo {
                            id: key.clone(),
                            name: grant.remote_name(),
                            status: KeyStatus::Revoked,
                            expires_at: None,
                        },
                    );
                }
                batch.history.push(history(
                    Some(grant),
                    ENGINE,
                    HistoryEvent::KeyRevoked,
                    json!({ "key": key }),
                    now,
                ));
                self.succeeded_for(&[grant], batch);
            }
            Action::DeleteKey { grant, key, owned } => {
                observe::key_deleted(&mut self.observed, &key);
                if owned {
                    self.forget_object(grant, ObjectKind::Key, batch);
                }
                batch.history.push(history(
                    Some(grant),
                    ENGINE,
                    HistoryEvent::KeyDeleted,
                    json!({ "key": key }),
                    now,
                ));
                self.succeeded_for(&[grant], batch);
            }
            _ => {}
        }
    }

    fn key_service_account(&self, grant: GrantId) -> Option<RemoteId> {
        match &self.grants.get(&grant)?.spec {
            lapse_core::GrantSpec::ServiceKey { service_account } => {
                Some(service_account.id.clone())
            }
            _ => None,
        }
    }

    fn settle_edges(&mut self, claims: &[OwnedEdge], releases: &[Edge], batch: &mut Batch) {
        for e in releases {
            self.edges.remove(e);
            batch.release_edges.push(e.clone());
        }
        for c in claims {
            if let Some(oe) = self.edges.get_mut(&c.edge) {
                oe.confirmed = true;
                oe.expires_at = c.expires_at;
            }
            batch.confirm_edges.push((c.edge.clone(), c.expires_at));
        }
    }

    /// Reset backoff of grants whose work succeeded.
    fn succeeded_for(&mut self, grants: &[GrantId], batch: &mut Batch) {
        for id in grants {
            if let Some(g) = self.grants.get_mut(id)
                && (g.retry.attempts > 0 || g.retry.last_error.is_some())
            {
                g.retry = Default::default();
                batch.grants.push(g.clone());
                self.alarmed.remove(id);
            }
        }
    }

    fn failed(
        &mut self,
        action: Action,
        err: ProviderError,
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) {
        metrics::counter!("lapse_actions_total", "action" => action_name(&action), "outcome" => error_name(&err)).increment(1);
        if let ProviderError::NotSent(_) = err {
            self.not_sent(&action, now, batch);
            return;
        }
        let grants = action_grants(&action);
        let revoking = action.priority() == Priority::Revoke;
        warn!(action = action_name(&action), error = %err, grants = grants.len(), "remote call failed");
        if let Some(key) = self.orphan_key(&action) {
            let attempts = self
                .orphan_retry
                .get(&key)
                .map_or(0, |r| r.attempts)
                .saturating_add(1);
            let mut wait = retry_wait(&self.cfg, attempts, rand::random());
            if let Some(after) = err.retry_after().and_then(|d| Duration::from_std(d).ok()) {
                wait = wait.max(after);
            }
            self.orphan_retry.insert(
                key,
                RetryState {
                    attempts,
                    next_attempt_at: Some(now + wait),
                    last_error: Some(err.to_string()),
                },
            );
        }
        if let Action::Observe { container, .. } = &action {
            self.read_backoff
                .insert(container.clone(), now + Duration::seconds(1));
            return;
        }
        match err.class() {
            ErrorClass::NotSent => {}
            ErrorClass::Unknown => {
                // The write may have happened: forget what we knew so the next pass looks first.
                match &action {
                    Action::CreateGroup { name, .. } => observe::invalidate(
                        &mut self.observed,
                        &Container::GroupsNamed(name.clone()),
                    ),
                    Action::CreateKey {
                        service_account, ..
                    } => observe::invalidate(
                        &mut self.observed,
                        &Container::ServiceAccount(service_account.clone()),
                    ),
                    other => {
                        if let Some(c) = action_container(other) {
                            observe::invalidate(&mut self.observed, &c);
                        }
                    }
                }
                batch.history.push(history(
                    grants.first().copied(),
                    ENGINE,
                    HistoryEvent::UnknownOutcome,
                    json!({ "action": action_name(&action), "error": err.to_string() }),
                    now,
                ));
                self.backoff(&grants, &err, now, revoking, batch);
            }
            ErrorClass::Retry => self.backoff(&grants, &err, now, revoking, batch),
            ErrorClass::Gone if !revoking && !self.own_groups_in(&action).is_empty() => {
                // lapse's own group was deleted behind its back (drift): that is not the grant's
                // failure. Mark the group gone so the next pass forgets it and recreates it.
                for group in self.own_groups_in(&action) {
                    observe::group_deleted(&mut self.observed, &group, now);
                }
            }
            ErrorClass::Gone | ErrorClass::Permanent => {
                let config_problem = matches!(
                    err,
                    ProviderError::Unauthorized(_) | ProviderError::Misconfigured(_)
                );
                if revoking || config_problem {
                    // A revocation is never abandoned; a configuration problem can be fixed.
                    self.backoff(&grants, &err, now, revoking, batch);
                } else {
                    for id in grants {
                        self.transition(id, GrantState::Failed, now, Some(&err.to_string()), batch);
                    }
                }
            }
        }
    }

    /// The key of a write no grant lapse holds answers for, whose backoff lives in
    /// `orphan_retry`: the whole write, so that only an identical repeat waits.
    fn orphan_key(&self, action: &Action) -> Option<String> {
        let orphan = action.is_write()
            && action_grants(action)
                .iter()
                .all(|id| self.grants.get(id).is_none());
        orphan.then(|| format!("{action:?}"))
    }

    /// When a write to a container that was written to less than `container_spacing` ago
    /// may go: the budget's average pace per container, so one container's changes falling due
    /// one after another share a call instead of spending the budget of all of them. The first
    /// write to a container is never held back. `None`: it may go now.
    fn spaced_until(&self, action: &Action, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let spacing = Duration::from_std(self.cfg.container_spacing).ok()?;
        if spacing <= Duration::zero() {
            return None;
        }
        let (last, after) = self.last_write.get(&spaced_container(action)?)?;
        // A revocation waits only behind another revocation on the same container, and for at
        // most one tick: long enough for what falls due together to share a call, never the
        // budget's pace (which at a low budget would be minutes).
        let spacing = if action.priority() == Priority::Revoke {
            if *after != Priority::Revoke {
                return None;
            }
            spacing.min(Duration::from_std(REVOKE_SPACING_MAX).ok()?)
        } else {
            spacing
        };
        Some(*last + spacing).filter(|until| *until > now)
    }

    /// The ephemeral groups of lapse's own that an action writes to.
    fn own_groups_in(&self, action: &Action) -> Vec<RemoteId> {
        let own = |id: &RemoteId| {
            self.objects
                .items
                .iter()
                .any(|o| o.kind == ObjectKind::Group && o.remote_id.as_ref() == Some(id))
        };
        match action {
            Action::AddAccess { add, .. } => add
                .iter()
                .filter(|a| own(&a.principal))
                .map(|a| a.principal.clone())
                .collect(),
            Action::UpdateGroupUsers { group, .. } if own(group) => vec![group.clone()],
            _ => Vec::new(),
        }
    }

    fn backoff(
        &mut self,
        grants: &[GrantId],
        err: &ProviderError,
        now: DateTime<Utc>,
        revoking: bool,
        batch: &mut Batch,
    ) {
        for id in grants {
            let Some(g) = self.grants.get_mut(id) else {
                continue;
            };
            g.retry.attempts = g.retry.attempts.saturating_add(1);
            let jitter: f64 = rand::random();
            let mut wait = retry_wait(&self.cfg, g.retry.attempts, jitter);
            if let Some(after) = err.retry_after().and_then(|d| Duration::from_std(d).ok()) {
                wait = wait.max(after);
            }
            g.retry.next_attempt_at = Some(now + wait);
            g.retry.last_error = Some(err.to_string());
            batch.grants.push(g.clone());
            let ending = revoking || g.state == GrantState::Revoking || now >= g.ends_at();
            if ending && g.retry.attempts >= self.cfg.revoke_alarm_after && self.alarmed.insert(*id)
            {
                error!(grant = %id, attempts = g.retry.attempts, error = %err, "revocation failing; still retrying");
                batch.history.push(history(
                    Some(*id),
                    ENGINE,
                    HistoryEvent::RevocationFailing,
                    json!({ "attempts": g.retry.attempts, "error": err.to_string() }),
                    now,
                ));
            }
        }
    }

    fn update_health(&self, now: DateTime<Utc>) {
        let mut overdue = 0u64;
        let mut oldest = 0f64;
        let mut by_state: HashMap<String, u64> = HashMap::new();
        for g in &self.grants.items {
            *by_state
                .entry(format!("{}:{}", g.kind().as_str(), g.state.as_str()))
                .or_default() += 1;
            if now > g.ends_at() && !g.state.is_terminal() {
                overdue += 1;
                oldest = oldest.max((now - g.ends_at()).num_milliseconds() as f64 / 1000.0);
            }
        }
        if let Ok(mut tokens) = self.handle.tokens.lock() {
            let hold = Duration::from_std(self.cfg.token_hold).unwrap_or(Duration::minutes(10));
            tokens.retain(|_, (_, at)| now - *at < hold);
        }
        if let Ok(mut h) = self.handle.health.lock() {
            h.last_pass = Some(Utc::now());
            h.passes = self.passes;
            if h.first_pass_done.is_none() {
                h.first_pass_done = h.last_pass;
            }
            h.overdue_revocations = overdue;
            h.oldest_overdue_secs = oldest;
            h.by_state = by_state;
        }
    }
}

/// The engine's retry schedule, the one lapse uses everywhere.
fn retry_wait(cfg: &EngineConfig, attempts: u32, jitter: f64) -> Duration {
    let std = |d: Duration| d.to_std().unwrap_or_default();
    let wait = lapse_core::backoff::backoff(
        attempts,
        std(cfg.backoff_base),
        std(cfg.backoff_cap),
        jitter,
    );
    Duration::from_std(wait).unwrap_or(cfg.backoff_cap)
}

fn has_additions(action: &Action) -> bool {
    match action {
        Action::UpdateGroupUsers { add, .. } | Action::UpdateServiceResources { add, .. } => {
            !add.is_empty()
        }
        _ => false,
    }
}

fn action_grants(action: &Action) -> Vec<GrantId> {
    match action {
        Action::CreateGroup { grant, .. }
        | Action::CreateKey { grant, .. }
        | Action::DeleteGroup { grant, .. }
        | Action::RevokeKey { grant, .. }
        | Action::DeleteKey { grant, .. } => vec![*grant],
        Action::UpdateGroupUsers { grants, .. }
        | Action::AddAccess { grants, .. }
        | Action::RemoveAccess { grants, .. }
        | Action::UpdateServiceResources { grants, .. } => grants.clone(),
        _ => Vec::new(),
    }
}

fn action_container(action: &Action) -> Option<Container> {
    match action {
        Action::UpdateGroupUsers { group, .. } => Some(Container::Group(group.clone())),
        Action::AddAccess { resource, .. } | Action::RemoveAccess { resource, .. } => {
            Some(Container::Resource(resource.clone()))
        }
        Action::UpdateServiceResources {
            service_account, ..
        } => Some(Container::ServiceAccount(service_account.clone())),
        Action::DeleteGroup { group, .. } => Some(Container::Group(group.clone())),
        _ => None,
    }
}

/// The container whose writes are paced by `container_spacing`: updates of a group's members,
/// a resource's access or a service account's resources (a group's deletion is final and goes
/// at once).
/// The longest a revocation waits behind an earlier revocation on the same container.
const REVOKE_SPACING_MAX: std::time::Duration = std::time::Duration::from_secs(1);

fn spaced_container(action: &Action) -> Option<Container> {
    match action {
        Action::DeleteGroup { .. } => None,
        a => action_container(a),
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Observe { .. } => "observe",
        Action::Transition { .. } => "transition",
        Action::CreateGroup { .. } => "create-group",
        Action::AdoptObject { .. } => "adopt",
        Action::ForgetObject { .. } => "forget",
        Action::DeleteGroup { .. } => "delete-group",
        Action::UpdateGroupUsers { .. } => "update-group-users",
        Action::AddAccess { .. } => "add-access",
        Action::RemoveAccess { .. } => "remove-access",
        Action::UpdateServiceResources { .. } => "update-service-resources",
        Action::CreateKey { .. } => "create-key",
        Action::RevokeKey { .. } => "revoke-key",
        Action::DeleteKey { .. } => "delete-key",
        Action::ReleaseEdges { .. } => "release",
        Action::ReportDrift { .. } => "drift",
    }
}

fn error_name(err: &ProviderError) -> &'static str {
    match err {
        ProviderError::RateLimited { .. } => "rate-limited",
        ProviderError::Transient(_) => "transient",
        ProviderError::UnknownOutcome(_) => "unknown-outcome",
        ProviderError::AlreadyGone(_) => "gone",
        ProviderError::Rejected(_) => "rejected",
        ProviderError::Unauthorized(_) => "unauthorized",
        ProviderError::Misconfigured(_) => "misconfigured",
        ProviderError::Invalid(_) => "invalid",
        ProviderError::NotSent(_) => "not-sent",
    }
}

/// Perform one remote action.
async fn perform<P: AccessProvider>(
    p: &P,
    action: &Action,
    prio: WriteTerms,
) -> Result<Effect, ProviderError> {
    match action {
        Action::Observe { container, .. } => Ok(Effect::Read(match container {
            Container::Group(id) => Reading::Group(p.group(id).await?),
            Container::Resource(id) => Reading::Resource(p.resource(id).await?),
            Container::ServiceAccount(id) => Reading::ServiceAccount(p.service_account(id).await?),
            Container::GroupsNamed(name) => Reading::Groups(p.groups_by_name(name).await?),
            Container::LapseGroups => {
                Reading::Groups(p.groups_with_prefix(lapse_core::REMOTE_PREFIX).await?)
            }
        })),
        Action::CreateGroup {
            name,
            users,
            resources,
            ..
        } => p
            .create_group(name, users, resources, prio)
            .await
            .map(Effect::Created),
        Action::DeleteGroup { group, .. } => {
            p.delete_group(group, prio).await.map(|_| Effect::Done)
        }
        Action::UpdateGroupUsers {
            group, add, remove, ..
        } => p
            .update_group_users(group, add, remove, prio)
            .await
            .map(|_| Effect::Done),
        Action::AddAccess { resource, add, .. } => p
            .add_resource_access(resource, add, prio)
            .await
            .map(|_| Effect::Done),
        Action::RemoveAccess {
            resource,
            principals,
            ..
        } => p
            .remove_resource_access(resource, principals, prio)
            .await
            .map(|_| Effect::Done),
        Action::UpdateServiceResources {
            service_account,
            add,
            remove,
            ..
        } => p
            .update_service_account_resources(service_account, add, remove, prio)
            .await
            .map(|_| Effect::Done),
        Action::CreateKey {
            service_account,
            name,
            expiration_days,
            ..
        } => p
            .create_key(service_account, name, *expiration_days, prio)
            .await
            .map(Effect::Key),
        Action::RevokeKey { key, .. } => p.revoke_key(key, prio).await.map(|_| Effect::Done),
        Action::DeleteKey { key, .. } => p.delete_key(key, prio).await.map(|_| Effect::Done),
        _ => Ok(Effect::Done),
    }
}

/// Splits a write into its additions and, when it also takes access away, a write of the
/// removals alone (for a group or service account update carrying both).
fn split_removals(action: Action) -> (Action, Option<Action>) {
    match action {
        Action::UpdateGroupUsers {
            group,
            add,
            remove,
            claims,
            releases,
            grants,
        } if !remove.is_empty() => (
            Action::UpdateGroupUsers {
                group: group.clone(),
                add,
                remove: Vec::new(),
                claims,
                releases: Vec::new(),
                grants: grants.clone(),
            },
            Some(Action::UpdateGroupUsers {
                group,
                add: Vec::new(),
                remove,
                claims: Vec::new(),
                releases,
                grants,
            }),
        ),
        Action::UpdateServiceResources {
            service_account,
            add,
            remove,
            claims,
            releases,
            grants,
        } if !remove.is_empty() => (
            Action::UpdateServiceResources {
                service_account: service_account.clone(),
                add,
                remove: Vec::new(),
                claims,
                releases: Vec::new(),
                grants: grants.clone(),
            },
            Some(Action::UpdateServiceResources {
                service_account,
                add: Vec::new(),
                remove,
                claims: Vec::new(),
                releases,
                grants,
            }),
        ),
        other => (other, None),
    }
}

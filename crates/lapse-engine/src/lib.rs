//! lapse's reconcile loop: plans with `lapse_core::plan`, performs the actions through an
//! [`AccessProvider`], and records every outcome in the store before acting on it further.

mod crash;
mod exec;
pub mod leader;
mod observe;
pub mod rules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use lapse_core::plan::PlanConfig;
use lapse_core::provider::KeyToken;
use lapse_core::{AccessProvider, Grant, GrantId, GrantState};
use lapse_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use exec::Engine;

/// Tunables of the loop.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub plan: PlanConfig,
    /// The longest the loop sleeps: deadlines are checked against the wall clock this often.
    pub tick: StdDuration,
    /// First retry delay; doubles per attempt up to `backoff_cap`, with full jitter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A revocation failing this many times in a row raises an alarm (it keeps retrying).
    pub revoke_alarm_after: u32,
    /// Reads the periodic sweep may spend per minute (half the API's read budget by default).
    pub sweep_reads_per_minute: u32,
    /// Remote calls in flight at once.
    pub concurrency: usize,
    /// Pause after a pass that revoked, so that changes falling due together are batched into one
    /// call per group. Adds at most this to a revocation. Off by default: a group's membership
    /// update is built when its write permit is handed out, and `container_spacing` paces
    /// repeat writes to one container.
    pub batch_window: StdDuration,
    /// The least time between two writes to one container (a group's members, a resource's
    /// access): the write budget's average pace, 60 s ÷ writes a minute. The first write to a
    /// container is never held back, and a revocation waits only behind an earlier revocation,
    /// for at most one second.
    pub container_spacing: StdDuration,
    /// How long a service key's token waits in memory for its requester before it is dropped.
    pub token_hold: StdDuration,
    /// An apply is not sent this close to (or after) the end of the grants that need it, judged
    /// when it is about to be sent: it would arrive after the end (I1).
    pub apply_margin: StdDuration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            plan: PlanConfig::default(),
            tick: StdDuration::from_secs(1),
            backoff_base: Duration::seconds(2),
            backoff_cap: Duration::minutes(5),
            revoke_alarm_after: 5,
            sweep_reads_per_minute: 30,
            concurrency: 16,
            batch_window: StdDuration::ZERO,
            container_spacing: StdDuration::from_secs(3),
            token_hold: StdDuration::from_secs(600),
            apply_margin: StdDuration::from_secs(1),
        }
    }
}

/// Why the engine could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("loading state from the store: {0}")]
    Load(#[source] lapse_store::StoreError),
    #[error("recording in the store: {0}")]
    Store(#[from] lapse_store::StoreError),
    #[error("grant {0} not found among open grants")]
    NotFound(GrantId),
    #[error("grant {id} is {state} and can no longer be changed")]
    Finished { id: GrantId, state: GrantState },
    #[error("the engine has stopped")]
    Stopped,
}

/// A change the engine announces, for waiters and metrics.
#[derive(Debug, Clone)]
pub struct GrantEvent {
    pub grant: GrantId,
    pub state: GrantState,
    pub at: DateTime<Utc>,
}

pub(crate) enum Command {
    /// A grant already stored durably by the API.
    Submitted(Box<Grant>),
    /// End a grant early.
    Revoke {
        id: GrantId,
        actor: String,
        reason: String,
        reply: oneshot::Sender<Result<Grant, EngineError>>,
    },
    /// Move a live grant's end later (an approved extension).
    Extend {
        id: GrantId,
        new_expires_at: DateTime<Utc>,
        actor: String,
        reason: String,
        /// The extension request this carries out, recorded so a retry can see it was done.
        request: Option<String>,
        reply: oneshot::Sender<Result<Grant, EngineError>>,
    },
}

/// Service-key tokens waiting for their requester, with when they were created.
type TokenBox = Arc<Mutex<HashMap<GrantId, (KeyToken, DateTime<Utc>)>>>;

/// Talks to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<GrantEvent>,
    tokens: TokenBox,
    health: Arc<Mutex<Health>>,
    /// Milliseconds since the epoch of the loop's last sign of life: a pass starting or a remote
    /// call finishing. A pass that spends minutes on a rate-limited backlog still beats.
    heartbeat: Arc<AtomicI64>,
    /// Whether this process's reconcile loop is running (it leads). When it is not (a standby),
    /// submissions, revocations and extensions are written to the store directly, which wakes
    /// the leader.
    leading: Arc<AtomicBool>,
    store: Store,
}

/// Marks the loop as running until dropped.
pub(crate) struct Leading(Arc<AtomicBool>);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The receiving end of an [`EngineHandle`], for the engine that starts later ([`start`]).
pub struct Commands(mpsc::Receiver<Command>);

/// The loop's own account of itself, for readiness, the watchdog and metrics.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// When the last pass finished.
    pub last_pass: Option<DateTime<Utc>>,
    /// Passes since start.
    pub passes: u64,
    /// When the first pass after start finished (all overdue revocations attempted).
    pub first_pass_done: Option<DateTime<Utc>>,
    /// Revocations whose end has passed and that are not done.
    pub overdue_revocations: u64,
    /// Age of the oldest of those, in seconds.
    pub oldest_overdue_secs: f64,
    /// Grants per state, for metrics.
    pub by_state: HashMap<String, u64>,
}

impl EngineHandle {
    /// Whether this process's reconcile loop runs (it is the leader, or the only daemon).
    pub fn is_leading(&self) -> bool {
        // A SQLite store has one daemon: its engine is always the one to ask.
        self.store.backend() == lapse_store::Backend::Sqlite || self.leading.load(Ordering::SeqCst)
    }

    pub(crate) fn leading_here(&self) -> Leading {
        self.leading.store(true, Ordering::SeqCst);
        Leading(self.leading.clone())
    }

    /// Tell the engine about a grant the API has just stored. Where no loop runs here, the
    /// store's commit has already announced it to the leader.
    pub async fn submitted(&self, grant: Grant) -> Result<(), EngineError> {
        if !self.is_leading() {
            return Ok(());
        }
        self.tx
            .send(Command::Submitted(Box::new(grant)))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    /// End a grant early: the engine records it and takes the access away.
    pub async fn revoke(
        &self,
        id: GrantId,
        actor: &str,
        reason: &str,
    ) -> Result<Grant, EngineError> {
        if !self.is_leading() {
            let now = Utc::now();
            return self
                .change_stored(id, |g| Ok(rules::revoke(g, now, actor, reason)))
                .await;
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Revoke {
                id,
                actor: actor.to_owned(),
                reason: reason.to_owned(),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Move a live grant's end to `new_expires_at` (never earlier): the planner raises the
    /// server-side expiry of access edges by itself.
    pub async fn extend(
        &self,
        id: GrantId,
        new_expires_at: DateTime<Utc>,
        actor: &str,
        reason: &str,
        request: Option<&str>,
    ) -> Result<Grant, EngineError> {
        if !self.is_leading() {
            let now = Utc::now();
            return self
                .change_stored(id, |g| {
                    rules::extend(g, now, new_expires_at, actor, reason, request)
                })
                .await;
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Extend {
                id,
                new_expires_at,
                actor: actor.to_owned(),
                reason: reason.to_owned(),
                request: request.map(str::to_owned),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// A revocation or extension where no loop runs: decided by the same rules on the grant as
    /// stored, and written with its history row in one transaction that wakes the leader.
    async fn change_stored(
        &self,
        id: GrantId,
        decide: impl FnOnce(&Grant) -> Result<lapse_store::GrantChange, EngineError>,
    ) -> Result<Grant, EngineError> {
        self.store
            .change_grant(id, |stored| match stored {
                None => Err(EngineError::NotFound(id)),
                Some(g) if g.state.is_terminal() => {
                    Err(EngineError::Finished { id, state: g.state })
                }
                Some(g) => decide(&g),
            })
            .await?
    }

    /// The loop's last sign of life (a pass starting or a remote call finishing).
    pub fn heartbeat(&self) -> Option<DateTime<Utc>> {
        match self.heartbeat.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    pub(crate) fn beat(&self) {
        self.heartbeat
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// State changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<GrantEvent> {
        self.events.subscribe()
    }

    /// Hand over a service key's token, once. It is never written anywhere.
    pub fn take_token(&self, id: GrantId) -> Option<KeyToken> {
        self.tokens.lock().ok()?.remove(&id).map(|(t, _)| t)
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// A handle on an engine that is not built yet: until [`start`] runs its loop, the handle
/// writes to the store directly (a standby). The engine receives from [`Commands`].
pub fn handle(store: Store) -> (EngineHandle, Commands) {
    let (tx, rx) = mpsc::channel(4096);
    let (events, _) = broadcast::channel(4096);
    let handle = EngineHandle {
        tx,
        events,
        tokens: Arc::new(Mutex::new(HashMap::new())),
        health: Arc::new(Mutex::new(Health::default())),
        heartbeat: Arc::new(AtomicI64::new(0)),
        leading: Arc::new(AtomicBool::new(false)),
        store,
    };
    (handle, Commands(rx))
}

/// The engine behind `handle`: loads open grants and the ownership record from the store. The
/// handle goes through it once its loop runs ([`Engine::run_until_stopped`]).
pub async fn start<P: AccessProvider + 'static>(
    handle: &EngineHandle,
    commands: Commands,
    provider: Arc<P>,
    config: EngineConfig,
) -> Result<Engine<P>, EngineError> {
    Engine::load(
        handle.store.clone(),
        provider,
        config,
        commands.0,
        handle.clone(),
    )
    .await
}

/// Build the engine: loads open grants and the ownership record from the store.
pub async fn build<P: AccessProvider + 'static>(
    store: Store,
    provider: Arc<P>,
    config: EngineConfig,
) -> Result<(Engine<P>, EngineHandle), EngineError> {
    let (handle, commands) = handle(store);
    let engine = start(&handle, commands, provider, config).await?;
    Ok((engine, handle))
}

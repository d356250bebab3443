//! A stand-in for the Twingate Admin API: start it in-process or run the `twingate-sim` binary.
//!
//! It serves the GraphQL subset lapse uses at `POST /api/graphql/`, with Twingate's transport
//! (API keys, rate limits), seed data, a journal of every request, injectable faults, a movable
//! clock and a control surface under `/_sim/`.

mod admin;
mod clock;
mod control;
mod error;
mod faults;
mod ids;
mod journal;
mod model;
mod schema;
mod seed;
mod shared;
mod snapshot;
mod store;
mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::Admin;
pub use clock::SimClock;
pub use error::SimError;
pub use faults::{CommitThenLose, ExpiryPrecision, Faults};
pub use journal::{JournalEntry, Outcome};
pub use model::{
    AccessApprovalMode, AccessPolicyMode, GroupType, Permission, PrincipalType,
    ServiceAccountKeyStatus, UserRole, UserState,
};
pub use schema::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use seed::{
    DEMO_ADMIN_KEY, DEMO_READ_KEY, DEMO_RW_KEY, DEMO_SERVICE_ACCOUNT_UUID, Seed, SeedApiKey,
    SeedGroup, SeedResource, SeedServiceAccount, SeedUser,
};
pub use shared::{LimitWindow, RateLimit};
pub use snapshot::{
    AccessSnapshot, ApiKeySnapshot, GroupSnapshot, KeySnapshot, ResourceSnapshot,
    ServiceAccountSnapshot, StateSnapshot, UserSnapshot,
};

use shared::{Shared, lock};
use transport::AppState;

/// The global ID Twingate would give an object of `kind` (e.g. `"Group"`) with primary key `pk`.
pub fn global_id(kind: &str, pk: impl std::fmt::Display) -> String {
    ids::encode(kind, pk)
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub seed: Seed,
    /// `None` switches rate limiting off; the binary defaults to Twingate's 60/20.
    pub rate_limit: Option<RateLimit>,
    /// Seeds the fault draws and minted UUIDs, so runs are reproducible.
    pub fault_seed: u64,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: Seed::demo(),
            rate_limit: None,
            fault_seed: 0,
        }
    }
}

/// Binds `config.listen` and serves on the current tokio runtime until `shutdown`.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    config.seed.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.listen,
        source,
    })?;
    let clock = SimClock::default();
    let store = store::Store::from_seed(&config.seed, clock.now(), config.fault_seed);
    let shared = Arc::new(Shared::new(
        store,
        clock,
        StdRng::seed_from_u64(config.fault_seed),
        config.rate_limit,
    ));
    let app = router(AppState {
        shared: shared.clone(),
        schema: schema::build(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "twingate-sim server stopped");
        }
    });
    tracing::info!(%addr, "twingate-sim listening");
    Ok(SimHandle {
        addr,
        shared,
        stop: Arc::new(Mutex::new(Some(stop))),
        task: Arc::new(Mutex::new(Some(task))),
    })
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/graphql/", post(transport::graphql))
        .nest("/_sim", control::router())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"errors": [{"message": "Not found: the API is at POST /api/graphql/"}]})),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            transport::regional_redirect,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            transport::date_header,
        ))
        .with_state(state)
}

/// A running stand-in: its address and the means to inspect and steer it.
#[derive(Clone)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`; clients append `/api/graphql/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn graphql_url(&self) -> String {
        format!("{}/api/graphql/", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> StateSnapshot {
        self.shared.with_store(|s, now| StateSnapshot::of(s, now))
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal().entries()
    }

    pub fn clear_journal(&self) {
        self.shared.journal().clear();
    }

    /// Puts `faults` in force, or refuses per-operation keys that name no operation.
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        faults.check().map_err(SimError::Invalid)?;
        self.shared.set_faults(faults);
        Ok(())
    }

    pub fn faults(&self) -> Faults {
        (*self.shared.faults()).clone()
    }

    pub fn admin(&self) -> Admin {
        Admin {
            shared: self.shared.clone(),
        }
    }

    pub fn clock(&self) -> SimClock {
        self.shared.clock.clone()
    }

    /// Stops accepting, lets open requests finish for up to two seconds, then stops them.
    pub async fn shutdown(self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        let task = lock(&self.task).take();
        if let Some(mut task) = task
            && tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

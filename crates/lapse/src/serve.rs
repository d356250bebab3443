//! Start-up and running of the daemon: `build` does every fallible step (settings, database,
//! Twingate, engine, listener); `run_until_stopped` runs the loop and the API until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use lapse_core::AccessProvider;
use lapse_core::plan::PlanConfig;
use lapse_core::policy::Limits;
use lapse_engine::leader::Fenced;
use lapse_engine::{EngineConfig, EngineHandle};
use lapse_store::{OpenMode, Store};
use lapse_twingate::{ClientConfig, TwingateClient};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use lapse_requests::notify::Notifier;
use lapse_requests::{RequestService, Submitter};

use crate::api::{self, ApiState};
use lapse_settings::Settings;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the checkpoint key {path}: {source}")]
    CheckpointKey {
        path: String,
        source: lapse_store::CheckpointError,
    },
    #[error("opening the database: {0}")]
    Store(#[from] lapse_store::StoreError),
    #[error("{0}")]
    Oidc(#[from] lapse_oidc::OidcError),
    #[error("reading the OpenID client secret {path}: {source}")]
    ClientSecret {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Settings(#[from] lapse_settings::SettingsError),
    #[error("configuring the Twingate client: {0}")]
    Client(#[from] lapse_twingate::ConfigError),
    #[error("first call to Twingate at {url} failed: {error}")]
    Twingate {
        url: String,
        error: lapse_core::ProviderError,
    },
    #[error("loading grants: {0}")]
    Engine(#[from] lapse_engine::EngineError),
    #[error("binding the API to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "loading the TLS certificate {cert} and key {key}: {source}; both must be PEM files readable by the lapse user"
    )]
    Tls {
        cert: String,
        key: String,
        source: std::io::Error,
    },
    #[error("installing the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("setting up notifications: {0}")]
    Notify(#[from] lapse_requests::notify::NotifyError),
    #[error("setting up Slack ([slack]): {0}")]
    Slack(String),
    #[error("setting up PagerDuty ([pagerduty]): {0}")]
    PagerDuty(String),
}

/// A daemon that has passed every start-up check and holds its listener.
pub struct Application<P> {
    listener: TcpListener,
    addr: SocketAddr,
    /// What the engine is built from once this daemon leads: its remote writes stop when the
    /// leader lease may have run out.
    commands: lapse_engine::Commands,
    provider: Arc<P>,
    config: EngineConfig,
    node: String,
    lease: Duration,
    state: Arc<ApiState<P>>,
    /// Present when the API is served over HTTPS.
    tls: Option<RustlsConfig>,
    /// Present when a checkpoint key is configured.
    checkpoints: Option<Checkpointer>,
    /// The web console's routes, when `[auth.oidc]` has a redirect URL and client secret.
    web: Option<axum::Router>,
    /// The Slack app's routes, when `[slack]` is configured.
    slack: Option<axum::Router>,
    /// Registered at start-up: SIGHUP's default action would end the process.
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

/// The engine's tunables from the settings.
pub fn engine_config(s: &Settings) -> EngineConfig {
    EngineConfig {
        plan: PlanConfig {
            backstop_grace: chrono::Duration::from_std(s.grants.backstop_grace)
                .unwrap_or(chrono::Duration::minutes(5)),
            ephemeral_backstop: s.grants.ephemeral_backstop,
            sweep_interval: chrono::Duration::from_std(s.engine.sweep_interval)
                .unwrap_or(chrono::Duration::minutes(5)),
        },
        tick: s.engine.tick,
        sweep_reads_per_minute: s.engine.sweep_reads_per_minute,
        concurrency: s.engine.concurrency,
        batch_window: s.engine.batch_window,
        container_spacing: std::time::Duration::from_secs(60) / s.twingate.writes_per_minute.max(1),
        backoff_base: chrono::Duration::from_std(s.engine.retry_base)
            .unwrap_or(chrono::Duration::seconds(2)),
        backoff_cap: chrono::Duration::from_std(s.engine.retry_cap)
            .unwrap_or(chrono::Duration::minutes(5)),
        revoke_alarm_after: s.engine.revoke_alarm_after.max(1),
        ..EngineConfig::default()
    }
}

pub fn limits(s: &Settings) -> Limits {
    Limits {
        max_ttl: chrono::Duration::from_std(s.grants.max_duration)
            .unwrap_or(chrono::Duration::hours(24)),
        max_reason_chars: s.grants.max_reason_chars,
        ..Limits::default()
    }
}

pub fn client_config(s: &Settings, api_key: SecretString) -> ClientConfig {
    let mut c = ClientConfig::new(s.twingate.base_url.trim_end_matches('/'), api_key);
    c.timeout = s.twingate.timeout;
    c.reads_per_minute = s.twingate.reads_per_minute;
    c.writes_per_minute = s.twingate.writes_per_minute;
    c.page_size = s.twingate.page_size;
    c
}

/// Open the store (SQLite at `database.path`, or PostgreSQL at `database.url`) and run its
/// migrations; a SQLite store creates its file (0600) and directories (0700) itself.
pub async fn open_store(s: &Settings) -> Result<Store, StartError> {
    let location = s.database_location()?;
    Ok(Store::open_location(&location, OpenMode::Create).await?)
}

/// Open an existing store without creating or migrating anything (checks and audits).
pub async fn open_existing(s: &Settings) -> Result<Store, StartError> {
    let location = s.database_location()?;
    Ok(Store::open_location(&location, OpenMode::Existing).await?)
}

/// Every fallible start-up step, against the real Twingate client.
pub async fn build(
    settings: &Settings,
    api_key: SecretString,
) -> Result<Application<TwingateClient>, StartError> {
    let store = open_store(settings).await?;
    let client = TwingateClient::new(client_config(settings, api_key))?;
    build_with(settings, store, Arc::new(client)).await
}

pub async fn build_with<P: AccessProvider + 'static>(
    settings: &Settings,
    store: Store,
    provider: Arc<P>,
) -> Result<Application<P>, StartError> {
    // The recorder goes in first, so that nothing recorded during start-up is lost.
    let metrics = crate::telemetry::metrics_handle();
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(StartError::Signal)?;
    let tls = match settings.server.tls() {
        Some((cert, key)) => Some(RustlsConfig::from_pem_file(cert, key).await.map_err(
            |source| StartError::Tls {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                source,
            },
        )?),
        None => None,
    };
    // A first successful read proves the URL, the network and the key before we say we are ready.
    provider
        .groups_by_name("lapse-readiness-probe")
        .await
        .map_err(|error| StartError::Twingate {
            url: settings.twingate.base_url.clone(),
            error,
        })?;
    // Every daemon serves the API at once; on a shared store the engine behind this handle is
    // built only when this daemon takes the lease (see `run_until_stopped`), and until then the
    // handle records revocations and extensions in the store for the leader.
    let (handle, commands) = lapse_engine::handle(store.clone());
    let addr = settings.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    if !addr.ip().is_loopback() && tls.is_none() {
        warn!(%addr, "serving the API on a non-loopback address without TLS (server.allow_insecure_remote); bearer tokens cross the network in clear text");
    }
    let submitter = Arc::new(Submitter::new(provider.clone(), limits(settings)));
    let mut notifier = Notifier::new(lapse_requests::notify::load_sinks(&settings.notify)?);
    let slack = match &settings.slack {
        Some(s) => Some(lapse_slack::SlackConfig::load(s).map_err(StartError::Slack)?),
        None => None,
    };
    if let Some(s) = &slack {
        notifier = notifier.and(Arc::new(lapse_slack::SlackChannel::new(s.api.clone())));
    }
    let (on_call, on_call_timeout) = match &settings.pagerduty {
        Some(p) => {
            let pd = lapse_requests::oncall::PagerDuty::from_settings(p)
                .map_err(StartError::PagerDuty)?;
            let on_call: Arc<dyn lapse_requests::oncall::OnCall> = Arc::new(pd);
            (Some(on_call), p.timeout)
        }
        None => (None, Duration::from_secs(3)),
    };
    let flow = RequestService::start_with(
        store.clone(),
        handle.clone(),
        submitter.clone(),
        settings.access.clone(),
        settings.notify.clone(),
        notifier,
        on_call,
        on_call_timeout,
    )
    .await;
    let oidc = match &settings.auth.oidc {
        Some(o) => Some(Arc::new(lapse_oidc::Verifier::discover(o.clone()).await?)),
        None => None,
    };
    let web = match (&oidc, &settings.auth.oidc) {
        (Some(verifier), Some(o)) => match (&o.redirect_url, &o.client_secret_file) {
            (Some(redirect), Some(secret_file)) => {
                let secret = std::fs::read_to_string(secret_file).map_err(|source| {
                    StartError::ClientSecret {
                        path: secret_file.display().to_string(),
                        source,
                    }
                })?;
                let web = lapse_web::Web::new(
                    flow.clone(),
                    store.clone(),
                    verifier.clone(),
                    lapse_web::WebSettings {
                        redirect_url: redirect.clone(),
                        client_secret: secrecy::SecretString::from(secret.trim().to_owned()),
                        secure_cookies: redirect.starts_with("https://"),
                        session_ttl: o.session_ttl,
                    },
                );
                Some(lapse_web::router(Arc::new(web)))
            }
            _ => None,
        },
        _ => None,
    };
    let slack = slack.map(|s| lapse_slack::router(lapse_slack::SlackApp::new(flow.clone(), &s)));
    let state = Arc::new(ApiState {
        inserter: lapse_store::GrantInserter::spawn(store.clone()),
        submitter,
        store,
        engine: handle,
        flow,
        ready: Default::default(),
        metrics,
        auth_log: Default::default(),
        oidc,
        epoch: Default::default(),
        holds_lease: Default::default(),
    });
    let checkpoints = match settings.audit.key_file() {
        None => {
            warn!(
                "no audit.checkpoint_key_file: history checkpoints are not written, so a cut history cannot be told from an intact one"
            );
            None
        }
        Some(path) => Some(Checkpointer {
            key: lapse_store::CheckpointKey::from_file(&path).map_err(|source| {
                StartError::CheckpointKey {
                    path: path.display().to_string(),
                    source,
                }
            })?,
            file: settings.audit.checkpoint_file.clone(),
            interval: settings.audit.checkpoint_interval,
            rows: settings.audit.checkpoint_rows,
        }),
    };
    Ok(Application {
        listener,
        addr,
        commands,
        provider,
        config: engine_config(settings),
        node: settings.node_name(),
        lease: settings.ha.lease,
        state,
        tls,
        checkpoints,
        web,
        slack,
        #[cfg(unix)]
        hangup,
    })
}

impl<P: AccessProvider + 'static> Application<P> {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    #[cfg(feature = "demo")]
    pub fn engine(&self) -> EngineHandle {
        self.state.engine.clone()
    }

    /// `https` when a certificate is configured.
    #[cfg(feature = "demo")]
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serve the API at once, and run the loop and the background work while this daemon leads,
    /// until `shutdown` resolves; the pass in flight is finished first.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut router = api::router(self.state.clone())
            .merge(crate::requests::router(self.state.clone()))
            .merge(crate::openapi::router());
        if let Some(slack) = self.slack {
            router = router.merge(slack);
        }
        let router = router.layer(axum::middleware::map_response(api::json_errors));
        // The console answers in HTML, errors included, so it joins after the JSON mapping.
        let router = match self.web {
            Some(web) => router.merge(web),
            None => router,
        };
        let router = router.layer(axum::middleware::from_fn(crate::telemetry::access_log));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let server_task = match self.tls {
            None => {
                let server = axum::serve(
                    self.listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(stopped(stop_rx.clone()));
                tokio::spawn(async move { server.await })
            }
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let std_listener = self.listener.into_std()?;
                let server =
                    axum_server::from_tcp_rustls(std_listener, tls)?.handle(handle.clone());
                let stop = stopped(stop_rx.clone());
                tokio::spawn(async move {
                    stop.await;
                    // Requests in flight get as long as a Twingate call may take.
                    handle.graceful_shutdown(Some(Duration::from_secs(30)));
                });
                tokio::spawn(async move {
                    server
                        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                        .await
                })
            }
        };
        #[cfg(unix)]
        let reload_task = tokio::spawn(watch_hangups(
            self.hangup,
            stop_rx.clone(),
            self.state.flow.clone(),
        ));
        self.state.ready.store(true, Ordering::Relaxed);
        info!(addr = %self.addr, scheme, "lapse is ready");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let watchdog = tokio::spawn(pet_watchdog(
            self.state.engine.clone(),
            self.state.holds_lease.clone(),
            stop_rx.clone(),
        ));
        tokio::pin!(shutdown);
        // On a shared store only the leader runs the loop: a standby serves the API and waits
        // here for the lease, and the loop it then starts does, as at every start, the overdue
        // revocations first.
        let store = self.state.store.clone();
        let handle = self.state.engine.clone();
        let take_lead = async {
            let leadership = lapse_engine::leader::lead(&store, &self.node, self.lease).await?;
            self.state
                .epoch
                .store(leadership.status.epoch, Ordering::Relaxed);
            self.state.holds_lease.store(true, Ordering::SeqCst);
            let fenced = Arc::new(Fenced::new(self.provider, leadership.clock.clone()));
            let engine = lapse_engine::start(&handle, self.commands, fenced, self.config).await?;
            anyhow::Ok((leadership, engine))
        };
        let led = tokio::select! {
            () = &mut shutdown => None,
            led = take_lead => Some(led),
        };
        let (mut leadership, engine) = match led {
            Some(Ok(led)) => led,
            outcome => {
                // Shut down (or failed to lead) before leading: nothing but the API ran.
                let _ = stop_tx.send(true);
                let _ = server_task.await;
                watchdog.abort();
                #[cfg(unix)]
                reload_task.abort();
                self.state.store.close().await;
                return match outcome {
                    Some(Err(e)) => Err(e.context("taking the lead")),
                    _ => Ok(()),
                };
            }
        };
        let mut engine_task = tokio::spawn(engine.run_until_stopped(stopped(stop_rx.clone())));
        self.state.flow.spawn(stop_rx.clone());
        let checkpoints = self.checkpoints.map(|c| {
            let store = self.state.store.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                c.run(&store, stop).await;
                c
            })
        });
        // A loop that ends before shutdown is a step-down: a leader that holds the lease without
        // a loop would leave every revocation undone while a standby waits for the lease.
        let ended = tokio::select! {
            () = &mut shutdown => Ended::Shutdown,
            why = leadership.lost() => Ended::Lost(why),
            outcome = &mut engine_task => Ended::Loop(match outcome {
                Ok(Ok(())) => "the reconcile loop stopped".to_owned(),
                Ok(Err(e)) => format!("the reconcile loop failed: {e}"),
                Err(e) => format!("the reconcile loop's task failed: {e}"),
            }),
        };
        info!("shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
        if !matches!(ended, Ended::Loop(_)) {
            match engine_task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "engine stopped with an error"),
                Err(e) => error!(error = %e, "engine task failed"),
            }
        }
        let _ = server_task.await;
        watchdog.abort();
        // The last checkpoint covers everything written before the store closes.
        if let Some(task) = checkpoints
            && let Ok(c) = task.await
        {
            c.write(&self.state.store).await;
        }
        #[cfg(unix)]
        reload_task.abort();
        if let Ended::Lost(why) = ended {
            self.state.store.close().await;
            // Exit and be restarted as a standby: nothing of this leadership carries on.
            anyhow::bail!("stepped down: {why}");
        }
        // The lease goes at once, so that a standby takes over without waiting for it to run out;
        // the renewal stops with the leadership.
        let node = leadership.status.holder.clone();
        drop(leadership);
        self.state.holds_lease.store(false, Ordering::SeqCst);
        if let Err(e) = self.state.store.release_lead(&node).await {
            warn!(error = %e, "could not give the leader lease up; a standby takes it when it runs out");
        }
        self.state.store.close().await;
        if let Ended::Loop(why) = ended {
            error!(reason = %why, "stepping down: the leader's loop ended");
            // A non-zero exit, so that systemd restarts this daemon (as a standby).
            anyhow::bail!("stepped down: {why}");
        }
        Ok(())
    }
}

/// Why a leading daemon stops.
enum Ended {
    Shutdown,
    Lost(String),
    Loop(String),
}

/// Writes keyed checkpoints of the history's head out of band: an INFO log line (for the
/// journal) and, when configured, a line in the checkpoint file.
struct Checkpointer {
    key: lapse_store::CheckpointKey,
    file: Option<std::path::PathBuf>,
    interval: Duration,
    rows: u64,
}

impl Checkpointer {
    /// One checkpoint now; its sequence number, when written.
    async fn write(&self, store: &Store) -> Option<i64> {
        let c = match store.checkpoint(&self.key, chrono::Utc::now()).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "could not take a history checkpoint");
                return None;
            }
        };
        let line = c.to_json_line();
        info!(checkpoint = %line, "history checkpoint");
        if let Some(f) = &self.file
            && let Err(e) = lapse_store::append_checkpoint(f, &c)
        {
            error!(file = %f.display(), error = %e, "could not append the history checkpoint");
        }
        Some(c.seq)
    }

    /// Every `interval`, and as soon as `rows` rows were added since the last one, until stop.
    async fn run(&self, store: &Store, mut stop: watch::Receiver<bool>) {
        let mut last = self.write(store).await.unwrap_or(0);
        let mut due = tokio::time::Instant::now() + self.interval;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let head = store.history_head_seq().await.unwrap_or(last);
            let many = u64::try_from(head - last).unwrap_or(0) >= self.rows;
            if many || tokio::time::Instant::now() >= due {
                if let Some(seq) = self.write(store).await {
                    last = seq;
                }
                due = tokio::time::Instant::now() + self.interval;
            }
        }
    }
}

/// Pet systemd's watchdog while the reconcile loop itself keeps finishing passes, so a wedged
/// loop gets the service restarted; a standby, which runs no loop, is petted while it serves.
/// A daemon that holds the lease is a leader: without a running loop it is not petted.
async fn pet_watchdog(
    engine: EngineHandle,
    holds_lease: Arc<std::sync::atomic::AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        // A call may legitimately wait out Twingate's rate limit for up to its patience (3 min)
        // without a beat; beyond that the loop is taken to be wedged and left to systemd.
        let window = chrono::Duration::from_std(period * 2)
            .unwrap_or(chrono::Duration::seconds(30))
            .max(chrono::Duration::seconds(200));
        let leader = holds_lease.load(Ordering::SeqCst) || engine.is_leading();
        let fresh = !leader
            || (engine.is_leading()
                && engine
                    .heartbeat()
                    .is_some_and(|t| chrono::Utc::now() - t < window));
        if fresh {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}

/// Handle each SIGHUP with [`on_reload`] until shutdown.
#[cfg(unix)]
async fn watch_hangups<P: AccessProvider + 'static>(
    mut hangup: tokio::signal::unix::Signal,
    mut stop: watch::Receiver<bool>,
    requests: Arc<RequestService<P, EngineHandle>>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            got = hangup.recv() => match got {
                Some(()) => {
                    on_reload();
                    requests.reload().await;
                }
                None => return,
            },
        }
    }
}

/// What SIGHUP reloads (`systemctl reload lapse`). Access lists, the reload target, are read
/// here once they exist; until then the signal is acknowledged so that it never ends the daemon.
fn on_reload() {
    info!("reload requested");
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

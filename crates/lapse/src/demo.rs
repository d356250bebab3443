//! `lapse demo`: the daemon against an embedded Twingate stand-in with its demo seed and a
//! temporary database, narrating grants as they appear and lapse.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use lapse_store::Role;
use lapse_twingate::TwingateClient;
use secrecy::SecretString;
use twingate_sim::{SimConfig, start};

use crate::cli::DemoArgs;
use crate::serve;
use lapse_settings::Settings;

const DEMO_LIST: &str = include_str!("../../../deploy/access-lists.d/prod-db-oncall.toml");

pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logging("warn,lapse=info,lapse_engine=info", false);
    let sim = start(SimConfig::default())
        .await
        .context("starting the embedded Twingate stand-in")?;
    let dir = tempfile::tempdir().context("creating a temporary state directory")?;
    let mut settings = Settings::defaults().context("loading demo settings")?;
    settings.twingate.base_url = sim.base_url();
    settings.database.path = dir.path().join("lapse.db");
    // The access list shipped in deploy/, so the request flow can be tried too.
    let lists = dir.path().join("access-lists.d");
    std::fs::create_dir_all(&lists).context("creating the demo access-list directory")?;
    std::fs::write(lists.join("prod-db-oncall.toml"), DEMO_LIST)
        .context("writing the demo access list")?;
    settings.access.lists_dir = lists;
    // No grant policy: direct grants are the admin's, on targets no list governs.
    let policies = dir.path().join("grant-policies.d");
    std::fs::create_dir_all(&policies).context("creating the demo grant-policy directory")?;
    settings.access.policies_dir = policies;
    let store = serve::open_store(&settings).await?;
    let token = store.create_token("demo-admin", Role::Admin).await?;
    let mut people = Vec::new();
    for (name, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
        let t = store.create_token(name, Role::Operator).await?;
        store.set_token_identity(name, email).await?;
        people.push(t);
    }
    let client = TwingateClient::new(serve::client_config(
        &settings,
        SecretString::from(twingate_sim::DEMO_ADMIN_KEY),
    ))?;
    let app = serve::build_with(&settings, store, Arc::new(client)).await?;
    let url = format!("{}://{}", app.scheme(), app.addr());
    println!(
        "lapse demo: daemon at {url}, Twingate stand-in at {}",
        sim.base_url()
    );
    println!(
        "database: {} (deleted on exit)\n",
        settings.database.path.display()
    );
    println!("In another terminal:");
    println!("  export LAPSE_URL={url} LAPSE_TOKEN={token}");
    println!(
        "  lapse grant --kind group-membership --group oncall --user alice@example.com --for 2m --reason INC-4211"
    );
    println!(
        "  lapse grant --kind ephemeral-group --user bob@example.com --resource staging-db --for 1m --reason 'deploy check' --wait"
    );
    println!("  lapse list");
    println!("\nThe request flow (access list `prod-db-oncall`: alice may ask, bob approves):");
    println!(
        "  LAPSE_TOKEN={} lapse request prod-db-oncall --for 30m --reason INC-4211",
        people[0]
    );
    println!("  LAPSE_TOKEN={} lapse requests", people[1]);
    println!("  LAPSE_TOKEN={} lapse approve <REQUEST ID>", people[1]);
    println!("\nPress Ctrl-C to stop.\n");
    let mut events = app.engine().subscribe();
    let feed = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!(
                "{}  grant {}  {}",
                e.at.format("%H:%M:%S"),
                e.grant,
                e.state
            );
        }
    });
    app.run_until_stopped(serve::shutdown_signal()).await?;
    feed.abort();
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

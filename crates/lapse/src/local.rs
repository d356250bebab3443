//! Commands that run on the daemon host itself: `serve`, `token create`, `config check|example`
//! and `doctor`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use lapse_core::AccessProvider;
use lapse_store::Role;
use lapse_twingate::TwingateClient;

use crate::cli::{ConfigCmd, TokenCmd};
use crate::serve;
use crate::settings::Settings;

/// The example configuration shipped in `deploy/`.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../deploy/lapse.toml");

fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    let file = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::settings::DEFAULT_CONFIG.into());
    let s = Settings::load(config)
        .with_context(|| format!("loading settings from {}", file.display()))?;
    s.validate()?;
    Ok(s)
}

pub async fn serve(config: Option<&Path>, port_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let settings = load(config)?;
    crate::telemetry::init_logging(&settings.log.filter, settings.log.format == "json");
    let key = settings.api_key()?;
    let app = serve::build(&settings, key).await?;
    if let Some(path) = port_file {
        // Written whole and then renamed, so a reader never sees half a number.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", app.addr().port()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing the port to {}", path.display()))?;
    }
    app.run_until_stopped(serve::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn token(cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Create {
            name,
            role,
            identity,
            config,
        } => {
            let settings = Settings::load(config.as_deref()).context("loading settings")?;
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let store = serve::open_store(&settings).await?;
            let token = store.create_token(&name, role).await?;
            if let Some(identity) = identity.as_deref().filter(|i| !i.trim().is_empty()) {
                store.set_token_identity(&name, identity).await?;
            }
            store.close().await;
            println!(
                "created {} token {name:?}; it is shown once, store it now:",
                role.as_str()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn config(cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Example => {
            print!("{EXAMPLE_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Check { file } => {
            // Exit 2 for a file that was read but is wrong, like a failed validation.
            let s = match Settings::load(Some(&file)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            match s.validate() {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

/// Check everything a running daemon depends on, printing each check with ok or a fix.
pub async fn doctor(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(m) => println!("ok    {name}: {m}"),
        Err(m) => {
            failed = true;
            println!("FAIL  {name}: {m}");
        }
    };
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            report("config", Err(e.to_string()));
            return Ok(ExitCode::FAILURE);
        }
    };
    report(
        "config",
        settings
            .validate()
            .map(|_| "valid".to_owned())
            .map_err(|e| e.to_string()),
    );
    match serve::open_store(&settings).await {
        Ok(store) => {
            let p = store.pragmas().clone();
            report(
                "database",
                Ok(format!(
                    "{} (journal_mode={}, synchronous={}, foreign_keys={})",
                    settings.database.path.display(),
                    p.journal_mode,
                    p.synchronous,
                    p.foreign_keys
                )),
            );
            report(
                "database write",
                store
                    .check_writable()
                    .await
                    .map(|_| "writable".to_owned())
                    .map_err(|e| e.to_string()),
            );
            store.close().await;
        }
        Err(e) => report(
            "database",
            Err(format!(
                "{e}; check database.path and that the directory is writable by the lapse user"
            )),
        ),
    }
    match settings.api_key() {
        Err(e) => report("twingate key", Err(e.to_string())),
        Ok(key) => match TwingateClient::new(serve::client_config(&settings, key)) {
            Err(e) => report("twingate client", Err(e.to_string())),
            Ok(client) => {
                report(
                    "twingate read",
                    client
                        .groups_by_name("lapse-doctor-probe")
                        .await
                        .map(|_| format!("{} answered", settings.twingate.base_url))
                        .map_err(|e| format!("{e}; check twingate.base_url and the API key")),
                );
                // Deleting a group that cannot exist proves write permission without changing anything.
                let probe = lapse_core::RemoteId::new("R3JvdXA6MA==");
                let write = match client
                    .delete_group(&probe, lapse_core::provider::Priority::Apply)
                    .await
                {
                    Ok(()) | Err(lapse_core::ProviderError::AlreadyGone(_)) => {
                        Ok("the key may write".to_owned())
                    }
                    Err(e) => Err(format!("{e}; the key needs the Read & Write permission")),
                };
                report("twingate write", write);
            }
        },
    }
    let now = chrono::Utc::now();
    report(
        "clock",
        if now.timestamp() > 1_700_000_000 {
            Ok(now.to_rfc3339())
        } else {
            Err(format!("{now} looks wrong; enable NTP"))
        },
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

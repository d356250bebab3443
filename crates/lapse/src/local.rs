//! Commands that run on the daemon host itself: `serve`, `token create|list|revoke`, `config
//! check|example`, `doctor` and `audit verify --checkpoints`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use lapse_core::AccessProvider;
use lapse_core::Role;
use lapse_store::{CheckpointKey, NewToken};
use lapse_twingate::TwingateClient;

use crate::cli::{ConfigCmd, TokenCmd};
use crate::serve;
use lapse_settings::Settings;

/// The example configuration shipped in `deploy/`.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../deploy/lapse.toml");

fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    let file = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| lapse_settings::DEFAULT_CONFIG.into());
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

/// The actor token administration on the host is recorded as.
const LOCAL_ADMIN: &str = "local-admin";

/// `token create|list|revoke`, printed for people or, with `-o json`, as JSON (times RFC 3339
/// in UTC, as every export).
pub async fn token(cmd: TokenCmd, output: lapse_output::OutputFormat) -> anyhow::Result<ExitCode> {
    let json = output == lapse_output::OutputFormat::Json;
    let exact =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    match cmd {
        TokenCmd::Create {
            name,
            role,
            identity,
            ttl,
            config,
        } => {
            let settings = Settings::load(config.as_deref()).context("loading settings")?;
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let t = &settings.tokens;
            if t.default_ttl > t.max_ttl {
                anyhow::bail!("tokens.default_ttl is longer than tokens.max_ttl; fix the settings");
            }
            let life = match ttl.as_deref() {
                None => t.default_ttl,
                Some(text) => {
                    let d = humantime::parse_duration(text.trim()).map_err(|e| {
                        anyhow::anyhow!("--ttl: {text:?} is not a duration ({e}); give e.g. 30d")
                    })?;
                    if d.is_zero() || d > t.max_ttl {
                        anyhow::bail!(
                            "--ttl: {text:?} must be longer than zero and at most tokens.max_ttl ({})",
                            lapse_core::policy::human_duration(
                                chrono::Duration::from_std(t.max_ttl)
                                    .unwrap_or(chrono::Duration::MAX)
                            )
                        );
                    }
                    d
                }
            };
            let now = chrono::Utc::now();
            let expires_at = now + chrono::Duration::from_std(life)?;
            let store = serve::open_store(&settings).await?;
            let new = NewToken {
                name: name.clone(),
                role,
                identity: identity.filter(|i| !i.trim().is_empty()),
                expires_at,
                actor: LOCAL_ADMIN.to_owned(),
            };
            let created = store.create_token_with(&new, now).await;
            store.close().await;
            let token = created?;
            if json {
                let v = serde_json::json!({
                    "name": name,
                    "role": role.as_str(),
                    "identity": new.identity,
                    "expires_at": exact(expires_at),
                    "token": token,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "created {} token {name:?}, expiring {}; it is shown once, store it now:",
                role.as_str(),
                lapse_output::rfc3339(expires_at)
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::List { config } => {
            let settings = Settings::load(config.as_deref()).context("loading settings")?;
            let store = serve::open_existing(&settings).await?;
            let tokens = store.list_tokens().await;
            store.close().await;
            let tokens = tokens?;
            if json {
                let rows: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "role": t.role.as_str(),
                            "identity": t.identity,
                            "created_at": exact(t.created_at),
                            "last_used_at": t.last_used_at.map(exact),
                            "expires_at": exact(t.expires_at),
                            "revoked_at": t.revoked_at.map(exact),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".to_owned(), lapse_output::rfc3339)
            };
            println!("NAME\tROLE\tIDENTITY\tCREATED\tLAST USED\tEXPIRES\tREVOKED");
            for t in tokens {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.name,
                    t.role,
                    t.identity.as_deref().unwrap_or("-"),
                    ts(Some(t.created_at)),
                    ts(t.last_used_at),
                    ts(Some(t.expires_at)),
                    ts(t.revoked_at)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Revoke { name, config } => {
            let settings = Settings::load(config.as_deref()).context("loading settings")?;
            let store = serve::open_existing(&settings).await?;
            let revoked = store.revoke_token(&name, LOCAL_ADMIN).await;
            store.close().await;
            if revoked? {
                if json {
                    println!("{}", serde_json::json!({ "name": name, "revoked": true }));
                } else {
                    println!("revoked token {name:?}");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no live token named {name:?}\n  fix: see `lapse token list`");
                Ok(ExitCode::from(lapse_output::exit::NOT_FOUND))
            }
        }
    }
}

/// `lapse audit verify --checkpoints FILE --key-file FILE`: the chain against keyed
/// checkpoints, on the daemon host. Exit 1 on any finding.
pub async fn audit_verify(
    args: &crate::cli::VerifyArgs,
    output: lapse_output::OutputFormat,
) -> anyhow::Result<ExitCode> {
    let (Some(file), Some(key_file)) = (&args.checkpoints, &args.key_file) else {
        anyhow::bail!("--checkpoints and --key-file go together");
    };
    let settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    let key = CheckpointKey::from_file(key_file)
        .with_context(|| format!("--key-file {}", key_file.display()))?;
    let checkpoints = lapse_store::read_checkpoints(file)
        .with_context(|| format!("--checkpoints {}", file.display()))?;
    let store = serve::open_existing(&settings).await?;
    let checked = store.verify_history_with(&checkpoints, &key).await;
    store.close().await;
    let checked = checked?;
    let code = if checked.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if output == lapse_output::OutputFormat::Json {
        let v = serde_json::json!({
            "ok": checked.is_ok(),
            "rows_checked": checked.chain.rows_checked,
            "checkpoints": checkpoints.len(),
            "checkpoints_genuine": checked.checkpoints_genuine,
            "first_broken": checked.chain.first_broken.as_ref().map(|b| {
                serde_json::json!({ "seq": b.seq, "reason": b.reason.to_string() })
            }),
            "findings": checked.findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    println!(
        "{} rows checked against {} checkpoints ({} genuine)",
        checked.chain.rows_checked,
        checkpoints.len(),
        checked.checkpoints_genuine
    );
    if let Some(b) = &checked.chain.first_broken {
        println!("BROKEN at row {}: {}", b.seq, b.reason);
    }
    for f in &checked.findings {
        println!("FINDING: {f}");
    }
    if checked.is_ok() {
        println!("ok: the history matches every checkpoint");
    }
    Ok(code)
}

pub fn config(cmd: ConfigCmd, output: lapse_output::OutputFormat) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Example => {
            print!("{EXAMPLE_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Check { file } => {
            // Every problem, each on its own line with its file and line or its environment
            // variable; a file that was read but is wrong is refused like a failed validation.
            let problems = lapse_settings::check_file(&file);
            if output == lapse_output::OutputFormat::Json {
                let v = serde_json::json!({
                    "file": file.display().to_string(),
                    "ok": problems.is_empty(),
                    "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(if problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(lapse_output::exit::REFUSED)
                });
            }
            if problems.is_empty() {
                println!("{}: ok", file.display());
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                eprintln!("{p}");
            }
            Ok(ExitCode::from(lapse_output::exit::REFUSED))
        }
    }
}

/// Twingate's clock may be this far from ours before `doctor` fails: expiries Twingate enforces
/// (access edges' `expiresAt`) would end access that much early or late.
const MAX_SKEW_SECONDS: i64 = 5;

/// Check everything a running daemon depends on, printing each check with ok or a fix (or, with
/// `-o json`, an array of `{check, ok, detail}`). Never creates a file or directory.
pub async fn doctor(
    config: Option<&Path>,
    format: lapse_output::OutputFormat,
) -> anyhow::Result<ExitCode> {
    let mut checks: Vec<(String, Result<String, String>)> = Vec::new();
    let mut report = |name: &str, r: Result<String, String>| checks.push((name.to_owned(), r));
    match Settings::load(config) {
        Err(e) => report("config", Err(e.to_string())),
        Ok(settings) => doctor_checks(&settings, &mut report).await,
    }
    let failed = checks.iter().any(|(_, r)| r.is_err());
    if format == lapse_output::OutputFormat::Json {
        let rows: Vec<serde_json::Value> = checks
            .iter()
            .map(|(name, r)| {
                let (ok, detail) = match r {
                    Ok(m) => (true, m),
                    Err(m) => (false, m),
                };
                serde_json::json!({ "check": name, "ok": ok, "detail": detail })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for (name, r) in &checks {
            match r {
                Ok(m) => println!("ok    {name}: {m}"),
                Err(m) => println!("FAIL  {name}: {m}"),
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn doctor_checks(settings: &Settings, report: &mut impl FnMut(&str, Result<String, String>)) {
    report(
        "config",
        settings
            .validate()
            .map(|_| "valid".to_owned())
            .map_err(|e| e.to_string()),
    );
    let files = lapse_requests::check_access_files(
        &settings.access,
        chrono::Duration::from_std(settings.grants.max_duration).unwrap_or(chrono::Duration::MAX),
    );
    report(
        "access files",
        if files.refused.is_empty() {
            Ok(format!(
                "{} access lists from {}, {} grant policies from {}",
                files.lists,
                settings.access.lists_dir.display(),
                files.policies,
                settings.access.policies_dir.display()
            ))
        } else {
            Err(format!(
                "refused (the daemon keeps their previous contents in force): {}",
                files.refused.join("; ")
            ))
        },
    );
    // Never creates anything: a missing database is reported, not made.
    match serve::open_existing(settings).await {
        Ok(store) => {
            report(
                "database",
                Ok(match store.pragmas() {
                    Some(p) => format!(
                        "{} (journal_mode={}, synchronous={}, foreign_keys={})",
                        store.describe(),
                        p.journal_mode,
                        p.synchronous,
                        p.foreign_keys
                    ),
                    None => format!("{} (PostgreSQL)", store.describe()),
                }),
            );
            report(
                "leader",
                store
                    .lease()
                    .await
                    .map(|lease| lapse_store::describe_lease(lease.as_ref(), &settings.node_name()))
                    .map_err(|e| e.to_string()),
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
                "{e}; check database.path (or database.url) and that lapse can write there"
            )),
        ),
    }
    let url = &settings.twingate.base_url;
    let client = match settings.api_key() {
        Err(e) => return report("twingate key", Err(e.to_string())),
        Ok(key) => match TwingateClient::new(serve::client_config(settings, key)) {
            Err(e) => return report("twingate client", Err(e.to_string())),
            Ok(client) => client,
        },
    };
    let read = client.groups_by_name("lapse-doctor-probe").await;
    let unreachable = matches!(&read, Err(lapse_core::ProviderError::Transient(m)) if m.contains("cannot reach") || m.contains("connect"));
    match read {
        Ok(_) => report("twingate read", Ok(format!("{url} answered"))),
        Err(e) if unreachable => {
            report(
                "twingate read",
                Err(format!(
                    "cannot connect to {url} ({e}); check twingate.base_url, DNS and the network"
                )),
            );
            return report(
                "twingate write",
                Err("not checked: cannot connect".to_owned()),
            );
        }
        Err(e) => report(
            "twingate read",
            Err(format!("{e}; check twingate.base_url and the API key")),
        ),
    }
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
    report(
        "clock",
        match client.clock_skew() {
            None => Err(format!("{url} sent no Date header to compare clocks with")),
            Some(skew) if skew.num_seconds().abs() > MAX_SKEW_SECONDS => Err(format!(
                "Twingate's clock is {}s {} this host's; enable NTP (expiries Twingate enforces would be off by as much)",
                skew.num_seconds().abs(),
                if skew.num_seconds() > 0 {
                    "ahead of"
                } else {
                    "behind"
                }
            )),
            Some(skew) => Ok(format!(
                "within {MAX_SKEW_SECONDS}s of Twingate's ({:+}s)",
                skew.num_seconds()
            )),
        },
    );
}

//! The `twingate-sim` binary: parses flags, starts the stand-in and waits for Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use twingate_sim::{CommitThenLose, Faults, RateLimit, Seed, SimConfig};

/// A stand-in for the Twingate Admin API, for tests and demos.
#[derive(Parser, Debug)]
#[command(name = "twingate-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Seed file (.toml or .json); the built-in demo network when absent.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Reads allowed per API key per minute.
    #[arg(long, default_value_t = 60)]
    rate_limit_reads: u32,
    /// Writes allowed per API key per minute.
    #[arg(long, default_value_t = 20)]
    rate_limit_writes: u32,
    /// How the per-minute limits are enforced: token-bucket or sliding-minute.
    #[arg(long, default_value = "token-bucket")]
    rate_limit_window: twingate_sim::LimitWindow,
    /// Switch rate limiting off.
    #[arg(long)]
    no_rate_limit: bool,
    /// Seed for fault draws and minted UUIDs.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of requests answered 502/503 without being applied (0.0..1.0).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of requests whose connection is dropped without an answer (0.0..1.0).
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Answer every request 429 for this many seconds after start.
    #[arg(long)]
    rate_limit_storm_secs: Option<u64>,
    /// Apply mutations, then hold their answer this many seconds.
    #[arg(long, conflicts_with = "commit_then_drop")]
    commit_then_delay_secs: Option<u64>,
    /// Apply mutations, then drop the connection.
    #[arg(long)]
    commit_then_drop: bool,
    /// Serve an HTML page with HTTP 200 for every request.
    #[arg(long)]
    html_200: bool,
}

fn check_rate(name: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("--{name} must be between 0.0 and 1.0, got {v}"))
    }
}

async fn run(args: Args) -> Result<(), String> {
    check_rate("error-rate", args.error_rate)?;
    check_rate("reset-rate", args.reset_rate)?;
    let seed = match &args.seed {
        Some(path) => Seed::from_path(path).map_err(|e| e.to_string())?,
        None => Seed::demo(),
    };
    let keys: Vec<(String, String)> = seed
        .api_keys
        .iter()
        .map(|k| (k.token.clone(), format!("{:?}", k.permission)))
        .collect();
    let rate_limit = (!args.no_rate_limit).then_some(RateLimit {
        reads_per_minute: args.rate_limit_reads,
        writes_per_minute: args.rate_limit_writes,
        window: args.rate_limit_window,
    });
    let handle = twingate_sim::start(SimConfig {
        listen: args.listen,
        seed,
        rate_limit,
        fault_seed: args.fault_seed,
    })
    .await
    .map_err(|e| e.to_string())?;
    let now = handle.clock().now();
    handle
        .set_faults(Faults {
            latency: Duration::from_millis(args.latency_ms),
            error_5xx_rate: args.error_rate,
            reset_rate: args.reset_rate,
            rate_limit_storm_until: args.rate_limit_storm_secs.map(|s| {
                now + chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
            }),
            commit_then_lose: match (args.commit_then_delay_secs, args.commit_then_drop) {
                (Some(secs), _) => CommitThenLose::DelaySecs(secs),
                (None, true) => CommitThenLose::Drop,
                (None, false) => CommitThenLose::Off,
            },
            html_200: args.html_200,
            ..Faults::default()
        })
        .map_err(|e| e.to_string())?;
    println!("twingate-sim listening on {}", handle.base_url());
    println!("GraphQL endpoint: {}", handle.graphql_url());
    match rate_limit {
        Some(r) => println!(
            "rate limit per key: {} reads/min, {} writes/min ({:?})",
            r.reads_per_minute, r.writes_per_minute, r.window
        ),
        None => println!("rate limit: off"),
    }
    for (token, permission) in keys {
        println!("API key: {token} ({permission})");
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    handle.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twingate-sim: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twingate-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}

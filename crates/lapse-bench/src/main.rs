//! `lapse-bench`: runs the real `lapse` daemon against a real `twingate-sim`, drives it through
//! its HTTP API, reads the truth from the sim's journal and state, and reports the figures.

mod cost;
mod journal;
mod procs;
mod report;
mod scenarios;
mod seed;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Revocation lateness at N grants, with the once-a-minute baseline job in the same run.
    Lateness,
    /// Writes per grant life per kind, and coalescing of 500 expiries on one group.
    Economy,
    /// A backlog of due revocations and new grants under a write budget.
    Budget,
    /// Revocations on separate groups falling due together at 20 writes a minute (sliding
    /// minute), the budget idle before.
    Burst,
    /// 500 memberships of one group ending within one second at 20 writes a minute (sliding
    /// minute): group updates removing them, and their lateness.
    Coalesce,
    /// Reads of the idle sweep after ephemeral grants have all ended.
    Sweep,
    /// Grants a second through the HTTP API from concurrent clients.
    Submissions,
    /// Peak RSS of the daemon with N active grants.
    Memory,
    /// Restart with N grants in the database: time to ready.
    Recovery,
    /// Two daemons on one PostgreSQL database: the leader is killed while grants fall due;
    /// revocation lateness across the takeover, and submissions a second on PostgreSQL.
    Failover,
    /// CPU time of planning a pass with 100 due grants at 10k, 100k and 1M open grants (or
    /// up to `--grants`): the whole world, and the slice an incremental pass plans over.
    Cost,
    /// Every scenario with small numbers (what the smoke test runs).
    Smoke,
}

/// Benchmarks for lapse. Build the binaries first: `cargo build --release -p lapse -p twingate-sim`.
#[derive(Debug, Parser)]
#[command(name = "lapse-bench", version)]
pub struct Args {
    pub scenario: Scenario,
    /// Grants (lateness: active grants; memory/recovery: grants in the database).
    #[arg(long)]
    pub grants: Option<usize>,
    /// Small numbers everywhere, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The `lapse` binary (default: next to this one).
    #[arg(long)]
    pub lapse_bin: Option<PathBuf>,
    /// The `twingate-sim` binary (default: next to this one).
    #[arg(long)]
    pub sim_bin: Option<PathBuf>,
    /// Lateness: the window the expiries are spread over, in seconds.
    #[arg(long)]
    pub spread_secs: Option<u64>,
    /// Lateness: seconds from the end of calibration to the first expiry (default: estimated
    /// from the calibration rate; submission slows as the database grows, so large runs set it).
    #[arg(long)]
    pub lead_secs: Option<u64>,
    /// Latency the sim adds to every API call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Baseline job: how often it runs, in seconds.
    #[arg(long)]
    pub baseline_period_secs: Option<u64>,
    /// Baseline job: deletions in flight at once (lapse's own default concurrency is 16).
    #[arg(long, default_value_t = 16)]
    pub baseline_concurrency: usize,
    /// Budget: writes a minute the sim allows (and lapse is configured with).
    #[arg(long)]
    pub writes_per_minute: Option<u32>,
    /// Budget: due revocations in the backlog.
    #[arg(long)]
    pub revocations: Option<usize>,
    /// Budget: new grants in the backlog.
    #[arg(long)]
    pub new_grants: Option<usize>,
    /// Submissions: concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Submissions: how long to submit, in seconds.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Keep the temporary directories (databases, logs, seeds) and print where they are.
    #[arg(long)]
    pub keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lapse-bench: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lapse-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

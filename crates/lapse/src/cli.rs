//! The `lapse` command line: every subcommand's arguments, and the client commands that talk to a running daemon's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use clap::{Args, Parser, Subcommand};
use lapse_requests::wire::{GrantRequest, RevokeRequest};
use reqwest::StatusCode;
use serde_json::Value;

use lapse_output::{self as output, OutputFormat, Style};

mod client;
mod jit;
pub mod login;

pub use client::DEFAULT_URL;
use client::{ApiClient, Failure, emit};
#[cfg(test)]
use client::{endpoint, parse_base_url};

/// `--wait` holds the request open while the daemon applies the grant in Twingate, which under
/// rate limits and retries can take minutes.
const WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Time-bounded access grants in Twingate.
///
/// `lapse serve` runs the daemon; every other client command talks to its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "lapse", version, propagate_version = true, after_help = output::exit::EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Commands that never call the API: their help does not offer `--url` and `--token`.
pub const LOCAL_COMMANDS: &[&str] = &[
    "serve",
    "token",
    "demo",
    "config",
    "doctor",
    "completions",
    "man",
    "logout",
];

/// The clap definition, with `--url` and `--token` hidden from [`LOCAL_COMMANDS`] (and their
/// subcommands): each gets its own hidden, accepted-and-ignored copy, which clap's propagation
/// of the global ones then leaves alone.
pub fn command() -> clap::Command {
    fn hide_api_args(c: clap::Command) -> clap::Command {
        let subs: Vec<String> = c
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        let mut c = c
            .arg(
                clap::Arg::new("url")
                    .long("url")
                    .value_name("URL")
                    .hide(true),
            )
            .arg(
                clap::Arg::new("token")
                    .long("token")
                    .value_name("TOKEN")
                    .hide(true),
            );
        for s in subs {
            c = c.mut_subcommand(s, hide_api_args);
        }
        c
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    for name in LOCAL_COMMANDS {
        cmd = cmd.mut_subcommand(name, hide_api_args);
    }
    cmd
}

/// Parses the process's arguments with [`command`]; exits with clap's usage error.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Options every command accepts, before or after the subcommand, shown under their own
/// heading; commands that never call the API hide `--url` and `--token` ([`LOCAL_COMMANDS`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Base URL of the lapse API.
    #[arg(long, global = true, env = "LAPSE_URL", default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// Bearer token for the lapse API (made with `lapse token create` on the daemon host).
    #[arg(
        long,
        global = true,
        env = "LAPSE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Tables show every cell whole instead of shortening free text to the terminal's width
    /// (COLUMNS, else the terminal's own; output that is not a terminal is never shortened).
    #[arg(long, global = true)]
    pub wide: bool,
    /// Times in UTC instead of the local time zone (`TZ`); `-o json` and `-o csv` are always
    /// RFC 3339 in UTC.
    #[arg(long, global = true)]
    pub utc: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon and its HTTP API.
    #[command(after_help = "Examples:\n  lapse serve --config /etc/lapse/lapse.toml")]
    Serve(ServeArgs),
    /// Manage API tokens (on the daemon host, against its database).
    #[command(
        subcommand,
        after_help = "Examples:\n  lapse token create --name alice --role requester --identity alice@example.com\n  lapse token list"
    )]
    Token(TokenCmd),
    /// Run a self-contained demonstration against a simulated Twingate.
    #[command(after_help = "Examples:\n  lapse demo")]
    Demo(DemoArgs),
    /// Check a configuration file, or print an example one.
    #[command(
        subcommand,
        after_help = "Examples:\n  lapse config check /etc/lapse/lapse.toml\n  lapse config example > lapse.toml"
    )]
    Config(ConfigCmd),
    /// Check that the daemon's configuration, database and Twingate connection are usable.
    #[command(
        after_help = "Examples:\n  lapse doctor --config /etc/lapse/lapse.toml\n  lapse doctor -o json"
    )]
    Doctor(DoctorArgs),
    /// Submit a time-bounded grant.
    #[command(
        after_help = "Examples:\n  lapse grant --kind group-membership --group oncall --user alice@example.com --for 2h --reason INC-4211\n  lapse grant --kind service-key --service-account ci-deployer --for 1h --reason deploy --wait"
    )]
    Grant(GrantArgs),
    /// List grants, newest first.
    #[command(after_help = "Examples:\n  lapse list --state active\n  lapse list --mine -o json")]
    List(ListArgs),
    /// Show one grant and its history.
    #[command(after_help = "Examples:\n  lapse show 01J8ZQ2V6T4M9XK3H5N7R1C0DE")]
    Show(ShowArgs),
    /// End a grant early.
    #[command(
        after_help = "Examples:\n  lapse revoke 01J8ZQ2V6T4M9XK3H5N7R1C0DE --reason \"incident closed\""
    )]
    Revoke(RevokeArgs),
    /// Read the append-only history.
    #[command(
        after_help = "Examples:\n  lapse history --since 2h --user alice@example.com\n  lapse history --tail 20 -o csv"
    )]
    History(HistoryArgs),
    /// Check the history's integrity.
    #[command(subcommand, after_help = "Examples:\n  lapse audit verify")]
    Audit(AuditCmd),
    /// Ask for access on an access list.
    #[command(
        after_help = "Examples:\n  lapse request prod-db-oncall --for 2h --reason INC-4211\n  lapse request prod-db-oncall --break-glass --reason INC-4212"
    )]
    Request(jit::RequestArgs),
    /// Show requests; by default those waiting for your decision.
    #[command(after_help = "Examples:\n  lapse requests\n  lapse requests --mine")]
    Requests(jit::RequestsArgs),
    /// Approve a request (as an owner of its list; never your own).
    #[command(after_help = "Examples:\n  lapse approve 01J8ZQ2V6T4M9XK3H5N7R1C0DE --reason paged")]
    Approve(jit::DecisionArgs),
    /// Deny a request, with a reason.
    #[command(
        after_help = "Examples:\n  lapse deny 01J8ZQ2V6T4M9XK3H5N7R1C0DE --reason \"not on call\""
    )]
    Deny(jit::DecisionArgs),
    /// Cancel your own pending request.
    #[command(after_help = "Examples:\n  lapse cancel 01J8ZQ2V6T4M9XK3H5N7R1C0DE")]
    Cancel(jit::DecisionArgs),
    /// Extend a grant that came from an access list.
    #[command(
        after_help = "Examples:\n  lapse extend 01J8ZQ2V6T4M9XK3H5N7R1C0DE --by 30m --reason \"INC-4211 still mitigating\""
    )]
    Extend(jit::ExtendArgs),
    /// List reviews due (`review due`) or record one (`review LIST --keep .. --remove ..`).
    #[command(
        after_help = "Examples:\n  lapse review due\n  lapse review prod-db-oncall --keep alice@example.com --remove dave@example.com"
    )]
    Review(jit::ReviewArgs),
    /// Show the loaded access lists and any refused list files.
    #[command(after_help = "Examples:\n  lapse lists")]
    Lists,
    /// Show the token in use: its name, role and identity.
    #[command(after_help = "Examples:\n  lapse whoami")]
    Whoami,
    /// Sign in at the OpenID issuer in a browser; later commands use that sign-in when no
    /// --token is given.
    Login(login::LoginArgs),
    /// Forget the sign-in `lapse login` kept.
    #[command(after_help = "Examples:\n  lapse logout")]
    Logout,
    /// Print a shell completion script, e.g. `lapse completions bash > /etc/bash_completion.d/lapse`.
    #[command(after_help = "Examples:\n  lapse completions bash > /etc/bash_completion.d/lapse")]
    Completions(crate::generate::CompletionsArgs),
    /// Print the man page (roff), e.g. `lapse man | man -l -`.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Configuration file (default: /etc/lapse/lapse.toml, if present).
    #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the bound port to FILE once listening (with `listen = "127.0.0.1:0"`, the port
    /// the system picked).
    #[arg(long, value_name = "FILE")]
    pub port_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        /// The token's name; it is the actor recorded in the history for everything done with it.
        #[arg(long)]
        name: String,
        /// What the token may do: requester (request through lists; their own grants),
        /// operator (direct grants within grant policies), admin (everything), auditor (read).
        // A plain string so that the one role parser (lapse_core::Role) stays the authority;
        // listing the values here still gives `--help` and early rejection of a typo.
        #[arg(long, value_parser = ["requester", "operator", "admin", "auditor"])]
        role: String,
        /// The person (email) the token acts for: what access lists name as members and owners.
        #[arg(long, value_name = "EMAIL")]
        identity: Option<String>,
        /// How long the token lives (default tokens.default_ttl, at most tokens.max_ttl).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Configuration file of the daemon whose database receives the token
        /// (default: /etc/lapse/lapse.toml, if present).
        #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List tokens: name, role, identity, created, last used, expires (never the token).
    List {
        /// Configuration file of the daemon whose tokens are listed.
        #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Revoke a token by name; it is refused from then on.
    Revoke {
        /// The token's name (`lapse token list`).
        name: String,
        /// Configuration file of the daemon whose token is revoked.
        #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCmd {
    /// Load a configuration file and report every problem in it.
    Check {
        /// Configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a commented example configuration.
    Example,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Configuration file (default: /etc/lapse/lapse.toml, if present).
    #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Submit a grant. The daemon checks everything and resolves names; nothing is sent to Twingate
/// for a request it refuses.
#[derive(Debug, Clone, Args)]
pub struct GrantArgs {
    /// ephemeral-group, group-membership, group-access, service-access or service-key.
    #[arg(long, value_name = "KIND")]
    pub kind: String,
    /// A user to receive access, by email (repeatable).
    #[arg(long = "user", value_name = "EMAIL")]
    pub users: Vec<String>,
    /// A resource, by name or ID (repeatable).
    #[arg(long = "resource", value_name = "NAME_OR_ID")]
    pub resources: Vec<String>,
    /// An existing group, by name or ID.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub group: Option<String>,
    /// An existing service account, by name or ID.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub service_account: Option<String>,
    /// How long the grant lasts, e.g. 90m or 2h30m.
    // Hyphen values are let through so that `--for -5m` reaches the daemon, which owns the rule
    // and explains the fix, instead of dying here as an unknown flag.
    #[arg(
        long = "for",
        value_name = "DURATION",
        allow_hyphen_values = true,
        required_unless_present = "until",
        conflicts_with = "until"
    )]
    pub duration: Option<String>,
    /// When the grant ends, as an RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// When the grant starts, as an RFC 3339 time (default: now).
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// Why the access is needed, e.g. an incident or ticket number.
    #[arg(long, allow_hyphen_values = true)]
    pub reason: String,
    /// Wait until the access is in place; a service key's token is printed then, once.
    #[arg(long)]
    pub wait: bool,
    /// Makes a retried submission safe: the same key and request give back the same grant.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only grants in this state (scheduled, applying, active, revoking, expired, revoked, failed).
    #[arg(long)]
    pub state: Option<String>,
    /// Only grants for this user.
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Only grants that reach this resource.
    #[arg(long, value_name = "NAME")]
    pub resource: Option<String>,
    /// Only grants of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// At most this many grants.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Only the grants you asked for (made with the token in use).
    #[arg(long)]
    pub mine: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The grant's ID.
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The grant's ID.
    pub id: String,
    /// Why the grant ends early.
    #[arg(long, allow_hyphen_values = true)]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only rows about this user.
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Only rows about this resource.
    #[arg(long, value_name = "NAME")]
    pub resource: Option<String>,
    /// Only rows of this grant.
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Rows from this time: RFC 3339, or a duration meaning "ago" (e.g. 2h).
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub since: Option<TimeSpec>,
    /// Rows up to this time: RFC 3339, or a duration meaning "ago" (e.g. 30m).
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub until: Option<TimeSpec>,
    /// At most this many rows, the oldest first (from --since on).
    #[arg(long, value_name = "N", conflicts_with = "tail")]
    pub limit: Option<u32>,
    /// Only the last N rows (still oldest first, like tail(1); with --newest-first, newest first).
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Newest rows first.
    #[arg(long)]
    pub newest_first: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Walk the history's hash chain; exit 1 and name the first broken row if it does not hold.
    /// With --checkpoints (on the daemon host, against its database) also check the chain
    /// against keyed checkpoints, naming truncation, rewriting and forged checkpoints.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A file of checkpoints (JSON lines, as the daemon writes them).
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub checkpoints: Option<PathBuf>,
    /// The checkpoint key file (the daemon's audit.checkpoint_key_file).
    #[arg(long, value_name = "FILE", requires = "checkpoints")]
    pub key_file: Option<PathBuf>,
    /// Configuration file of the daemon whose database is checked (with --checkpoints).
    #[arg(long, env = "LAPSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A point in time given on the command line: absolute, or a span before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    At(DateTime<Utc>),
    Ago(Duration),
}

impl TimeSpec {
    /// The absolute time meant, with "ago" counted back from `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        match self {
            TimeSpec::At(t) => Ok(t),
            // Whole seconds: "2h ago" means no finer instant, and a plain time reads better in
            // the daemon's log of the request.
            TimeSpec::Ago(span) => chrono::Duration::from_std(span)
                .ok()
                .and_then(|span| now.checked_sub_signed(span))
                .map(|t| t.trunc_subsecs(0))
                .with_context(|| {
                    format!(
                        "{} ago is before any time lapse can name",
                        chrono::Duration::from_std(span)
                            .map(lapse_core::policy::human_duration)
                            .unwrap_or_else(|_| humantime::format_duration(span).to_string())
                    )
                }),
        }
    }
}

/// Reads `--since`/`--until`: an RFC 3339 time, else a humantime duration meaning "that long ago".
pub fn parse_time_spec(s: &str) -> Result<TimeSpec, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(TimeSpec::At(t.with_timezone(&Utc)));
    }
    humantime::parse_duration(s).map(TimeSpec::Ago).map_err(|_| {
        format!("`{s}` is neither an RFC 3339 time (e.g. 2026-03-01T10:00:00Z) nor a duration meaning \"ago\" (e.g. 2h, 30m, 7d)")
    })
}

/// The body of `POST /v1/grants`. Fields are passed as given: the daemon validates them and
/// resolves names, so that the rules live in one place and every refusal carries its fix. Only
/// the times are read here, as the body carries them typed.
fn submission(args: &GrantArgs) -> Result<GrantRequest, Failure> {
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| Failure::Usage {
                        field: flag.to_owned(),
                        message: format!("{t:?} is not an RFC 3339 time: {e}"),
                        fix: "give e.g. 2026-03-01T13:00:00Z".to_owned(),
                    })
            })
            .transpose()
    };
    Ok(GrantRequest {
        kind: args.kind.clone(),
        users: args.users.clone(),
        resources: args.resources.clone(),
        group: args.group.clone(),
        service_account: args.service_account.clone(),
        duration: args.duration.clone(),
        expires_at: time("--until", &args.until)?,
        starts_at: time("--start", &args.start)?,
        reason: args.reason.clone(),
    })
}

/// Runs a client command against the API and returns the process's exit code by class (see
/// [`output::exit`]). Failures are already printed to stderr when this returns; an `Err` means
/// `command` is not a client command.
pub async fn run_client(command: Command, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let server_side = match &command {
        Command::Serve(_) => Some("serve"),
        Command::Token(_) => Some("token"),
        Command::Demo(_) => Some("demo"),
        Command::Config(_) => Some("config"),
        Command::Doctor(_) => Some("doctor"),
        _ => None,
    };
    if let Some(name) = server_side {
        anyhow::bail!("`lapse {name}` runs on the daemon host and does not go through the API");
    }

    // An explicit token wins; otherwise the sign-in `lapse login` kept, if still valid.
    let token = global.token.clone().or_else(login::stored_token);
    let api = match ApiClient::new(&global.url, token) {
        Ok(api) => api,
        Err(failure) => return Ok(report(failure, global)),
    };
    let format = Style {
        format: global.output,
        width: client::table_width(global.wide),
    };
    let outcome = match command {
        Command::Grant(args) => grant(&api, &args, format).await,
        Command::List(args) => list(&api, &args, format).await,
        Command::Show(args) => show(&api, &args, format).await,
        Command::Revoke(args) => revoke(&api, &args, format).await,
        Command::History(args) => history(&api, &args, format).await,
        Command::Audit(AuditCmd::Verify(_)) => audit_verify(&api, format).await,
        Command::Whoami => whoami(&api, format).await,
        Command::Request(a) => jit::request(&api, &a, format).await,
        Command::Requests(a) => jit::requests(&api, &a, format).await,
        Command::Approve(a) => jit::decide(&api, "approve", &a, format).await,
        Command::Deny(a) => jit::decide(&api, "deny", &a, format).await,
        Command::Cancel(a) => jit::decide(&api, "cancel", &a, format).await,
        Command::Extend(a) => jit::extend(&api, &a, format).await,
        Command::Review(a) => jit::review(&api, &a, format).await,
        Command::Lists => jit::lists(&api, format).await,
        Command::Serve(_)
        | Command::Token(_)
        | Command::Demo(_)
        | Command::Config(_)
        | Command::Doctor(_)
        | Command::Completions(_)
        | Command::Login(_)
        | Command::Logout
        | Command::Man => {
            anyhow::bail!("not a client command")
        }
    };
    Ok(outcome.unwrap_or_else(|failure| report(failure, global)))
}

fn report(failure: Failure, global: &GlobalArgs) -> ExitCode {
    match failure {
        Failure::Usage {
            field,
            message,
            fix,
        } => {
            eprintln!("error: {field}: {message}\n  fix: {fix}");
            ExitCode::from(output::exit::USAGE)
        }
        Failure::Api { status, body } => {
            eprintln!(
                "{}",
                output::api_error_message(status.as_u16(), &body, global.token.is_some())
            );
            ExitCode::from(output::exit::for_api(status.as_u16(), &body))
        }
        Failure::Unreachable { source } => {
            eprintln!("{}", unreachable_message(&global.url, &source));
            ExitCode::from(output::exit::SERVER)
        }
        Failure::Other(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(output::exit::SERVER)
        }
    }
}

fn unreachable_message(url: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "error: the lapse API at {url} did not answer in time ({})\n  \
             fix: if this was a submission it may still have been recorded: check `lapse list` \
             before submitting again, or resubmit with the same --idempotency-key",
            innermost_cause(e)
        );
    }
    format!(
        "error: could not reach the lapse API at {url} ({})\n  \
         fix: start the daemon with `lapse serve --config FILE`, or point --url (or LAPSE_URL) at where it listens",
        innermost_cause(e)
    )
}

/// reqwest's own message names only the request; the cause that helps ("Connection refused",
/// a failed name lookup) is at the bottom of the chain.
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A spinner and [`output::wait_status`] on stderr while `--wait` holds the request open;
/// nothing at all when stderr is not a terminal. Cleared when dropped.
struct WaitProgress {
    bar: indicatif::ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl WaitProgress {
    fn start() -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: indicatif::ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                shown.set_message(output::wait_status(started.elapsed()));
            }
        });
        Self {
            bar,
            ticker: Some(ticker),
        }
    }
}

impl Drop for WaitProgress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

async fn grant(api: &ApiClient, args: &GrantArgs, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(
        &["v1", "grants"],
        &[("wait", args.wait.then(|| "true".to_owned()))],
    )?;
    let mut request = api.http.post(url).json(&submission(args)?);
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if args.wait {
        request = request.timeout(WAIT_TIMEOUT);
    }
    let progress = args.wait.then(WaitProgress::start);
    let reply = api.send(request).await;
    drop(progress);
    let reply = reply?;
    if reply.status == StatusCode::OK {
        // 200 instead of 201 is the daemon saying nothing new was made; worth knowing when a
        // retry was meant to be a new grant.
        eprintln!(
            "note: this idempotency key was used before with the same request; this is the grant it made"
        );
    }
    emit(&output::render_grant(format, &reply.body, Utc::now())?)?;

    let field = |name: &str| reply.body.get(name).and_then(Value::as_str);
    if let Some(token) = field("token") {
        // JSON already carries the token; in CSV it would break the columns, so it goes to
        // stderr there, still on a line of its own.
        match format.format {
            OutputFormat::Json => {}
            OutputFormat::Table => emit(&format!("\n{}", output::token_line(token)))?,
            OutputFormat::Csv => eprintln!("{}", output::token_line(token)),
        }
    } else if args.wait && args.kind == "service-key" && field("state") == Some("active") {
        eprintln!(
            "note: no token in this answer: a service key's token is handed out only once, to the first waited-for submission"
        );
    }

    if args.wait {
        let state = field("state").unwrap_or("unknown");
        if state != "active" {
            let why = field("last_error")
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            eprintln!(
                "error: grant {} is {state}, not active{why}",
                field("id").unwrap_or("?")
            );
            return Ok(ExitCode::from(output::exit::NOT_ACTIVE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &ApiClient, args: &ListArgs, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(
        &["v1", "grants"],
        &[
            ("state", args.state.clone()),
            ("user", args.user.clone()),
            ("resource", args.resource.clone()),
            ("kind", args.kind.clone()),
            ("limit", args.limit.map(|n| n.to_string())),
            ("mine", args.mine.then(|| "true".to_owned())),
        ],
    )?;
    let mut reply = api.send(api.http.get(url.clone())).await?;
    // Without --limit, every grant: follow the `next` cursors page by page.
    let mut grants = reply.body["grants"].as_array().cloned().unwrap_or_default();
    while args.limit.is_none()
        && let Some(next) = reply.body["next"].as_str().map(str::to_owned)
    {
        let mut page = url.clone();
        page.query_pairs_mut().append_pair("cursor", &next);
        reply = api.send(api.http.get(page)).await?;
        grants.extend(reply.body["grants"].as_array().cloned().unwrap_or_default());
    }
    let body = serde_json::json!({ "grants": grants });
    emit(&output::render_grant_list(format, &body, Utc::now())?)?;
    Ok(ExitCode::SUCCESS)
}

async fn show(api: &ApiClient, args: &ShowArgs, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(&["v1", "grants", &args.id], &[])?;
    let reply = api.send(api.http.get(url)).await?;
    emit(&output::render_grant_detail(
        format,
        &reply.body,
        Utc::now(),
    )?)?;
    Ok(ExitCode::SUCCESS)
}

async fn revoke(api: &ApiClient, args: &RevokeArgs, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(&["v1", "grants", &args.id, "revoke"], &[])?;
    let reply = api
        .send(api.http.post(url).json(&RevokeRequest {
            reason: args.reason.clone(),
        }))
        .await?;
    emit(&output::render_grant(format, &reply.body, Utc::now())?)?;
    Ok(ExitCode::SUCCESS)
}

async fn history(api: &ApiClient, args: &HistoryArgs, format: Style) -> Result<ExitCode, Failure> {
    let query = history_query(args, Utc::now())?;
    let url = api.url(&["v1", "history"], &query)?;
    let mut reply = api.send(api.http.get(url)).await?;
    if args.tail.is_some() && !args.newest_first {
        // The server gave the last rows newest first; a tail reads oldest first.
        if let Some(rows) = reply.body.get_mut("history").and_then(Value::as_array_mut) {
            rows.reverse();
        }
    }
    emit(&output::render_history(format, &reply.body)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The query of `GET /v1/history`, with "ago" times turned into the RFC 3339 the API takes.
fn history_query(
    args: &HistoryArgs,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    let resolve = |spec: Option<TimeSpec>| spec.map(|s| s.resolve(now).map(rfc3339)).transpose();
    Ok(vec![
        ("grant", args.grant.clone()),
        ("user", args.user.clone()),
        ("resource", args.resource.clone()),
        ("since", resolve(args.since)?),
        ("until", resolve(args.until)?),
        ("limit", args.limit.or(args.tail).map(|n| n.to_string())),
        (
            "newest_first",
            (args.newest_first || args.tail.is_some()).then(|| "true".to_owned()),
        ),
    ])
}

async fn whoami(api: &ApiClient, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(&["v1", "whoami"], &[])?;
    let reply = api.send(api.http.get(url)).await?;
    let text = match format.format {
        OutputFormat::Json => format!("{}\n", reply.body),
        _ => {
            let f = |k: &str| {
                reply
                    .body
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "{} ({}, identity {})\n",
                f("name"),
                f("role"),
                f("identity")
            )
        }
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(api: &ApiClient, format: Style) -> Result<ExitCode, Failure> {
    let url = api.url(&["v1", "audit", "verify"], &[])?;
    let reply = api.send(api.http.get(url)).await?;
    emit(&output::render_verify(format, &reply.body)?)?;
    // Anything short of an explicit "ok": true fails, so a malformed answer cannot pass an audit.
    let intact = reply.body.get("ok").and_then(Value::as_bool) == Some(true);
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use clap::CommandFactory;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lapse").chain(args.iter().copied()))
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand's `--help` ends with examples, and every argument says what it is.
    #[test]
    fn every_subcommand_has_examples_and_every_flag_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.get_help().is_none() && !a.is_hide_set() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                let name = format!("{path} {}", sub.get_name());
                if path == "lapse" && sub.get_after_help().is_none() {
                    missing.push(format!("{name}: no examples"));
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "lapse", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn grant_flags_become_the_submission_body() {
        let cli = parse(&[
            "grant",
            "--kind",
            "group-membership",
            "--user",
            "a@example.com",
            "--user",
            "b@example.com",
            "--group",
            "prod-db-admins",
            "--for",
            "2h",
            "--reason",
            "INC-4211",
            "--wait",
            "--idempotency-key",
            "k1",
        ])
        .unwrap();
        let Command::Grant(args) = cli.command else {
            panic!("not a grant")
        };
        assert!(args.wait);
        assert_eq!(args.idempotency_key.as_deref(), Some("k1"));
        let body = serde_json::to_value(submission(&args).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "kind": "group-membership", "users": ["a@example.com", "b@example.com"],
                "resources": [], "group": "prod-db-admins", "service_account": null,
                "duration": "2h", "expires_at": null, "starts_at": null, "reason": "INC-4211",
            })
        );
    }

    #[test]
    fn bad_durations_reach_the_daemon_unjudged() {
        // The daemon owns the TTL rules and names the fix; the CLI must not swallow `-5m` as a flag.
        let cli = parse(&[
            "grant",
            "--kind",
            "ephemeral-group",
            "--for",
            "-5m",
            "--reason",
            "x",
        ])
        .unwrap();
        let Command::Grant(args) = cli.command else {
            panic!("not a grant")
        };
        assert_eq!(args.duration.as_deref(), Some("-5m"));
        let cli = parse(&[
            "grant", "--kind", "nonsense", "--for", "forever", "--reason", "",
        ])
        .unwrap();
        let Command::Grant(args) = cli.command else {
            panic!("not a grant")
        };
        assert_eq!(args.kind, "nonsense");
        assert_eq!(args.reason, "");
    }

    #[test]
    fn grant_needs_exactly_one_of_for_and_until() {
        assert!(parse(&["grant", "--kind", "service-key", "--reason", "x"]).is_err());
        assert!(
            parse(&[
                "grant",
                "--kind",
                "service-key",
                "--for",
                "1h",
                "--until",
                "2026-03-01T13:00:00Z",
                "--reason",
                "x"
            ])
            .is_err()
        );
        let cli = parse(&[
            "grant",
            "--kind",
            "service-key",
            "--service-account",
            "ci",
            "--until",
            "2026-03-01T13:00:00Z",
            "--start",
            "2026-03-01T12:30:00Z",
            "--reason",
            "deploy",
        ])
        .unwrap();
        let Command::Grant(args) = cli.command else {
            panic!("not a grant")
        };
        let body = serde_json::to_value(submission(&args).unwrap()).unwrap();
        assert_eq!(body["expires_at"], "2026-03-01T13:00:00Z");
        assert_eq!(body["starts_at"], "2026-03-01T12:30:00Z");
        assert_eq!(body["duration"], Value::Null);
        assert_eq!(body["service_account"], "ci");
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = parse(&[
            "-o",
            "json",
            "--url",
            "http://h:1",
            "list",
            "--state",
            "active",
        ])
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.url, "http://h:1");
        let cli = parse(&["list", "-o", "csv", "--token", "t"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Csv);
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(parse(&["list", "-o", "yaml"]).is_err());
    }

    #[test]
    fn server_side_commands_parse() {
        let cli = parse(&[
            "token", "create", "--name", "ci", "--role", "auditor", "--config", "l.toml",
        ])
        .unwrap();
        let Command::Token(TokenCmd::Create {
            role,
            name,
            config,
            identity,
            ttl,
        }) = cli.command
        else {
            panic!("not token create")
        };
        assert_eq!((role.as_str(), name.as_str()), ("auditor", "ci"));
        assert_eq!(identity, None);
        assert_eq!(ttl, None);
        let cli = parse(&[
            "token",
            "create",
            "--name",
            "a",
            "--role",
            "operator",
            "--identity",
            "A@x.io",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Token(TokenCmd::Create { identity: Some(i), .. }) if i == "A@x.io")
        );
        let cli = parse(&[
            "request",
            "prod",
            "--for",
            "2h",
            "--reason",
            "INC-1",
            "--break-glass",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Request(a) if a.list == "prod" && a.duration.as_deref() == Some("2h") && a.break_glass)
        );
        let cli = parse(&["review", "prod", "--keep", "a@x,b@x", "--remove", "c@x"]).unwrap();
        assert!(
            matches!(cli.command, Command::Review(a) if a.keep == ["a@x", "b@x"] && a.remove == ["c@x"])
        );
        assert!(matches!(
            parse(&["extend", "01J", "--by", "30m", "--reason", "r"])
                .unwrap()
                .command,
            Command::Extend(_)
        ));
        assert_eq!(config, Some(PathBuf::from("l.toml")));
        assert!(
            parse(&[
                "token", "create", "--name", "ci", "--role", "root", "--config", "l.toml"
            ])
            .is_err()
        );
        assert!(matches!(
            parse(&["config", "check", "l.toml"]).unwrap().command,
            Command::Config(ConfigCmd::Check { .. })
        ));
        assert!(matches!(
            parse(&["config", "example"]).unwrap().command,
            Command::Config(ConfigCmd::Example)
        ));
        assert!(matches!(
            parse(&["serve", "--config", "l.toml"]).unwrap().command,
            Command::Serve(_)
        ));
        assert!(matches!(
            parse(&["doctor", "--config", "l.toml"]).unwrap().command,
            Command::Doctor(_)
        ));
        assert!(matches!(
            parse(&["demo"]).unwrap().command,
            Command::Demo(_)
        ));
        assert!(matches!(
            parse(&["audit", "verify"]).unwrap().command,
            Command::Audit(AuditCmd::Verify(_))
        ));
    }

    #[tokio::test]
    async fn server_side_commands_are_not_run_as_clients() {
        let cli = parse(&["demo"]).unwrap();
        assert!(run_client(cli.command, &cli.global).await.is_err());
    }

    #[test]
    fn times_are_rfc3339_or_ago() {
        assert_eq!(
            parse_time_spec("2026-03-01T10:00:00+01:00").unwrap(),
            TimeSpec::At(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).single().unwrap())
        );
        let two_hours = parse_time_spec("2h").unwrap();
        assert_eq!(two_hours, TimeSpec::Ago(Duration::from_secs(7200)));
        assert_eq!(
            two_hours.resolve(now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).single().unwrap()
        );
        let odd_now = now() + chrono::Duration::milliseconds(250);
        assert_eq!(
            two_hours.resolve(odd_now).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).single().unwrap()
        );
        assert!(
            parse_time_spec("yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse(&["history", "--since", "nope"]).is_err());
    }

    #[test]
    fn history_query_resolves_ago_times() {
        let cli = parse(&[
            "history",
            "--since",
            "2h",
            "--until",
            "2026-03-01T11:30:00Z",
            "--user",
            "a@example.com",
        ])
        .unwrap();
        let Command::History(args) = cli.command else {
            panic!("not history")
        };
        let query = history_query(&args, now()).unwrap();
        let get = |k: &str| {
            query
                .iter()
                .find(|(name, _)| *name == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("since").as_deref(), Some("2026-03-01T10:00:00Z"));
        assert_eq!(get("until").as_deref(), Some("2026-03-01T11:30:00Z"));
        assert_eq!(get("user").as_deref(), Some("a@example.com"));
        assert_eq!(get("grant"), None);
    }

    #[test]
    fn endpoints_keep_prefixes_encode_ids_and_skip_empty_queries() {
        let base = parse_base_url("http://127.0.0.1:7420").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "grants"], &[]).unwrap().as_str(),
            "http://127.0.0.1:7420/v1/grants"
        );
        let proxied = parse_base_url("https://ops.example.com/lapse/").unwrap();
        assert_eq!(
            endpoint(&proxied, &["v1", "grants", "01J/../x", "revoke"], &[])
                .unwrap()
                .as_str(),
            "https://ops.example.com/lapse/v1/grants/01J%2F..%2Fx/revoke"
        );
        let url = endpoint(
            &base,
            &["v1", "grants"],
            &[
                ("state", Some("active".to_owned())),
                ("user", None),
                ("resource", Some("prod db&x".to_owned())),
            ],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7420/v1/grants?state=active&resource=prod+db%26x"
        );
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        assert!(matches!(
            parse_base_url("127.0.0.1:7420"),
            Err(Failure::Usage { .. })
        ));
        assert!(matches!(
            parse_base_url("ftp://h"),
            Err(Failure::Usage { .. })
        ));
        assert!(matches!(
            parse_base_url("not a url"),
            Err(Failure::Usage { .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_named_with_the_fix() {
        // Bind then drop a listener so that the port is very likely closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let global = GlobalArgs {
            url: format!("http://127.0.0.1:{port}"),
            token: None,
            output: OutputFormat::Table,
            wide: false,
            utc: false,
        };
        let api = ApiClient::new(&global.url, global.token.clone()).unwrap();
        let url = api.url(&["v1", "grants"], &[]).unwrap();
        let Err(Failure::Unreachable { source }) = api.send(api.http.get(url)).await else {
            panic!("expected an unreachable daemon")
        };
        let message = unreachable_message(&global.url, &source);
        assert!(
            message.contains(&format!(
                "could not reach the lapse API at http://127.0.0.1:{port}"
            )),
            "{message}"
        );
        assert!(
            message.contains("lapse serve") && message.contains("--url"),
            "{message}"
        );
    }
}

//! How the CLI shows what the lapse API answers: tables for people, JSON for scripts, CSV for auditors.

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

pub mod exit;
pub mod fit;
pub mod jit;
pub mod story;

use fit::Grid;
pub use fit::shorten;

/// The output formats `-o/--output` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// A compact table for people.
    #[default]
    Table,
    /// The server's JSON, pretty-printed, for scripts.
    Json,
    /// A header row and one row per record, for auditors' spreadsheets.
    Csv,
}

/// How to show an answer: the format, and for tables the terminal's width (`None`: every cell
/// whole, as with `--wide` or when the output is not a terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub format: OutputFormat,
    pub width: Option<usize>,
}

impl From<OutputFormat> for Style {
    fn from(format: OutputFormat) -> Style {
        Style {
            format,
            width: None,
        }
    }
}

pub use lapse_requests::wire::{
    ErrorBody, GrantDetail, GrantList, GrantView, HistoryList, HistoryView, VerifyReport,
};

/// Subjects listed by name in a list row before the rest are counted, so a row stays one line.
const NAMES_IN_LIST: usize = 3;

/// Renders `GET /v1/grants` in `format`.
pub fn render_grant_list(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let list: GrantList = parse(raw, "grant list")?;
    match format {
        OutputFormat::Csv => grants_csv(&list.grants),
        _ => Ok(grants_table(&list.grants, now, width)),
    }
}

/// Renders `GET /v1/grants/{id}` in `format`.
pub fn render_grant_detail(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let detail: GrantDetail = parse(raw, "grant")?;
    match format {
        OutputFormat::Csv => grant_detail_csv(&detail.grant, &detail.history),
        _ => Ok(grant_detail_table(
            &detail.grant,
            &detail.history,
            now,
            width,
        )),
    }
}

/// Renders a single GrantView (the answer to a submission or a revocation) in `format`.
///
/// A service key's token is not part of the table or the CSV: the caller prints it on a line of
/// its own (see [`token_line`]) so that it cannot be mistaken for, or lost in, other output.
pub fn render_grant(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let grant: GrantView = parse(raw, "grant")?;
    match format {
        OutputFormat::Csv => grants_csv(std::slice::from_ref(&grant)),
        _ => Ok(grant_detail_table(&grant, &[], now, width)),
    }
}

/// Renders `GET /v1/history` in `format`.
pub fn render_history(style: impl Into<Style>, raw: &Value) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let list: HistoryList = parse(raw, "history")?;
    match format {
        OutputFormat::Csv => history_csv(&list.history),
        _ => Ok(history_table(&list.history, true, width)),
    }
}

/// Renders `GET /v1/audit/verify` in `format`.
pub fn render_verify(style: impl Into<Style>, raw: &Value) -> anyhow::Result<String> {
    let Style { format, .. } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let verify: VerifyReport = parse(raw, "audit verification")?;
    match format {
        OutputFormat::Csv => verify_csv(&verify),
        _ => Ok(verify_text(&verify)),
    }
}

/// The line that hands over a service key's token: labelled, alone, and said to be shown once,
/// because lapse never stores it and cannot show it again.
pub fn token_line(token: &str) -> String {
    format!("service key token (shown once, lapse keeps no copy): {token}")
}

/// The server's JSON, pretty-printed.
pub fn pretty_json(raw: &Value) -> anyhow::Result<String> {
    serde_json::to_string_pretty(raw).context("could not format the answer as JSON")
}

fn parse<T: serde::de::DeserializeOwned>(raw: &Value, what: &str) -> anyhow::Result<T> {
    T::deserialize(raw).with_context(|| {
        format!("the server's {what} is not in the shape this lapse understands (is the daemon a different version?)")
    })
}

/// A list of grants: one line each, newest first as the server sent them.
pub fn grants_table(grants: &[GrantView], now: DateTime<Utc>, width: Option<usize>) -> String {
    if grants.is_empty() {
        return "no grants".to_owned();
    }
    // A terminal gets the expiry as "in 1h59m" (the time is in `lapse show`) and goes without
    // KIND when narrow; whole output (`--wide`, a pipe) has both.
    let mut table =
        Grid::new(&["ID", "KIND", "STATE", "WHO", "WHAT", "EXPIRES"], &[3, 4]).optional(&[1]);
    for g in grants {
        let expires = match width {
            Some(_) => relative(g.expires_at, now),
            None => time_with_relative(g.expires_at, now),
        };
        table.row(vec![
            g.id.clone(),
            g.kind.clone(),
            state_cell(g),
            who(g),
            what(g),
            expires,
        ]);
    }
    table.render(width)
}

/// One grant as a two-column table, then its history if there is any.
pub fn grant_detail_table(
    grant: &GrantView,
    history: &[HistoryView],
    now: DateTime<Utc>,
    width: Option<usize>,
) -> String {
    let mut table = Grid::fields();
    let mut field = |name: &str, value: String| {
        table.row(vec![name.to_owned(), value]);
    };
    field("id", grant.id.clone());
    field("kind", grant.kind.clone());
    field("state", state_cell(grant));
    field("requester", grant.requester.clone());
    field("reason", grant.reason.clone());
    if !grant.users.is_empty() {
        field("users", grant.users.join(", "));
    }
    if !grant.resources.is_empty() {
        field("resources", grant.resources.join(", "));
    }
    if let Some(group) = &grant.group {
        field("group", group.clone());
    }
    if let Some(sa) = &grant.service_account {
        field("service account", sa.clone());
    }
    field("created", time_with_relative(grant.created_at, now));
    if let Some(starts_at) = grant.starts_at {
        field("starts", time_with_relative(starts_at, now));
    }
    field("expires", time_with_relative(grant.expires_at, now));
    if let Some(revoked_at) = grant.revoked_at {
        field("revoked", time_with_relative(revoked_at, now));
    }
    if let Some(why) = &grant.revoke_reason {
        field("revoke reason", why.clone());
    }
    // Attempts only matter while something is being retried or has failed; a clean grant
    // would just show noise here.
    if grant.attempts > 0 || grant.last_error.is_some() {
        field("attempts", grant.attempts.to_string());
    }
    if let Some(next) = grant.next_attempt_at {
        field("next attempt", time_with_relative(next, now));
    }
    if let Some(err) = &grant.last_error {
        field("last error", err.clone());
    }
    let mut out = table.render(width);
    if !history.is_empty() {
        out.push_str("\n\nhistory\n");
        out.push_str(&history_table(history, false, width));
    }
    out
}

/// History rows, oldest first as the server sent them. `with_grant` adds the GRANT column, which
/// is redundant when the rows all belong to the grant being shown.
pub fn history_table(rows: &[HistoryView], with_grant: bool, width: Option<usize>) -> String {
    if rows.is_empty() {
        return "no history".to_owned();
    }
    let mut header = vec!["AT"];
    if with_grant {
        header.push("GRANT");
    }
    header.extend(["ACTOR", "EVENT", "DETAIL"]);
    // DETAIL takes what the terminal has left; the full detail is in `-o json` and `-o csv`.
    // A narrow terminal goes without GRANT (`--grant ID` or `lapse show ID` have it).
    let actor = header.len() - 3;
    let mut table = Grid::new(&header, &[header.len() - 1, actor]);
    if with_grant {
        table = table.optional(&[1]);
    }
    for row in rows {
        let mut cells = vec![rfc3339(row.at)];
        if with_grant {
            // A remote change names the grants it was made for.
            let grants = if row.grants.is_empty() {
                row.grant_id.iter().cloned().collect()
            } else {
                row.grants.clone()
            };
            cells.push(if grants.is_empty() {
                "-".to_owned()
            } else {
                grants.join(",")
            });
        }
        cells.push(row.actor.clone());
        cells.push(row.event.clone());
        cells.push(story::story(row));
        table.row(cells);
    }
    table.render(width)
}

/// The verdict of `lapse audit verify` in words.
pub fn verify_text(v: &VerifyReport) -> String {
    match (&v.first_broken, v.ok) {
        (Some(broken), _) => format!(
            "history chain BROKEN at row {}: {} ({} rows checked)",
            broken.seq, broken.reason, v.rows_checked
        ),
        (None, true) => format!("history chain intact: {} rows checked", v.rows_checked),
        // The server said "not ok" without naming a row; say so rather than invent one.
        (None, false) => format!(
            "history chain BROKEN (the server named no row; {} rows checked)",
            v.rows_checked
        ),
    }
}

const GRANT_CSV_HEADER: [&str; 17] = [
    "id",
    "kind",
    "state",
    "requester",
    "reason",
    "users",
    "resources",
    "group",
    "service_account",
    "created_at",
    "starts_at",
    "expires_at",
    "revoked_at",
    "revoke_reason",
    "attempts",
    "next_attempt_at",
    "last_error",
];

const HISTORY_CSV_HEADER: [&str; 9] = [
    "seq", "at", "grant_id", "actor", "event", "detail", "hash", "grants", "text",
];

/// Grants as CSV. Users and resources are JSON arrays in one cell each, because names may hold
/// any separator one could pick and an auditor must be able to split them without guessing.
pub fn grants_csv(grants: &[GrantView]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(&mut w, GRANT_CSV_HEADER)?;
    for g in grants {
        write_row(
            &mut w,
            [
                g.id.clone(),
                g.kind.clone(),
                g.state.clone(),
                g.requester.clone(),
                g.reason.clone(),
                Value::from(g.users.clone()).to_string(),
                Value::from(g.resources.clone()).to_string(),
                g.group.clone().unwrap_or_default(),
                g.service_account.clone().unwrap_or_default(),
                rfc3339_exact(g.created_at),
                g.starts_at.map(rfc3339_exact).unwrap_or_default(),
                rfc3339_exact(g.expires_at),
                g.revoked_at.map(rfc3339_exact).unwrap_or_default(),
                g.revoke_reason.clone().unwrap_or_default(),
                g.attempts.to_string(),
                g.next_attempt_at.map(rfc3339_exact).unwrap_or_default(),
                g.last_error.clone().unwrap_or_default(),
            ],
        )?;
    }
    finish_csv(w)
}

/// History rows as CSV, the detail as compact JSON in one column, the hash included so that an
/// export can be checked against the chain later.
pub fn history_csv(rows: &[HistoryView]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(&mut w, HISTORY_CSV_HEADER)?;
    for row in rows {
        write_row(
            &mut w,
            [
                row.seq.to_string(),
                rfc3339_exact(row.at),
                row.grant_id.clone().unwrap_or_default(),
                row.actor.clone(),
                row.event.clone(),
                detail_json(&row.detail),
                row.hash.clone(),
                serde_json::to_string(&row.grants)?,
                story::story(row),
            ],
        )?;
    }
    finish_csv(w)
}

/// `lapse show -o csv`: the grant's row, an empty line, then its history rows. Two tables with
/// different columns cannot share one header, and the blank line is where spreadsheet imports and
/// `awk` scripts alike can split them.
pub fn grant_detail_csv(grant: &GrantView, history: &[HistoryView]) -> anyhow::Result<String> {
    let mut out = grants_csv(std::slice::from_ref(grant))?;
    out.push('\n');
    out.push_str(&history_csv(history)?);
    Ok(out)
}

/// The verdict of `lapse audit verify` as one CSV row.
pub fn verify_csv(v: &VerifyReport) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(
        &mut w,
        [
            "rows_checked",
            "ok",
            "first_broken_seq",
            "first_broken_reason",
        ],
    )?;
    write_row(
        &mut w,
        [
            v.rows_checked.to_string(),
            v.ok.to_string(),
            v.first_broken
                .as_ref()
                .map(|b| b.seq.to_string())
                .unwrap_or_default(),
            v.first_broken
                .as_ref()
                .map(|b| b.reason.clone())
                .unwrap_or_default(),
        ],
    )?;
    finish_csv(w)
}

/// One CSV row, each cell escaped so that a spreadsheet never reads it as a formula (OWASP).
pub(crate) fn write_row<I, T>(w: &mut csv::Writer<Vec<u8>>, cells: I) -> csv::Result<()>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    w.write_record(
        cells
            .into_iter()
            .map(|c| lapse_core::text::csv_cell(c.as_ref()).into_owned()),
    )
}

fn finish_csv(w: csv::Writer<Vec<u8>>) -> anyhow::Result<String> {
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("could not finish the CSV: {}", e.error()))?;
    String::from_utf8(bytes).context("the CSV is not UTF-8")
}

/// The two lines an API error becomes on stderr: `error: <field>: <message>` and, when the server
/// (or the CLI) knows one, `  fix: <fix>`. `token_given` lets a 401 say what to do when the
/// caller simply forgot the token.
pub fn api_error_message(status: u16, body: &[u8], token_given: bool) -> String {
    let mut out = String::from("error: ");
    let fix = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            if let Some(field) = &error.field {
                out.push_str(field);
                out.push_str(": ");
            }
            out.push_str(&error.message);
            error.fix
        }
        Err(_) => {
            // Not lapse's error shape: likely a proxy in between. Show what came back, briefly.
            out.push_str(&format!("the server answered HTTP {status}"));
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if !text.is_empty() {
                out.push_str(": ");
                out.push_str(&shorten(text, 200));
            }
            None
        }
    };
    let fix = fix.or_else(|| {
        (status == 401 && !token_given).then(|| {
            "pass --token or set LAPSE_TOKEN (an admin makes one on the daemon host with `lapse token create`)"
                .to_owned()
        })
    });
    if let Some(fix) = fix {
        out.push_str("\n  fix: ");
        out.push_str(&fix);
    }
    out
}

/// "in 1h59m", "5m ago" or "now": how far `t` is from `now`, to the two largest units.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = t.signed_duration_since(now);
    let secs = delta.num_seconds();
    if secs == 0 {
        return "now".to_owned();
    }
    let span = human_span(secs.unsigned_abs());
    if secs > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The status line `--wait` shows on stderr while the daemon applies a grant in Twingate.
pub fn wait_status(elapsed: std::time::Duration) -> String {
    let secs = elapsed.as_secs();
    if secs == 0 {
        return "waiting for Twingate to apply the grant…".to_owned();
    }
    format!(
        "waiting for Twingate to apply the grant… {} so far",
        human_span(secs)
    )
}

fn human_span(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    // The two largest units, as people write durations ("1m59s", "2h30m", "2d3h"), and
    // truncating, not rounding: "in 1h59m" never claims more time than is left, and two units
    // keep "in 1m" from standing for anything up to two minutes.
    match (d, h, m, s) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, s) => format!("{m}m{s}s"),
        (0, h, 0, _) => format!("{h}h"),
        (0, h, m, _) => format!("{h}h{m}m"),
        (d, 0, _, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

fn time_with_relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", rfc3339(t), relative(t, now))
}

/// The zone people's times are shown in, in tables and text: `-o json` and `-o csv` are always
/// RFC 3339 in UTC, whatever is set here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC, written with `Z` (the library's default, and `--utc`).
    Utc,
    /// The local zone (`TZ` honoured, through chrono's `Local`): the CLI's default.
    Local,
}

/// The zone for this process, set once by the CLI from `--utc`.
static ZONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Shows people's times in `zone` from now on (the CLI calls it once, before printing).
pub fn set_zone(zone: Zone) {
    ZONE.store(zone == Zone::Local, std::sync::atomic::Ordering::Relaxed);
}

fn zone() -> Zone {
    if ZONE.load(std::sync::atomic::Ordering::Relaxed) {
        Zone::Local
    } else {
        Zone::Utc
    }
}

/// `t` for a person in `zone`: RFC 3339 to the second, with the zone's offset (`Z` for UTC).
pub fn time_in(t: DateTime<Utc>, zone: Zone) -> String {
    match zone {
        Zone::Utc => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Zone::Local => t
            .with_timezone(&chrono::Local)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// Whole seconds are enough for a person reading a table; in the zone set by [`set_zone`].
pub fn rfc3339(t: DateTime<Utc>) -> String {
    time_in(t, zone())
}

/// Exports keep whatever precision the server recorded.
fn rfc3339_exact(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn detail_json(detail: &Value) -> String {
    match detail {
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn state_cell(g: &GrantView) -> String {
    match &g.last_error {
        // A grant with a last error is being retried (a revocation forever); this marker is how an
        // operator scanning `lapse list` notices one that is stuck.
        Some(_) => {
            let plural = if g.attempts == 1 { "" } else { "s" };
            format!("{} FAILING ({} attempt{plural})", g.state, g.attempts)
        }
        None => g.state.clone(),
    }
}

/// Who receives the access: the users, else the service account, else the group that is given
/// access (group-access has no users).
fn who(g: &GrantView) -> String {
    if !g.users.is_empty() {
        return names(&g.users);
    }
    if let Some(sa) = &g.service_account {
        return format!("service account {sa}");
    }
    if let Some(group) = &g.group {
        return format!("group {group}");
    }
    "-".to_owned()
}

/// What the access is to: the group joined and the resources reached.
fn what(g: &GrantView) -> String {
    let mut parts = Vec::new();
    // When the group is already the WHO (group-access), repeating it here would mislead.
    if let Some(group) = &g.group
        && !g.users.is_empty()
    {
        parts.push(format!("group {group}"));
    }
    if !g.resources.is_empty() {
        parts.push(names(&g.resources));
    }
    if parts.is_empty() && g.kind == "service-key" {
        parts.push("a new key".to_owned());
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

fn names(all: &[String]) -> String {
    if all.len() <= NAMES_IN_LIST {
        return all.join(", ");
    }
    format!(
        "{}, +{} more",
        all[..NAMES_IN_LIST].join(", "),
        all.len() - NAMES_IN_LIST
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use lapse_requests::wire::BrokenRow;
    use serde_json::json;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).single().unwrap()
    }

    fn grant(id: &str, state: &str) -> GrantView {
        GrantView {
            id: id.to_owned(),
            kind: "group-membership".to_owned(),
            state: state.to_owned(),
            requester: "oncall-bot".to_owned(),
            reason: "INC-4211".to_owned(),
            users: vec!["alice@example.com".to_owned()],
            resources: vec![],
            group: Some("prod-db-admins".to_owned()),
            service_account: None,
            created_at: at(10, 0, 0),
            starts_at: Some(at(10, 0, 0)),
            expires_at: at(12, 0, 0),
            revoked_at: None,
            revoke_reason: None,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            token: None,
        }
    }

    fn history_row(seq: i64, detail: Value) -> HistoryView {
        HistoryView {
            seq,
            at: at(10, 0, 1),
            grant_id: Some("01JGRANT".to_owned()),
            actor: "alice-laptop".to_owned(),
            event: "created".to_owned(),
            detail,
            hash: "ab12".to_owned(),
            grants: vec!["01JGRANT".to_owned()],
            names: Default::default(),
        }
    }

    #[test]
    fn the_wait_status_says_what_it_waits_for_and_how_long() {
        use std::time::Duration as Std;
        assert_eq!(
            wait_status(Std::from_millis(300)),
            "waiting for Twingate to apply the grant…"
        );
        assert_eq!(
            wait_status(Std::from_secs(119)),
            "waiting for Twingate to apply the grant… 1m59s so far"
        );
    }

    #[test]
    fn utc_times_are_written_with_z_to_the_second() {
        let t = at(10, 0, 0) + chrono::Duration::milliseconds(250);
        assert_eq!(time_in(t, Zone::Utc), "2026-03-01T10:00:00Z");
    }

    #[test]
    fn relative_times_render_both_ways_to_two_units() {
        let now = at(10, 0, 0);
        assert_eq!(relative(at(11, 59, 30), now), "in 1h59m");
        assert_eq!(relative(at(10, 1, 59), now), "in 1m59s");
        assert_eq!(relative(at(9, 55, 0), now), "5m ago");
        assert_eq!(relative(at(10, 0, 0), now), "now");
        assert_eq!(relative(at(10, 0, 45), now), "in 45s");
        assert_eq!(relative(at(12, 0, 0), now), "in 2h");
        let later = Utc
            .with_ymd_and_hms(2026, 3, 3, 13, 30, 0)
            .single()
            .unwrap();
        assert_eq!(relative(later, now), "in 2d3h");
        assert_eq!(relative(now, later), "2d3h ago");
    }

    #[test]
    fn list_table_has_ids_states_and_relative_expiry() {
        let now = at(10, 0, 30);
        let out = grants_table(
            &[grant("01JAAA", "active"), grant("01JBBB", "expired")],
            now,
            None,
        );
        assert!(out.contains("01JAAA"), "{out}");
        assert!(out.contains("01JBBB"), "{out}");
        assert!(out.contains("active"), "{out}");
        assert!(out.contains("expired"), "{out}");
        assert!(out.contains("2026-03-01T12:00:00Z (in 1h59m)"), "{out}");
        assert!(out.contains("alice@example.com"), "{out}");
        assert!(out.contains("group prod-db-admins"), "{out}");
        let header = out.lines().next().unwrap();
        assert!(
            header.starts_with("ID "),
            "lines start at the first column: {header:?}"
        );
        for column in ["ID", "KIND", "STATE", "WHO", "WHAT", "EXPIRES"] {
            assert!(header.contains(column), "{header}");
        }
        assert!(
            out.lines().all(|l| l == l.trim_end()),
            "no trailing blanks: {out:?}"
        );
    }

    #[test]
    fn failing_grant_is_marked_with_its_attempts() {
        let mut g = grant("01JFAIL", "revoking");
        g.attempts = 7;
        g.last_error = Some("twingate: 503".to_owned());
        let out = grants_table(&[g.clone()], at(13, 0, 0), None);
        assert!(out.contains("revoking FAILING (7 attempts)"), "{out}");
        assert!(out.contains("1h ago"), "{out}");
        let detail = grant_detail_table(&g, &[], at(13, 0, 0), None);
        assert!(detail.contains("twingate: 503"), "{detail}");
    }

    #[test]
    fn who_and_what_follow_the_kind() {
        let mut ga = grant("01JGA", "active");
        ga.kind = "group-access".to_owned();
        ga.users.clear();
        ga.resources = vec!["prod-db".to_owned()];
        assert_eq!(who(&ga), "group prod-db-admins");
        assert_eq!(what(&ga), "prod-db");

        let mut sk = grant("01JSK", "active");
        sk.kind = "service-key".to_owned();
        sk.users.clear();
        sk.group = None;
        sk.service_account = Some("ci-deployer".to_owned());
        assert_eq!(who(&sk), "service account ci-deployer");
        assert_eq!(what(&sk), "a new key");

        let mut many = grant("01JM", "active");
        many.users = (1..=5).map(|i| format!("u{i}@example.com")).collect();
        assert_eq!(
            who(&many),
            "u1@example.com, u2@example.com, u3@example.com, +2 more"
        );
    }

    #[test]
    fn empty_list_says_so() {
        assert_eq!(grants_table(&[], at(10, 0, 0), None), "no grants");
        assert_eq!(history_table(&[], true, None), "no history");
    }

    #[test]
    fn detail_table_shows_fields_then_history() {
        let g = grant("01JSHOW", "active");
        let out = grant_detail_table(
            &g,
            &[history_row(1, json!({"ttl": "2h"}))],
            at(10, 0, 0),
            None,
        );
        assert!(out.contains("01JSHOW"), "{out}");
        assert!(out.contains("INC-4211"), "{out}");
        assert!(out.contains("2026-03-01T12:00:00Z (in 2h)"), "{out}");
        let (fields, history) = out.split_once("\n\nhistory\n").unwrap();
        assert!(
            !fields.contains("attempts"),
            "clean grant shows no attempts: {fields}"
        );
        assert!(
            history.lines().next().unwrap().contains("DETAIL"),
            "{history}"
        );
        assert!(!history.contains("GRANT"), "{history}");
        assert!(history.contains(r#"{"ttl":"2h"}"#), "{history}");
    }

    #[test]
    fn history_table_shortens_long_detail() {
        let long = "x".repeat(500);
        let rows = [history_row(1, json!({ "error": long }))];
        for width in [80, 200] {
            let out = history_table(&rows, true, Some(width));
            assert!(out.contains('…'), "{out}");
            assert_eq!(out.lines().count(), 2, "one line per row: {out}");
            assert!(out.lines().all(|l| l.chars().count() <= width), "{out}");
            assert!(out.contains("01JGRANT"), "{out}");
        }
        let wide = history_table(&rows, true, None);
        assert!(wide.contains(&long) && !wide.contains('…'), "{wide}");
    }

    #[test]
    fn grant_csv_has_header_and_quotes_commas() {
        let mut g = grant("01JCSV", "active");
        g.reason = "INC-1, db \"hot\"".to_owned();
        g.users.push("bob@example.com".to_owned());
        let out = grants_csv(&[g]).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next().unwrap(), GRANT_CSV_HEADER.join(","));
        let row = lines.next().unwrap();
        assert!(row.contains(r#""INC-1, db ""hot""""#), "{row}");
        assert!(
            row.contains(r#""[""alice@example.com"",""bob@example.com""]""#),
            "{row}"
        );
        assert!(lines.next().is_none());

        // And it reads back as the same fields.
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(record.len(), GRANT_CSV_HEADER.len());
        assert_eq!(&record[4], "INC-1, db \"hot\"");
        assert_eq!(&record[11], "2026-03-01T12:00:00Z");
    }

    #[test]
    fn history_csv_puts_detail_json_in_one_column() {
        let out = history_csv(&[history_row(3, json!({"users": ["a@x", "b@y"]}))]).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        assert_eq!(reader.headers().unwrap(), HISTORY_CSV_HEADER.as_slice());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "3");
        assert_eq!(&record[5], r#"{"users":["a@x","b@y"]}"#);
        assert_eq!(&record[6], "ab12");
    }

    #[test]
    fn show_csv_is_grant_then_blank_line_then_history() {
        let out =
            grant_detail_csv(&grant("01JS", "active"), &[history_row(1, Value::Null)]).unwrap();
        let sections: Vec<&str> = out.split("\n\n").collect();
        assert_eq!(sections.len(), 2, "{out}");
        assert!(sections[0].starts_with("id,kind,state"));
        assert!(sections[1].starts_with("seq,at,grant_id"));
    }

    #[test]
    fn render_parses_the_api_shapes() {
        let raw = json!({"grants": [{
            "id": "01JR", "kind": "service-key", "state": "active", "requester": "ops",
            "reason": "deploy", "users": [], "resources": [], "group": null,
            "service_account": "ci", "created_at": "2026-03-01T10:00:00Z",
            "starts_at": "2026-03-01T10:00:00Z", "expires_at": "2026-03-01T12:00:00.123Z",
            "revoked_at": null, "revoke_reason": null, "attempts": 0,
            "next_attempt_at": null, "last_error": null, "some_future_field": 1
        }]});
        let table = render_grant_list(OutputFormat::Table, &raw, at(10, 0, 0)).unwrap();
        assert!(
            table.contains("01JR") && table.contains("service account ci"),
            "{table}"
        );
        let csv = render_grant_list(OutputFormat::Csv, &raw, at(10, 0, 0)).unwrap();
        assert!(
            csv.contains("2026-03-01T12:00:00.123Z"),
            "exports keep precision: {csv}"
        );
        let json = render_grant_list(OutputFormat::Json, &raw, at(10, 0, 0)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), raw);
        assert!(render_grant_list(OutputFormat::Table, &json!({"nope": 1}), at(10, 0, 0)).is_err());
    }

    #[test]
    fn verify_names_the_first_broken_row() {
        let ok = VerifyReport {
            rows_checked: 12,
            ok: true,
            first_broken: None,
        };
        assert_eq!(verify_text(&ok), "history chain intact: 12 rows checked");
        let broken = VerifyReport {
            rows_checked: 12,
            ok: false,
            first_broken: Some(BrokenRow {
                seq: 7,
                reason: "hash mismatch".to_owned(),
            }),
        };
        assert!(verify_text(&broken).contains("BROKEN at row 7: hash mismatch"));
        let csv = verify_csv(&broken).unwrap();
        assert_eq!(
            csv,
            "rows_checked,ok,first_broken_seq,first_broken_reason\n12,false,7,hash mismatch\n"
        );
    }

    #[test]
    fn api_errors_name_field_and_fix() {
        let body = br#"{"error":{"code":"invalid","field":"duration","message":"must be positive","fix":"use e.g. --for 2h"}}"#;
        assert_eq!(
            api_error_message(400, body, true),
            "error: duration: must be positive\n  fix: use e.g. --for 2h"
        );
        let no_field = br#"{"error":{"code":"forbidden","field":null,"message":"auditors read only","fix":null}}"#;
        assert_eq!(
            api_error_message(403, no_field, true),
            "error: auditors read only"
        );
        let unauth = br#"{"error":{"code":"unauthorized","message":"missing bearer token"}}"#;
        assert!(
            api_error_message(401, unauth, false).contains("fix: pass --token or set LAPSE_TOKEN")
        );
        assert_eq!(
            api_error_message(502, b"<html>Bad Gateway</html>", true),
            "error: the server answered HTTP 502: <html>Bad Gateway</html>"
        );
    }

    #[test]
    fn token_line_is_labelled() {
        let line = token_line("tok_abc");
        assert!(line.ends_with(": tok_abc"));
        assert!(line.contains("shown once"));
        assert!(!line.contains('\n'));
    }
}

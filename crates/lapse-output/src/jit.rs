//! How the CLI shows the just-in-time request flow: requests, access lists and reviews, in the
//! same three formats as grants.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    Grid, OutputFormat, Style, finish_csv, human_span, names, parse, pretty_json, rfc3339_exact,
    time_with_relative, write_row,
};

pub use lapse_requests::wire::{
    AccessListView, ListTargetView, ListsReply, RequestList, RequestView, ReviewList,
    ReviewRecorded, ReviewView,
};

/// Renders `GET /v1/requests` in `format`.
pub fn render_request_list(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let list: RequestList = parse(raw, "request list")?;
    match format {
        OutputFormat::Csv => requests_csv(&list.requests),
        _ => Ok(requests_table(&list.requests, now, width)),
    }
}

/// Renders one request (`lapse request`, `approve`, `deny`, `cancel`, `extend`) in `format`.
pub fn render_request(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let request: RequestView = parse(raw, "request")?;
    match format {
        OutputFormat::Csv => requests_csv(std::slice::from_ref(&request)),
        _ => Ok(request_detail_table(&request, now, width)),
    }
}

/// Renders `GET /v1/lists` in `format`.
pub fn render_lists(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let lists: ListsReply = parse(raw, "access lists")?;
    match format {
        OutputFormat::Csv => lists_csv(&lists),
        _ => Ok(lists_table(&lists, now, width)),
    }
}

/// Renders `GET /v1/reviews` in `format`.
pub fn render_reviews(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, width } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let reviews: ReviewList = parse(raw, "reviews")?;
    match format {
        OutputFormat::Csv => reviews_csv(&reviews.reviews),
        _ => Ok(reviews_table(&reviews.reviews, now, width)),
    }
}

/// Renders the answer to a recorded review in `format`.
pub fn render_review_recorded(
    style: impl Into<Style>,
    raw: &Value,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Style { format, .. } = style.into();
    if format == OutputFormat::Json {
        return pretty_json(raw);
    }
    let r: ReviewRecorded = parse(raw, "recorded review")?;
    match format {
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            write_row(&mut w, ["list", "next_due"])?;
            write_row(&mut w, [r.list.clone(), rfc3339_exact(r.next_due)])?;
            finish_csv(w)
        }
        _ => Ok(format!(
            "review of list {} recorded; next due {}",
            r.list,
            time_with_relative(r.next_due, now)
        )),
    }
}

/// The state with what makes a request unusual, so a break-glass or an extension stands out in
/// a list of ordinary requests.
fn request_state(r: &RequestView) -> String {
    let mut s = r.state.clone();
    if r.break_glass {
        s.push_str(" BREAK-GLASS");
    }
    if r.extends_grant.is_some() {
        s.push_str(" (extension)");
    }
    s
}

fn approvals_cell(r: &RequestView) -> String {
    format!("{}/{}", r.approvals.len(), r.approvals_needed)
}

/// Requests, newest first as the server sent them.
pub fn requests_table(
    requests: &[RequestView],
    now: DateTime<Utc>,
    width: Option<usize>,
) -> String {
    if requests.is_empty() {
        return "no requests".to_owned();
    }
    // The reason takes what the terminal has left; it is whole in `--wide`, JSON and CSV.
    let mut table = Grid::new(
        &[
            "ID",
            "LIST",
            "STATE",
            "REQUESTER",
            "FOR",
            "APPROVALS",
            "GRANT",
            "CREATED",
            "REASON",
        ],
        &[8, 3],
    );
    for r in requests {
        table.row(vec![
            r.id.clone(),
            r.list.clone(),
            request_state(r),
            r.requester.clone(),
            human_span(r.duration_secs.unsigned_abs()),
            approvals_cell(r),
            r.grant_id.clone().unwrap_or_else(|| "-".to_owned()),
            super::relative(r.created_at, now),
            r.reason.clone(),
        ]);
    }
    table.render(width)
}

/// One request as a two-column table.
pub fn request_detail_table(r: &RequestView, now: DateTime<Utc>, width: Option<usize>) -> String {
    let mut table = Grid::fields();
    let mut field = |name: &str, value: String| {
        table.row(vec![name.to_owned(), value]);
    };
    field("id", r.id.clone());
    field("list", r.list.clone());
    field("state", request_state(r));
    field("requester", r.requester.clone());
    field("reason", r.reason.clone());
    let how_long = if r.extends_grant.is_some() {
        "by"
    } else {
        "for"
    };
    field(how_long, human_span(r.duration_secs.unsigned_abs()));
    if let Some(g) = &r.extends_grant {
        field("extends", g.clone());
    } else if let Some(g) = &r.grant_id {
        field("grant", g.clone());
    }
    field("created", time_with_relative(r.created_at, now));
    if r.state == "pending" {
        field("lapses", time_with_relative(r.wait_until, now));
    }
    field("approvals", approvals_cell(r));
    for a in &r.approvals {
        let why = if a.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", a.reason)
        };
        field(
            "  approved by",
            format!("{} ({}){why}", a.approver, super::rfc3339(a.at)),
        );
    }
    if let Some(at) = r.decided_at {
        field("decided", time_with_relative(at, now));
    }
    if let Some(by) = &r.decided_by {
        field("decided by", by.clone());
    }
    if let Some(why) = r.decision_reason.as_deref().filter(|w| !w.is_empty()) {
        field("decision reason", why.to_owned());
    }
    table.render(width)
}

const REQUEST_CSV_HEADER: [&str; 17] = [
    "id",
    "list",
    "state",
    "requester",
    "token_name",
    "reason",
    "duration_secs",
    "break_glass",
    "extends_grant",
    "approvals_needed",
    "approvers",
    "created_at",
    "wait_until",
    "decided_at",
    "decided_by",
    "decision_reason",
    "grant_id",
];

/// Requests as CSV; the approvers are a JSON array in one cell, as users are for grants.
pub fn requests_csv(requests: &[RequestView]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(&mut w, REQUEST_CSV_HEADER)?;
    for r in requests {
        let approvers: Vec<&str> = r.approvals.iter().map(|a| a.approver.as_str()).collect();
        write_row(
            &mut w,
            [
                r.id.clone(),
                r.list.clone(),
                r.state.clone(),
                r.requester.clone(),
                r.token_name.clone(),
                r.reason.clone(),
                r.duration_secs.to_string(),
                r.break_glass.to_string(),
                r.extends_grant.clone().unwrap_or_default(),
                r.approvals_needed.to_string(),
                serde_json::to_string(&approvers)?,
                rfc3339_exact(r.created_at),
                rfc3339_exact(r.wait_until),
                r.decided_at.map(rfc3339_exact).unwrap_or_default(),
                r.decided_by.clone().unwrap_or_default(),
                r.decision_reason.clone().unwrap_or_default(),
                r.grant_id.clone().unwrap_or_default(),
            ],
        )?;
    }
    finish_csv(w)
}

/// The seconds of a duration the daemon sends as text (`4h`, `1h 30m`) or plain seconds.
fn duration_secs(v: &str) -> Option<i64> {
    humantime::parse_duration(v)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

fn target(t: &ListTargetView) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &t.group {
        parts.push(format!("group {g}"));
    }
    if let Some(sa) = &t.service_account {
        parts.push(format!("service account {sa}"));
    }
    if !t.resources.is_empty() {
        parts.push(names(&t.resources));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

/// What sets a list apart from one needing owner approval: automatic, break-glass, suspended.
fn list_flags(l: &AccessListView) -> String {
    let mut flags = Vec::new();
    if l.suspended {
        flags.push("SUSPENDED");
    }
    if l.auto_approve {
        flags.push("auto-approve");
    }
    if l.break_glass {
        flags.push("break-glass");
    }
    if flags.is_empty() {
        "-".to_owned()
    } else {
        flags.join(", ")
    }
}

/// The loaded lists, then any refused file with its line and problem.
pub fn lists_table(v: &ListsReply, now: DateTime<Utc>, width: Option<usize>) -> String {
    let mut out = if v.lists.is_empty() {
        "no access lists".to_owned()
    } else {
        let mut table = Grid::new(
            &[
                "NAME",
                "KIND",
                "TARGET",
                "OWNERS",
                "MEMBERS",
                "MAX",
                "APPROVALS",
                "FLAGS",
                "REVIEW DUE",
            ],
            &[2, 3, 4],
        );
        for l in &v.lists {
            table.row(vec![
                l.name.clone(),
                l.target.kind.clone(),
                target(&l.target),
                names(&l.owners),
                names(&l.members),
                duration_secs(&l.max_duration)
                    .map_or_else(|| "-".to_owned(), |s| human_span(s.unsigned_abs())),
                l.approvals.to_string(),
                list_flags(l),
                l.review_due
                    .map_or_else(|| "-".to_owned(), |d| time_with_relative(d, now)),
            ]);
        }
        table.render(width)
    };
    let removed: Vec<&AccessListView> = v
        .lists
        .iter()
        .filter(|l| !l.removed_by_review.is_empty())
        .collect();
    if !removed.is_empty() {
        // The file is the source of truth for members; a review's removals are recorded and
        // enforced (they may no longer request) until the file is changed to match.
        out.push_str(
            "\n\nremoved by review: they may not request, though the list file still names them \
             (the file is the source of truth: remove them there)\n",
        );
        for l in removed {
            out.push_str(&format!("{}: {}\n", l.name, l.removed_by_review.join(", ")));
        }
        out.truncate(out.trim_end().len());
    }
    if !v.refused_files.is_empty() {
        // Said after the table, where it is the last thing read: these files' changes are not
        // in force until they are fixed.
        out.push_str("\n\nrefused list files (their previous lists stay in force)\n");
        for f in &v.refused_files {
            let line = f.line.map(|l| format!(" line {l}")).unwrap_or_default();
            out.push_str(&format!("{}{line}: {}\n", f.file, f.problem));
        }
        out.truncate(out.trim_end().len());
    }
    out
}

const LIST_CSV_HEADER: [&str; 14] = [
    "name",
    "description",
    "kind",
    "group",
    "resources",
    "service_account",
    "owners",
    "members",
    "max_duration_secs",
    "approvals",
    "auto_approve",
    "break_glass",
    "suspended",
    "review_due",
];

/// `lapse lists -o csv`: the lists, an empty line, then the refused files, as `lapse show -o csv`
/// separates a grant from its history.
pub fn lists_csv(v: &ListsReply) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(&mut w, LIST_CSV_HEADER)?;
    for l in &v.lists {
        write_row(
            &mut w,
            [
                l.name.clone(),
                l.description.clone(),
                l.target.kind.clone(),
                l.target.group.clone().unwrap_or_default(),
                serde_json::to_string(&l.target.resources)?,
                l.target.service_account.clone().unwrap_or_default(),
                serde_json::to_string(&l.owners)?,
                serde_json::to_string(&l.members)?,
                duration_secs(&l.max_duration)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                l.approvals.to_string(),
                l.auto_approve.to_string(),
                l.break_glass.to_string(),
                l.suspended.to_string(),
                l.review_due.map(rfc3339_exact).unwrap_or_default(),
            ],
        )?;
    }
    let mut out = finish_csv(w)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(&mut w, ["file", "line", "problem"])?;
    for f in &v.refused_files {
        write_row(
            &mut w,
            [
                f.file.clone(),
                f.line.map(|l| l.to_string()).unwrap_or_default(),
                f.problem.clone(),
            ],
        )?;
    }
    out.push('\n');
    out.push_str(&finish_csv(w)?);
    Ok(out)
}

fn review_state(r: &ReviewView) -> &'static str {
    match (r.suspended, r.overdue) {
        (true, _) => "SUSPENDED",
        (false, true) => "overdue",
        (false, false) => "upcoming",
    }
}

/// Reviews, one line per list.
pub fn reviews_table(reviews: &[ReviewView], now: DateTime<Utc>, width: Option<usize>) -> String {
    if reviews.is_empty() {
        return "no reviews due".to_owned();
    }
    let mut table = Grid::new(&["LIST", "STATE", "DUE", "OWNERS", "MEMBERS"], &[3, 4]);
    for r in reviews {
        table.row(vec![
            r.list.clone(),
            review_state(r).to_owned(),
            time_with_relative(r.due, now),
            names(&r.owners),
            names(&r.members),
        ]);
    }
    table.render(width)
}

/// Reviews as CSV, owners and members as JSON arrays.
pub fn reviews_csv(reviews: &[ReviewView]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_row(
        &mut w,
        ["list", "due", "overdue", "suspended", "owners", "members"],
    )?;
    for r in reviews {
        write_row(
            &mut w,
            [
                r.list.clone(),
                rfc3339_exact(r.due),
                r.overdue.to_string(),
                r.suspended.to_string(),
                serde_json::to_string(&r.owners)?,
                serde_json::to_string(&r.members)?,
            ],
        )?;
    }
    finish_csv(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).single().unwrap()
    }

    /// A request exactly as the daemon answers it.
    fn request_json(id: &str, state: &str) -> Value {
        json!({
            "id": id, "list": "oncall", "requester": "alice@example.com", "token_name": "alice",
            "reason": "INC-7, db \"hot\"", "duration_secs": 7200, "break_glass": false,
            "extends_grant": null, "state": state, "approvals_needed": 2,
            "created_at": "2026-03-01T10:00:00Z", "wait_until": "2026-03-01T11:00:00.5Z",
            "decided_at": null, "decided_by": null, "decision_reason": null,
            "grant_id": null, "warned_expiry": null,
            "approvals": [{"approver": "bob@example.com", "token_name": "bob",
                           "at": "2026-03-01T10:05:00Z", "reason": "ok"}]
        })
    }

    #[test]
    fn request_list_table_has_ids_states_and_approvals() {
        let mut approved = request_json("01JREQB", "approved");
        approved["grant_id"] = json!("01JGRANT");
        approved["break_glass"] = json!(true);
        let raw = json!({ "requests": [request_json("01JREQA", "pending"), approved] });
        let out = render_request_list(OutputFormat::Table, &raw, at(10, 30, 0)).unwrap();
        let header = out.lines().next().unwrap();
        assert!(header.starts_with("ID "), "{header:?}");
        for column in ["LIST", "STATE", "REQUESTER", "FOR", "APPROVALS", "GRANT"] {
            assert!(header.contains(column), "{header}");
        }
        let a = out.lines().find(|l| l.starts_with("01JREQA")).unwrap();
        assert!(
            a.contains("pending") && a.contains("1/2") && a.contains("2h"),
            "{a}"
        );
        assert!(
            a.contains("alice@example.com") && a.contains("30m ago"),
            "{a}"
        );
        let b = out.lines().find(|l| l.starts_with("01JREQB")).unwrap();
        assert!(
            b.contains("approved BREAK-GLASS") && b.contains("01JGRANT"),
            "{b}"
        );
        assert!(out.lines().all(|l| l == l.trim_end()), "{out:?}");
        assert_eq!(
            render_request_list(OutputFormat::Table, &json!({"requests": []}), at(10, 0, 0))
                .unwrap(),
            "no requests"
        );
    }

    #[test]
    fn one_request_shows_its_approvals_and_when_it_lapses() {
        let out = render_request(
            OutputFormat::Table,
            &request_json("01JONE", "pending"),
            at(10, 30, 0),
        )
        .unwrap();
        assert!(out.starts_with("id "), "{out}");
        assert!(out.contains("01JONE"), "{out}");
        assert!(out.contains("pending"), "{out}");
        assert!(out.contains("2026-03-01T11:00:00Z (in 30m)"), "{out}");
        assert!(
            out.contains("bob@example.com (2026-03-01T10:05:00Z): ok"),
            "{out}"
        );

        let mut ext = request_json("01JEXT", "approved");
        ext["extends_grant"] = json!("01JGRANT");
        ext["duration_secs"] = json!(1800);
        let out = render_request(OutputFormat::Table, &ext, at(10, 30, 0)).unwrap();
        assert!(out.contains("approved (extension)"), "{out}");
        assert!(out.contains("extends") && out.contains("01JGRANT"), "{out}");
        assert!(
            !out.contains("lapses"),
            "only a pending request lapses: {out}"
        );
    }

    #[test]
    fn request_csv_has_header_and_quotes_the_reason() {
        let raw = json!({ "requests": [request_json("01JCSV", "pending")] });
        let out = render_request_list(OutputFormat::Csv, &raw, at(10, 0, 0)).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next().unwrap(), REQUEST_CSV_HEADER.join(","));
        let row = lines.next().unwrap();
        assert!(row.contains(r#""INC-7, db ""hot""""#), "{row}");
        assert!(lines.next().is_none());
        let mut reader = csv::Reader::from_reader(out.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(record.len(), REQUEST_CSV_HEADER.len());
        assert_eq!(&record[0], "01JCSV");
        assert_eq!(&record[2], "pending");
        assert_eq!(&record[5], "INC-7, db \"hot\"");
        assert_eq!(&record[10], r#"["bob@example.com"]"#);
        assert_eq!(
            &record[12], "2026-03-01T11:00:00.500Z",
            "exports keep precision"
        );
    }

    #[test]
    fn json_is_the_servers_answer_and_a_wrong_shape_is_an_error() {
        let raw = request_json("01JJ", "denied");
        let out = render_request(OutputFormat::Json, &raw, at(10, 0, 0)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), raw);
        assert!(out.contains('\n'), "pretty-printed");
        assert!(render_request(OutputFormat::Table, &json!({"nope": 1}), at(10, 0, 0)).is_err());
        assert!(render_lists(OutputFormat::Csv, &json!([]), at(10, 0, 0)).is_err());
    }

    fn lists_json() -> Value {
        json!({
            "lists": [{
                "name": "oncall", "description": "join on-call",
                "owners": ["bob@example.com", "carol@example.com"],
                "members": ["alice@example.com"],
                "target": {"kind": "group-membership", "group": "oncall", "resources": [],
                           "service_account": null},
                "default_duration": "1h", "max_duration": "4h",
                "reason_required": true, "reason_pattern": "^INC-", "approvals": 2,
                "auto_approve": false, "break_glass": true, "pending_wait": null,
                "review": null, "file": "oncall.toml", "review_due": "2026-03-02T10:00:00Z",
                "suspended": true, "removed_by_review": []
            }],
            "refused_files": [{"file": "bad.toml", "line": 3, "problem": "expected a value, found \"=\""}]
        })
    }

    #[test]
    fn lists_table_says_who_a_review_removed_and_that_the_file_rules() {
        let mut raw = lists_json();
        raw["lists"][0]["removed_by_review"] = json!(["alice@example.com"]);
        raw["refused_files"] = json!([]);
        let out = render_lists(OutputFormat::Table, &raw, at(10, 0, 0)).unwrap();
        let (_, note) = out.split_once("\n\n").expect("a note after the table");
        assert!(note.starts_with("removed by review"), "{out}");
        assert!(note.contains("source of truth"), "{out}");
        assert!(note.contains("oncall: alice@example.com"), "{out}");
        // Without removals there is no note.
        raw["lists"][0]["removed_by_review"] = json!([]);
        let out = render_lists(OutputFormat::Table, &raw, at(10, 0, 0)).unwrap();
        assert!(!out.contains("removed by review"), "{out}");
    }

    #[test]
    fn lists_table_shows_target_flags_and_refused_files() {
        let out = render_lists(OutputFormat::Table, &lists_json(), at(10, 0, 0)).unwrap();
        let (table, refused) = out.split_once("\n\n").unwrap();
        let header = table.lines().next().unwrap();
        assert!(header.starts_with("NAME "), "{header}");
        let row = table.lines().nth(1).unwrap();
        for part in [
            "oncall",
            "group-membership",
            "group oncall",
            "bob@example.com, carol@example.com",
            "4h",
            "SUSPENDED, break-glass",
            "(in 1d)",
        ] {
            assert!(row.contains(part), "{part} missing: {row}");
        }
        assert!(
            refused.contains("bad.toml line 3: expected a value"),
            "{refused}"
        );
        assert!(!out.ends_with('\n'));
    }

    #[test]
    fn lists_csv_is_lists_then_blank_line_then_refused_files() {
        let out = render_lists(OutputFormat::Csv, &lists_json(), at(10, 0, 0)).unwrap();
        let sections: Vec<&str> = out.split("\n\n").collect();
        assert_eq!(sections.len(), 2, "{out}");
        let mut reader = csv::Reader::from_reader(sections[0].as_bytes());
        assert_eq!(reader.headers().unwrap(), LIST_CSV_HEADER.as_slice());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "oncall");
        assert_eq!(&record[6], r#"["bob@example.com","carol@example.com"]"#);
        assert_eq!(&record[8], "14400");
        assert_eq!(&record[12], "true");
        let mut reader = csv::Reader::from_reader(sections[1].as_bytes());
        assert_eq!(reader.headers().unwrap(), vec!["file", "line", "problem"]);
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "bad.toml");
        assert_eq!(&record[1], "3");
        assert_eq!(&record[2], "expected a value, found \"=\"");
    }

    #[test]
    fn reviews_render_in_every_format() {
        let raw = json!({"reviews": [
            {"list": "audited", "due": "2026-02-28T10:00:00Z", "overdue": true, "suspended": true,
             "owners": ["bob@example.com"], "members": ["alice@example.com", "dave@example.com"]},
            {"list": "notified", "due": "2026-02-28T10:00:00Z", "overdue": true, "suspended": false,
             "owners": ["bob@example.com"], "members": []}
        ]});
        let out = render_reviews(OutputFormat::Table, &raw, at(10, 0, 0)).unwrap();
        let audited = out.lines().find(|l| l.starts_with("audited")).unwrap();
        assert!(
            audited.contains("SUSPENDED") && audited.contains("(1d ago)"),
            "{audited}"
        );
        let notified = out.lines().find(|l| l.starts_with("notified")).unwrap();
        assert!(notified.contains("overdue"), "{notified}");
        let csv = render_reviews(OutputFormat::Csv, &raw, at(10, 0, 0)).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["list", "due", "overdue", "suspended", "owners", "members"]
        );
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "audited");
        assert_eq!(&record[5], r#"["alice@example.com","dave@example.com"]"#);
        assert_eq!(
            render_reviews(OutputFormat::Table, &json!({"reviews": []}), at(10, 0, 0)).unwrap(),
            "no reviews due"
        );

        let recorded = json!({"list": "audited", "next_due": "2026-03-31T10:00:00Z"});
        let text = render_review_recorded(OutputFormat::Table, &recorded, at(10, 0, 0)).unwrap();
        assert_eq!(
            text,
            "review of list audited recorded; next due 2026-03-31T10:00:00Z (in 30d)"
        );
        let csv = render_review_recorded(OutputFormat::Csv, &recorded, at(10, 0, 0)).unwrap();
        assert_eq!(csv, "list,next_due\naudited,2026-03-31T10:00:00Z\n");
    }
}

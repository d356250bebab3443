//! The CLI as a script and a person meet it, from the real binary against a real daemon and
//! sim: exit codes by class (0 ok, 1 server error or unreachable, 2 usage, 3 not authenticated
//! or not allowed, 4 not found, 5 refused, 6 a `--wait` that did not end active), and tables
//! that fit the terminal's width without wrapping a cell.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use twingate_sim::Faults;

const WITHIN: Duration = Duration::from_secs(30);

fn id_in(out: &str) -> String {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    id_of(&v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_has_its_exit_code() {
    let lists = tempfile::tempdir().expect("tempdir");
    let mut env = Env::new(&shipped_list_settings(lists.path())).await;
    let alice = env.create_token("alice", "requester", Some("alice@example.com"));
    let bob = env.create_token("bob", "requester", Some("bob@example.com"));
    let auditor = env.create_token("audit", "auditor", None);
    env.start().await;
    let admin = env.token.clone();
    let admin = Some(admin.as_str());

    // 0: ok.
    let (code, out, err) = env.cli_as(admin, &["list"]);
    assert_eq!(code, 0, "{out}{err}");

    // 1: nobody listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = std::process::Command::new(BIN)
        .args(["--url", &format!("http://127.0.0.1:{closed}"), "list"])
        .env_remove("LAPSE_TOKEN")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not reach"), "{err}");

    // 2: usage, from clap and from the CLI's own checks.
    let (code, _, err) = env.cli_as(admin, &["list", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = env.cli_as(
        admin,
        &[
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--until",
            "tomorrow",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--until"), "{err}");

    // 3: no token, a wrong token, a role that may not write, no rule allowing a direct grant.
    let (code, _, err) = env.cli_as(None, &["list"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = env.cli_as(Some("lapse_not-a-token"), &["list"]);
    assert_eq!(code, 3, "{err}");
    let membership = [
        "grant",
        "--kind",
        "group-membership",
        "--group",
        "oncall",
        "--user",
        "alice@example.com",
        "--for",
        "1h",
        "--reason",
        "INC-1",
        "-o",
        "json",
    ];
    let (code, _, err) = env.cli_as(Some(&auditor), &membership);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = env.cli_as(Some(&alice), &membership);
    assert_eq!(code, 3, "a requester's direct grant has no rule: {err}");

    // 4: not found.
    let (code, _, err) = env.cli_as(admin, &["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = env.cli_as(
        Some(&alice),
        &["request", "no-such-list", "--reason", "INC-1"],
    );
    assert_eq!(code, 4, "{err}");

    // 5: validation, conflict, and a list's rule.
    let (code, _, err) = env.cli_as(
        admin,
        &[
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "0",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("fix"), "{err}");
    let (code, out, err) = env.cli_as(admin, &membership);
    assert_eq!(code, 0, "{out}{err}");
    let grant = id_in(&out);
    env.wait_state(&grant, "active", WITHIN).await;
    let (code, _, err) = env.cli_as(admin, &["revoke", &grant, "--reason", "done"]);
    assert_eq!(code, 0, "{err}");
    env.wait_state(&grant, "revoked", WITHIN).await;
    let (code, _, err) = env.cli_as(admin, &["revoke", &grant, "--reason", "again"]);
    assert_eq!(code, 5, "revoking an ended grant is a conflict: {err}");
    let (code, _, err) = env.cli_as(
        Some(&alice),
        &[
            "request",
            "prod-db-oncall",
            "--for",
            "30m",
            "--reason",
            "no ticket",
        ],
    );
    assert_eq!(code, 5, "the list's reason pattern refuses it: {err}");
    let (code, _, err) = env.cli_as(
        Some(&alice),
        &[
            "request",
            "prod-db-oncall",
            "--for",
            "-5s",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(
        code, 5,
        "a negative duration is the daemon's duration error: {err}"
    );
    assert!(err.contains("duration") && err.contains("fix"), "{err}");
    let (code, out, err) = env.cli_as(
        Some(&alice),
        &[
            "-o",
            "json",
            "request",
            "prod-db-oncall",
            "--for",
            "30m",
            "--reason",
            "INC-4211",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let request = id_in(&out);
    let (code, _, err) = env.cli_as(Some(&bob), &["approve", &request, "--reason", "paged"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.cli_as(Some(&bob), &["approve", &request, "--reason", "again"]);
    assert_eq!(code, 5, "a decided request refuses another decision: {err}");

    // 6: a waited-for grant that ends failed.
    env.sim
        .set_faults(Faults {
            refuse_operations: vec!["ResourceAccessAdd".into()],
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let (code, out, err) = env.cli_as(
        admin,
        &[
            "grant",
            "--kind",
            "group-access",
            "--group",
            "platform",
            "--resource",
            "billing-api",
            "--for",
            "1h",
            "--reason",
            "INC-9",
            "--wait",
        ],
    );
    assert_eq!(code, 6, "{out}{err}");
    assert!(err.contains("not active"), "{err}");

    // The table is in --help.
    let (code, out, _) = env.cli_as(None, &["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Exit codes:") && out.contains("6  --wait"),
        "{out}"
    );
}

/// Display width, counting wide characters twice, as a terminal does.
fn columns(line: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_fit_80_and_200_columns_and_never_wrap_a_cell() {
    let mut env = Env::new("").await;
    env.start().await;
    let users = [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ];
    let mut ids = Vec::new();
    for reason in [
        "INC-1 a long reason that goes on and on about the database",
        "INC-2",
    ] {
        let mut args = vec!["-o", "json", "grant", "--kind", "ephemeral-group"];
        for u in users {
            args.extend(["--user", u]);
        }
        args.extend([
            "--resource",
            "prod-db",
            "--resource",
            "staging-db",
            "--resource",
            "grafana",
            "--for",
            "1h",
            "--reason",
            reason,
        ]);
        let (code, out, err) = env.cli_as(Some(&env.token), &args);
        assert_eq!(code, 0, "{out}{err}");
        ids.push(id_in(&out));
    }
    for id in &ids {
        env.wait_state(id, "active", WITHIN).await;
    }
    let token = env.token.clone();
    for width in [80usize, 200] {
        let cols = width.to_string();
        for args in [vec!["list"], vec!["history"], vec!["show", ids[0].as_str()]] {
            let (code, out, err) = env.cli_with(Some(&token), &[("COLUMNS", &cols)], &args);
            assert_eq!(code, 0, "{args:?}: {out}{err}");
            for line in out.lines() {
                assert!(
                    columns(line) <= width,
                    "{args:?} at {width}: {} columns: {line:?}",
                    columns(line)
                );
            }
        }
        // `list`: a header and one line per grant, each starting with its id.
        let (_, out, _) = env.cli_with(Some(&token), &[("COLUMNS", &cols)], &["list"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1 + ids.len(), "no row wraps at {width}: {out}");
        for line in &lines[1..] {
            assert!(ids.iter().any(|id| line.starts_with(id.as_str())), "{line}");
            assert!(line.contains("active"), "{line}");
        }
        // `history`: every row is one line beginning with its time.
        let (_, out, _) = env.cli_with(Some(&token), &[("COLUMNS", &cols)], &["history"]);
        assert!(
            out.lines().skip(1).all(|l| l.starts_with("20")),
            "a history row wrapped at {width}: {out}"
        );
    }
    // At 80 columns the free text is shortened; --wide (and 200 here) shows more of it.
    let (_, narrow, _) = env.cli_with(Some(&token), &[("COLUMNS", "80")], &["list"]);
    assert!(narrow.contains('…'), "{narrow}");
    let (_, wide, _) = env.cli_with(Some(&token), &[("COLUMNS", "80")], &["--wide", "list"]);
    assert!(!wide.contains('…'), "{wide}");
    assert!(wide.lines().any(|l| columns(l) > 80), "{wide}");
    assert_eq!(wide.lines().count(), 1 + ids.len(), "{wide}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_tells_remote_changes_with_names_and_their_grant() {
    let mut env = Env::new("").await;
    env.start().await;
    let token = env.token.clone();
    let t = Some(token.as_str());
    let (code, out, err) = env.cli_as(
        t,
        &[
            "-o",
            "json",
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "1h",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let grant = id_in(&out);
    env.wait_state(&grant, "active", WITHIN).await;
    let (code, _, err) = env.cli_as(t, &["revoke", &grant, "--reason", "done"]);
    assert_eq!(code, 0, "{err}");
    env.wait_state(&grant, "revoked", WITHIN).await;

    // `show ID` includes the remote changes made for the grant, in words.
    let (code, out, err) = env.cli_as(t, &["--wide", "show", &grant]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("membership-changed") && out.contains("added alice@example.com to oncall"),
        "{out}"
    );
    assert!(
        out.contains("removed alice@example.com from oncall"),
        "{out}"
    );
    assert!(!out.contains("VXNlcj"), "no Twingate user ids: {out}");

    // `history --user` has them too, with the grant they served.
    let (code, out, err) = env.cli_as(t, &["--wide", "history", "--user", "alice@example.com"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("added alice@example.com to oncall"))
        .unwrap_or_else(|| panic!("no remote change in {out}"));
    assert!(line.contains(&grant), "the grant it served: {line}");

    // JSON carries the grants and the names.
    let (code, out, _) = env.cli_as(t, &["-o", "json", "history", "--grant", &grant]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    let rows = v["history"].as_array().expect("rows");
    let change = rows
        .iter()
        .find(|r| r["event"] == "membership-changed")
        .expect("a membership change");
    assert_eq!(change["grant_id"], Value::Null, "{change}");
    assert_eq!(change["grants"], serde_json::json!([grant]), "{change}");
    let names: Vec<&str> = change["names"]
        .as_object()
        .expect("names")
        .values()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"alice@example.com") && names.contains(&"oncall"),
        "{change}"
    );

    // --tail N: the last N rows, oldest first; --newest-first turns them round.
    let (_, all, _) = env.cli_as(t, &["-o", "json", "history"]);
    let all: Value = serde_json::from_str(&all).expect("json");
    let seqs = |v: &Value| -> Vec<i64> {
        v["history"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["seq"].as_i64())
            .collect()
    };
    let all = seqs(&all);
    assert!(all.len() > 3, "{all:?}");
    let (_, tail, _) = env.cli_as(t, &["-o", "json", "history", "--tail", "3"]);
    assert_eq!(
        seqs(&serde_json::from_str(&tail).expect("json")),
        all[all.len() - 3..]
    );
    let (_, newest, _) = env.cli_as(
        t,
        &["-o", "json", "history", "--tail", "3", "--newest-first"],
    );
    let mut expected = all[all.len() - 3..].to_vec();
    expected.reverse();
    assert_eq!(
        seqs(&serde_json::from_str(&newest).expect("json")),
        expected
    );
    let (_, first, _) = env.cli_as(t, &["-o", "json", "history", "--limit", "2"]);
    assert_eq!(seqs(&serde_json::from_str(&first).expect("json")), all[..2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_mine_and_requests_mine_show_only_the_callers_own() {
    let lists = tempfile::tempdir().expect("tempdir");
    let mut env = Env::new(&shipped_list_settings(lists.path())).await;
    let other = env.create_token("other-admin", "admin", None);
    let alice = env.create_token("alice", "requester", Some("alice@example.com"));
    let bob = env.create_token("bob", "requester", Some("bob@example.com"));
    env.start().await;
    let token = env.token.clone();
    let grant = |who: &str, user: &str| {
        let (code, out, err) = env.cli_as(
            Some(who),
            &[
                "-o",
                "json",
                "grant",
                "--kind",
                "group-membership",
                "--group",
                "oncall",
                "--user",
                user,
                "--for",
                "1h",
                "--reason",
                "INC-1",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        id_in(&out)
    };
    let mine = grant(&token, "alice@example.com");
    let theirs = grant(&other, "bob@example.com");
    let (code, out, _) = env.cli_as(Some(&token), &["--wide", "list", "--mine"]);
    assert_eq!(code, 0);
    assert!(out.contains(&mine) && !out.contains(&theirs), "{out}");
    let (_, out, _) = env.cli_as(Some(&token), &["--wide", "list"]);
    assert!(out.contains(&mine) && out.contains(&theirs), "{out}");

    let (code, out, err) = env.cli_as(
        Some(&alice),
        &[
            "-o",
            "json",
            "request",
            "prod-db-oncall",
            "--for",
            "30m",
            "--reason",
            "INC-7",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let request = id_in(&out);
    let (code, out, _) = env.cli_as(Some(&alice), &["--wide", "requests", "--mine"]);
    assert_eq!(code, 0);
    assert!(out.contains(&request), "{out}");
    // bob owns the list: the request waits for him, but it is not his own.
    let (_, out, _) = env.cli_as(Some(&bob), &["--wide", "requests"]);
    assert!(out.contains(&request), "{out}");
    let (_, out, _) = env.cli_as(Some(&bob), &["--wide", "requests", "--mine"]);
    assert!(!out.contains(&request), "{out}");
}

/// People's times are in the local zone (`TZ`), `--utc` gives UTC, and `-o json` is RFC 3339
/// in UTC whatever the zone; `token create -o json` prints JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_are_local_unless_utc_and_exports_are_always_utc() {
    let mut env = Env::new("").await;
    env.start().await;
    let token = env.token.clone();
    let (code, out, err) = env.cli_as(
        Some(&token),
        &[
            "-o",
            "json",
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "1h",
            "--reason",
            "INC-1",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = id_in(&out);
    // A POSIX zone string (UTC+9, no daylight saving), so no tz database is needed.
    let tokyo = [("TZ", "JST-9")];
    let (code, json_out, _) = env.cli_with(Some(&token), &tokyo, &["-o", "json", "show", &id]);
    assert_eq!(code, 0, "{json_out}");
    let v: serde_json::Value = serde_json::from_str(&json_out).expect("json");
    let expires = v["grant"]["expires_at"]
        .as_str()
        .expect("expires_at")
        .to_owned();
    assert!(
        expires.ends_with('Z'),
        "exports are UTC whatever TZ says: {expires}"
    );
    let at = chrono::DateTime::parse_from_rfc3339(&expires)
        .expect("RFC 3339")
        .to_utc();
    let utc_text = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let tokyo_text = (at + chrono::Duration::hours(9))
        .format("%Y-%m-%dT%H:%M:%S+09:00")
        .to_string();

    let (code, local, _) = env.cli_with(Some(&token), &tokyo, &["--wide", "show", &id]);
    assert_eq!(code, 0, "{local}");
    assert!(
        local.contains(&tokyo_text),
        "local time by default: {tokyo_text} in {local}"
    );
    assert!(!local.contains(&utc_text), "{local}");
    let (code, utc, _) = env.cli_with(Some(&token), &tokyo, &["--utc", "--wide", "show", &id]);
    assert_eq!(code, 0, "{utc}");
    assert!(utc.contains(&utc_text), "--utc: {utc_text} in {utc}");
    assert!(!utc.contains("+09:00"), "{utc}");

    // token create, on the daemon's database, honours -o json.
    let out = std::process::Command::new(BIN)
        .args([
            "-o", "json", "token", "create", "--name", "ci-json", "--role", "operator",
        ])
        .arg("--config")
        .arg(&env.config)
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token create -o json");
    assert_eq!(v["name"], "ci-json", "{v}");
    assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(
        v["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

/// Commands that never call the API do not offer `--url` and `--token`; the global options
/// stand under their own heading, so they do not look required.
#[test]
fn help_offers_url_and_token_only_where_the_api_is_called() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--help")
            .output()
            .expect("help");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for local in [
        &["config", "check"][..],
        &["token", "create"],
        &["completions"],
        &["man"],
        &["doctor"],
        &["serve"],
    ] {
        let text = help(local);
        assert!(!text.contains("--url"), "{local:?}: {text}");
        assert!(!text.contains("--token"), "{local:?}: {text}");
        assert!(text.contains("Global options:"), "{local:?}: {text}");
    }
    for remote in [&["list"][..], &["grant"], &["history"], &["requests"]] {
        let text = help(remote);
        let heading = text.find("Global options:").expect("the heading");
        let url = text.find("--url").expect("--url");
        assert!(
            url > heading,
            "{remote:?}: --url under Global options: {text}"
        );
        assert!(text.contains("--token"), "{remote:?}: {text}");
    }
    // Still accepted (and ignored) where hidden, so scripts that always pass them keep working.
    let out = std::process::Command::new(BIN)
        .args(["config", "example", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("config example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `config check` honours -o json, and still exits 5 on a problem.
    let out = std::process::Command::new(BIN)
        .args(["-o", "json", "config", "check", "/nonexistent/lapse.toml"])
        .output()
        .expect("config check");
    assert_eq!(out.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config check -o json");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["problems"].as_array().is_some_and(|p| !p.is_empty()),
        "{v}"
    );
}

/// `--wait` shows its progress only on a terminal: with stderr piped, as here, nothing extra
/// appears there, and stdout carries the grant alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_progress_is_silent_when_stderr_is_not_a_terminal() {
    let mut env = Env::new("").await;
    env.start().await;
    let token = env.token.clone();
    let (code, out, err) = env.cli_as(
        Some(&token),
        &[
            "-o",
            "json",
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "1h",
            "--reason",
            "INC-1",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "", "nothing on stderr when it is not a terminal");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is the grant's JSON");
    assert_eq!(v["state"], "active", "{v}");
}

//! Running lapse as a service: `config check`, the environment over the file, `doctor`, /metrics
//! after a grant's life, JSON logs without secrets, the OpenAPI document, HTTPS, and SIGHUP.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Env, eventually, id_of, membership, shipped_list_settings, tail};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

fn config_check(file: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["config", "check"]).arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("lapse config check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const GOOD: &str = "[twingate]\nbase_url = \"https://acme.twingate.com\"\n";

#[test]
fn config_check_accepts_the_shipped_example_and_a_minimal_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["config", "example"])
        .output()
        .expect("config example");
    assert!(out.status.success());
    let example = write(&dir, "example.toml", &String::from_utf8_lossy(&out.stdout));
    let (code, text) = config_check(&example, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(": ok"), "{text}");
    let (code, text) = config_check(&write(&dir, "min.toml", GOOD), &[]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn config_check_names_the_key_the_value_and_what_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str]); 6] = [
        (
            "[engine]\ntick = \"soon\"\n",
            &["engine.tick", "\"soon\"", "a duration such as"],
        ),
        (
            "[engine]\ntik = \"1s\"\n",
            &["engine.tik", "not a known setting", "tick, sweep_interval"],
        ),
        (
            "[server]\nlisten = \"nope\"\n",
            &["server.listen", "\"nope\"", "127.0.0.1:7420"],
        ),
        (
            "page_size = \"many\"\n",
            &["twingate.page_size", "\"many\"", "a whole number"],
        ),
        (
            "page_size = 500\n",
            &["twingate.page_size", "500", "from 1 to 100"],
        ),
        (
            "[server]\nlisten = \"0.0.0.0:7420\"\n",
            &["server.listen", "0.0.0.0:7420", "allow_insecure_remote"],
        ),
    ];
    for (i, (body, wanted)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.toml"), &format!("{GOOD}{body}"));
        let (code, text) = config_check(&file, &[]);
        assert_eq!(code, 5, "{body} was accepted: {text}");
        for w in *wanted {
            assert!(text.contains(w), "message for {body:?} lacks {w:?}: {text}");
        }
        assert_eq!(
            text.lines().count(),
            1,
            "one line per problem, without repetition: {text}"
        );
    }
    let (code, text) = config_check(&write(&dir, "syntax.toml", "[engine\n"), &[]);
    assert_eq!(code, 5);
    assert!(
        text.contains("not valid TOML") && text.contains("line 1"),
        "{text}"
    );
}

#[test]
fn a_secret_in_the_toml_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "secret.toml",
        &format!("{GOOD}api_key = \"tg-very-secret\"\n"),
    );
    let (code, text) = config_check(&file, &[]);
    assert_eq!(code, 5, "{text}");
    assert!(
        text.contains("twingate.api_key")
            && text.contains("api_key_file")
            && text.contains("LoadCredential"),
        "{text}"
    );
    assert!(
        !text.contains("tg-very-secret"),
        "the secret was echoed: {text}"
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "tick.toml",
        &format!("{GOOD}[engine]\ntick = \"5s\"\n"),
    );
    let (code, text) = config_check(&file, &[]);
    assert_eq!(code, 5, "a 5s tick must be refused: {text}");
    assert!(text.contains("engine.tick"), "{text}");
    let (code, text) = config_check(&file, &[("LAPSE__ENGINE__TICK", "500ms")]);
    assert_eq!(code, 0, "the environment's 500ms should win: {text}");
    let (code, text) = config_check(
        &write(&dir, "ok.toml", GOOD),
        &[("LAPSE__ENGINE__TICK", "soon")],
    );
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("engine.tick = \"soon\""), "{text}");
}

fn doctor(config: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("lapse doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

// Doctor runs as a blocking child process while the sim answers it from this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_with_a_good_key_and_fails_with_a_fix_otherwise() {
    let env = Env::new("").await;
    let (code, out) = doctor(&env.config);
    assert_eq!(code, 0, "doctor failed against a good sim:\n{out}");
    for check in [
        "config",
        "database",
        "database write",
        "twingate read",
        "twingate write",
        "clock",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains(&format!("{check}:"))),
            "no ok line for {check}:\n{out}"
        );
    }
    assert!(!out.contains("FAIL"), "{out}");

    // A key the sim does not know.
    let wrong = env.dir.path().join("wrong.key");
    std::fs::write(&wrong, "not-a-key").expect("key");
    let cfg = std::fs::read_to_string(&env.config).expect("config");
    let key_line = cfg
        .lines()
        .find(|l| l.starts_with("api_key_file"))
        .expect("api_key_file line");
    let bad = env.dir.path().join("wrong.toml");
    std::fs::write(
        &bad,
        cfg.replace(
            key_line,
            &format!("api_key_file = {:?}", wrong.display().to_string()),
        ),
    )
    .expect("config");
    let (code, out) = doctor(&bad);
    assert_ne!(code, 0, "doctor passed with a wrong key:\n{out}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("twingate read"))
        .unwrap_or_else(|| panic!("no FAIL line:\n{out}"));
    assert!(
        fail.contains("check twingate.base_url and the API key"),
        "the FAIL line gives no fix: {fail}"
    );

    // A key that may read but not write.
    std::fs::write(&wrong, twingate_sim::DEMO_READ_KEY).expect("key");
    let (code, out) = doctor(&bad);
    assert_ne!(code, 0, "doctor passed with a read-only key:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("twingate read:")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("twingate write:")
            && l.contains("Read & Write")),
        "{out}"
    );
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_and_json_logs_after_a_grants_life() {
    let mut env = Env::new("[log]\nformat = \"json\"\nfilter = \"trace,h2=info,hyper=info,hyper_util=info,rustls=info,sqlx=info\"\n").await;
    env.start().await;
    let (status, g) = env
        .grant(membership("oncall", &["alice@example.com"], "2s"))
        .await;
    assert_eq!(status, 201, "{g}");
    let id = id_of(&g);
    env.wait_state(&id, "active", WITHIN).await;
    assert!(env.group_has("oncall", "alice@example.com"));
    let page = env
        .http
        .get(format!("{}/metrics", env.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        sample(
            &page,
            "lapse_open_grants",
            &["kind=\"group-membership\"", "state=\"active\""]
        ),
        Some(1.0),
        "{page}"
    );
    env.wait_state(&id, "expired", WITHIN).await;
    assert!(!env.group_has("oncall", "alice@example.com"));

    let page = env
        .http
        .get(format!("{}/metrics", env.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // The grant has ended: no open grant of that kind is left showing as active.
    assert_eq!(
        sample(
            &page,
            "lapse_open_grants",
            &["kind=\"group-membership\"", "state=\"active\""]
        ),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "lapse_revocation_lateness_seconds_count",
            &["kind=\"group-membership\""]
        ),
        Some(1.0),
        "one revocation's lateness:\n{page}"
    );
    assert!(
        sample(
            &page,
            "lapse_revocation_lateness_seconds_bucket",
            &["le=\"+Inf\""]
        )
        .is_some(),
        "histogram buckets:\n{page}"
    );
    assert_eq!(
        sample(&page, "lapse_overdue_revocations", &[]),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "lapse_oldest_overdue_revocation_seconds", &[]),
        Some(0.0),
        "{page}"
    );
    // One call adds alice, one removes her.
    assert_eq!(
        sample(
            &page,
            "lapse_actions_total",
            &["action=\"update-group-users\"", "outcome=\"ok\""]
        ),
        Some(2.0),
        "API calls by operation and outcome:\n{page}"
    );
    assert!(
        page.contains("# HELP lapse_revocation_lateness_seconds"),
        "series are described:\n{page}"
    );
    assert!(
        sample(
            &page,
            "lapse_rate_limit_waits_total",
            &["budget=\"writes\""]
        )
        .is_some(),
        "rate-limit waits:\n{page}"
    );
    assert!(
        sample(&page, "lapse_drift_found_total", &[]).is_some(),
        "drift found:\n{page}"
    );
    // Twingate calls by operation and outcome, with their latency.
    let twingate_ok: f64 = page
        .lines()
        .filter(|l| {
            l.starts_with("lapse_twingate_request_duration_seconds_count{")
                && l.contains("outcome=\"ok\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(twingate_ok >= 2.0, "Twingate call latency:\n{page}");
    assert!(
        page.lines().any(
            |l| l.starts_with("lapse_twingate_request_duration_seconds_bucket{")
                && l.contains("operation=")
        ),
        "{page}"
    );
    // HTTP requests by route and status, and their latency.
    assert_eq!(
        sample(
            &page,
            "lapse_http_requests_total",
            &["method=\"POST\"", "route=\"/v1/grants\"", "status=\"201\""]
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "lapse_http_requests_total",
            &[
                "method=\"GET\"",
                "route=\"/v1/grants/{id}\"",
                "status=\"200\""
            ]
        )
        .is_some_and(|n| n >= 2.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "lapse_http_request_duration_seconds_count",
            &["method=\"POST\"", "route=\"/v1/grants\""]
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "lapse_pending_requests", &[]),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "lapse_outbox_backlog", &[]),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "lapse_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(&page, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6),
        "process metrics:\n{page}"
    );

    assert_eq!(env.terminate().map(|s| s.success()), Some(true));
    let log = env.log();
    assert!(
        log.lines().count() > 10,
        "too few log lines:\n{}",
        tail(&log)
    );
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("TRACE"), "the log was not written at TRACE");
    // One access-log line per request, its fields JSON values.
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "lapse::access")
        .collect();
    let submit = access
        .iter()
        .find(|v| v["fields"]["method"] == "POST" && v["fields"]["route"] == "/v1/grants")
        .unwrap_or_else(|| panic!("no access line for the submission:\n{}", tail(&log)));
    assert_eq!(submit["fields"]["status"], 201, "{submit}");
    assert_eq!(submit["fields"]["actor"], "oncall-bot", "{submit}");
    assert!(submit["fields"]["duration_ms"].is_f64(), "{submit}");
    let scrape = access
        .iter()
        .find(|v| v["fields"]["route"] == "/metrics")
        .expect("an access line for /metrics");
    assert_eq!(scrape["fields"]["actor"], "-", "{scrape}");
    assert!(
        !log.contains(twingate_sim::DEMO_ADMIN_KEY),
        "the Twingate key is in the log"
    );
    assert!(!log.contains(&env.token), "a lapse token is in the log");
    let secret_part = env.token.trim_start_matches("lapse_");
    assert!(
        !log.contains(secret_part),
        "part of a lapse token is in the log"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let mut env = Env::new("").await;
    env.start().await;
    let r = env
        .http
        .get(format!("{}/v1/openapi.json", env.url()))
        .send()
        .await
        .expect("openapi");
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.expect("the document is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/grants",
        "/v1/grants/{id}",
        "/v1/grants/{id}/revoke",
        "/v1/history",
        "/v1/openapi.json",
        "/metrics",
        // The request flow, served by its own router merged into the same server.
        "/v1/lists",
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/approve",
        "/v1/requests/{id}/deny",
        "/v1/requests/{id}/cancel",
        "/v1/grants/{id}/extend",
        "/v1/reviews",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    // Every documented operation is served: the router answers neither 404-for-no-route nor 405.
    for (path, item) in paths {
        for method in item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|m| ["get", "post"].contains(&m.as_str()))
        {
            let url = format!(
                "{}{}",
                env.url(),
                path.replace("{id}", "01J00000000000000000000000")
            );
            let req = if method == "get" {
                env.http.get(&url)
            } else {
                env.http.post(&url).body("{}")
            };
            let r = req.bearer_auth(&env.token).send().await.expect("request");
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                status != 404 || body.contains("not_found"),
                "{method} {path} is documented but not routed: {body}"
            );
        }
    }
    let req = &doc["components"]["schemas"]["GrantRequest"];
    let props = req["properties"]
        .as_object()
        .expect("GrantRequest properties");
    for f in [
        "kind",
        "users",
        "resources",
        "group",
        "service_account",
        "duration",
        "expires_at",
        "starts_at",
        "reason",
    ] {
        assert!(props.contains_key(f), "GrantRequest lacks {f}: {req}");
    }
    assert_eq!(req["required"], serde_json::json!(["kind"]), "{req}");
    assert_eq!(
        doc["paths"]["/v1/grants"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/GrantRequest"
    );
    for (path, method, schema) in [
        ("/v1/requests", "post", "CreateBody"),
        ("/v1/requests/{id}/deny", "post", "DecisionBody"),
        ("/v1/grants/{id}/extend", "post", "ExtendBody"),
        ("/v1/reviews", "post", "ReviewBody"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{method} {path}"
        );
    }
    let request = doc["components"]["schemas"]["RequestView"]["properties"]
        .as_object()
        .expect("RequestView properties");
    for f in ["id", "list", "state", "requester", "grant_id", "approvals"] {
        assert!(request.contains_key(f), "RequestView lacks {f}");
    }
}

#[tokio::test]
async fn the_api_answers_over_https_with_a_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let cert_pem = ck.cert.pem();
    let cert = write(&dir, "cert.pem", &cert_pem);
    let key = write(&dir, "key.pem", &ck.signing_key.serialize_pem());
    let extra = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let mut env = Env::new(&extra).await;
    let log = std::fs::File::create(env.log_path()).expect("log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&env.config)
        .arg("--port-file")
        .arg(env.port_file())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let url = format!("https://localhost:{}", env.read_port().await);
    let ready = eventually(WITHIN, || async {
        client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "no HTTPS answer; log:\n{}", tail(&env.log()));
    assert!(
        env.log().contains("https"),
        "the ready line names the scheme:\n{}",
        env.log()
    );
}

#[tokio::test]
async fn a_certificate_without_a_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert = write(&dir, "cert.pem", &ck.cert.pem());
    let extra = format!("[server]\ntls_cert = {:?}\n", cert.display().to_string());
    let env = Env::new(&extra).await;
    let (code, text) = config_check(&env.config, &[]);
    assert_eq!(
        code, 5,
        "a certificate without a key must be refused: {text}"
    );
    assert!(
        text.contains("server.tls_cert") && text.contains("server.tls_key"),
        "{text}"
    );
}

#[tokio::test]
async fn sighup_is_logged_and_does_not_stop_the_daemon() {
    let mut env = Env::new("").await;
    env.start().await;
    let pid = env.pid().expect("pid");
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(sent.success());
    let logged = eventually(WITHIN, || async { env.log().contains("reload requested") }).await;
    assert!(logged, "no reload line:\n{}", tail(&env.log()));
    let r = env
        .http
        .get(format!("{}/readyz", env.url()))
        .send()
        .await
        .expect("still answering after SIGHUP");
    assert!(r.status().is_success());
    let (status, g) = env
        .grant(membership("oncall", &["bob@example.com"], "1m"))
        .await;
    assert_eq!(status, 201, "{g}");
    env.wait_state(&id_of(&g), "active", WITHIN).await;
    assert_eq!(
        env.terminate().map(|s| s.success()),
        Some(true),
        "SIGTERM after SIGHUP exits 0"
    );
}

#[test]
fn config_check_reports_every_problem_with_its_line_or_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "three.toml",
        &format!(
            "{GOOD}page_size = \"many\"\n[engine]\ntik = \"1s\"\n[server]\nlisten = \"nope\"\n"
        ),
    );
    let (code, text) = config_check(&file, &[("LAPSE__ENGINE__TICK", "soon")]);
    assert_eq!(code, 5, "{text}");
    let f = file.display().to_string();
    for (at, key) in [
        (format!("{f}:3:"), "twingate.page_size"),
        (format!("{f}:5:"), "engine.tik"),
        (format!("{f}:7:"), "server.listen"),
        (
            "environment variable LAPSE__ENGINE__TICK:".to_owned(),
            "engine.tick",
        ),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&at) && l.contains(key)),
            "{key} at {at}: {text}"
        );
    }
    assert_eq!(text.lines().count(), 4, "one line per problem: {text}");

    // Values that can be read but break the rules are reported together too.
    let file = write(
        &dir,
        "rules.toml",
        &format!("{GOOD}page_size = 500\n[engine]\nconcurrency = 0\n[log]\nformat = \"xml\"\n"),
    );
    let (code, text) = config_check(&file, &[]);
    assert_eq!(code, 5, "{text}");
    for (line, key) in [
        (3, "twingate.page_size"),
        (5, "engine.concurrency"),
        (7, "log.format"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{f2}:{line}: {key}", f2 = file.display()))),
            "{key} at line {line}: {text}"
        );
    }
}

/// Every path under `dir`, for showing that a command made nothing.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_loads_lists_reports_skew_and_unreachable_twingate_and_creates_nothing() {
    let lists = tempfile::tempdir().expect("tempdir");
    let env = Env::new(&shipped_list_settings(lists.path())).await;
    let (code, out) = doctor(&env.config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ok")
            && l.contains("access files:")
            && l.contains("1 access lists")
            && l.contains("0 grant policies")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("clock:")),
        "{out}"
    );

    // Twingate's clock two minutes ahead: named, with its size and direction, also in JSON.
    env.sim.clock().set_offset(chrono::Duration::seconds(120));
    let (code, out) = doctor(&env.config);
    assert_eq!(code, 1, "{out}");
    let clock = out
        .lines()
        .find(|l| l.contains("clock:"))
        .unwrap_or_else(|| panic!("no clock line: {out}"));
    assert!(
        clock.starts_with("FAIL") && clock.contains("ahead of") && clock.contains("NTP"),
        "{clock}"
    );
    let skew: i64 = clock
        .split_whitespace()
        .find_map(|w| w.strip_suffix('s').and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no seconds in {clock}"));
    assert!((119..=121).contains(&skew), "{clock}");
    let json = Command::new(BIN)
        .args(["doctor", "-o", "json", "--config"])
        .arg(&env.config)
        .output()
        .expect("doctor -o json");
    let rows: Value = serde_json::from_slice(&json.stdout).expect("doctor's JSON");
    let row = rows
        .as_array()
        .expect("an array")
        .iter()
        .find(|r| r["check"] == "clock")
        .expect("a clock check");
    assert_eq!(row["ok"], false, "{row}");
    env.sim.clock().set_offset(chrono::Duration::zero());

    // Nothing listens at the Twingate URL, the database and list directories do not exist:
    // "cannot connect", and not one file or directory made.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write(&dir, "key", twingate_sim::DEMO_ADMIN_KEY);
    let missing = dir.path().join("state");
    let config = write(
        &dir,
        "lapse.toml",
        &format!(
            "[twingate]\nbase_url = \"http://127.0.0.1:{closed}\"\napi_key_file = {:?}\n\
             timeout = \"2s\"\n[database]\npath = {:?}\n[access]\nlists_dir = {:?}\n\
             policies_dir = {:?}\n",
            key.display().to_string(),
            missing.join("lapse.db").display().to_string(),
            missing.join("lists").display().to_string(),
            missing.join("policies").display().to_string(),
        ),
    );
    let before = tree(dir.path());
    let (code, out) = doctor(&config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("twingate read:")
            && l.contains("cannot connect")),
        "{out}"
    );
    assert!(!out.contains("Read & Write"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("database:")),
        "{out}"
    );
    assert_eq!(tree(dir.path()), before, "doctor created something");
    assert!(!missing.exists());
}

//! The `twingate-sim` binary: starts with the demo seed, and fails clearly on bad input.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_twingate-sim");

/// Runs the binary to completion, with a deadline so a hang fails the test instead of blocking.
fn run_to_exit(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            return (status.code().unwrap_or(-1), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("twingate-sim {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_one_clear_line(code: i32, stderr: &str, needle: &str) {
    assert_ne!(code, 0);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("twingate-sim: error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle} in {stderr}");
}

#[test]
fn unreadable_seed_is_named() {
    let (code, stderr) = run_to_exit(&[
        "--seed",
        "/nonexistent/seed.toml",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_clear_line(
        code,
        &stderr,
        "cannot read seed file /nonexistent/seed.toml",
    );
}

#[test]
fn duplicate_ids_in_seed_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("seed.toml");
    std::fs::write(
        &path,
        r#"
[[users]]
id = 1
email = "a@example.com"

[[users]]
id = 1
email = "b@example.com"

[[groups]]
id = 5
name = "g"
users = [1, 77]
"#,
    )
    .expect("write");
    let (code, stderr) = run_to_exit(&[
        "--seed",
        path.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_clear_line(code, &stderr, "duplicate user id 1");
    assert!(
        stderr.contains("group 5 references unknown user 77"),
        "{stderr}"
    );

    let json = dir.path().join("seed.json");
    std::fs::write(
        &json,
        r#"{"groups": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}"#,
    )
    .expect("write");
    let (code, stderr) = run_to_exit(&[
        "--seed",
        json.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_clear_line(code, &stderr, "duplicate group id 1");

    let bad = dir.path().join("seed.toml");
    std::fs::write(&bad, "[[users]]\nid = \"x\"\n").expect("write");
    let (code, stderr) = run_to_exit(&[
        "--seed",
        bad.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_clear_line(code, &stderr, "cannot parse seed file");
}

#[test]
fn port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run_to_exit(&["--listen", &addr]);
    assert_one_clear_line(code, &stderr, &format!("cannot listen on {addr}"));
}

#[test]
fn bad_fault_rate_is_named() {
    let (code, stderr) = run_to_exit(&["--listen", "127.0.0.1:0", "--error-rate", "2"]);
    assert_one_clear_line(code, &stderr, "--error-rate must be between 0.0 and 1.0");
}

#[tokio::test]
async fn starts_with_the_demo_seed_and_serves() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--rate-limit-reads", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.iter().any(|l: &String| l.contains("sim-read-key")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no start-up banner: {lines:?}");
            }
        }
    }
    let base = lines[0]
        .strip_prefix("twingate-sim listening on ")
        .expect("banner names the base URL")
        .to_string();
    assert!(lines.iter().any(|l| l.contains("sim-admin-key")));
    assert!(lines.iter().any(|l| l.contains("2 reads/min")));

    let http = reqwest::Client::new();
    let query = serde_json::json!({"query": "{ groups(filter: {name: {eq: \"oncall\"}}) { edges { node { users { edges { node { email } } } } } } }"});
    let body: serde_json::Value = http
        .post(format!("{base}/api/graphql/"))
        .header("X-API-KEY", "sim-read-key")
        .json(&query)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let email = &body["data"]["groups"]["edges"][0]["node"]["users"]["edges"][0]["node"]["email"];
    assert_eq!(email, "carol@example.com");
    let state: serde_json::Value = http
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(state["resources"].as_array().map(Vec::len), Some(4));
    // The binary's rate limit is on: the third read in a minute is refused.
    let third = http
        .post(format!("{base}/api/graphql/"))
        .header("X-API-KEY", "sim-read-key")
        .json(&query)
        .send()
        .await
        .expect("send");
    let second_status = third.status().as_u16();
    let fourth = http
        .post(format!("{base}/api/graphql/"))
        .header("X-API-KEY", "sim-read-key")
        .json(&query)
        .send()
        .await
        .expect("send");
    assert_eq!((second_status, fourth.status().as_u16()), (200, 429));
    child.kill().expect("kill");
    let _ = child.wait();
}

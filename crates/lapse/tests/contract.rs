//! The API as a contract: a bounded property-based run of schemathesis (PyPI; `.ci/run`
//! installs it) against the real daemon, from its own `/v1/openapi.json`, with zero 5xx answers
//! and zero answers outside the documented schemas.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_schemathesis_run_finds_no_server_error_and_no_schema_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = Env::new(&shipped_list_settings(dir.path())).await;
    // An admin with an identity reaches the request flow's routes as well.
    let token = env.create_token("alice-admin", "admin", Some("alice@example.com"));
    env.start().await;
    let url = env.url();
    let report = dir.path().join("schemathesis.xml");
    // A blocking child while the sim and the daemon answer from their own runtimes/processes.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("schemathesis")
            .args(["run", &format!("{url}/v1/openapi.json"), "--url", &url])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", "8", "--seed", "14", "--workers", "1"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg("--report-junit-path")
            .arg(&report)
            .arg("--report")
            .arg("junit")
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("schemathesis runs (CI installs it with pip)")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\ndaemon log tail:\n{}",
        tail(&env.log())
    );
    // It did test the API: the report names its operations.
    let junit = std::fs::read_to_string(dir.path().join("schemathesis.xml")).unwrap_or_default();
    assert!(
        junit.contains("/v1/grants") && junit.contains("/v1/requests"),
        "{text}\n{junit}"
    );
}

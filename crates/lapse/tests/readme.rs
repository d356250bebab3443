//! Every `lapse …` command in README.md runs as written against a daemon like the demo's: the
//! demo directory in the Twingate stand-in, the access list shipped in `deploy/`, an admin token
//! and tokens for alice (a member) and bob (an owner). Commands are read from the README itself,
//! so a README change that breaks one fails here.

mod common;

use common::*;

/// The README's shell blocks, as commands: continuation lines joined, comments dropped.
fn readme_commands() -> Vec<String> {
    let text = include_str!("../../../README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let command = std::mem::take(&mut pending);
        // A comment starts at ` #` outside quotes; shlex drops it with the rest of the line.
        if command.starts_with("lapse ") {
            out.push(command);
        }
    }
    out
}

/// The first ULID on the line whose first word is `field` in a two-column table.
fn field_id(out: &str, field: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(field))
            .then(|| words.next())
            .flatten()
            .filter(|w| w.len() == 26)
            .map(str::to_owned)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = Env::new(&shipped_list_settings(dir.path())).await;
    let alice = env.create_token("alice", "operator", Some("alice@example.com"));
    let bob = env.create_token("bob", "operator", Some("bob@example.com"));
    env.start().await;
    let commands = readme_commands();
    assert!(commands.len() >= 12, "README commands: {commands:?}");

    let mut ids: Vec<(&str, String)> = Vec::new();
    let mut ran = 0;
    for command in &commands {
        let mut args = shlex::split(command).unwrap_or_else(|| panic!("cannot split {command}"));
        if let Some(hash) = args.iter().position(|a| a.starts_with('#')) {
            args.truncate(hash);
        }
        assert_eq!(args[0], "lapse");
        let args: Vec<String> = args[1..].to_vec();
        // Commands with host paths run on the daemon host with its files; they are tested
        // where those files exist (tests/authorization.rs runs `audit verify --checkpoints`).
        if args
            .iter()
            .any(|a| a.starts_with("/etc/") || a.starts_with("/var/"))
        {
            continue;
        }
        let args: Vec<String> = args
            .into_iter()
            .map(
                |a| match ids.iter().rev().find(|(placeholder, _)| *placeholder == a) {
                    Some((_, id)) => id.clone(),
                    None => a,
                },
            )
            .collect();
        assert!(
            !args.iter().any(|a| a.starts_with('<')),
            "{command}: no id for its placeholder yet ({ids:?})"
        );
        // The request flow as the README tells it: alice asks and extends, bob decides.
        let token = match args[0].as_str() {
            "request" | "extend" | "cancel" => &alice,
            "requests" | "approve" | "deny" | "review" => &bob,
            _ => &env.token,
        };
        let out = std::process::Command::new(BIN)
            .args(&args)
            .env("LAPSE_URL", env.url())
            .env("LAPSE_TOKEN", token)
            .env_remove("COLUMNS")
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{command}` failed ({:?}):\n{stdout}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
        match args[0].as_str() {
            "grant" => {
                let id = field_id(&stdout, "id").expect("a grant id");
                ids.push(("<ID>", id));
            }
            "request" if !args.iter().any(|a| a == "--break-glass") => {
                ids.push(("<REQUEST>", field_id(&stdout, "id").expect("a request id")));
            }
            "approve" => {
                let grant = field_id(&stdout, "grant").expect("the approved request's grant");
                ids.push(("<GRANT>", grant));
            }
            _ => {}
        }
    }
    assert!(ran >= 12, "ran {ran} of {commands:?}");
}

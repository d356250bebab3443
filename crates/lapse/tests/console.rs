//! The web console in a real browser: Debian's chromium driven over WebDriver (chromedriver),
//! against the real daemon, the real Twingate stand-in and a real OpenID provider on loopback.
//! A member signs in and requests; an owner signs in in another browser session and approves;
//! the member sees the access, the stand-in shows it, it lapses and the page says it ended. The
//! requester's own request offers no approve button and a forged approval is refused; a form
//! without its CSRF token is refused; an auditor filters the history and the CSV export holds
//! exactly the rows shown. Screenshots of each page go to `docs/screenshots/`.

mod common;
#[path = "../../lapse-oidc/tests/common/op.rs"]
mod op;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

const LIST: &str = r#"
[[list]]
name = "oncall"
description = "Join the on-call group while you are paged"
owners = ["olivia@example.com"]
members = ["alice@example.com", "olivia@example.com"]
kind = "group-membership"
group = "oncall"
default_duration = "30m"
max_duration = "1h"
reason_pattern = "^INC-[0-9]+"
review_every = "90d"
review_due = "2027-06-01T00:00:00Z"
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Driver {
    child: Child,
    port: u16,
    profiles: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let bin = which("chromedriver");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let up = eventually(Duration::from_secs(20), || async move {
            reqwest::get(format!("http://127.0.0.1:{port}/status"))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "chromedriver did not answer");
        Driver {
            child,
            port,
            profiles: tempfile::tempdir().expect("profiles"),
        }
    }

    /// A browser session of its own (its own profile, so its own cookies).
    async fn session(&self, name: &str) -> Client {
        let profile = self.profiles.path().join(name);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": which("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: apt-get install chromium chromium-driver (.ci/run does)");
}

fn screenshots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&d).expect("docs/screenshots");
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("screenshot written");
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Signs `login` in through the console's sign-in link and the provider's pages.
async fn sign_in(c: &Client, console: &str, login: &str) {
    c.goto(&format!("{console}/ui/")).await.expect("console");
    c.find(Locator::Id("sign-in"))
        .await
        .expect("sign-in link")
        .click()
        .await
        .expect("click");
    let form = c
        .wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .expect("the provider's login form");
    form.send_keys(login).await.expect("login");
    c.find(Locator::Css("input[name=password]"))
        .await
        .expect("password")
        .send_keys("any")
        .await
        .expect("password");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    // The consent page, then back to the console.
    c.wait()
        .for_element(Locator::Css("input[name=prompt][value=consent]"))
        .await
        .expect("the consent form");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("the consent button")
        .click()
        .await
        .expect("consent");
    c.wait()
        .for_element(Locator::Id("me"))
        .await
        .expect("signed in to the console");
}

/// The session cookie and the CSRF token of a signed-in browser, to forge requests with.
async fn stolen(c: &Client) -> (String, String) {
    let cookie = c
        .get_all_cookies()
        .await
        .expect("cookies")
        .into_iter()
        .find(|k| k.name() == "lapse_session")
        .expect("a session cookie");
    let csrf = c
        .find(Locator::Css("input[name=csrf]"))
        .await
        .expect("a form")
        .attr("value")
        .await
        .expect("attr")
        .expect("a csrf value");
    (format!("lapse_session={}", cookie.value()), csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_see_lapse_and_audit_in_a_browser() {
    let port = free_port();
    let console = format!("http://127.0.0.1:{port}");
    let callback = format!("{console}/ui/callback");
    let provider = op::Provider::start_with(
        600,
        vec![json!({
            "client_id": "lapse-console", "client_secret": "console-secret",
            "redirect_uris": [callback],
        })],
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("oncall.toml"), LIST).expect("list");
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "console-secret\n").expect("secret");
    let extra = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[access]
lists_dir = "{lists}"
[auth.oidc]
issuer = "{issuer}"
client_id = "lapse-console"
client_secret_file = "{secret}"
redirect_url = "{callback}"
scopes = ["openid", "email", "groups"]
[auth.oidc.roles]
admin = ["platform-admins"]
requester = ["engineering"]
auditor = ["audit"]
"#,
        lists = dir.path().display(),
        issuer = provider.issuer,
        secret = secret.display(),
    );
    let mut env = Env::new(&extra).await;
    env.start().await;

    let driver = Driver::start().await;
    let alice = driver.session("alice").await;
    let olivia = driver.session("olivia").await;
    let audrey = driver.session("audrey").await;

    // Signed out: the sign-in page, with every answer framed by the security headers.
    alice
        .goto(&format!("{console}/ui/"))
        .await
        .expect("console");
    shot(&alice, "sign-in").await;
    let page = reqwest::get(format!("{console}/ui/")).await.expect("page");
    let h = page.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    // The member signs in and requests.
    sign_in(&alice, &console, "alice").await;
    assert!(text(&alice, "#me").await.contains("alice@example.com"));
    alice
        .goto(&format!("{console}/ui/request"))
        .await
        .expect("request page");
    shot(&alice, "request-access").await;
    let form = alice
        .find(Locator::Css("#list-oncall form"))
        .await
        .expect("the list's form");
    form.find(Locator::Css("input[name=duration]"))
        .await
        .expect("duration")
        .send_keys("12s")
        .await
        .expect("typed");
    form.find(Locator::Css("input[name=reason]"))
        .await
        .expect("reason")
        .send_keys("INC-4211 paging")
        .await
        .expect("typed");
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    alice
        .wait()
        .for_element(Locator::Css("#request[data-state=pending]"))
        .await
        .expect("the request, pending");
    let url = alice.current_url().await.expect("url");
    let rid = url
        .path_segments()
        .and_then(|mut s| s.nth(2))
        .expect("request id in the URL")
        .to_owned();
    // Her own request offers no approve button…
    assert!(
        alice
            .find_all(Locator::Css("button.approve"))
            .await
            .expect("find")
            .is_empty(),
        "the requester is offered the approve button"
    );
    shot(&alice, "request-pending").await;
    // …and a forged approval with her own session and token is refused by the server.
    let (cookie, csrf) = stolen(&alice).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let forged = http
        .post(format!("{console}/ui/requests/{rid}/approve"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("reason", "mine")])
        .send()
        .await
        .expect("posted");
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.expect("page").contains("approve"));
    // A form without its CSRF token is refused before anything is done.
    let no_csrf = http
        .post(format!("{console}/ui/request"))
        .header("cookie", &cookie)
        .form(&[("list", "oncall"), ("reason", "INC-1")])
        .send()
        .await
        .expect("posted");
    assert_eq!(no_csrf.status(), 403);
    assert!(no_csrf.text().await.expect("page").contains("CSRF"));
    let (_, r) = (0, env.get(&format!("/v1/requests/{rid}")).await);
    assert_eq!(r["state"], "pending", "nothing changed: {r}");
    assert!(!env.group_has("oncall", "alice@example.com"));

    // The owner, in another browser, approves from the approvals page.
    sign_in(&olivia, &console, "olivia").await;
    olivia
        .goto(&format!("{console}/ui/approvals"))
        .await
        .expect("approvals");
    shot(&olivia, "approvals").await;
    olivia
        .find(Locator::Css(&format!("tr[data-id='{rid}'] button.approve")))
        .await
        .expect("the approve button for the request")
        .click()
        .await
        .expect("click");
    olivia
        .wait()
        .for_element(Locator::Css("#request[data-state=approved]"))
        .await
        .expect("approved");
    shot(&olivia, "request-approved").await;

    // The owner's own request: no approve button anywhere, and a forged approval with her own
    // session and CSRF token is refused by the server as a self-approval.
    olivia
        .goto(&format!("{console}/ui/request"))
        .await
        .expect("request page");
    let form = olivia
        .find(Locator::Css("#list-oncall form"))
        .await
        .expect("the list's form");
    form.find(Locator::Css("input[name=reason]"))
        .await
        .expect("reason")
        .send_keys("INC-4212 second pair of hands")
        .await
        .expect("typed");
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    olivia
        .wait()
        .for_element(Locator::Css("#request[data-state=pending]"))
        .await
        .expect("her request, pending");
    let own = olivia.current_url().await.expect("url");
    let own_id = own
        .path_segments()
        .and_then(|mut s| s.nth(2))
        .expect("request id")
        .to_owned();
    assert!(
        olivia
            .find_all(Locator::Css("button.approve"))
            .await
            .expect("find")
            .is_empty(),
        "the owner is offered the approve button on her own request"
    );
    olivia
        .goto(&format!("{console}/ui/approvals"))
        .await
        .expect("approvals");
    assert!(
        olivia
            .find_all(Locator::Css(&format!("tr[data-id='{own_id}']")))
            .await
            .expect("find")
            .is_empty(),
        "her own request is not in her approvals"
    );
    let (owner_cookie, owner_csrf) = stolen(&olivia).await;
    let forged = http
        .post(format!("{console}/ui/requests/{own_id}/approve"))
        .header("cookie", &owner_cookie)
        .form(&[("csrf", owner_csrf.as_str()), ("reason", "mine")])
        .send()
        .await
        .expect("posted");
    assert_eq!(forged.status(), 403);
    assert!(
        forged
            .text()
            .await
            .expect("page")
            .contains("nobody approves their own request")
    );
    assert_eq!(
        env.get(&format!("/v1/requests/{own_id}")).await["state"],
        "pending"
    );

    // The member sees the access, and the stand-in has it.
    let gid = env.get(&format!("/v1/requests/{rid}")).await["grant_id"]
        .as_str()
        .expect("grant id")
        .to_owned();
    env.wait_state(&gid, "active", WITHIN).await;
    assert!(env.group_has("oncall", "alice@example.com"));
    alice.goto(&format!("{console}/ui/")).await.expect("mine");
    let row = format!("tr.grant[data-id='{gid}'] .state");
    assert_eq!(text(&alice, &row).await, "active");
    shot(&alice, "my-access").await;

    // It lapses: the page says it ended.
    env.wait_state(&gid, "expired", WITHIN).await;
    assert!(!env.group_has("oncall", "alice@example.com"));
    alice.goto(&format!("{console}/ui/")).await.expect("mine");
    assert_eq!(text(&alice, &row).await, "expired");
    assert_eq!(
        text(&alice, &format!("tr.grant[data-id='{gid}'] .left")).await,
        "ended"
    );
    alice
        .goto(&format!("{console}/ui/grants/{gid}"))
        .await
        .expect("grant page");
    shot(&alice, "grant").await;

    // The auditor filters the history; the CSV export holds exactly the rows shown.
    sign_in(&audrey, &console, "audrey").await;
    audrey
        .goto(&format!(
            "{console}/ui/history?user=alice%40example.com&list=oncall"
        ))
        .await
        .expect("history");
    shot(&audrey, "history").await;
    let shown: Vec<String> = {
        let mut seqs = Vec::new();
        for row in audrey
            .find_all(Locator::Css("#history tr.row"))
            .await
            .expect("rows")
        {
            seqs.push(row.attr("data-seq").await.expect("attr").expect("seq"));
        }
        seqs
    };
    assert!(!shown.is_empty(), "the filter found the grant's rows");
    let href = audrey
        .find(Locator::Id("export-csv"))
        .await
        .expect("export link")
        .attr("href")
        .await
        .expect("attr")
        .expect("href");
    let (audit_cookie, _) = stolen(&audrey).await;
    let csv = http
        .get(format!("{console}{href}"))
        .header("cookie", &audit_cookie)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let exported: Vec<String> = reader
        .records()
        .map(|r| r.expect("a CSV row")[0].to_owned())
        .collect();
    assert_eq!(exported, shown);
    // Everything else in the history is left out by the filter.
    let all = env.get("/v1/history?limit=10000").await["history"]
        .as_array()
        .expect("history")
        .len();
    assert!(
        all > exported.len(),
        "the filter narrowed ({all} rows in all)"
    );

    // The owner reviews the list from its page: alice's box unticked takes her off.
    assert!(
        audrey.goto(&format!("{console}/ui/lists")).await.is_ok()
            && audrey
                .find_all(Locator::Css("form.review"))
                .await
                .expect("find")
                .is_empty(),
        "only owners get the review form"
    );
    olivia
        .goto(&format!("{console}/ui/lists"))
        .await
        .expect("lists");
    shot(&olivia, "lists").await;
    olivia
        .find(Locator::Css(
            "#list-oncall form.review input[value='alice@example.com'][name=keep]",
        ))
        .await
        .expect("alice's box")
        .click()
        .await
        .expect("untick");
    olivia
        .find(Locator::Css("#list-oncall form.review button[type=submit]"))
        .await
        .expect("record")
        .click()
        .await
        .expect("click");
    let notice = olivia
        .wait()
        .for_element(Locator::Id("notice"))
        .await
        .expect("the review's notice")
        .text()
        .await
        .expect("text");
    assert_eq!(notice, "Review recorded.");
    let lists = env.get("/v1/lists").await;
    let oncall = lists["lists"]
        .as_array()
        .expect("lists")
        .iter()
        .find(|l| l["name"] == "oncall")
        .expect("oncall")
        .clone();
    assert_eq!(
        oncall["removed_by_review"],
        json!(["alice@example.com"]),
        "{oncall}"
    );

    for c in [alice, olivia, audrey] {
        let _ = c.close().await;
    }
}

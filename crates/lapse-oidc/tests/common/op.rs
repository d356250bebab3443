//! A real OpenID provider (oidc-provider from the npm registry, `tests/op/provider.mjs`) on
//! loopback, and a client that signs in through its pages with the authorization-code flow and
//! PKCE, as a browser would. Shared by lapse-oidc's tests and the daemon's.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

/// The provider's directory (package.json, provider.mjs).
fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../lapse-oidc/tests/op")
        .canonicalize()
        .expect("the provider's directory exists")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Installs the provider's npm packages from the lock file when they are missing.
fn ensure_installed() {
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir();
    if dir.join("node_modules/oidc-provider").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm runs (node 20 and npm are needed for the OpenID provider)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// A client registered at the provider.
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    pub redirect_uri: &'static str,
}

pub const LAPSE: Client = Client {
    id: "lapse",
    secret: "lapse-client-secret",
    redirect_uri: "http://127.0.0.1:9/callback",
};

pub const OTHER: Client = Client {
    id: "another-app",
    secret: "another-secret",
    redirect_uri: "http://127.0.0.1:9/other",
};

pub struct Provider {
    child: Child,
    pub issuer: String,
}

/// The accounts every test provider knows: login name → claims.
pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "groups": ["engineering"]},
        "olivia": {"email": "olivia@example.com", "email_verified": true, "groups": ["engineering", "db-owners"]},
        "root": {"email": "root@example.com", "email_verified": true, "groups": ["platform-admins"]},
        "audrey": {"email": "audrey@example.com", "email_verified": true, "groups": ["audit"]},
        "mallory": {"email": "mallory@example.com", "email_verified": false, "groups": ["platform-admins"]},
        "sam": {"email": "sam@example.com", "email_verified": true, "groups": ["sales"]}
    })
}

impl Provider {
    /// Starts a provider whose ID tokens live `id_token_ttl` seconds.
    pub fn start(id_token_ttl: u64) -> Self {
        Self::start_with(id_token_ttl, Vec::new())
    }

    /// As [`Self::start`], with more registered clients (`client_id`, `client_secret`,
    /// `redirect_uris`).
    pub fn start_with(id_token_ttl: u64, more_clients: Vec<Value>) -> Self {
        ensure_installed();
        let mut clients: Vec<Value> = [LAPSE, OTHER]
            .iter()
            .map(|c| {
                json!({
                    "client_id": c.id, "client_secret": c.secret,
                    "redirect_uris": [c.redirect_uri]
                })
            })
            .collect();
        clients.extend(more_clients);
        let config = json!({
            "accounts": accounts(),
            "clients": clients,
            "id_token_ttl": id_token_ttl,
        });
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg(config.to_string())
            .current_dir(dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the provider says where it listens");
        let said: Value = serde_json::from_str(&line).expect("a JSON line");
        let issuer = said["issuer"].as_str().expect("issuer").to_owned();
        Self { child, issuer }
    }

    /// Signs `login` in through the provider's pages for `client` and returns the token
    /// endpoint's answer (`id_token`, `access_token`, …).
    pub async fn sign_in(&self, client: &Client, login: &str) -> Value {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let verifier = format!("{:x}{:x}", rand::random::<u128>(), rand::random::<u128>());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&format!("{}/auth", self.issuer)).expect("url");
        url.query_pairs_mut()
            .append_pair("client_id", client.id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email groups")
            .append_pair("redirect_uri", client.redirect_uri)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st")
            .append_pair("nonce", "nn");
        let callback = self
            .follow(&http, url.as_str(), client.redirect_uri, login)
            .await;
        let u = reqwest::Url::parse(&callback).expect("callback url");
        let code = u
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {callback}"))
            .1
            .into_owned();
        let resp = http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client.id, Some(client.secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", client.redirect_uri),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .expect("token endpoint answers");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token JSON");
        assert!(status.is_success(), "token endpoint: {status} {body}");
        body
    }

    /// Follows the provider's pages from `start` as `login` (the login form, then consent) and
    /// returns the URL the provider finally redirects to under `redirect_prefix`.
    pub async fn follow(
        &self,
        http: &reqwest::Client,
        start: &str,
        redirect_prefix: &str,
        login: &str,
    ) -> String {
        let mut next = start.to_owned();
        loop {
            let resp = http.get(&next).send().await.expect("provider answers");
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| l.to_str().expect("ascii").to_owned());
            if let Some(loc) = location {
                let loc = self.absolute(&loc);
                if loc.starts_with(redirect_prefix) {
                    return loc;
                }
                next = loc;
                continue;
            }
            // An interaction page: the login form, then the consent form.
            let page = resp.text().await.expect("page");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("no form on the page: {page}"))
                .to_owned();
            let form: Vec<(&str, &str)> = if page.contains("value=\"login\"") {
                vec![("prompt", "login"), ("login", login), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let resp = http
                .post(self.absolute(&action))
                .form(&form)
                .send()
                .await
                .expect("form posted");
            let loc = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .unwrap_or_else(|| panic!("the form answered {} without a redirect", resp.status()))
                .to_str()
                .expect("ascii")
                .to_owned();
            next = self.absolute(&loc);
        }
    }

    /// A client for [`Self::follow`]: keeps the provider's cookies, follows no redirect itself.
    pub fn browser() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    fn absolute(&self, loc: &str) -> String {
        if loc.starts_with('/') {
            format!("{}{loc}", self.issuer)
        } else {
            loc.to_owned()
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `lapse login` for people at a terminal: the authorization-code flow with PKCE and a loopback
//! redirect (RFC 8252 §7.3): the CLI listens on 127.0.0.1 on a port the system picks, the
//! person signs in in a browser, the issuer redirects back with a code, and the CLI exchanges it
//! for an ID token without a client secret. The token is kept in the user's config directory,
//! readable by the user only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::Discovery;

/// A signed-in CLI: what `lapse login` stores and every API call then sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    pub issuer: String,
    pub client_id: String,
    pub id_token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `$LAPSE_LOGIN_FILE`, else `$XDG_CONFIG_HOME/lapse/login.json`, else
/// `~/.config/lapse/login.json`.
pub fn login_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("LAPSE_LOGIN_FILE") {
        return Some(PathBuf::from(f));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("lapse").join("login.json"))
}

/// Writes `login` to `path`: the directory 0700 and the file 0600 from the start, so the token
/// is never readable by others, whatever the umask.
pub fn save(path: &Path, login: &StoredLogin) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: narrow it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(serde_json::to_string_pretty(login)?.as_bytes())?;
    f.sync_all()
}

/// The stored login, if there is one and it has not expired.
pub fn load(path: &Path, now: DateTime<Utc>) -> Option<StoredLogin> {
    let text = std::fs::read_to_string(path).ok()?;
    let login: StoredLogin = serde_json::from_str(&text).ok()?;
    match login.expires_at {
        Some(t) if t <= now => None,
        _ => Some(login),
    }
}

/// A sign-in waiting for the browser to come back.
pub struct LoopbackSignIn {
    /// Where the person signs in: open it in a browser.
    pub url: String,
    listener: tokio::net::TcpListener,
    redirect_uri: String,
    state: String,
    verifier: String,
    token_endpoint: String,
    issuer: String,
    client_id: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

impl LoopbackSignIn {
    /// Discovers `issuer` and listens on a loopback port for its redirect.
    pub async fn start(issuer: &str, client_id: &str, scopes: &[String]) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let d: Discovery = crate::fetch_json(&http, &url)
            .await
            .map_err(|e| format!("--issuer: fetching {url}: {e}"))?;
        if d.issuer != issuer {
            return Err(format!(
                "--issuer: the issuer calls itself {:?}; give exactly that",
                d.issuer
            ));
        }
        let (Some(auth), Some(token_endpoint)) = (d.authorization_endpoint, d.token_endpoint)
        else {
            return Err("the issuer names no authorization or token endpoint".into());
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("listening on 127.0.0.1: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let (state, verifier) = (token(), token());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let mut u = reqwest::Url::parse(&auth).map_err(|e| e.to_string())?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Self {
            url: u.to_string(),
            listener,
            redirect_uri,
            state,
            verifier,
            token_endpoint,
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            http,
        })
    }

    /// Waits up to `within` for the browser to come back, then exchanges the code.
    pub async fn finish(self, within: Duration) -> Result<StoredLogin, String> {
        let (tx, mut rx) = mpsc::channel::<Callback>(1);
        async fn back(
            State(tx): State<mpsc::Sender<Callback>>,
            Query(c): Query<Callback>,
        ) -> Html<&'static str> {
            let ok = c.code.is_some();
            let _ = tx.send(c).await;
            Html(if ok {
                "<!doctype html><title>lapse</title><p>Signed in. You may close this window.</p>"
            } else {
                "<!doctype html><title>lapse</title><p>Sign-in failed; see the terminal.</p>"
            })
        }
        let app = axum::Router::new()
            .route("/callback", axum::routing::get(back))
            .with_state(tx);
        let server = tokio::spawn(axum::serve(self.listener, app).into_future());
        let got = tokio::time::timeout(within, rx.recv()).await;
        server.abort();
        let c = match got {
            Ok(Some(c)) => c,
            _ => return Err(format!("no sign-in came back within {}s", within.as_secs())),
        };
        if let Some(e) = c.error {
            return Err(format!(
                "the issuer refused: {e} {}",
                c.error_description.unwrap_or_default()
            ));
        }
        if c.state.as_deref() != Some(self.state.as_str()) {
            return Err("the answer's state is not this sign-in's".into());
        }
        let code = c.code.ok_or("the issuer sent no code")?;
        let resp = self
            .http
            .post(&self.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("client_id", self.client_id.as_str()),
                ("code_verifier", self.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("exchanging the code: {e}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("the token answer: {e}"))?;
        if !status.is_success() {
            return Err(format!("the issuer answered {status}: {body}"));
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or("the token answer has no id_token")?
            .to_owned();
        let expires_at = body["expires_in"]
            .as_i64()
            .map(|s| Utc::now() + chrono::Duration::seconds(s));
        Ok(StoredLogin {
            issuer: self.issuer,
            client_id: self.client_id,
            id_token,
            expires_at,
        })
    }
}

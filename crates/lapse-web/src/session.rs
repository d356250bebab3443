//! The console's session and sign-in state, each in a signed (HMAC-SHA256) cookie, and the
//! per-session CSRF token every form carries.

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use chrono::{DateTime, Utc};
use lapse_core::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SESSION: &str = "lapse_session";
pub const SIGN_IN: &str = "lapse_signin";

/// A signed-in person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub identity: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    /// Put in every form and checked on every POST.
    pub csrf: String,
}

/// A sign-in under way: what the callback must see again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub started: DateTime<Utc>,
}

pub fn random_token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

pub fn jar(headers: &HeaderMap, key: &Key) -> SignedCookieJar {
    SignedCookieJar::from_headers(headers, key.clone())
}

/// The session in `headers`, if its cookie is signed by `key` and not expired.
pub fn session(headers: &HeaderMap, key: &Key, now: DateTime<Utc>) -> Option<Session> {
    let c = jar(headers, key).get(SESSION)?;
    let s: Session = serde_json::from_str(c.value()).ok()?;
    (s.expires_at > now).then_some(s)
}

pub fn sign_in(headers: &HeaderMap, key: &Key) -> Option<SignIn> {
    let c = jar(headers, key).get(SIGN_IN)?;
    serde_json::from_str(c.value()).ok()
}

/// A cookie for the console's paths. The session is `SameSite=Strict`; the sign-in state must
/// come back on the issuer's redirect, a cross-site navigation, so it is `Lax`.
pub fn cookie(name: &'static str, value: String, strict: bool, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/ui")
        .http_only(true)
        .secure(secure)
        .same_site(if strict {
            SameSite::Strict
        } else {
            SameSite::Lax
        })
        .build()
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/ui").build()
}

/// Whether a form's token is the session's, compared without an early exit.
pub fn csrf_ok(session: &Session, presented: &str) -> bool {
    let a = Sha256::digest(session.csrf.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

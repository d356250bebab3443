//! OpenID Connect for lapse's API: a bearer token that is a JWT from the configured issuer is
//! verified against the issuer's published keys (signature, `iss`, `aud`, `exp`, `nbf`, with a
//! small clock skew) and mapped to an identity (a configured claim, `email` by default, which
//! must be verified) and a role (the groups claim through `[auth.oidc.roles]`).
//!
//! The mapping from claims to a caller is pure ([`map_claims`]); [`Verifier`] adds the IO: the
//! discovery document once at start, the key set cached and fetched again when a token names a
//! key it does not hold (at most once per [`MIN_REFRESH`]).

pub mod native;
mod settings;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use lapse_core::Role;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::RwLock;

pub use settings::{OidcSettings, RoleGroups, SettingsProblem};

/// The shortest wait between two fetches of the key set, so tokens naming unknown keys cannot
/// make lapse hammer the issuer.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// Signature algorithms accepted: asymmetric only. `none` and the HMAC family are never
/// accepted, whatever a token's header says.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcCaller {
    /// The issuer's `sub`.
    pub subject: String,
    /// The identity claim's value, normalised as access lists normalise members.
    pub identity: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// Why a bearer JWT was refused. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("signed with {0:?}, which lapse does not accept (asymmetric algorithms only)")]
    Algorithm(Algorithm),
    #[error("signed with key {kid:?}, which the issuer does not publish")]
    UnknownKey { kid: String },
    #[error("the signature does not verify with the issuer's key")]
    Signature,
    #[error("issued by another issuer (expected {expected})")]
    Issuer { expected: String },
    #[error("issued for another audience (accepted: {accepted})")]
    Audience { accepted: String },
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf in the future)")]
    NotYetValid,
    #[error("claim `{claim}` is missing or not {expected}")]
    Claim {
        claim: String,
        expected: &'static str,
    },
    #[error("the email address is not verified by the issuer (email_verified is not true)")]
    EmailNotVerified,
    #[error("none of the groups in claim `{claim}` is mapped to a lapse role ([auth.oidc.roles])")]
    NoRole { claim: String },
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// A failure at start: the issuer could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("auth.oidc.issuer: fetching {url}: {cause}")]
    Discovery { url: String, cause: String },
    #[error(
        "auth.oidc.issuer: the discovery document names issuer {found:?}, not {configured:?}; set auth.oidc.issuer to exactly the issuer's identifier"
    )]
    IssuerMismatch { configured: String, found: String },
    #[error("auth.oidc: fetching the key set {url}: {cause}")]
    Keys { url: String, cause: String },
}

/// The parts of the discovery document lapse uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Verifies bearer JWTs from one issuer. Cheap to share behind an `Arc`.
pub struct Verifier {
    settings: OidcSettings,
    discovery: Discovery,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.discovery.issuer)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Reads the issuer's discovery document and key set. The issuer in the document must be
    /// the configured one, character for character (OpenID Connect Discovery §4.3).
    pub async fn discover(settings: OidcSettings) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Discovery {
                url: settings.issuer.clone(),
                cause: e.to_string(),
            })?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let discovery: Discovery =
            fetch_json(&http, &url)
                .await
                .map_err(|cause| OidcError::Discovery {
                    url: url.clone(),
                    cause,
                })?;
        if discovery.issuer != settings.issuer {
            return Err(OidcError::IssuerMismatch {
                configured: settings.issuer.clone(),
                found: discovery.issuer,
            });
        }
        let set: JwkSet = fetch_json(&http, &discovery.jwks_uri)
            .await
            .map_err(|cause| OidcError::Keys {
                url: discovery.jwks_uri.clone(),
                cause,
            })?;
        tracing::info!(issuer = %discovery.issuer, keys = set.keys.len(), "OpenID issuer discovered");
        Ok(Self {
            settings,
            discovery,
            http,
            keys: RwLock::new(Keys {
                set,
                fetched: Instant::now(),
            }),
        })
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Whether a bearer token looks like a JWT (three base64url parts), so the caller can tell
    /// it from an API token without trying both.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = token.split('.');
        let three = parts.by_ref().take(3).count() == 3 && parts.next().is_none();
        three
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// Verifies `token` and maps it to a caller.
    pub async fn verify(&self, token: &str) -> Result<OidcCaller, Refusal> {
        let claims = self.verified_claims(token).await?;
        map_claims(&self.settings, &claims)
    }

    /// Verifies the ID token of a browser sign-in: as [`Self::verify`], and its `nonce` must be
    /// the one this sign-in sent, so a token from another sign-in cannot be replayed into it.
    pub async fn verify_sign_in(&self, token: &str, nonce: &str) -> Result<OidcCaller, Refusal> {
        let claims = self.verified_claims(token).await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(Refusal::Nonce);
        }
        map_claims(&self.settings, &claims)
    }

    async fn verified_claims(&self, token: &str) -> Result<Value, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(Refusal::Algorithm(header.alg));
        }
        let jwk = self.key_for(header.kid.as_deref()).await?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(Refusal::Algorithm(header.alg));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        let audiences = self.settings.accepted_audiences();
        validation.set_audience(&audiences);
        validation.leeway = self.settings.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::NotYetValid,
            ErrorKind::InvalidAudience => Refusal::Audience {
                accepted: audiences.join(", "),
            },
            ErrorKind::InvalidIssuer => Refusal::Issuer {
                expected: self.settings.issuer.clone(),
            },
            ErrorKind::InvalidSignature => Refusal::Signature,
            ErrorKind::MissingRequiredClaim(c) => Refusal::Claim {
                claim: c.clone(),
                expected: "present",
            },
            ErrorKind::InvalidAlgorithm => Refusal::Algorithm(header.alg),
            other => Refusal::Malformed(format!("{other:?}")),
        })?;
        Ok(data.claims)
    }

    /// The published key `kid` names; fetches the key set again when it is unknown (the issuer
    /// rotated its keys), at most once per [`MIN_REFRESH`].
    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, Refusal> {
        if let Some(jwk) = pick(&self.keys.read().await.set, kid) {
            return Ok(jwk);
        }
        // Claim the refresh under the lock, fetch without it: verification of tokens with
        // known keys never waits behind a slow issuer.
        {
            let mut keys = self.keys.write().await;
            // Another caller may have fetched while this one waited for the lock.
            if let Some(jwk) = pick(&keys.set, kid) {
                return Ok(jwk);
            }
            if keys.fetched.elapsed() < MIN_REFRESH {
                return Err(Refusal::UnknownKey {
                    kid: kid.unwrap_or("(none)").to_owned(),
                });
            }
            keys.fetched = Instant::now();
        }
        let set: JwkSet = fetch_json(&self.http, &self.discovery.jwks_uri)
            .await
            .map_err(Refusal::KeysUnavailable)?;
        tracing::info!(keys = set.keys.len(), "OpenID key set fetched again");
        let found = pick(&set, kid);
        self.keys.write().await.set = set;
        if let Some(jwk) = found {
            return Ok(jwk);
        }
        Err(Refusal::UnknownKey {
            kid: kid.unwrap_or("(none)").to_owned(),
        })
    }
}

/// The key a header's `kid` names; without a `kid`, the only signing key if there is one.
fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    let mut signing = set.keys.iter().filter(|k| {
        !matches!(
            k.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        )
    });
    match kid {
        Some(kid) => signing
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let all: Vec<&Jwk> = signing.collect();
            (all.len() == 1).then(|| all[0].clone())
        }
    }
}

async fn fetch_json<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    resp.json::<T>().await.map_err(|e| e.to_string())
}

/// Maps verified claims to a caller: the identity claim (an `email` must come with
/// `email_verified: true`) and the most capable role any of the caller's groups is mapped to,
/// in the order admin, operator, requester, auditor. No mapped group, no access.
pub fn map_claims(settings: &OidcSettings, claims: &Value) -> Result<OidcCaller, Refusal> {
    let text = |claim: &str| {
        claims
            .get(claim)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Refusal::Claim {
                claim: claim.to_owned(),
                expected: "a non-empty string",
            })
    };
    let subject = text("sub")?.to_owned();
    let identity = text(&settings.identity_claim)?;
    if settings.identity_claim == "email"
        && claims.get("email_verified").and_then(Value::as_bool) != Some(true)
    {
        return Err(Refusal::EmailNotVerified);
    }
    let groups: Vec<&str> = match claims.get(&settings.groups_claim) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let role = settings
        .roles
        .role_for(&groups)
        .ok_or_else(|| Refusal::NoRole {
            claim: settings.groups_claim.clone(),
        })?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| Refusal::Claim {
            claim: "exp".into(),
            expected: "a time in seconds",
        })?;
    Ok(OidcCaller {
        subject,
        identity: lapse_core::access_list::normalize_identity(identity),
        role,
        expires_at: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> OidcSettings {
        let mut s = OidcSettings::for_issuer("https://idp.example.com", "lapse");
        s.roles = RoleGroups {
            admin: vec!["platform-admins".into()],
            operator: vec!["deploy-bots".into()],
            requester: vec!["engineering".into()],
            auditor: vec!["audit".into()],
        };
        s
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"sub": "u-1", "email": "Alice@Example.com", "email_verified": true,
                           "exp": 4_000_000_000_i64, "groups": ["engineering"]});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn a_member_of_a_mapped_group_gets_its_role_and_a_normalised_identity() {
        let c = map_claims(&settings(), &claims(json!({}))).expect("maps");
        assert_eq!(c.role, Role::Requester);
        assert_eq!(c.identity, "alice@example.com");
        assert_eq!(c.subject, "u-1");
    }

    #[test]
    fn the_most_capable_mapped_role_wins() {
        let c = map_claims(
            &settings(),
            &claims(json!({"groups": ["audit", "engineering", "platform-admins"]})),
        )
        .expect("maps");
        assert_eq!(c.role, Role::Admin);
        let c = map_claims(
            &settings(),
            &claims(json!({"groups": ["audit", "engineering"]})),
        )
        .expect("maps");
        assert_eq!(c.role, Role::Requester);
    }

    #[test]
    fn no_mapped_group_means_no_access() {
        let e = map_claims(&settings(), &claims(json!({"groups": ["sales"]}))).unwrap_err();
        assert_eq!(
            e,
            Refusal::NoRole {
                claim: "groups".into()
            }
        );
        let mut c = claims(json!({}));
        c.as_object_mut().map(|o| o.remove("groups"));
        assert!(matches!(
            map_claims(&settings(), &c),
            Err(Refusal::NoRole { .. })
        ));
    }

    #[test]
    fn an_unverified_email_is_refused() {
        let e = map_claims(&settings(), &claims(json!({"email_verified": false}))).unwrap_err();
        assert_eq!(e, Refusal::EmailNotVerified);
        let mut c = claims(json!({}));
        c.as_object_mut().map(|o| o.remove("email_verified"));
        assert_eq!(
            map_claims(&settings(), &c).unwrap_err(),
            Refusal::EmailNotVerified
        );
    }

    #[test]
    fn another_identity_claim_needs_no_email_verification() {
        let mut s = settings();
        s.identity_claim = "preferred_username".into();
        let c = map_claims(
            &s,
            &claims(json!({"preferred_username": "alice", "email_verified": false})),
        )
        .expect("maps");
        assert_eq!(c.identity, "alice");
        let e = map_claims(&s, &claims(json!({}))).unwrap_err();
        assert!(matches!(e, Refusal::Claim { ref claim, .. } if claim == "preferred_username"));
    }

    #[test]
    fn jwt_shape_is_told_from_an_api_token() {
        assert!(Verifier::looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!Verifier::looks_like_jwt("lapse_abcdef0123"));
        assert!(!Verifier::looks_like_jwt("a.b"));
        assert!(!Verifier::looks_like_jwt("a.b.c.d"));
        assert!(!Verifier::looks_like_jwt("a b.c.d"));
    }
}

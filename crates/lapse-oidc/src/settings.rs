//! `[auth.oidc]`: the issuer, the audiences accepted, and how claims map to identity and role.

use std::path::PathBuf;
use std::time::Duration;

use lapse_core::Role;
use serde::Deserialize;

/// `[auth.oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer's identifier, exactly as its discovery document states it.
    pub issuer: String,
    /// lapse's client id at the issuer; also an accepted `aud`.
    pub client_id: String,
    /// Further accepted audiences (for example the CLI's own client id).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A file holding the client secret (used by the browser sign-in), never the secret itself.
    pub client_secret_file: Option<PathBuf>,
    /// Where the issuer sends the browser back after sign-in: the console's `/ui/callback`.
    /// With this and the client secret set, the daemon serves the web console at `/ui/`.
    pub redirect_url: Option<String>,
    /// How long a console session lasts before signing in again.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Scopes asked for at sign-in; add the one your issuer needs for the groups claim.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the person; `email` (which must be verified) by default.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// The claim listing the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Which groups give which role.
    #[serde(default)]
    pub roles: RoleGroups,
    /// How far the issuer's clock may be from lapse's when `exp` and `nbf` are checked.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
}

/// `[auth.oidc.roles]`: the issuer's group names that give each role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGroups {
    #[serde(default)]
    pub admin: Vec<String>,
    #[serde(default)]
    pub operator: Vec<String>,
    #[serde(default)]
    pub requester: Vec<String>,
    #[serde(default)]
    pub auditor: Vec<String>,
}

impl RoleGroups {
    /// The most capable role one of `groups` is mapped to (admin, operator, requester, auditor).
    pub fn role_for(&self, groups: &[&str]) -> Option<Role> {
        [
            (Role::Admin, &self.admin),
            (Role::Operator, &self.operator),
            (Role::Requester, &self.requester),
            (Role::Auditor, &self.auditor),
        ]
        .into_iter()
        .find(|(_, mapped)| mapped.iter().any(|g| groups.contains(&g.as_str())))
        .map(|(role, _)| role)
    }

    fn is_empty(&self) -> bool {
        self.admin.is_empty()
            && self.operator.is_empty()
            && self.requester.is_empty()
            && self.auditor.is_empty()
    }
}

/// A setting that cannot work, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}; {fix}")]
pub struct SettingsProblem {
    pub key: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into()]
}

fn default_identity_claim() -> String {
    "email".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

/// The largest clock skew accepted: beyond it an expired token would live on noticeably.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

impl OidcSettings {
    /// Settings for `issuer` and `client_id` with every default and no role mapped.
    pub fn for_issuer(issuer: &str, client_id: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            audiences: Vec::new(),
            client_secret_file: None,
            redirect_url: None,
            scopes: default_scopes(),
            session_ttl: default_session_ttl(),
            identity_claim: default_identity_claim(),
            groups_claim: default_groups_claim(),
            roles: RoleGroups::default(),
            clock_skew: default_clock_skew(),
        }
    }

    /// The `aud` values a token may carry.
    pub fn accepted_audiences(&self) -> Vec<String> {
        let mut all = vec![self.client_id.clone()];
        all.extend(self.audiences.iter().cloned());
        all
    }

    /// Every rule the settings must meet before the daemon starts.
    pub fn validate(&self) -> Result<(), SettingsProblem> {
        let loopback_http = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| self.issuer.starts_with(p));
        if !(self.issuer.starts_with("https://") || loopback_http) {
            return Err(SettingsProblem {
                key: "auth.oidc.issuer",
                problem: format!("{:?} is not an https URL", self.issuer),
                fix: "give the issuer's https URL, e.g. https://accounts.example.com (plain http only on loopback)",
            });
        }
        if self.client_id.trim().is_empty() {
            return Err(SettingsProblem {
                key: "auth.oidc.client_id",
                problem: "is empty".into(),
                fix: "give the client id lapse is registered with at the issuer",
            });
        }
        if self.roles.is_empty() {
            return Err(SettingsProblem {
                key: "auth.oidc.roles",
                problem: "maps no group to a role, so nobody signing in could do anything".into(),
                fix: "map the issuer's groups, e.g. [auth.oidc.roles] requester = [\"engineering\"]",
            });
        }
        if self.redirect_url.is_some() != self.client_secret_file.is_some() {
            return Err(SettingsProblem {
                key: "auth.oidc.redirect_url",
                problem: "the web console needs both redirect_url and client_secret_file".into(),
                fix: "set both (the console is served at /ui/) or neither (API bearer tokens only)",
            });
        }
        if let Some(r) = &self.redirect_url
            && !r.ends_with("/ui/callback")
        {
            return Err(SettingsProblem {
                key: "auth.oidc.redirect_url",
                problem: format!("{r:?} is not the console's callback"),
                fix: "give this daemon's URL ending in /ui/callback, registered at the issuer",
            });
        }
        if self.clock_skew > MAX_CLOCK_SKEW {
            return Err(SettingsProblem {
                key: "auth.oidc.clock_skew",
                problem: format!("{}s is more than 5m", self.clock_skew.as_secs()),
                fix: "set a skew of at most 5m (60s is usual) and keep the clocks in sync",
            });
        }
        Ok(())
    }
}

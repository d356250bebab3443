//! Grant policies (who may grant what directly, to whom, for how long) and the one rule that decides whether a direct grant is allowed.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::Deserialize;

use crate::access_list::{AccessList, ListFileError, normalize_identity};
use crate::grant::{Grant, GrantKind, GrantSpec, Principal};
use crate::policy::human_duration;
use crate::role::Role;

/// One grant policy, as loaded from a file in `[access] policies_dir`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrantPolicy {
    pub name: String,
    pub description: String,
    /// Token names that may use the policy.
    pub tokens: Vec<String>,
    /// Identities (normalised) whose tokens may use the policy.
    pub identities: Vec<String>,
    pub kinds: Vec<GrantKind>,
    /// Resources, groups or service accounts the grant may reach (names or ids).
    pub targets: Vec<String>,
    /// Who may receive the access: users, groups or service accounts (names or ids).
    pub subjects: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub max_duration: Duration,
    /// The file the policy came from.
    pub file: String,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(*d))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    policy: Vec<toml::Spanned<RawPolicy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    identities: Vec<String>,
    kinds: Vec<String>,
    targets: Vec<String>,
    subjects: Vec<String>,
    max_duration: String,
}

/// The loaded policies, by name.
pub type PolicySet = BTreeMap<String, GrantPolicy>;

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

fn non_empty(field: &str, v: &[String]) -> Result<Vec<String>, String> {
    let out: Vec<String> = v.iter().map(|s| s.trim().to_owned()).collect();
    if out.is_empty() || out.iter().any(String::is_empty) {
        return Err(format!(
            "{field} must name at least one entry, none of them blank"
        ));
    }
    Ok(out)
}

fn check_policy(raw: RawPolicy, file: &str, cap: Duration) -> Result<GrantPolicy, String> {
    let name = raw.name.trim().to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!(
            "name = {:?} must be letters, digits, `-`, `_` or `.`",
            raw.name
        ));
    }
    if raw.tokens.is_empty() && raw.identities.is_empty() {
        return Err(format!(
            "policy `{name}` names nobody: give `tokens` or `identities`"
        ));
    }
    let kinds = raw
        .kinds
        .iter()
        .map(|k| k.trim().parse::<GrantKind>())
        .collect::<Result<Vec<_>, _>>()?;
    if kinds.is_empty() {
        return Err(format!("policy `{name}` allows no kinds: give `kinds`"));
    }
    let d = humantime::parse_duration(raw.max_duration.trim())
        .ok()
        .and_then(|d| Duration::from_std(d).ok())
        .filter(|d| *d > Duration::zero())
        .ok_or_else(|| format!("max_duration = {:?} is not a duration", raw.max_duration))?;
    if d > cap {
        return Err(format!(
            "max_duration = {:?} is longer than grants.max_duration ({})",
            raw.max_duration,
            human_duration(cap)
        ));
    }
    Ok(GrantPolicy {
        name,
        description: raw.description,
        tokens: raw.tokens.iter().map(|t| t.trim().to_owned()).collect(),
        identities: raw
            .identities
            .iter()
            .map(|i| normalize_identity(i))
            .collect(),
        kinds,
        targets: non_empty("targets", &raw.targets)?,
        subjects: non_empty("subjects", &raw.subjects)?,
        max_duration: d,
        file: file.to_owned(),
    })
}

/// Parses one policy file; any mistake refuses the whole file, naming the line. `cap` is
/// `grants.max_duration`: a policy allowing longer is refused.
pub fn parse_file(
    file: &str,
    contents: &str,
    cap: Duration,
) -> Result<Vec<GrantPolicy>, ListFileError> {
    let err = |line: Option<usize>, problem: String| ListFileError {
        file: file.to_owned(),
        line,
        problem,
    };
    let raw: RawFile = toml::from_str(contents).map_err(|e| {
        let line = e.span().map(|s| line_of(contents, s.start));
        err(line, e.message().trim().to_owned())
    })?;
    let mut out: Vec<GrantPolicy> = Vec::new();
    for spanned in raw.policy {
        let line = line_of(contents, spanned.span().start);
        let p = check_policy(spanned.into_inner(), file, cap).map_err(|m| err(Some(line), m))?;
        if out.iter().any(|o| o.name == p.name) {
            return Err(err(
                Some(line),
                format!("policy `{}` is defined twice", p.name),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// Loads `files` over `previous`: a refused file keeps its old policies in force.
pub fn load(
    files: &[(String, String)],
    previous: &PolicySet,
    cap: Duration,
) -> (PolicySet, Vec<ListFileError>) {
    let mut set = PolicySet::new();
    let mut errors = Vec::new();
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, contents) in sorted {
        let parsed = parse_file(name, contents, cap).and_then(|ps| {
            match ps.iter().find(|p| set.contains_key(&p.name)) {
                Some(dup) => Err(ListFileError {
                    file: name.clone(),
                    line: None,
                    problem: format!("policy `{}` is already defined in another file", dup.name),
                }),
                None => Ok(ps),
            }
        });
        match parsed {
            Ok(ps) => set.extend(ps.into_iter().map(|p| (p.name.clone(), p))),
            Err(e) => {
                errors.push(e);
                for p in previous.values().filter(|p| &p.file == name) {
                    set.entry(p.name.clone()).or_insert_with(|| p.clone());
                }
            }
        }
    }
    (set, errors)
}

/// Who asks for a direct grant.
#[derive(Debug, Clone, Copy)]
pub struct Granter<'a> {
    pub token: &'a str,
    pub role: Role,
    /// Normalised identity, if the token is bound to one.
    pub identity: Option<&'a str>,
}

/// The rule that authorized a direct grant, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectRule {
    Admin,
    Policy(String),
}

impl DirectRule {
    /// `admin` or `policy:<name>`.
    pub fn label(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Policy(p) => format!("policy:{p}"),
        }
    }
}

/// Why a direct grant is refused; each message says what would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectRefusal {
    #[error(
        "`{target}` is governed by access list `{list}`, which needs an owner's approval: \
         nobody grants it directly; request it with `lapse request {list} --reason ...`{glass}"
    )]
    GovernedByList {
        target: String,
        list: String,
        glass: &'static str,
    },
    #[error(
        "the {role} role may not grant directly: request access through an access list \
         (`lapse lists`)"
    )]
    RoleMayNotGrant { role: Role },
    #[error(
        "no grant policy allows token `{token}` to grant this directly ({why}); an admin may \
         add one in [access] policies_dir, or request through an access list"
    )]
    NoPolicy { token: String, why: String },
}

/// The people, groups and accounts receiving access, and what they reach.
pub fn subjects_and_targets(spec: &GrantSpec) -> (Vec<&Principal>, Vec<&Principal>) {
    match spec {
        GrantSpec::EphemeralGroup { users, resources } => {
            (users.iter().collect(), resources.iter().collect())
        }
        GrantSpec::GroupMembership { group, users } => (users.iter().collect(), vec![group]),
        GrantSpec::GroupAccess { group, resources } => (vec![group], resources.iter().collect()),
        GrantSpec::ServiceAccess {
            service_account,
            resources,
        } => (vec![service_account], resources.iter().collect()),
        GrantSpec::ServiceKey { service_account } => (vec![service_account], Vec::new()),
    }
}

fn names(p: &Principal, entry: &str) -> bool {
    let e = entry.trim();
    p.id.as_str() == e || p.name.eq_ignore_ascii_case(e)
}

/// Every non-user principal a grant touches: what a list or policy governs.
fn governed_principals(spec: &GrantSpec) -> Vec<&Principal> {
    let (subjects, mut targets) = subjects_and_targets(spec);
    if !matches!(
        spec,
        GrantSpec::EphemeralGroup { .. } | GrantSpec::GroupMembership { .. }
    ) {
        targets.extend(subjects);
    }
    targets
}

/// The access list needing approval that governs something `grant` touches, if any.
pub fn governing_list<'a>(
    grant: &Grant,
    lists: impl IntoIterator<Item = &'a AccessList>,
) -> Option<(&'a AccessList, String)> {
    let touched = governed_principals(&grant.spec);
    for l in lists {
        if l.auto_approve {
            continue;
        }
        let t = &l.target;
        let entries = t
            .resources
            .iter()
            .chain(t.group.iter())
            .chain(t.service_account.iter());
        for e in entries {
            if let Some(p) = touched.iter().find(|p| names(p, e)) {
                return Some((l, p.name.clone()));
            }
        }
    }
    None
}

/// Why `p` does not allow `grant` from `who`, or `None` when it does.
fn policy_mismatch(p: &GrantPolicy, who: Granter<'_>, grant: &Grant) -> Option<String> {
    let named = p.tokens.iter().any(|t| t == who.token)
        || who
            .identity
            .is_some_and(|i| p.identities.iter().any(|x| x == i));
    if !named {
        return Some(format!("policy `{}` does not name this token", p.name));
    }
    if !p.kinds.contains(&grant.kind()) {
        return Some(format!(
            "policy `{}` does not allow kind {}",
            p.name,
            grant.kind()
        ));
    }
    let (subjects, targets) = subjects_and_targets(&grant.spec);
    let targets: Vec<&Principal> = match &grant.spec {
        // The account receiving a key is what the key reaches.
        GrantSpec::ServiceKey { .. } => subjects.clone(),
        _ => targets,
    };
    if let Some(t) = targets
        .iter()
        .find(|t| !p.targets.iter().any(|e| names(t, e)))
    {
        return Some(format!(
            "policy `{}` does not cover target `{}`",
            p.name, t.name
        ));
    }
    if let Some(s) = subjects
        .iter()
        .find(|s| !p.subjects.iter().any(|e| names(s, e)))
    {
        return Some(format!(
            "policy `{}` does not allow granting to `{}`",
            p.name, s.name
        ));
    }
    let length = grant.expires_at - grant.starts_at;
    if length > p.max_duration {
        return Some(format!(
            "policy `{}` allows at most {}",
            p.name,
            human_duration(p.max_duration)
        ));
    }
    None
}

/// Decides a direct grant (`POST /v1/grants`): refused when a list needing approval governs
/// what it touches (whoever asks); otherwise allowed for admins, for operators within a
/// policy, and never for requesters or auditors.
pub fn authorize_direct<'a>(
    who: Granter<'_>,
    grant: &Grant,
    lists: impl IntoIterator<Item = &'a AccessList>,
    policies: &PolicySet,
) -> Result<DirectRule, DirectRefusal> {
    if let Some((l, target)) = governing_list(grant, lists) {
        return Err(DirectRefusal::GovernedByList {
            target,
            list: l.name.clone(),
            glass: if l.break_glass {
                " (or --break-glass, which notifies its owners)"
            } else {
                ""
            },
        });
    }
    match who.role {
        Role::Admin => Ok(DirectRule::Admin),
        Role::Operator => {
            let mut why = Vec::new();
            for p in policies.values() {
                match policy_mismatch(p, who, grant) {
                    None => return Ok(DirectRule::Policy(p.name.clone())),
                    Some(m) => why.push(m),
                }
            }
            // Mismatches of policies naming someone else say nothing useful to this caller.
            let named: Vec<String> = why
                .into_iter()
                .filter(|m| !m.ends_with("does not name this token"))
                .collect();
            Err(DirectRefusal::NoPolicy {
                token: who.token.to_owned(),
                why: if named.is_empty() {
                    "no policy names this token".to_owned()
                } else {
                    named.join("; ")
                },
            })
        }
        role @ (Role::Requester | Role::Auditor) => Err(DirectRefusal::RoleMayNotGrant { role }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_list::parse_file as parse_lists;
    use crate::grant::{GrantId, GrantState, RetryState};
    use chrono::{TimeZone, Utc};

    const POLICIES: &str = r#"
[[policy]]
name = "deploy-bot"
tokens = ["deploy-bot"]
kinds = ["group-access"]
targets = ["staging-web"]
subjects = ["deployers"]
max_duration = "2h"
"#;

    const LISTS: &str = r#"
[[list]]
name = "prod-db-oncall"
owners = ["bob@example.com"]
members = ["alice@example.com"]
kind = "ephemeral-group"
resources = ["prod-db"]
max_duration = "4h"
approvals = 1
break_glass = true
"#;

    fn grant(spec: GrantSpec, hours: i64) -> Grant {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Grant {
            id: GrantId::from_parts(t, 1),
            spec,
            requester: "x".into(),
            reason: "r".into(),
            created_at: t,
            starts_at: t,
            expires_at: t + Duration::hours(hours),
            state: GrantState::Applying,
            revoked_at: None,
            revoke_reason: None,
            retry: RetryState::default(),
        }
    }

    fn access(group: &str, resource: &str) -> GrantSpec {
        GrantSpec::GroupAccess {
            group: Principal::new("G1", group),
            resources: vec![Principal::new("R1", resource)],
        }
    }

    fn eph(resource: &str) -> GrantSpec {
        GrantSpec::EphemeralGroup {
            users: vec![Principal::new("U1", "alice@example.com")],
            resources: vec![Principal::new("R9", resource)],
        }
    }

    #[test]
    fn every_role_and_rule_decides_as_the_matrix_says() {
        let cap = Duration::hours(24);
        let policies: PolicySet = parse_file("p.toml", POLICIES, cap)
            .unwrap()
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let lists = parse_lists("l.toml", LISTS).unwrap();
        // (role, token, spec, hours, expected: Ok rule or the refusal's variant name)
        type Case = (
            Role,
            &'static str,
            GrantSpec,
            i64,
            Result<DirectRule, &'static str>,
        );
        let cases: Vec<Case> = vec![
            // A list needing approval governs prod-db: nobody grants it directly.
            (
                Role::Admin,
                "root",
                eph("prod-db"),
                1,
                Err("GovernedByList"),
            ),
            (
                Role::Operator,
                "deploy-bot",
                eph("prod-db"),
                1,
                Err("GovernedByList"),
            ),
            (
                Role::Requester,
                "alice",
                eph("prod-db"),
                1,
                Err("GovernedByList"),
            ),
            // Ungoverned: admins may, operators only within a policy, requesters never.
            (Role::Admin, "root", eph("wiki"), 1, Ok(DirectRule::Admin)),
            (
                Role::Requester,
                "alice",
                eph("wiki"),
                1,
                Err("RoleMayNotGrant"),
            ),
            (
                Role::Auditor,
                "audit",
                eph("wiki"),
                1,
                Err("RoleMayNotGrant"),
            ),
            (
                Role::Operator,
                "deploy-bot",
                access("deployers", "staging-web"),
                2,
                Ok(DirectRule::Policy("deploy-bot".into())),
            ),
            (
                Role::Operator,
                "deploy-bot",
                access("deployers", "staging-web"),
                3,
                Err("NoPolicy"),
            ),
            (
                Role::Operator,
                "deploy-bot",
                access("others", "staging-web"),
                1,
                Err("NoPolicy"),
            ),
            (
                Role::Operator,
                "deploy-bot",
                access("deployers", "prod-web"),
                1,
                Err("NoPolicy"),
            ),
            (
                Role::Operator,
                "deploy-bot",
                eph("staging-web"),
                1,
                Err("NoPolicy"),
            ),
            (
                Role::Operator,
                "other-bot",
                access("deployers", "staging-web"),
                1,
                Err("NoPolicy"),
            ),
        ];
        for (role, token, spec, hours, want) in cases {
            let g = grant(spec, hours);
            let who = Granter {
                token,
                role,
                identity: None,
            };
            let got = authorize_direct(who, &g, &lists, &policies);
            match (&got, &want) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{role} {token} {:?}", g.spec),
                (Err(e), Err(name)) => assert!(
                    format!("{e:?}").starts_with(name),
                    "{role} {token} {:?}: got {e:?}, want {name}",
                    g.spec
                ),
                _ => panic!("{role} {token} {:?}: got {got:?}, want {want:?}", g.spec),
            }
        }
    }

    #[test]
    fn refusals_name_what_would_allow_the_grant() {
        let lists = parse_lists("l.toml", LISTS).unwrap();
        let who = Granter {
            token: "root",
            role: Role::Admin,
            identity: None,
        };
        let e = authorize_direct(who, &grant(eph("prod-db"), 1), &lists, &PolicySet::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lapse request prod-db-oncall") && e.contains("break-glass"),
            "{e}"
        );
        let who = Granter {
            token: "deploy-bot",
            role: Role::Operator,
            identity: None,
        };
        let policies = parse_file("p.toml", POLICIES, Duration::hours(24)).unwrap();
        let set: PolicySet = policies.into_iter().map(|p| (p.name.clone(), p)).collect();
        let e = authorize_direct(
            who,
            &grant(access("deployers", "staging-web"), 5),
            &[],
            &set,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("allows at most 2h") && e.contains("policies_dir"),
            "{e}"
        );
    }

    #[test]
    fn bad_policy_files_are_refused_with_file_and_line() {
        let cap = Duration::hours(24);
        let cases = [
            (
                "[[policy]]\nname = \"a\"\nkinds = [\"group-access\"]\ntargets = [\"x\"]\nsubjects = [\"y\"]\nmax_duration = \"1h\"\n",
                1,
                "names nobody",
            ),
            (
                "\n[[policy]]\nname = \"a\"\ntokens = [\"t\"]\nkinds = [\"nope\"]\ntargets = [\"x\"]\nsubjects = [\"y\"]\nmax_duration = \"1h\"\n",
                2,
                "grant kind",
            ),
            (
                "[[policy]]\nname = \"a\"\ntokens = [\"t\"]\nkinds = [\"group-access\"]\ntargets = [\"x\"]\nsubjects = [\"y\"]\nmax_duration = \"48h\"\n",
                1,
                "grants.max_duration",
            ),
            (
                "[[policy]]\nname = \"a\"\ntokens = [\"t\"]\nkinds = [\"group-access\"]\ntargets = []\nsubjects = [\"y\"]\nmax_duration = \"1h\"\n",
                1,
                "targets",
            ),
            (
                "[[policy]]\nname = \"a\"\ntokens = [\"t\"]\nkinds = [\"group-access\"]\ntargets = [\"x\"]\nsubjects = [\"y\"]\nmax_duration = \"1h\"\nextra = 1\n",
                8,
                "unknown field",
            ),
        ];
        for (text, line, problem) in cases {
            let e = parse_file("bad.toml", text, cap).unwrap_err();
            assert_eq!(e.file, "bad.toml");
            assert_eq!(e.line, Some(line), "{text}: {e:?}");
            assert!(e.problem.contains(problem), "{text}: {}", e.problem);
        }
    }

    #[test]
    fn a_refused_file_keeps_its_previous_policies() {
        let cap = Duration::hours(24);
        let files = vec![("p.toml".to_owned(), POLICIES.to_owned())];
        let (set, errors) = load(&files, &PolicySet::new(), cap);
        assert!(errors.is_empty());
        let broken = vec![("p.toml".to_owned(), "[[policy]]\nname = ".to_owned())];
        let (again, errors) = load(&broken, &set, cap);
        assert_eq!(errors.len(), 1);
        assert_eq!(again, set);
    }
}

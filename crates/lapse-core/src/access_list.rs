//! Access lists as code: parsing and checking list files, and the pure rules of the request
//! flow (who may request, who may approve, how long, when a review is due).
//!
//! Nothing here reads files or the clock: the caller passes file contents and `now`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::grant::GrantKind;
use crate::policy::FieldError;
pub use crate::policy::human_duration;

/// Identities (emails) compare case- and whitespace-insensitively everywhere.
pub fn normalize_identity(s: &str) -> String {
    s.trim().to_lowercase()
}

/// What happens when a list's review is missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MissedReview {
    /// Owners are reminded daily; requests still work.
    Notify,
    /// No new requests until the list is reviewed.
    #[default]
    Suspend,
}

/// A list's periodic review of its membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewRule {
    #[serde(serialize_with = "ser_duration")]
    pub every: Duration,
    /// The due date written in the file; a recorded review moves it on.
    pub next_due: DateTime<Utc>,
    pub on_missed: MissedReview,
}

/// What members of a list may request: one grant kind and its targets, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListTarget {
    pub kind: GrantKind,
    pub group: Option<String>,
    pub resources: Vec<String>,
    pub service_account: Option<String>,
}

impl ListTarget {
    /// Whether the grant names the requester as its user (the kinds that give people access).
    pub fn names_requester(&self) -> bool {
        matches!(
            self.kind,
            GrantKind::EphemeralGroup | GrantKind::GroupMembership
        )
    }
}

/// One access list, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessList {
    pub name: String,
    pub description: String,
    /// Normalised identities.
    pub owners: Vec<String>,
    /// Normalised identities.
    pub members: Vec<String>,
    pub target: ListTarget,
    #[serde(serialize_with = "ser_duration")]
    pub default_duration: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max_duration: Duration,
    pub reason_required: bool,
    pub reason_pattern: Option<String>,
    /// Distinct owner approvals needed.
    pub approvals: u32,
    pub auto_approve: bool,
    pub break_glass: bool,
    /// How long a pending request waits before it lapses; `None` takes the daemon's default.
    #[serde(serialize_with = "ser_opt_duration")]
    pub pending_wait: Option<Duration>,
    pub review: Option<ReviewRule>,
    /// The Slack channel (an id such as `C0123ABCD`, or a name) its requests are posted to
    /// with Approve and Deny buttons.
    pub slack_channel: Option<String>,
    /// Requests by whoever is on call now on one of these schedules are approved by the rule.
    pub auto_approve_on_call: Option<OnCallRule>,
    /// The file it came from.
    pub file: String,
}

/// `auto_approve_on_call = { pagerduty_schedules = ["P…"] }`: who is on call now on one of
/// these schedules needs no owner's approval. Open to other providers by adding fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallRule {
    /// PagerDuty schedule ids (`P` and letters and digits, as PagerDuty shows them).
    pub pagerduty_schedules: Vec<String>,
}

/// A list file that was refused: its name, the line (1-based) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}{}: {problem}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct ListFileError {
    pub file: String,
    pub line: Option<usize>,
    pub problem: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    list: Vec<toml::Spanned<RawList>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    name: String,
    #[serde(default)]
    description: String,
    owners: Vec<String>,
    #[serde(default)]
    members: Vec<String>,
    kind: String,
    group: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    service_account: Option<String>,
    default_duration: Option<String>,
    max_duration: String,
    #[serde(default = "yes")]
    reason_required: bool,
    reason_pattern: Option<String>,
    approvals: Option<u32>,
    #[serde(default)]
    auto_approve: bool,
    #[serde(default)]
    break_glass: bool,
    pending_wait: Option<String>,
    review_every: Option<String>,
    review_due: Option<DateTime<Utc>>,
    on_missed_review: Option<MissedReview>,
    slack_channel: Option<String>,
    auto_approve_on_call: Option<OnCallRule>,
}

fn yes() -> bool {
    true
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// A list refused by [`check_list`]: the key at fault (whose line the error names, or the
/// list's `[[list]]` line when the key is absent) and the problem.
struct Bad {
    key: &'static str,
    problem: String,
}

/// The 1-based line of `key` in the `index`-th `[[list]]` of `contents`, from toml's spans.
fn key_line(contents: &str, index: usize, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(contents).ok()?;
    let (_, lists) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == "list")?;
    let DeValue::Array(items) = lists.get_ref() else {
        return None;
    };
    let DeValue::Table(list) = items.get(index)?.get_ref() else {
        return None;
    };
    let (k, _) = list.iter().find(|(k, _)| k.get_ref() == key)?;
    Some(line_of(contents, k.span().start))
}

fn duration(field: &str, text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{field} = {text:?} is not a duration: {e}"))?;
    let d = Duration::from_std(d).map_err(|_| format!("{field} = {text:?} is too long"))?;
    if d <= Duration::zero() {
        return Err(format!("{field} must be longer than zero"));
    }
    Ok(d)
}

fn check_list(raw: RawList, file: &str) -> Result<AccessList, Bad> {
    let name = raw.name.trim().to_owned();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !name_ok {
        return Err(Bad {
            key: "name",
            problem: format!(
                "list name {:?} must be non-empty and use only letters, digits, `-`, `_` and `.`",
                raw.name
            ),
        });
    }
    let p = |key: &'static str, m: String| Bad {
        key,
        problem: format!("list `{name}`: {m}"),
    };
    let owners: Vec<String> = raw.owners.iter().map(|o| normalize_identity(o)).collect();
    if owners.is_empty() || owners.iter().any(|o| !o.contains('@')) {
        return Err(p(
            "owners",
            "owners must name at least one identity, each an email".into(),
        ));
    }
    let members: Vec<String> = raw.members.iter().map(|m| normalize_identity(m)).collect();
    if members.iter().any(|m| !m.contains('@')) {
        return Err(p("members", "members must be emails".into()));
    }
    let kind: GrantKind = raw.kind.trim().parse().map_err(|m| p("kind", m))?;
    let has_group = raw.group.as_deref().is_some_and(|g| !g.trim().is_empty());
    let has_sa = raw
        .service_account
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    let has_res = !raw.resources.is_empty();
    let (need_group, need_res, need_sa) = match kind {
        GrantKind::EphemeralGroup => (false, true, false),
        GrantKind::GroupMembership => (true, false, false),
        GrantKind::GroupAccess => (true, true, false),
        GrantKind::ServiceAccess => (false, true, true),
        GrantKind::ServiceKey => (false, false, true),
    };
    for (field, need, has) in [
        ("group", need_group, has_group),
        ("resources", need_res, has_res),
        ("service_account", need_sa, has_sa),
    ] {
        if need && !has {
            return Err(p("kind", format!("`{field}` is required for kind {kind}")));
        }
        if !need && has {
            return Err(p(field, format!("`{field}` does not apply to kind {kind}")));
        }
    }
    let max_duration =
        duration("max_duration", &raw.max_duration).map_err(|m| p("max_duration", m))?;
    let default_duration = match &raw.default_duration {
        Some(d) => duration("default_duration", d).map_err(|m| p("default_duration", m))?,
        None => max_duration.min(Duration::hours(1)),
    };
    if default_duration > max_duration {
        return Err(p(
            "default_duration",
            "default_duration is longer than max_duration".into(),
        ));
    }
    if let Some(pattern) = &raw.reason_pattern {
        regex::Regex::new(pattern).map_err(|e| {
            p(
                "reason_pattern",
                format!("reason_pattern is not a valid pattern: {e}"),
            )
        })?;
    }
    let approvals = raw.approvals.unwrap_or(1);
    if approvals == 0 && !raw.auto_approve {
        return Err(p(
            "approvals",
            "approvals = 0 needs auto_approve = true (say so explicitly)".into(),
        ));
    }
    if approvals as usize > owners.len() {
        return Err(p(
            "approvals",
            format!(
                "approvals = {approvals} but only {} owner(s): no request could ever be approved",
                owners.len()
            ),
        ));
    }
    let pending_wait = match &raw.pending_wait {
        Some(w) => Some(duration("pending_wait", w).map_err(|m| p("pending_wait", m))?),
        None => None,
    };
    let review = match (&raw.review_every, raw.review_due) {
        (Some(every), Some(due)) => Some(ReviewRule {
            every: duration("review_every", every).map_err(|m| p("review_every", m))?,
            next_due: due,
            on_missed: raw.on_missed_review.unwrap_or_default(),
        }),
        (None, None) => None,
        _ => {
            let key = if raw.review_every.is_some() {
                "review_every"
            } else {
                "review_due"
            };
            return Err(p(
                key,
                "give both review_every and review_due, or neither".into(),
            ));
        }
    };
    let slack_channel = match raw.slack_channel.as_deref().map(str::trim) {
        None => None,
        Some(c) if is_channel(c) => Some(c.to_owned()),
        Some(c) => {
            return Err(p(
                "slack_channel",
                format!(
                    "slack_channel = {c:?} is not a Slack channel: give its id (e.g. \"C0123ABCD\") or its name (\"#access\")"
                ),
            ));
        }
    };
    let auto_approve_on_call = match raw.auto_approve_on_call {
        None => None,
        Some(rule) => Some(check_on_call(rule).map_err(|m| p("auto_approve_on_call", m))?),
    };
    if auto_approve_on_call.is_some() && raw.auto_approve {
        return Err(p(
            "auto_approve_on_call",
            "auto_approve_on_call has no effect on a list that is auto_approve: remove one".into(),
        ));
    }
    Ok(AccessList {
        name,
        description: raw.description.trim().to_owned(),
        owners,
        members,
        target: ListTarget {
            kind,
            group: raw
                .group
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty()),
            resources: raw.resources.iter().map(|r| r.trim().to_owned()).collect(),
            service_account: raw
                .service_account
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        },
        default_duration,
        max_duration,
        reason_required: raw.reason_required,
        reason_pattern: raw.reason_pattern,
        approvals,
        auto_approve: raw.auto_approve,
        break_glass: raw.break_glass,
        pending_wait,
        review,
        slack_channel,
        auto_approve_on_call,
        file: file.to_owned(),
    })
}

/// A channel id (`C…`, `G…`) or name (`#name` or `name`): letters, digits, `-`, `_`, `.`.
fn is_channel(c: &str) -> bool {
    let name = c.strip_prefix('#').unwrap_or(c);
    !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

fn check_on_call(rule: OnCallRule) -> Result<OnCallRule, String> {
    let schedules: Vec<String> = rule
        .pagerduty_schedules
        .iter()
        .map(|s| s.trim().to_owned())
        .collect();
    if schedules.is_empty() {
        return Err(
            "auto_approve_on_call.pagerduty_schedules must name at least one schedule id (e.g. \"PABC123\")"
                .into(),
        );
    }
    for s in &schedules {
        if s.len() > 32 || !s.starts_with('P') || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "auto_approve_on_call.pagerduty_schedules: {s:?} is not a PagerDuty schedule id; copy it from the schedule's address (e.g. \"PABC123\")"
            ));
        }
    }
    Ok(OnCallRule {
        pagerduty_schedules: schedules,
    })
}

/// Parses one list file. Any mistake refuses the whole file, naming the line.
pub fn parse_file(file: &str, contents: &str) -> Result<Vec<AccessList>, ListFileError> {
    parse_capped(file, contents, None)
}

/// [`parse_file`], also refusing a list whose maximum passes `cap` (`grants.max_duration`):
/// an extension could otherwise take a grant past the global cap.
pub fn parse_capped(
    file: &str,
    contents: &str,
    cap: Option<Duration>,
) -> Result<Vec<AccessList>, ListFileError> {
    let err = |line: Option<usize>, problem: String| ListFileError {
        file: file.to_owned(),
        line,
        problem,
    };
    let raw: RawFile = toml::from_str(contents).map_err(|e| {
        let line = e.span().map(|s| line_of(contents, s.start));
        err(line, e.message().trim().to_owned())
    })?;
    let mut lists: Vec<AccessList> = Vec::new();
    for (index, spanned) in raw.list.into_iter().enumerate() {
        let line = line_of(contents, spanned.span().start);
        let list = check_list(spanned.into_inner(), file).map_err(|b| {
            let at = key_line(contents, index, b.key).unwrap_or(line);
            err(Some(at), b.problem)
        })?;
        if let Some(cap) = cap
            && list.max_duration > cap
        {
            return Err(err(
                Some(key_line(contents, index, "max_duration").unwrap_or(line)),
                format!(
                    "list `{}`: max_duration = {} is longer than grants.max_duration ({})",
                    list.name,
                    crate::policy::human_duration(list.max_duration),
                    crate::policy::human_duration(cap)
                ),
            ));
        }
        if lists.iter().any(|l| l.name == list.name) {
            return Err(err(
                Some(line),
                format!("list `{}` is defined twice", list.name),
            ));
        }
        lists.push(list);
    }
    Ok(lists)
}

/// The loaded lists, by name.
pub type ListSet = BTreeMap<String, AccessList>;

/// The outcome of loading a directory of list files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub lists: ListSet,
    pub errors: Vec<ListFileError>,
}

/// Loads `files` (name, contents) over `previous`: a refused file keeps the lists it had
/// before in force, so a typo never takes access lists away.
/// Each list's maximum must not pass `cap` (`grants.max_duration`).
pub fn load(files: &[(String, String)], previous: &ListSet, cap: Duration) -> Loaded {
    let mut lists = ListSet::new();
    let mut errors = Vec::new();
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, contents) in sorted {
        let parsed = parse_capped(name, contents, Some(cap)).and_then(|ls| {
            match ls.iter().find(|l| lists.contains_key(&l.name)) {
                Some(dup) => Err(ListFileError {
                    file: name.clone(),
                    line: None,
                    problem: format!("list `{}` is already defined in another file", dup.name),
                }),
                None => Ok(ls),
            }
        });
        match parsed {
            Ok(ls) => lists.extend(ls.into_iter().map(|l| (l.name.clone(), l))),
            Err(e) => {
                errors.push(e);
                for l in previous.values().filter(|l| &l.file == name) {
                    lists.entry(l.name.clone()).or_insert_with(|| l.clone());
                }
            }
        }
    }
    Loaded { lists, errors }
}

/// How the loaded set changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ListChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ListChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

pub fn diff(old: &ListSet, new: &ListSet) -> ListChanges {
    let mut c = ListChanges::default();
    for (name, l) in new {
        match old.get(name) {
            None => c.added.push(name.clone()),
            Some(o) if o != l => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    c.removed = old
        .keys()
        .filter(|n| !new.contains_key(*n))
        .cloned()
        .collect();
    c
}

/// Why someone may not do something on a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{who} is not a member of list `{list}`")]
    NotMember { who: String, list: String },
    #[error("{who} is not an owner of list `{list}`")]
    NotOwner { who: String, list: String },
    #[error("nobody approves their own request, whatever roles they hold")]
    SelfApproval,
    #[error("{who} has already approved this request")]
    AlreadyApproved { who: String },
    #[error("list `{list}` does not allow break-glass")]
    NoBreakGlass { list: String },
    #[error("list `{list}` is suspended: its review was due {due} and has not been recorded")]
    Suspended { list: String, due: DateTime<Utc> },
    #[error("the token has no identity; an admin creates tokens with `--identity EMAIL`")]
    NoIdentity,
    #[error("the request is {state}, no longer pending")]
    NotPending { state: crate::request::RequestState },
    #[error("only the requester may cancel a request")]
    NotRequester,
    #[error("only the requester or an owner of the list may extend this grant")]
    NotRequesterOrOwner,
    #[error("the request waits until {until}")]
    NotDue { until: DateTime<Utc> },
}

impl AccessList {
    /// How long a pending request on this list waits before it lapses.
    pub fn wait(&self, default: Duration) -> Duration {
        self.pending_wait.unwrap_or(default)
    }

    pub fn is_owner(&self, who: &str) -> bool {
        let who = normalize_identity(who);
        self.owners.contains(&who)
    }

    /// Members who were removed by a review no longer count.
    pub fn is_member(&self, who: &str, removed: &[String]) -> bool {
        let who = normalize_identity(who);
        self.members.contains(&who) && !removed.iter().any(|r| normalize_identity(r) == who)
    }

    /// The requested duration (or the default), refused past the list's maximum.
    pub fn duration(&self, requested: Option<&str>) -> Result<Duration, FieldError> {
        let limits = crate::policy::Limits {
            max_ttl: self.max_duration,
            ..crate::policy::Limits::default()
        };
        match requested {
            None => Ok(self.default_duration),
            Some(t) => crate::policy::parse_ttl("duration", t, &limits),
        }
    }

    /// The reason, checked against the list's rules.
    pub fn check_reason(&self, reason: &str) -> Result<String, FieldError> {
        let r = reason.trim();
        if r.is_empty() && !self.reason_required {
            return Ok(String::new());
        }
        let r = crate::policy::check_reason(r, &crate::policy::Limits::default())?;
        if let Some(p) = &self.reason_pattern {
            let re = regex::Regex::new(p).map_err(|e| {
                FieldError::new(
                    "reason",
                    format!("the list's pattern is invalid: {e}"),
                    "fix the list file",
                )
            })?;
            if !re.is_match(&r) {
                return Err(FieldError::new(
                    "reason",
                    format!("{r:?} does not match the list's pattern `{p}`"),
                    "give a reason in the form the list asks for, e.g. a ticket id",
                ));
            }
        }
        Ok(r)
    }

    /// The new end of a grant extended by `by`, refused past `starts_at + max_duration`.
    pub fn extension_end(
        &self,
        starts_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        by: Duration,
    ) -> Result<DateTime<Utc>, FieldError> {
        if by <= Duration::zero() {
            return Err(FieldError::new(
                "by",
                "must be longer than zero",
                "give e.g. `30m`",
            ));
        }
        let end = expires_at + by;
        let cap = starts_at + self.max_duration;
        if end > cap {
            let left = (cap - expires_at).max(Duration::zero());
            return Err(FieldError::new(
                "by",
                format!(
                    "would end the grant at {} past the list's maximum total of {} (it may grow by at most {} more)",
                    end.to_rfc3339(),
                    human_duration(self.max_duration),
                    human_duration(left)
                ),
                if left >= Duration::seconds(1) {
                    format!(
                        "extend by `{}` or less, or request access again",
                        human_duration(left)
                    )
                } else {
                    "it is at the list's maximum already: request access again".to_owned()
                },
            ));
        }
        Ok(end)
    }

    /// When the review is due, given the due date recorded by the last review (if any).
    pub fn review_due(&self, recorded_due: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let rule = self.review.as_ref()?;
        Some(match recorded_due {
            Some(r) if r > rule.next_due => r,
            _ => rule.next_due,
        })
    }

    /// Whether new requests are refused because a review was missed.
    pub fn suspension(
        &self,
        recorded_due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        match (self.review.as_ref(), self.review_due(recorded_due)) {
            (Some(rule), Some(due)) if rule.on_missed == MissedReview::Suspend && due <= now => {
                Err(Refusal::Suspended {
                    list: self.name.clone(),
                    due,
                })
            }
            _ => Ok(()),
        }
    }

    /// May `requester` ask for access on this list now?
    pub fn may_request(
        &self,
        requester: &str,
        removed: &[String],
        break_glass: bool,
        recorded_due: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if !self.is_member(requester, removed) {
            return Err(Refusal::NotMember {
                who: normalize_identity(requester),
                list: self.name.clone(),
            });
        }
        if break_glass && !self.break_glass {
            return Err(Refusal::NoBreakGlass {
                list: self.name.clone(),
            });
        }
        self.suspension(recorded_due, now)
    }

    /// Records one approval: refuses self-approval (compared normalised, whatever the
    /// approver's role), non-owners and a second approval by the same owner; answers whether
    /// the request now has enough approvals.
    pub fn approve(
        &self,
        requester: &str,
        approver: &str,
        earlier: &[String],
    ) -> Result<bool, Refusal> {
        let approver_n = normalize_identity(approver);
        if approver_n == normalize_identity(requester) {
            return Err(Refusal::SelfApproval);
        }
        if !self.is_owner(&approver_n) {
            return Err(Refusal::NotOwner {
                who: approver_n,
                list: self.name.clone(),
            });
        }
        if earlier.iter().any(|e| normalize_identity(e) == approver_n) {
            return Err(Refusal::AlreadyApproved { who: approver_n });
        }
        let distinct = {
            let mut all: Vec<String> = earlier.iter().map(|e| normalize_identity(e)).collect();
            all.push(approver_n);
            all.sort();
            all.dedup();
            all.len()
        };
        Ok(distinct >= self.approvals as usize)
    }
}

/// Durations are shown the way they are written in list files (`1h 30m`), not as a tuple.
fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&human_duration(*d)),
        None => s.serialize_none(),
    }
}

impl fmt::Display for MissedReview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Notify => "notify",
            Self::Suspend => "suspend",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[list]]
name = "prod-db"
description = "on-call access to the production database"
owners = ["Bob@Example.com ", "carol@example.com"]
members = ["alice@example.com"]
kind = "group-membership"
group = "oncall"
max_duration = "4h"
default_duration = "1h"
reason_pattern = "^INC-[0-9]+"
approvals = 2
break_glass = true
review_every = "90d"
review_due = "2026-03-01T00:00:00Z"
"#;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn good() -> AccessList {
        parse_file("prod.toml", GOOD).expect("good").remove(0)
    }

    #[test]
    fn a_good_file_parses_with_defaults_and_normalised_identities() {
        let l = good();
        assert_eq!(l.owners, ["bob@example.com", "carol@example.com"]);
        assert_eq!(l.target.kind, GrantKind::GroupMembership);
        assert_eq!(l.target.group.as_deref(), Some("oncall"));
        assert_eq!(l.max_duration, Duration::hours(4));
        assert_eq!(l.wait(Duration::hours(1)), Duration::hours(1));
        assert_eq!(l.approvals, 2);
        assert!(l.reason_required);
        let review = l.review.as_ref().expect("review");
        assert_eq!(review.on_missed, MissedReview::Suspend);
        assert_eq!(review.every, Duration::days(90));
    }

    #[test]
    fn mistakes_name_the_file_and_line() {
        // Syntax error on line 4.
        let e = parse_file(
            "bad.toml",
            "[[list]]\nname = \"x\"\nowners = [\"a@x\"]\nkind = = 3\n",
        )
        .expect_err("syntax");
        assert_eq!(e.file, "bad.toml");
        assert_eq!(e.line, Some(4), "{e}");
        // Unknown key: the line of the key itself.
        let e = parse_file(
            "typo.toml",
            "[[list]]\nname = \"x\"\nowners = [\"a@x\"]\nkind = \"group-membership\"\ngroup = \"g\"\nmax_duration = \"1h\"\naprovals = 2\n",
        )
        .expect_err("unknown key");
        assert!(e.problem.contains("aprovals"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
        // A semantic error: the line where the list starts.
        let e = parse_file(
            "sem.toml",
            "# lists\n\n[[list]]\nname = \"x\"\nowners = [\"a@x\"]\nkind = \"group-membership\"\nmax_duration = \"1h\"\n",
        )
        .expect_err("missing group");
        // A key that is missing: the line of the key that needs it (`kind`).
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.problem.contains("`group` is required"), "{e}");
        assert!(e.to_string().starts_with("sem.toml line 6: "), "{e}");
        // A bad value in the second list: the line of that key in that list, not the header
        // and not the same key in the first list.
        let two = format!(
            "{GOOD}\n[[list]]\nname = \"y\"\nowners = [\"a@x\"]\nkind = \"group-membership\"\ngroup = \"g\"\nmax_duration = \"1h\"\napprovals = 2\n"
        );
        let e = parse_file("two.toml", &two).expect_err("approvals over owners");
        assert!(e.problem.contains("list `y`"), "{e}");
        assert_eq!(e.line, Some(two.lines().count()), "{e}");
        for (bad, needle) in [
            ("approvals = 3", "only 2 owner"),
            ("approvals = 0", "auto_approve"),
            ("reason_pattern = \"(\"", "reason_pattern"),
            ("default_duration = \"5h\"", "default_duration"),
            ("on_missed_review = \"ignore\"", "ignore"),
        ] {
            let text = GOOD
                .lines()
                .filter(|l| !l.starts_with(bad.split(' ').next().unwrap_or("")))
                .chain([bad])
                .collect::<Vec<_>>()
                .join("\n");
            let e = parse_file("f.toml", &text).expect_err(bad);
            assert!(e.problem.contains(needle), "{bad}: {e}");
            // The offending key is the last line.
            assert_eq!(e.line, Some(text.lines().count()), "{bad}: {e}");
        }
    }

    const CAP: Duration = Duration::hours(24);

    #[test]
    fn a_list_longer_than_the_global_cap_is_refused_with_file_and_line() {
        let text = format!(
            "\n\n{}",
            GOOD.replace("max_duration = \"4h\"", "max_duration = \"72h\"")
        );
        assert!(
            text.contains("\"72h\""),
            "the fixture names a maximum to raise"
        );
        let loaded = load(&[("long.toml".into(), text)], &ListSet::new(), CAP);
        assert!(loaded.lists.is_empty());
        let e = &loaded.errors[0];
        assert_eq!(e.file, "long.toml");
        assert_eq!(e.line, Some(11), "the line of max_duration: {e:?}");
        assert!(
            e.problem.contains("3d") && e.problem.contains("grants.max_duration (1d)"),
            "{}",
            e.problem
        );
    }

    #[test]
    fn a_refused_file_keeps_its_old_lists() {
        let first = load(&[("prod.toml".into(), GOOD.into())], &ListSet::new(), CAP);
        assert!(first.errors.is_empty());
        let broken = load(
            &[
                ("prod.toml".into(), "[[list]\nname=".into()),
                ("other.toml".into(), GOOD.replace("prod-db", "other")),
            ],
            &first.lists,
            CAP,
        );
        assert_eq!(broken.errors.len(), 1);
        assert_eq!(broken.errors[0].file, "prod.toml");
        assert!(
            broken.lists.contains_key("prod-db"),
            "old list stays in force"
        );
        assert!(broken.lists.contains_key("other"));
        let changes = diff(&first.lists, &broken.lists);
        assert_eq!(changes.added, ["other"]);
        assert!(changes.removed.is_empty() && changes.changed.is_empty());
        // Removing the file removes its lists.
        let gone = load(&[], &broken.lists, CAP);
        assert_eq!(
            diff(&broken.lists, &gone.lists).removed,
            ["other", "prod-db"]
        );
    }

    #[test]
    fn self_approval_is_refused_in_every_form() {
        let mut l = good();
        l.owners.push("alice@example.com".into());
        for me in [
            "alice@example.com",
            "ALICE@Example.COM",
            "  alice@example.com  ",
        ] {
            assert_eq!(
                l.approve("alice@example.com", me, &[]),
                Err(Refusal::SelfApproval),
                "{me:?}"
            );
        }
        assert!(matches!(
            l.approve("alice@example.com", "dave@example.com", &[]),
            Err(Refusal::NotOwner { .. })
        ));
        assert_eq!(
            l.approve("alice@example.com", "bob@example.com", &[]),
            Ok(false),
            "two needed"
        );
        assert!(matches!(
            l.approve(
                "alice@example.com",
                " BOB@example.com",
                &["bob@example.com".into()]
            ),
            Err(Refusal::AlreadyApproved { .. })
        ));
        assert_eq!(
            l.approve(
                "alice@example.com",
                "carol@example.com",
                &["bob@example.com".into()]
            ),
            Ok(true)
        );
    }

    #[test]
    fn durations_reasons_and_extensions_are_capped() {
        let l = good();
        assert_eq!(l.duration(None), Ok(Duration::hours(1)));
        assert_eq!(l.duration(Some("2h")), Ok(Duration::hours(2)));
        assert!(l.duration(Some("5h")).is_err());
        assert_eq!(l.check_reason(" INC-42 fix"), Ok("INC-42 fix".into()));
        assert!(l.check_reason("because").is_err());
        assert!(l.check_reason("").is_err());
        let start = t("2026-01-01T00:00:00Z");
        assert_eq!(
            l.extension_end(start, start + Duration::hours(3), Duration::hours(1)),
            Ok(start + Duration::hours(4))
        );
        let e = l
            .extension_end(start, start + Duration::hours(3), Duration::minutes(61))
            .expect_err("past max");
        assert_eq!(e.field, "by");
    }

    #[test]
    fn membership_break_glass_and_suspension() {
        let l = good();
        let before = t("2026-02-01T00:00:00Z");
        let after = t("2026-03-02T00:00:00Z");
        assert_eq!(
            l.may_request(" Alice@example.com", &[], false, None, before),
            Ok(())
        );
        assert!(matches!(
            l.may_request("dave@example.com", &[], false, None, before),
            Err(Refusal::NotMember { .. })
        ));
        assert!(matches!(
            l.may_request(
                "alice@example.com",
                &["ALICE@example.com".into()],
                false,
                None,
                before
            ),
            Err(Refusal::NotMember { .. })
        ));
        assert!(matches!(
            l.may_request("alice@example.com", &[], false, None, after),
            Err(Refusal::Suspended { .. })
        ));
        // A recorded review moves the due date on.
        let moved = Some(t("2026-06-01T00:00:00Z"));
        assert_eq!(
            l.may_request("alice@example.com", &[], true, moved, after),
            Ok(())
        );
        let mut n = l.clone();
        n.break_glass = false;
        assert!(matches!(
            n.may_request("alice@example.com", &[], true, None, before),
            Err(Refusal::NoBreakGlass { .. })
        ));
        if let Some(r) = n.review.as_mut() {
            r.on_missed = MissedReview::Notify;
        }
        assert_eq!(
            n.may_request("alice@example.com", &[], false, None, after),
            Ok(())
        );
    }

    #[test]
    fn slack_channel_and_on_call_rule_parse_and_bad_values_name_the_field() {
        let text = format!(
            "{GOOD}slack_channel = \"C0123ABCD\"\nauto_approve_on_call = {{ pagerduty_schedules = [\" PABC123 \"] }}\n"
        );
        let l = parse_file("prod.toml", &text).expect("parses").remove(0);
        assert_eq!(l.slack_channel.as_deref(), Some("C0123ABCD"));
        assert_eq!(
            l.auto_approve_on_call.expect("rule").pagerduty_schedules,
            ["PABC123"]
        );
        assert_eq!(good().slack_channel, None);
        assert_eq!(good().auto_approve_on_call, None);
        for (extra, names) in [
            ("slack_channel = \"<!channel>\"\n", "slack_channel"),
            (
                "auto_approve_on_call = { pagerduty_schedules = [] }\n",
                "pagerduty_schedules",
            ),
            (
                "auto_approve_on_call = { pagerduty_schedules = [\"oncall\"] }\n",
                "not a PagerDuty schedule id",
            ),
            (
                "auto_approve_on_call = { opsgenie = [\"x\"], pagerduty_schedules = [\"P1\"] }\n",
                "opsgenie",
            ),
        ] {
            let e = parse_file("prod.toml", &format!("{GOOD}{extra}")).expect_err(extra);
            assert!(e.to_string().contains(names), "{extra}: {e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}

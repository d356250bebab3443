//! The request flow against in-memory parts: a fake directory, a fake engine and a real SQLite
//! file in a temporary directory. No HTTP and no spawned binary.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use lapse_core::access_list::Refusal;
use lapse_core::policy::Limits;
use lapse_core::{Grant, GrantId, GrantSpec, GrantState, RemoteId};
use lapse_engine::EngineError;
use lapse_requests::notify::{Notifier, NotifySettings, WebhookSettings, load_sinks};
use lapse_requests::wire::{CreateBody, DecisionBody, ExtendBody, ReviewBody};
use lapse_requests::{AccessSettings, Actor, FlowError, GrantEngine, RequestService, Submitter};
use lapse_store::{HistoryFilter, Store};

mod common;
use common::Directory;

/// An extension the engine was asked for: the grant, its new end and the request.
type Extension = (GrantId, DateTime<Utc>, Option<String>);

/// Records what the flow hands to the engine; `finished` makes extensions find the grant ended.
#[derive(Clone, Default)]
struct FakeEngine {
    submitted: Arc<Mutex<Vec<Grant>>>,
    extended: Arc<Mutex<Vec<Extension>>>,
    finished: Arc<Mutex<bool>>,
}

impl FakeEngine {
    fn submitted(&self) -> Vec<Grant> {
        self.submitted.lock().expect("lock").clone()
    }
    fn extended(&self) -> Vec<Extension> {
        self.extended.lock().expect("lock").clone()
    }
}

impl GrantEngine for FakeEngine {
    fn revoke(
        &self,
        id: GrantId,
        _actor: &str,
        _reason: &str,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send {
        let grant = self
            .submitted
            .lock()
            .expect("lock")
            .iter()
            .find(|g| g.id == id)
            .cloned();
        async move {
            grant
                .map(|mut g| {
                    g.state = GrantState::Revoked;
                    g
                })
                .ok_or(EngineError::NotFound(id))
        }
    }

    fn submitted(&self, grant: Grant) -> impl Future<Output = Result<(), EngineError>> + Send {
        self.submitted.lock().expect("lock").push(grant);
        async { Ok(()) }
    }

    fn extend(
        &self,
        id: GrantId,
        end: DateTime<Utc>,
        _actor: &str,
        _reason: &str,
        request: Option<&str>,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send {
        let finished = *self.finished.lock().expect("lock");
        let grant = self
            .submitted
            .lock()
            .expect("lock")
            .iter()
            .find(|g| g.id == id)
            .cloned();
        if !finished {
            self.extended
                .lock()
                .expect("lock")
                .push((id, end, request.map(str::to_owned)));
        }
        async move {
            match (finished, grant) {
                (true, _) => Err(EngineError::Finished {
                    id,
                    state: GrantState::Expired,
                }),
                (false, Some(mut g)) => {
                    g.expires_at = end;
                    Ok(g)
                }
                (false, None) => Err(EngineError::NotFound(id)),
            }
        }
    }
}

const LISTS: &str = r#"
[[list]]
name = "db"
owners = ["olga@x.io", "omar@x.io"]
members = ["mia@x.io", "olga@x.io"]
kind = "group-membership"
reason_required = false
group = "db-admins"
default_duration = "1h"
max_duration = "4h"
break_glass = true

[[list]]
name = "quick"
owners = ["olga@x.io"]
members = ["mia@x.io"]
kind = "group-membership"
reason_required = false
group = "db-admins"
max_duration = "1h"
pending_wait = "2s"

[[list]]
name = "db-two"
owners = ["olga@x.io", "omar@x.io"]
members = ["mia@x.io"]
kind = "group-membership"
reason_required = false
group = "db-admins"
max_duration = "4h"
approvals = 2

[[list]]
name = "auto"
owners = ["olga@x.io"]
members = ["mia@x.io", "nico@x.io"]
kind = "group-membership"
reason_required = false
group = "db-admins"
default_duration = "1h"
max_duration = "2h"
approvals = 0
auto_approve = true

[[list]]
name = "nowhere"
owners = ["olga@x.io"]
members = ["mia@x.io"]
kind = "group-membership"
reason_required = false
group = "no-such-group"
max_duration = "1h"

[[list]]
name = "reviewed"
owners = ["olga@x.io"]
members = ["mia@x.io", "nico@x.io"]
kind = "group-membership"
reason_required = false
group = "db-admins"
max_duration = "1h"
review_every = "30days"
review_due = "2020-01-01T00:00:00Z"
on_missed_review = "notify"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    engine: FakeEngine,
    flow: Arc<RequestService<Directory, FakeEngine>>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).expect("the lists directory");
    std::fs::write(lists.join("lists.toml"), LISTS).expect("the list file");
    let store = Store::open(&dir.path().join("lapse.db"))
        .await
        .expect("the store opens");
    let engine = FakeEngine::default();
    let flow = RequestService::start(
        store.clone(),
        engine.clone(),
        Arc::new(Submitter::new(
            Arc::new(Directory::new()),
            Limits::default(),
        )),
        AccessSettings {
            lists_dir: lists,
            ..AccessSettings::default()
        },
        NotifySettings::default(),
        notifier(dir.path()),
    )
    .await;
    Fixture {
        _dir: dir,
        store,
        engine,
        flow,
    }
}

/// One sink, so notifications become outbox rows; nothing delivers them here.
fn notifier(dir: &Path) -> Notifier {
    let url = dir.join("hook.url");
    std::fs::write(&url, "http://127.0.0.1:9/hook").expect("the hook file");
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, "whsec-test").expect("the secret file");
    let settings = NotifySettings {
        webhook: vec![WebhookSettings {
            name: "hook".into(),
            url_file: Some(url),
            credential: None,
            format: Default::default(),
            secret_file: Some(secret),
            secret_credential: None,
        }],
        ..NotifySettings::default()
    };
    Notifier::new(load_sinks(&settings).expect("the sink loads"))
}

fn who(identity: &str) -> Actor {
    Actor::new(identity.split('@').next().unwrap_or(identity), identity)
}

fn ask(list: &str, reason: &str) -> CreateBody {
    CreateBody {
        list: list.into(),
        reason: reason.into(),
        ..CreateBody::default()
    }
}

fn because(reason: &str) -> DecisionBody {
    DecisionBody {
        reason: reason.into(),
    }
}

impl Fixture {
    async fn events(&self) -> Vec<String> {
        self.store
            .history(&HistoryFilter::default())
            .await
            .expect("history")
            .into_iter()
            .map(|h| h.event)
            .collect()
    }

    async fn outbox(&self) -> Vec<(String, Vec<String>)> {
        self.store
            .outbox_due(Utc::now() + Duration::days(3650), 5000)
            .await
            .expect("outbox")
            .into_iter()
            .map(|o| {
                let to = serde_json::from_value(o.payload["to"].clone()).unwrap_or_default();
                (o.event, to)
            })
            .collect()
    }
}

#[tokio::test]
async fn a_request_is_pending_until_an_owner_approves_then_becomes_a_grant() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db", "INC-1"))
        .await
        .expect("created");
    assert_eq!(r.state, "pending");
    assert_eq!(r.requester, "mia@x.io");
    assert_eq!(r.duration_secs, 3600);
    assert!(f.engine.submitted().is_empty(), "no access before approval");
    assert_eq!(
        f.outbox().await,
        [(
            "request-created".to_owned(),
            vec!["olga@x.io".to_owned(), "omar@x.io".to_owned()]
        )]
    );

    let r = f
        .flow
        .approve(&who("omar@x.io"), &r.id, &because("ok"))
        .await
        .expect("approved");
    assert_eq!(r.state, "approved");
    assert_eq!(r.approvals.len(), 1);
    let submitted = f.engine.submitted();
    assert_eq!(submitted.len(), 1);
    let g = &submitted[0];
    assert_eq!(r.grant_id, Some(g.id.to_string()));
    assert_eq!(g.expires_at - g.starts_at, Duration::hours(1));
    match &g.spec {
        GrantSpec::GroupMembership { group, users } => {
            assert_eq!(group.id, RemoteId::new("G1"));
            assert_eq!(users[0].name, "mia@x.io");
        }
        other => panic!("unexpected spec {other:?}"),
    }
    assert!(
        f.store.get_grant(g.id).await.expect("read").is_some(),
        "stored with the request"
    );
    let events = f.events().await;
    assert!(
        events.ends_with(&[
            "request-created".into(),
            "created".into(),
            "request-approval".into(),
            "request-approved".into()
        ]),
        "{events:?}"
    );

    // Decided: nothing moves it again.
    for e in [
        f.flow.approve(&who("olga@x.io"), &r.id, &because("")).await,
        f.flow.deny(&who("olga@x.io"), &r.id, &because("no")).await,
        f.flow.cancel(&who("mia@x.io"), &r.id, &because("")).await,
    ] {
        match e {
            Err(FlowError::Conflict(m)) => assert!(m.contains("no longer pending"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn two_approvals_are_needed_from_distinct_owners() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db-two", ""))
        .await
        .expect("created");
    let once = f
        .flow
        .approve(&who("olga@x.io"), &r.id, &because(""))
        .await
        .expect("counted");
    assert_eq!(once.state, "pending");
    assert_eq!(once.approvals.len(), 1);
    assert!(matches!(
        f.flow
            .approve(&who("OLGA@x.io "), &r.id, &because(""))
            .await,
        Err(FlowError::Refused(Refusal::AlreadyApproved { .. }))
    ));
    assert!(f.engine.submitted().is_empty());
    let done = f
        .flow
        .approve(&who("omar@x.io"), &r.id, &because(""))
        .await
        .expect("approved");
    assert_eq!(done.state, "approved");
    assert_eq!(f.engine.submitted().len(), 1);
}

#[tokio::test]
async fn approvals_are_refused_to_the_requester_and_to_non_owners_and_recorded() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("olga@x.io"), &ask("db", ""))
        .await
        .expect("an owner may request too");
    assert!(matches!(
        f.flow.approve(&who("Olga@X.io"), &r.id, &because("")).await,
        Err(FlowError::Refused(Refusal::SelfApproval))
    ));
    assert!(matches!(
        f.flow.approve(&who("mia@x.io"), &r.id, &because("")).await,
        Err(FlowError::Refused(Refusal::NotOwner { .. }))
    ));
    let refused = f
        .events()
        .await
        .iter()
        .filter(|e| *e == "approval-refused")
        .count();
    assert_eq!(refused, 2);
    assert_eq!(
        f.flow.show(&r.id).await.expect("shown").state,
        "pending",
        "refusals change nothing"
    );
    assert!(matches!(
        f.flow
            .approve(&who("omar@x.io"), "NOPE", &because(""))
            .await,
        Err(FlowError::NotFound(_))
    ));
}

#[tokio::test]
async fn owners_deny_with_a_reason_and_only_the_requester_cancels() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db", ""))
        .await
        .expect("created");
    assert!(matches!(
        f.flow.deny(&who("mia@x.io"), &r.id, &because("no")).await,
        Err(FlowError::Refused(Refusal::NotOwner { .. }))
    ));
    match f.flow.deny(&who("olga@x.io"), &r.id, &because(" ")).await {
        Err(FlowError::Field(e)) => assert_eq!(e.field, "reason"),
        other => panic!("expected a field error, got {other:?}"),
    }
    let denied = f
        .flow
        .deny(&who("olga@x.io"), &r.id, &because("not now"))
        .await
        .expect("denied");
    assert_eq!(denied.state, "denied");
    assert_eq!(denied.decision_reason.as_deref(), Some("not now"));
    assert!(
        f.outbox()
            .await
            .iter()
            .any(|(e, to)| e == "request-denied" && to == &["mia@x.io"])
    );

    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db", ""))
        .await
        .expect("created");
    assert!(matches!(
        f.flow.cancel(&who("olga@x.io"), &r.id, &because("")).await,
        Err(FlowError::Refused(Refusal::NotRequester))
    ));
    let cancelled = f
        .flow
        .cancel(&who("mia@x.io"), &r.id, &because("done"))
        .await
        .expect("cancelled");
    assert_eq!(cancelled.state, "cancelled");
    assert!(f.engine.submitted().is_empty());
}

#[tokio::test]
async fn requests_are_refused_to_strangers_and_for_bad_input() {
    let f = fixture().await;
    assert!(matches!(
        f.flow.create(&who("eve@x.io"), &ask("db", "")).await,
        Err(FlowError::Refused(Refusal::NotMember { .. }))
    ));
    assert!(matches!(
        f.flow.create(&who("mia@x.io"), &ask("nope", "")).await,
        Err(FlowError::NotFound(_))
    ));
    let mut too_long = ask("db", "");
    too_long.duration = Some("5h".into());
    assert!(matches!(
        f.flow.create(&who("mia@x.io"), &too_long).await,
        Err(FlowError::Field(e)) if e.field == "duration"
    ));
    let mut glass = ask("db-two", "fire");
    glass.break_glass = true;
    assert!(matches!(
        f.flow.create(&who("mia@x.io"), &glass).await,
        Err(FlowError::Refused(Refusal::NoBreakGlass { .. }))
    ));
    let mut glass = ask("db", "");
    glass.break_glass = true;
    assert!(matches!(
        f.flow.create(&who("mia@x.io"), &glass).await,
        Err(FlowError::Field(e)) if e.field == "reason"
    ));
    assert!(f.events().await.iter().all(|e| e != "request-created"));
}

#[tokio::test]
async fn break_glass_and_automatic_lists_grant_at_once() {
    let f = fixture().await;
    let mut glass = ask("db", "the database is down");
    glass.break_glass = true;
    let r = f
        .flow
        .create(&who("mia@x.io"), &glass)
        .await
        .expect("granted");
    assert_eq!(r.state, "approved");
    assert_eq!(r.decision_reason.as_deref(), Some("break-glass"));
    assert!(f.events().await.contains(&"break-glass-granted".to_owned()));
    assert!(
        f.outbox()
            .await
            .iter()
            .any(|(e, to)| e == "break-glass" && to.len() == 2)
    );

    let auto = f
        .flow
        .create(&who("nico@x.io"), &ask("auto", ""))
        .await
        .expect("granted");
    assert_eq!(auto.state, "approved");
    assert_eq!(f.engine.submitted().len(), 2);
    // The list's rule decided, not the requester; the grant and the request name the same
    // requester: the caller's identity, not the token's name.
    assert_eq!(auto.decided_by.as_deref(), Some("list:auto"));
    assert_eq!(auto.requester, "nico@x.io");
    let gid = auto.grant_id.clone().expect("a grant");
    let grant = f
        .engine
        .submitted()
        .into_iter()
        .find(|g| g.id.to_string() == gid)
        .expect("the grant submitted");
    assert_eq!(grant.requester, auto.requester);
}

#[tokio::test]
async fn a_target_that_cannot_be_granted_leaves_the_request_pending() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("nowhere", ""))
        .await
        .expect("created");
    match f.flow.approve(&who("olga@x.io"), &r.id, &because("")).await {
        Err(FlowError::GrantRefused(inner)) => {
            assert!(
                matches!(*inner, FlowError::Field(ref e) if e.field == "group"),
                "{inner:?}"
            )
        }
        other => panic!("expected the grant refused, got {other:?}"),
    }
    assert_eq!(f.flow.show(&r.id).await.expect("shown").state, "pending");
    assert!(f.engine.submitted().is_empty());
}

#[tokio::test]
async fn extensions_wait_for_an_owner_and_stay_within_the_lists_maximum() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db", ""))
        .await
        .expect("created");
    let r = f
        .flow
        .approve(&who("olga@x.io"), &r.id, &because(""))
        .await
        .expect("approved");
    let gid = r.grant_id.clone().expect("a grant");
    let by = |by: &str| ExtendBody {
        by: by.into(),
        reason: String::new(),
    };
    match f.flow.extend(&who("mia@x.io"), &gid, &by("4h")).await {
        Err(FlowError::Field(_)) => {}
        other => panic!("past the maximum: {other:?}"),
    }
    match f.flow.extend(&who("mia@x.io"), &gid, &by("soon")).await {
        Err(FlowError::Field(e)) => assert_eq!(e.field, "by"),
        other => panic!("not a duration: {other:?}"),
    }
    assert!(matches!(
        f.flow.extend(&who("nico@x.io"), &gid, &by("30m")).await,
        Err(FlowError::Refused(Refusal::NotRequesterOrOwner))
    ));
    let unknown = GrantId::from_parts(Utc::now(), 7).to_string();
    assert!(matches!(
        f.flow.extend(&who("mia@x.io"), &unknown, &by("30m")).await,
        Err(FlowError::NotFound(_))
    ));
    assert!(matches!(
        f.flow.extend(&who("mia@x.io"), "not-an-id", &by("30m")).await,
        Err(FlowError::Field(e)) if e.field == "id"
    ));

    let ext = f
        .flow
        .extend(&who("mia@x.io"), &gid, &by("30m"))
        .await
        .expect("asked");
    assert_eq!(ext.state, "pending");
    assert!(
        f.engine.extended().is_empty(),
        "nothing moves before approval"
    );
    let done = f
        .flow
        .approve(&who("omar@x.io"), &ext.id, &because(""))
        .await
        .expect("approved");
    assert_eq!(done.state, "approved");
    let extended = f.engine.extended();
    assert_eq!(extended.len(), 1);
    let g = f
        .store
        .get_grant(f.engine.submitted()[0].id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(extended[0].0, g.id);
    assert_eq!(extended[0].1, g.expires_at + Duration::minutes(30));
    assert_eq!(extended[0].2.as_deref(), Some(ext.id.as_str()));

    // A grant the engine has already ended cannot be extended.
    let again = f
        .flow
        .extend(&who("mia@x.io"), &gid, &by("10m"))
        .await
        .expect("asked");
    *f.engine.finished.lock().expect("lock") = true;
    assert!(matches!(
        f.flow.approve(&who("olga@x.io"), &again.id, &because("")).await,
        Err(FlowError::Conflict(m)) if m.contains("cannot be extended")
    ));
}

#[tokio::test]
async fn a_grant_not_from_a_list_has_nothing_to_extend_it_by() {
    let f = fixture().await;
    let submitter = Submitter::new(Arc::new(Directory::new()), Limits::default());
    let grant = submitter
        .build(
            &lapse_requests::wire::GrantRequest {
                kind: "group-membership".into(),
                users: vec!["mia@x.io".into()],
                group: Some("db-admins".into()),
                duration: Some("1h".into()),
                reason: "direct".into(),
                ..Default::default()
            },
            "ops",
            Utc::now(),
        )
        .await
        .expect("built");
    let stored = f
        .store
        .insert_grant(&grant, None)
        .await
        .expect("stored")
        .into_grant();
    let ext = ExtendBody {
        by: "10m".into(),
        reason: String::new(),
    };
    assert!(matches!(
        f.flow.extend(&who("mia@x.io"), &stored.id.to_string(), &ext).await,
        Err(FlowError::Conflict(m)) if m.contains("did not come from an access list")
    ));
}

#[tokio::test]
async fn reviews_are_for_owners_of_lists_with_a_period() {
    let f = fixture().await;
    let body = |list: &str, keep: &[&str], remove: &[&str]| ReviewBody {
        list: list.into(),
        keep: keep.iter().map(|s| s.to_string()).collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
    };
    assert!(matches!(
        f.flow
            .review(&who("mia@x.io"), &body("reviewed", &[], &[]))
            .await,
        Err(FlowError::Refused(Refusal::NotOwner { .. }))
    ));
    assert!(matches!(
        f.flow.review(&who("olga@x.io"), &body("db", &[], &[])).await,
        Err(FlowError::Conflict(m)) if m.contains("no review period")
    ));
    assert!(matches!(
        f.flow
            .review(&who("olga@x.io"), &body("reviewed", &["mia@x.io"], &["MIA@x.io"]))
            .await,
        Err(FlowError::Field(e)) if e.field == "keep"
    ));
    let done = f
        .flow
        .review(
            &who("olga@x.io"),
            &body("reviewed", &["mia@x.io"], &["nico@x.io"]),
        )
        .await
        .expect("recorded");
    assert!(done.next_due > Utc::now() + Duration::days(29));
    // The member taken off by the review may no longer request.
    assert!(matches!(
        f.flow.create(&who("nico@x.io"), &ask("reviewed", "")).await,
        Err(FlowError::Refused(Refusal::NotMember { .. }))
    ));
    let reviews = f.flow.reviews(false).await.expect("reviews");
    assert_eq!(reviews.reviews.len(), 1);
    // Stored to the microsecond.
    assert!((reviews.reviews[0].due - done.next_due).abs() < Duration::milliseconds(1));
    let lists = f.flow.lists().await.expect("lists");
    let reviewed = lists
        .lists
        .iter()
        .find(|l| l.name == "reviewed")
        .expect("listed");
    assert_eq!(reviewed.removed_by_review, ["nico@x.io"]);
    assert_eq!(reviewed.max_duration, "1h");
}

#[tokio::test]
async fn a_thousand_and_one_pending_requests_all_lapse_in_one_tick() {
    let f = fixture().await;
    let mut ids = Vec::new();
    let mut first_wait = None;
    for i in 0..1001 {
        let r = f
            .flow
            .create(&who("mia@x.io"), &ask("quick", &format!("INC-{i}")))
            .await
            .expect("created");
        first_wait.get_or_insert(r.wait_until);
        ids.push(r.id);
    }
    let created = Utc::now();
    // Before the first wait runs out nothing lapses, and the tick wakes by then (the tick is
    // given the time, so however long the creating took does not matter).
    let first_wait = first_wait.expect("a request");
    let early = f
        .flow
        .tick(first_wait - Duration::milliseconds(1))
        .await
        .expect("tick");
    assert_eq!(early.lapsed, 0);
    assert!(early.next_wake <= first_wait);

    let later = created + Duration::seconds(3);
    let tick = f.flow.tick(later).await.expect("tick");
    assert_eq!(tick.lapsed, 1001);
    for id in [&ids[0], &ids[500], &ids[1000]] {
        let r = f.flow.show(id).await.expect("shown");
        assert_eq!(r.state, "lapsed", "{id}");
        assert_eq!(r.decided_by.as_deref(), Some("lapse"));
    }
    let lapsed = f
        .flow
        .list_requests(Some("lapsed"), false, None)
        .await
        .expect("listed");
    assert_eq!(
        lapsed.requests.len(),
        1000,
        "the listing is capped; the lapsing is not"
    );
    assert!(
        f.store
            .due_pending_requests(later, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let notices = f
        .outbox()
        .await
        .iter()
        .filter(|(e, _)| e == "request-lapsed")
        .count();
    assert_eq!(notices, 1001);
    assert_eq!(
        f.flow.tick(later).await.expect("tick").lapsed,
        0,
        "repeating is harmless"
    );
}

#[tokio::test]
async fn a_grant_ending_soon_is_warned_once_and_the_tick_wakes_for_it() {
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("nico@x.io"), &ask("auto", ""))
        .await
        .expect("granted");
    let g = f
        .store
        .get_grant(f.engine.submitted()[0].id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(r.grant_id, Some(g.id.to_string()));
    let lead = Duration::minutes(10);
    let now = Utc::now();
    let quiet = f.flow.tick(now).await.expect("tick");
    assert_eq!(quiet.warned, 0);
    assert!(quiet.next_wake <= g.expires_at - lead);

    let soon = g.expires_at - lead + Duration::seconds(1);
    assert_eq!(f.flow.tick(soon).await.expect("tick").warned, 1);
    assert_eq!(
        f.flow.tick(soon).await.expect("tick").warned,
        0,
        "once per end"
    );
    assert_eq!(
        f.flow.show(&r.id).await.expect("shown").warned_expiry,
        Some(g.expires_at)
    );
    assert!(
        f.outbox()
            .await
            .iter()
            .any(|(e, to)| e == "expiring-soon" && to == &["nico@x.io"])
    );
}

#[tokio::test]
async fn waiting_lists_only_what_the_caller_may_still_approve() {
    let f = fixture().await;
    let mine = f
        .flow
        .create(&who("mia@x.io"), &ask("db-two", ""))
        .await
        .expect("created");
    let own = f
        .flow
        .create(&who("olga@x.io"), &ask("db", ""))
        .await
        .expect("created");
    let waiting = |id: Option<&'static str>| {
        let flow = f.flow.clone();
        async move { flow.list_requests(None, true, id).await }
    };
    let olga: Vec<String> = waiting(Some("olga@x.io"))
        .await
        .expect("listed")
        .requests
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(olga, std::slice::from_ref(&mine.id), "not her own request");
    let omar: Vec<String> = waiting(Some("omar@x.io"))
        .await
        .expect("listed")
        .requests
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(omar.len(), 2);
    assert!(omar.contains(&own.id));
    f.flow
        .approve(&who("olga@x.io"), &mine.id, &because(""))
        .await
        .expect("counted");
    assert!(
        waiting(Some("olga@x.io"))
            .await
            .expect("listed")
            .requests
            .is_empty(),
        "already approved by her"
    );
    assert!(matches!(
        waiting(None).await,
        Err(FlowError::Refused(Refusal::NoIdentity))
    ));
}

#[tokio::test]
async fn an_unreadable_history_row_holds_back_no_other_background_work() {
    let f = fixture().await;
    // The first tick marks where notices start.
    f.flow.tick(Utc::now()).await.expect("tick");
    let r = f
        .flow
        .create(&who("nico@x.io"), &ask("auto", ""))
        .await
        .expect("granted");
    let g = f
        .store
        .get_grant(f.engine.submitted()[0].id)
        .await
        .expect("read")
        .expect("stored");
    let db = f._dir.path().join("lapse.db");
    let inserted = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "INSERT INTO history (seq, at, grant_id, actor, event, detail, prev_hash, hash) \
             SELECT max(seq) + 1, '2026-01-01T00:00:00.000000Z', NULL, 'someone', \
             'grant-expired', 'not json', 'x', 'y' FROM history",
        )
        .status()
        .expect("the sqlite3 shell runs");
    assert!(inserted.success());
    let soon = g.expires_at - Duration::minutes(10) + Duration::seconds(1);
    let tick = f.flow.tick(soon).await;
    assert!(tick.is_err(), "the unreadable row is reported");
    assert_eq!(
        f.flow.show(&r.id).await.expect("shown").warned_expiry,
        Some(g.expires_at),
        "the warning of a grant ending soon went out although the history scan failed"
    );
}

#[tokio::test]
async fn a_grant_is_ended_early_by_its_requester_or_an_admin_only() {
    use lapse_core::Role;
    use lapse_requests::{RevokeRule, may_revoke};
    let f = fixture().await;
    let r = f
        .flow
        .create(&who("mia@x.io"), &ask("db", "INC-1"))
        .await
        .expect("created");
    let r = f
        .flow
        .approve(&who("omar@x.io"), &r.id, &because("ok"))
        .await
        .expect("approved");
    let gid = r.grant_id.expect("a grant");
    let g = f.engine.submitted()[0].clone();
    let asker = g.requester.clone();

    // The grant records the requester's identity, so any of her tokens owns it.
    assert_eq!(asker, "mia@x.io");
    assert_eq!(
        may_revoke("mia-laptop", Some("Mia@x.io"), Role::Requester, &g),
        RevokeRule::Allowed
    );
    assert_eq!(
        may_revoke("mia", None, Role::Requester, &g),
        RevokeRule::Hidden
    );
    assert_eq!(
        may_revoke("someone", Some("nico@x.io"), Role::Requester, &g),
        RevokeRule::Hidden
    );
    assert_eq!(
        may_revoke("someone", None, Role::Operator, &g),
        RevokeRule::NotYours
    );
    assert_eq!(
        may_revoke("someone", None, Role::Admin, &g),
        RevokeRule::Allowed
    );

    // Through the service: another requester is told the grant does not exist, an operator that
    // it is not theirs; nothing reaches the engine until the rule allows it.
    let e = f
        .flow
        .revoke("someone", Role::Requester, &gid, "done")
        .await
        .expect_err("hidden");
    assert!(matches!(e, FlowError::NotFound(_)), "{e:?}");
    let e = f
        .flow
        .revoke("someone", Role::Operator, &gid, "done")
        .await
        .expect_err("not theirs");
    assert!(matches!(e, FlowError::Conflict(_)), "{e:?}");
    let e = f
        .flow
        .revoke(&asker, Role::Requester, &gid, "")
        .await
        .expect_err("a reason is needed");
    assert!(matches!(e, FlowError::Field(_)), "{e:?}");
    let ended = f
        .flow
        .revoke_as("mia", Some("mia@x.io"), Role::Requester, &gid, "fixed")
        .await
        .expect("the requester ends it");
    assert_eq!(ended.state, GrantState::Revoked);
}

//! Table tests of the pure planner: one situation each, asserting the exact actions.

mod common;

use chrono::Duration;
use common::*;
use lapse_core::GrantState;
use lapse_core::ownership::{ObjectKind, OwnedEdge};
use lapse_core::plan::{Action, Container, DeleteReason, key_days};
use lapse_core::provider::{AccessToAdd, KeyStatus, Priority};

fn observe(c: Container) -> Action {
    Action::Observe {
        container: c,
        sweep: false,
    }
}

fn claim(edge: lapse_core::Edge, by: lapse_core::GrantId, exp: Option<i64>) -> OwnedEdge {
    OwnedEdge {
        edge,
        added_by: by,
        expires_at: exp.map(at),
        confirmed: false,
    }
}

// ---------------------------------------------------------------- scheduling

#[test]
fn scheduled_grant_does_nothing_before_its_start_and_wakes_at_it() {
    let f = Fixture::new().grant(
        GrantBuilder::membership("g1", &["u1"])
            .window(10, 70)
            .state(GrantState::Scheduled)
            .build(),
    );
    let p = f.plan_at(0);
    assert_eq!(p.actions, vec![]);
    assert_eq!(p.next_wake, Some(at(10)));
}

#[test]
fn scheduled_grant_at_its_start_moves_to_applying_and_reads_the_group() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .window(10, 70)
        .state(GrantState::Scheduled)
        .build();
    let f = Fixture::new().grant(g.clone());
    let p = f.plan_at(10);
    assert_eq!(
        p.actions,
        vec![
            Action::Transition {
                grant: g.id,
                to: GrantState::Applying
            },
            observe(Container::Group(rid("g1"))),
        ]
    );
    assert_eq!(p.next_wake, Some(at(70)));
}

// ---------------------------------------------------------------- group membership

#[test]
fn membership_on_a_group_never_read_only_observes() {
    let f = Fixture::new().grant(GrantBuilder::membership("g1", &["u1"]).build());
    let p = f.plan_at(5);
    assert_eq!(p.actions, vec![observe(Container::Group(rid("g1")))]);
    assert!(writes(&p).is_empty());
}

#[test]
fn membership_with_user_absent_adds_once_with_a_claim() {
    let g = GrantBuilder::membership("g1", &["u1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .observed(ObservedBuilder::new().group("g1", &["u7"], 5));
    let p = f.plan_at(5);
    assert_eq!(
        p.actions,
        vec![Action::UpdateGroupUsers {
            group: rid("g1"),
            add: vec![rid("u1")],
            remove: vec![],
            claims: vec![claim(membership_edge("g1", "u1"), g.id, None)],
            releases: vec![],
            grants: vec![g.id],
        }]
    );
}

#[test]
fn membership_once_confirmed_and_seen_becomes_active() {
    let g = GrantBuilder::membership("g1", &["u1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(membership_edge("g1", "u1"), g.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 5));
    let p = f.plan_at(5);
    assert_eq!(
        p.actions,
        vec![Action::Transition {
            grant: g.id,
            to: GrantState::Active
        }]
    );
}

#[test]
fn membership_that_existed_before_is_neither_claimed_nor_removed() {
    let g = GrantBuilder::membership("g1", &["u1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .observed(ObservedBuilder::new().group("g1", &["u1"], 5));
    // Apply: nothing written, nothing claimed, the grant is satisfied.
    let p = f.plan_at(5);
    assert_eq!(
        p.actions,
        vec![Action::Transition {
            grant: g.id,
            to: GrantState::Active
        }]
    );

    // Expiry: moves to revoking and removes nothing (I2).
    let mut f = f;
    f.grants[0].state = GrantState::Active;
    let p = f.plan_at(60);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Revoking)]);

    // Revoking with nothing owned: expires, still without a write.
    f.grants[0].state = GrantState::Revoking;
    let p = f.plan_at(61);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Expired)]);
}

#[test]
fn overlapping_grants_only_the_last_end_removes() {
    let a = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .window(0, 60)
        .state(GrantState::Active)
        .build();
    let b = GrantBuilder::membership("g1", &["u1"])
        .id(2)
        .window(30, 90)
        .state(GrantState::Active)
        .build();
    let edge = membership_edge("g1", "u1");
    let f = Fixture::new()
        .grant(a.clone())
        .grant(b.clone())
        .edge(owned(edge.clone(), a.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 59));

    // The first end removes nothing: the second grant still needs the membership.
    let p = f.plan_at(60);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(transitions(&p), vec![(a.id, GrantState::Revoking)]);

    // The first grant finishes: the edge it added is still needed, so it is not its to remove.
    let mut f2 = f.clone();
    f2.grants[0].state = GrantState::Revoking;
    let p = f2.plan_at(61);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(transitions(&p), vec![(a.id, GrantState::Expired)]);

    // The second end removes it.
    let mut f3 = f.clone();
    f3.grants.remove(0);
    let p = f3.plan_at(90);
    assert_eq!(
        significant(&p),
        vec![
            &Action::Transition {
                grant: b.id,
                to: GrantState::Revoking
            },
            &Action::UpdateGroupUsers {
                group: rid("g1"),
                add: vec![],
                remove: vec![rid("u1")],
                claims: vec![],
                releases: vec![edge],
                grants: vec![b.id],
            }
        ]
    );
}

#[test]
fn five_hundred_memberships_ending_together_cost_one_call() {
    let users: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut f = Fixture::new().observed(ObservedBuilder::new().group("g1", &user_refs, 59));
    for (i, u) in users.iter().enumerate() {
        let g = GrantBuilder::membership("g1", &[u.as_str()])
            .id(i as u128 + 1)
            .state(GrantState::Active)
            .build();
        f = f.edge(owned(membership_edge("g1", u), g.id, None)).grant(g);
    }
    let p = f.plan_at(60);
    let updates: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateGroupUsers {
                add,
                remove,
                releases,
                grants,
                ..
            } => Some((add.len(), remove.len(), releases.len(), grants.len())),
            _ => None,
        })
        .collect();
    assert_eq!(updates, vec![(0, 500, 500, 500)]);
    assert_eq!(writes(&p).len(), 1);
    assert_eq!(transitions(&p).len(), 500);
    assert!(
        transitions(&p)
            .iter()
            .all(|(_, s)| *s == GrantState::Revoking)
    );
}

// ---------------------------------------------------------------- group access

#[test]
fn group_access_edge_carries_end_plus_grace() {
    let g = GrantBuilder::access("g1", &["r1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .observed(ObservedBuilder::new().resource("r1", &[("g9", None)], 0));
    let p = f.plan_at(0);
    assert_eq!(f.cfg.backstop_grace, Duration::minutes(5));
    assert_eq!(
        p.actions,
        vec![Action::AddAccess {
            resource: rid("r1"),
            add: vec![AccessToAdd {
                principal: rid("g1"),
                expires_at: Some(at(65)),
            }],
            claims: vec![claim(access_edge("r1", "g1"), g.id, Some(65))],
            grants: vec![g.id],
        }]
    );
}

#[test]
fn overlapping_later_group_access_raises_the_expiry() {
    let a = GrantBuilder::access("g1", &["r1"])
        .id(1)
        .window(0, 60)
        .state(GrantState::Active)
        .build();
    let b = GrantBuilder::access("g1", &["r1"])
        .id(2)
        .window(30, 120)
        .build();
    let edge = access_edge("r1", "g1");
    let f = Fixture::new()
        .grant(a.clone())
        .grant(b.clone())
        .edge(owned(edge.clone(), a.id, Some(at(65))))
        .observed(ObservedBuilder::new().resource("r1", &[("g1", Some(65))], 30));
    let p = f.plan_at(30);
    assert_eq!(
        significant(&p),
        vec![&Action::AddAccess {
            resource: rid("r1"),
            add: vec![AccessToAdd {
                principal: rid("g1"),
                expires_at: Some(at(125)),
            }],
            // The record keeps who added it; only the expiry moves.
            claims: vec![claim(edge, a.id, Some(125))],
            grants: vec![a.id, b.id],
        }]
    );
}

/// A server that keeps `expiresAt` to the minute reports less than lapse wrote: the edge is
/// written once for a wanted expiry, not again at every sweep; a larger shortfall is rewritten.
#[test]
fn an_expiry_stored_coarsely_is_not_rewritten_but_a_changed_one_is() {
    let g = GrantBuilder::access("g1", &["r1"])
        .window(0, 60)
        .state(GrantState::Active)
        .build();
    let edge = access_edge("r1", "g1");
    let plan = |owned_exp, seen_exp| {
        let mut f = Fixture::new()
            .grant(g.clone())
            .edge(owned(edge.clone(), g.id, Some(owned_exp)))
            .observed(ObservedBuilder::new().resource("r1", &[("g1", Some(seen_exp))], 10));
        // Wanted: 65 minutes and 40 seconds; the server shows it truncated to minute 65.
        f.cfg.backstop_grace = Duration::minutes(5) + Duration::seconds(40);
        f.plan_at(10)
    };
    let want = at(65) + Duration::seconds(40);
    assert!(writes(&plan(want, 65)).is_empty(), "written once already");
    // Not yet written with this expiry (say, before an extension): written now.
    assert_eq!(writes(&plan(at(64), 65)).len(), 1);
    // Written, but since shortened by hand by more than the precision: written again.
    assert_eq!(writes(&plan(want, 30)).len(), 1);
}

#[test]
fn group_access_that_existed_before_gets_no_expiry() {
    let g = GrantBuilder::access("g1", &["r1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .observed(ObservedBuilder::new().resource("r1", &[("g1", None)], 0));
    let p = f.plan_at(0);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Active)]);
}

#[test]
fn group_access_end_removes_the_edge() {
    let g = GrantBuilder::access("g1", &["r1"])
        .state(GrantState::Revoking)
        .build();
    let edge = access_edge("r1", "g1");
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(edge.clone(), g.id, Some(at(65))))
        .observed(ObservedBuilder::new().resource("r1", &[("g1", Some(65))], 59));
    let p = f.plan_at(60);
    assert_eq!(
        significant(&p),
        vec![&Action::RemoveAccess {
            resource: rid("r1"),
            principals: vec![rid("g1")],
            releases: vec![edge],
            grants: vec![g.id],
        }]
    );
}

// ---------------------------------------------------------------- service access

#[test]
fn service_access_adds_then_removes_only_what_it_added() {
    let g = GrantBuilder::service_access("s1", &["r1", "r2"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .observed(ObservedBuilder::new().service_account("s1", &["r2"], vec![], 0));
    let p = f.plan_at(0);
    assert_eq!(
        p.actions,
        vec![Action::UpdateServiceResources {
            service_account: rid("s1"),
            add: vec![rid("r1")],
            remove: vec![],
            claims: vec![claim(sa_edge("s1", "r1"), g.id, None)],
            releases: vec![],
            grants: vec![g.id],
        }]
    );

    let mut f = f;
    f.grants[0].state = GrantState::Revoking;
    f.edges.push(owned(sa_edge("s1", "r1"), g.id, None));
    f.observed = ObservedBuilder::new()
        .service_account("s1", &["r1", "r2"], vec![], 59)
        .build();
    let p = f.plan_at(60);
    assert_eq!(
        significant(&p),
        vec![&Action::UpdateServiceResources {
            service_account: rid("s1"),
            add: vec![],
            remove: vec![rid("r1")],
            claims: vec![],
            releases: vec![sa_edge("s1", "r1")],
            grants: vec![g.id],
        }]
    );
}

// ---------------------------------------------------------------- ephemeral groups

#[test]
fn ephemeral_group_is_created_without_resources_then_given_expiring_access() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"]).build();
    let f = Fixture::new().grant(g.clone());
    let p = f.plan_at(0);
    assert_eq!(
        p.actions,
        vec![Action::CreateGroup {
            grant: g.id,
            name: g.id.remote_name(),
            users: vec![rid("u1")],
            resources: vec![],
        }]
    );

    // Created: its access edges need no read (the group is new) and carry the backstop.
    let f = f.object(group_object(g.id, Some("lg1")));
    let p = f.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![&Action::AddAccess {
            resource: rid("r1"),
            add: vec![AccessToAdd {
                principal: rid("lg1"),
                expires_at: Some(at(65)),
            }],
            claims: vec![claim(access_edge("r1", "lg1"), g.id, Some(65))],
            grants: vec![g.id],
        }]
    );
}

#[test]
fn ephemeral_group_without_backstop_is_created_with_its_resources() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"]).build();
    let mut f = Fixture::new().grant(g.clone());
    f.cfg.ephemeral_backstop = false;
    let p = f.plan_at(0);
    assert_eq!(
        p.actions,
        vec![Action::CreateGroup {
            grant: g.id,
            name: g.id.remote_name(),
            users: vec![rid("u1")],
            resources: vec![rid("r1")],
        }]
    );
    let f = f.object(group_object(g.id, Some("lg1")));
    let p = f.plan_at(1);
    assert_eq!(
        transitions(&p),
        vec![(g.id, GrantState::Active)],
        "{:?}",
        p.actions
    );
}

#[test]
fn ephemeral_group_becomes_active_once_its_edges_are_confirmed() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))));
    let p = f.plan_at(1);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Active)]);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
}

fn unknown_outcome_fixture(found: usize) -> (Fixture, lapse_core::GrantId) {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"]).build();
    let name = g.id.remote_name();
    let groups = (1..=found)
        .map(|i| group_info(&format!("lg{i}"), &name, &["u1"]))
        .collect();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, None))
        .observed(ObservedBuilder::new().named(&name, groups, 1));
    (f, g.id)
}

#[test]
fn ephemeral_unknown_outcome_looks_the_name_up_first() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, None));
    let p = f.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![&observe(Container::GroupsNamed(g.id.remote_name()))]
    );
    assert!(writes(&p).is_empty());
}

#[test]
fn ephemeral_unknown_outcome_with_no_group_creates_again() {
    let (f, id) = unknown_outcome_fixture(0);
    let p = f.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![
            &Action::ForgetObject {
                grant: id,
                kind: ObjectKind::Group
            },
            &Action::CreateGroup {
                grant: id,
                name: id.remote_name(),
                users: vec![rid("u1")],
                resources: vec![],
            }
        ]
    );
}

#[test]
fn ephemeral_unknown_outcome_with_one_group_adopts_it() {
    let (f, id) = unknown_outcome_fixture(1);
    let p = f.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![&Action::AdoptObject {
            grant: id,
            kind: ObjectKind::Group,
            remote_id: rid("lg1"),
        }]
    );
}

#[test]
fn ephemeral_unknown_outcome_with_two_groups_adopts_one_and_deletes_the_other() {
    let (f, id) = unknown_outcome_fixture(2);
    let p = f.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![
            &Action::AdoptObject {
                grant: id,
                kind: ObjectKind::Group,
                remote_id: rid("lg1"),
            },
            &Action::DeleteGroup {
                grant: id,
                group: rid("lg2"),
                reason: DeleteReason::Duplicate,
            }
        ]
    );
}

#[test]
fn ephemeral_unknown_outcome_after_the_end_deletes_whatever_carries_the_name() {
    let (mut f, id) = unknown_outcome_fixture(2);
    f.grants[0].state = GrantState::Revoking;
    let p = f.plan_at(61);
    assert_eq!(
        writes(&p),
        vec![
            &Action::DeleteGroup {
                grant: id,
                group: rid("lg1"),
                reason: DeleteReason::Revoke,
            },
            &Action::DeleteGroup {
                grant: id,
                group: rid("lg2"),
                reason: DeleteReason::Revoke,
            }
        ]
    );
    assert!(
        transitions(&p).is_empty(),
        "not expired while groups remain"
    );
}

#[test]
fn ephemeral_group_deleted_remotely_is_reported_and_recreated() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"])
        .state(GrantState::Active)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))))
        .observed(
            ObservedBuilder::new()
                .group_missing("lg1", 10)
                .resource("r1", &[], 10),
        );
    let p = f.plan_at(10);
    let drift = drift_reports(&p);
    assert_eq!(drift.len(), 1, "{:?}", p.actions);
    assert!(drift[0].contains("deleted remotely"), "{drift:?}");
    // No write may target the deleted group; the group is recreated.
    assert_eq!(
        significant(&p),
        vec![
            &Action::ForgetObject {
                grant: g.id,
                kind: ObjectKind::Group
            },
            &Action::CreateGroup {
                grant: g.id,
                name: g.id.remote_name(),
                users: vec![rid("u1")],
                resources: vec![],
            }
        ]
    );
}

#[test]
fn stranger_in_a_lapse_group_is_removed_and_reported() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"])
        .state(GrantState::Active)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))))
        .observed(
            ObservedBuilder::new()
                .group_info(group_info("lg1", &g.id.remote_name(), &["u1", "u9"]), 10)
                .resource("r1", &[("lg1", Some(65))], 10),
        );
    let p = f.plan_at(10);
    assert_eq!(drift_reports(&p).len(), 1, "{:?}", p.actions);
    assert_eq!(
        significant(&p),
        vec![&Action::UpdateGroupUsers {
            group: rid("lg1"),
            add: vec![],
            remove: vec![rid("u9")],
            claims: vec![],
            releases: vec![],
            grants: vec![g.id],
        }]
    );
    assert_eq!(writes(&p)[0].priority(), Priority::Revoke);
}

#[test]
fn own_group_never_read_is_swept() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"])
        .state(GrantState::Active)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))))
        .observed(ObservedBuilder::new().resource("r1", &[("lg1", Some(65))], 10));
    let p = f.plan_at(10);
    assert!(
        p.actions.contains(&Action::Observe {
            container: Container::Group(rid("lg1")),
            sweep: true
        }),
        "{:?}",
        p.actions
    );
    assert!(writes(&p).is_empty());
}

#[test]
fn duplicate_found_by_the_prefix_sweep_is_deleted() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"])
        .state(GrantState::Active)
        .build();
    let name = g.id.remote_name();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))))
        .observed(
            ObservedBuilder::new()
                .group_info(group_info("lg1", &name, &["u1"]), 10)
                .resource("r1", &[("lg1", Some(65))], 10)
                .lapse_groups(
                    vec![
                        group_info("lg1", &name, &["u1"]),
                        group_info("lg2", &name, &["u1"]),
                    ],
                    10,
                ),
        );
    let p = f.plan_at(10);
    assert_eq!(
        writes(&p),
        vec![&Action::DeleteGroup {
            grant: g.id,
            group: rid("lg2"),
            reason: DeleteReason::Duplicate,
        }]
    );
}

#[test]
fn ephemeral_end_deletes_the_group_and_leaves_its_edges_to_it() {
    let g = GrantBuilder::ephemeral(&["u1"], &["r1"])
        .state(GrantState::Revoking)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .edge(owned(access_edge("r1", "lg1"), g.id, Some(at(65))))
        .observed(ObservedBuilder::new().resource("r1", &[("lg1", Some(65))], 59));
    let p = f.plan_at(60);
    assert_eq!(
        writes(&p),
        vec![&Action::DeleteGroup {
            grant: g.id,
            group: rid("lg1"),
            reason: DeleteReason::Revoke,
        }]
    );
    assert!(transitions(&p).is_empty());
}

// ---------------------------------------------------------------- service keys

#[test]
fn key_days_round_up_to_whole_days_within_bounds() {
    assert_eq!(key_days(Duration::zero()), 1);
    assert_eq!(key_days(Duration::minutes(30)), 1);
    assert_eq!(key_days(Duration::hours(24)), 1);
    assert_eq!(key_days(Duration::hours(24) + Duration::seconds(1)), 2);
    assert_eq!(key_days(Duration::days(400)), 365);
}

#[test]
fn service_key_is_created_revoked_then_deleted() {
    let g = GrantBuilder::key("s1").window(0, 30 * 60).build();
    let f = Fixture::new().grant(g.clone());
    let p = f.plan_at(0);
    assert_eq!(
        p.actions,
        vec![Action::CreateKey {
            grant: g.id,
            service_account: rid("s1"),
            name: g.id.remote_name(),
            expiration_days: 2,
        }]
    );

    let f = f.object(key_object(g.id, Some("k1"), false));
    let p = f.plan_at(1);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Active)]);
    assert!(writes(&p).is_empty());

    let mut f = f;
    f.grants[0].state = GrantState::Revoking;
    let p = f.plan_at(30 * 60);
    assert_eq!(
        significant(&p),
        vec![&Action::RevokeKey {
            grant: g.id,
            key: rid("k1"),
            owned: true
        }]
    );

    f.objects[0].revoked = true;
    let p = f.plan_at(30 * 60 + 1);
    assert_eq!(
        significant(&p),
        vec![&Action::DeleteKey {
            grant: g.id,
            key: rid("k1"),
            owned: true
        }]
    );

    f.objects.clear();
    let p = f.plan_at(30 * 60 + 2);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Expired)]);
}

#[test]
fn unknown_outcome_key_is_revoked_deleted_and_created_anew() {
    let g = GrantBuilder::key("s1").build();
    let name = g.id.remote_name();
    let base = Fixture::new()
        .grant(g.clone())
        .object(key_object(g.id, None, false));

    let p = base.plan_at(1);
    assert_eq!(
        significant(&p),
        vec![&observe(Container::ServiceAccount(rid("s1")))]
    );

    let f = base
        .clone()
        .observed(ObservedBuilder::new().service_account(
            "s1",
            &[],
            vec![
                key_info("k0", "someone-elses", KeyStatus::Active),
                key_info("k9", &name, KeyStatus::Active),
            ],
            1,
        ));
    assert_eq!(
        significant(&f.plan_at(1)),
        vec![&Action::RevokeKey {
            grant: g.id,
            key: rid("k9"),
            owned: false
        }]
    );

    let f = base
        .clone()
        .observed(ObservedBuilder::new().service_account(
            "s1",
            &[],
            vec![key_info("k9", &name, KeyStatus::Revoked)],
            1,
        ));
    assert_eq!(
        significant(&f.plan_at(1)),
        vec![&Action::DeleteKey {
            grant: g.id,
            key: rid("k9"),
            owned: false
        }]
    );

    let f = base
        .clone()
        .observed(ObservedBuilder::new().service_account("s1", &[], vec![], 1));
    assert_eq!(
        significant(&f.plan_at(1)),
        vec![
            &Action::ForgetObject {
                grant: g.id,
                kind: ObjectKind::Key
            },
            &Action::CreateKey {
                grant: g.id,
                service_account: rid("s1"),
                name,
                expiration_days: 1,
            }
        ]
    );
}

// ---------------------------------------------------------------- ordering and backoff

#[test]
fn revocations_come_before_new_access() {
    let old = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .state(GrantState::Active)
        .build();
    let key_old = GrantBuilder::key("s1")
        .id(2)
        .state(GrantState::Revoking)
        .build();
    let new = GrantBuilder::membership("g2", &["u2"])
        .id(3)
        .window(60, 120)
        .build();
    let key_new = GrantBuilder::key("s1").id(4).window(60, 120).build();
    let acc_new = GrantBuilder::access("g3", &["r1"])
        .id(5)
        .window(60, 120)
        .build();
    let f = Fixture::new()
        .grant(new)
        .grant(key_new)
        .grant(acc_new)
        .grant(old.clone())
        .grant(key_old)
        .edge(owned(membership_edge("g1", "u1"), old.id, None))
        .object(key_object(gid(2), Some("k1"), false))
        .observed(
            ObservedBuilder::new()
                .group("g1", &["u1"], 60)
                .group("g2", &[], 60)
                .resource("r1", &[], 60),
        );
    let p = f.plan_at(60);
    let w = writes(&p);
    assert_eq!(w.len(), 5, "{:?}", p.actions);
    let prios: Vec<Priority> = w.iter().map(|a| a.priority()).collect();
    assert_eq!(
        prios,
        vec![
            Priority::Revoke,
            Priority::Revoke,
            Priority::Apply,
            Priority::Apply,
            Priority::Apply
        ]
    );
}

#[test]
fn grant_in_backoff_writes_nothing_and_wakes_at_its_retry() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .backoff_until(10)
        .build();
    let f = Fixture::new()
        .grant(g)
        .observed(ObservedBuilder::new().group("g1", &[], 9));
    let p = f.plan_at(9);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(p.next_wake, Some(at(10)));
    // Once the retry time has come the write is planned (the reading is still fresh).
    assert_eq!(writes(&f.plan_at(10)).len(), 1);
}

#[test]
fn revocation_in_backoff_waits_for_its_retry() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .state(GrantState::Revoking)
        .backoff_until(62)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(membership_edge("g1", "u1"), g.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 60));
    assert!(writes(&f.plan_at(61)).is_empty());
    assert_eq!(f.plan_at(61).next_wake, Some(at(62)));
    assert_eq!(writes(&f.plan_at(62)).len(), 1);
}

#[test]
fn a_grant_in_backoff_does_not_hold_back_another_grant_sharing_the_edge() {
    let a = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .backoff_until(30)
        .build();
    let b = GrantBuilder::membership("g1", &["u1"]).id(2).build();
    let f = Fixture::new()
        .grant(a)
        .grant(b.clone())
        .observed(ObservedBuilder::new().group("g1", &[], 5));
    let p = f.plan_at(5);
    assert_eq!(
        writes(&p),
        vec![&Action::UpdateGroupUsers {
            group: rid("g1"),
            add: vec![rid("u1")],
            remove: vec![],
            claims: vec![claim(membership_edge("g1", "u1"), b.id, None)],
            releases: vec![],
            grants: vec![b.id],
        }]
    );
}

#[test]
fn a_future_grant_in_backoff_does_not_hold_back_a_revocation() {
    let ended = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .state(GrantState::Revoking)
        .build();
    let future = GrantBuilder::membership("g1", &["u1"])
        .id(2)
        .window(120, 180)
        .state(GrantState::Scheduled)
        .backoff_until(100)
        .build();
    let f = Fixture::new()
        .grant(ended.clone())
        .grant(future)
        .edge(owned(membership_edge("g1", "u1"), ended.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 60));
    let p = f.plan_at(61);
    assert_eq!(
        writes(&p),
        vec![&Action::UpdateGroupUsers {
            group: rid("g1"),
            add: vec![],
            remove: vec![rid("u1")],
            claims: vec![],
            releases: vec![membership_edge("g1", "u1")],
            grants: vec![ended.id],
        }]
    );
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn revoking_waits_until_nothing_owned_remains() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .state(GrantState::Revoking)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(membership_edge("g1", "u1"), g.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 60));
    let p = f.plan_at(61);
    assert!(transitions(&p).is_empty());
    assert_eq!(writes(&p).len(), 1);

    let mut f = f;
    f.edges.clear();
    f.observed = ObservedBuilder::new().group("g1", &[], 61).build();
    let p = f.plan_at(61);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Expired)]);
    assert!(writes(&p).is_empty());
}

#[test]
fn ended_early_becomes_revoked() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .state(GrantState::Active)
        .revoked_at(20)
        .build();
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(membership_edge("g1", "u1"), g.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 19));
    let p = f.plan_at(20);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Revoking)]);
    assert_eq!(writes(&p).len(), 1);

    let mut f = f;
    f.grants[0].state = GrantState::Revoking;
    f.edges.clear();
    let p = f.plan_at(21);
    assert_eq!(transitions(&p), vec![(g.id, GrantState::Revoked)]);
}

#[test]
fn gone_edge_no_longer_needed_is_only_released() {
    let g = GrantBuilder::membership("g1", &["u1"])
        .state(GrantState::Revoking)
        .build();
    let edge = membership_edge("g1", "u1");
    let f = Fixture::new()
        .grant(g.clone())
        .edge(owned(edge.clone(), g.id, None))
        .observed(ObservedBuilder::new().group("g1", &[], 60));
    let p = f.plan_at(61);
    assert_eq!(
        significant(&p),
        vec![&Action::ReleaseEdges { edges: vec![edge] }]
    );
}

#[test]
fn unconfirmed_claim_no_longer_needed_is_removed_not_just_released() {
    // The add's answer was lost: an older reading cannot tell whether it took effect.
    let g = GrantBuilder::membership("g1", &["u1"])
        .state(GrantState::Revoking)
        .build();
    let edge = membership_edge("g1", "u1");
    let mut e = owned(edge.clone(), g.id, None);
    e.confirmed = false;
    let f = Fixture::new()
        .grant(g.clone())
        .edge(e)
        .observed(ObservedBuilder::new().group("g1", &[], 50));
    let p = f.plan_at(61);
    assert_eq!(
        writes(&p),
        vec![&Action::UpdateGroupUsers {
            group: rid("g1"),
            add: vec![],
            remove: vec![rid("u1")],
            claims: vec![],
            releases: vec![edge],
            grants: vec![g.id],
        }]
    );
}

#[test]
fn unconfirmed_claim_seen_present_is_written_again_before_active() {
    // A crash after the add but before its confirmation was recorded, then a fresh read: the
    // idempotent add is sent again so that the record is confirmed, not left an intent.
    let g = GrantBuilder::membership("g1", &["u1"]).build();
    let mut e = owned(membership_edge("g1", "u1"), g.id, None);
    e.confirmed = false;
    let f = Fixture::new()
        .grant(g.clone())
        .edge(e.clone())
        .observed(ObservedBuilder::new().group("g1", &["u1"], 5));
    let p = f.plan_at(5);
    assert!(transitions(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(
        p.actions,
        vec![Action::UpdateGroupUsers {
            group: rid("g1"),
            add: vec![rid("u1")],
            remove: vec![],
            claims: vec![e],
            releases: vec![],
            grants: vec![g.id],
        }]
    );
}

#[test]
fn stale_reading_is_refreshed_before_claiming() {
    // Read an hour ago: a member added since would be claimed and later removed (I2).
    let g = GrantBuilder::membership("g1", &["u1"])
        .window(60, 120)
        .build();
    let f = Fixture::new()
        .grant(g)
        .observed(ObservedBuilder::new().group("g1", &[], 0));
    let p = f.plan_at(60);
    assert!(writes(&p).is_empty(), "{:?}", p.actions);
    assert!(p.actions.contains(&observe(Container::Group(rid("g1")))));
}

#[test]
fn next_wake_is_the_nearest_deadline() {
    let scheduled = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .window(30, 90)
        .state(GrantState::Scheduled)
        .build();
    let active = GrantBuilder::membership("g1", &["u2"])
        .id(2)
        .window(0, 20)
        .state(GrantState::Active)
        .build();
    let f = Fixture::new()
        .grant(scheduled.clone())
        .grant(active.clone())
        .edge(owned(membership_edge("g1", "u2"), active.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u2"], 10));
    // Candidates: start 30, expiry 20, sweep of the reading at 10 + 5 = 15.
    assert_eq!(f.plan_at(12).next_wake, Some(at(15)));
    let mut f2 = f.clone();
    f2.cfg.sweep_interval = Duration::minutes(60);
    assert_eq!(f2.plan_at(12).next_wake, Some(at(20)));
    let mut f3 = f2.clone();
    f3.grants[1].retry.next_attempt_at = Some(at(13));
    assert_eq!(f3.plan_at(12).next_wake, Some(at(13)));
    let mut f4 = f2.clone();
    f4.grants.remove(1);
    f4.edges.clear();
    assert_eq!(f4.plan_at(12).next_wake, Some(at(30)));
}

#[test]
fn same_inputs_same_plan() {
    let g = GrantBuilder::ephemeral(&["u1", "u2"], &["r1", "r2"]).build();
    let f = Fixture::new()
        .grant(g.clone())
        .object(group_object(g.id, Some("lg1")))
        .observed(ObservedBuilder::new().resource("r1", &[], 0));
    assert_eq!(f.plan_at(1), f.plan_at(1));
}

// ---------------------------------------------------------------- removals built at send time

/// Two members of one group ending a minute apart, both owned and seen present.
fn two_ending() -> (Fixture, lapse_core::Grant, lapse_core::Grant) {
    let a = GrantBuilder::membership("g1", &["u1"])
        .id(1)
        .window(0, 60)
        .state(GrantState::Active)
        .build();
    let b = GrantBuilder::membership("g1", &["u2"])
        .id(2)
        .window(0, 61)
        .state(GrantState::Active)
        .build();
    let f = Fixture::new()
        .grant(a.clone())
        .grant(b.clone())
        .edge(owned(membership_edge("g1", "u1"), a.id, None))
        .edge(owned(membership_edge("g1", "u2"), b.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1", "u2"], 59));
    (f, a, b)
}

#[test]
fn group_removals_take_every_member_due_by_the_time_asked() {
    let (f, a, b) = two_ending();
    let g1 = rid("g1");
    // Planned at the first end: one member.
    let first = lapse_core::plan::group_removals(f.world(), &g1, at(60), &f.cfg);
    assert_eq!(
        first,
        Some(Action::UpdateGroupUsers {
            group: g1.clone(),
            add: vec![],
            remove: vec![rid("u1")],
            claims: vec![],
            releases: vec![membership_edge("g1", "u1")],
            grants: vec![a.id],
        })
    );
    // Built when the permit comes, after the second end: both in one call, the grants still
    // recorded as active (their transitions follow in the next pass).
    let later = lapse_core::plan::group_removals(f.world(), &g1, at(61), &f.cfg);
    assert_eq!(
        later,
        Some(Action::UpdateGroupUsers {
            group: g1.clone(),
            add: vec![],
            remove: vec![rid("u1"), rid("u2")],
            claims: vec![],
            releases: vec![membership_edge("g1", "u1"), membership_edge("g1", "u2")],
            grants: vec![a.id, b.id],
        })
    );
    // Before any end: nothing to remove, nothing to send.
    assert_eq!(
        lapse_core::plan::group_removals(f.world(), &g1, at(59), &f.cfg),
        None
    );
}

#[test]
fn group_removals_leave_a_member_a_grant_starting_by_then_needs() {
    let (f, _, _) = two_ending();
    // A new grant for u1 starts at u1's end: at that instant u1 is not taken out.
    let c = GrantBuilder::membership("g1", &["u1"])
        .id(3)
        .window(60, 120)
        .state(GrantState::Scheduled)
        .build();
    let f = f.grant(c);
    let g1 = rid("g1");
    assert_eq!(
        lapse_core::plan::group_removals(f.world(), &g1, at(60), &f.cfg),
        None
    );
    // At the second end only u2 goes.
    let later = lapse_core::plan::group_removals(f.world(), &g1, at(61), &f.cfg);
    assert!(
        matches!(&later, Some(Action::UpdateGroupUsers { remove, .. }) if remove == &vec![rid("u2")]),
        "{later:?}"
    );
}

#[test]
fn group_removals_wait_for_a_grant_in_backoff() {
    let a = GrantBuilder::membership("g1", &["u1"])
        .window(0, 60)
        .state(GrantState::Revoking)
        .backoff_until(62)
        .build();
    let f = Fixture::new()
        .grant(a.clone())
        .edge(owned(membership_edge("g1", "u1"), a.id, None))
        .observed(ObservedBuilder::new().group("g1", &["u1"], 59));
    let g1 = rid("g1");
    assert_eq!(
        lapse_core::plan::group_removals(f.world(), &g1, at(61), &f.cfg),
        None
    );
    assert!(lapse_core::plan::group_removals(f.world(), &g1, at(62), &f.cfg).is_some());
}

//! `plan::add_deadline`: the instant from which a call's additions must not be sent.

mod common;

use std::collections::HashMap;

use common::*;
use lapse_core::plan::{Action, add_deadline};
use lapse_core::{Grant, GrantId};

fn lookup(grants: &[Grant]) -> HashMap<GrantId, &Grant> {
    grants.iter().map(|g| (g.id, g)).collect()
}

fn add_users(group: &str, users: &[&str], by: GrantId, grants: &[GrantId]) -> Action {
    Action::UpdateGroupUsers {
        group: rid(group),
        add: users.iter().map(|u| rid(u)).collect(),
        remove: Vec::new(),
        claims: users
            .iter()
            .map(|u| owned(membership_edge(group, u), by, None))
            .collect(),
        releases: Vec::new(),
        grants: grants.to_vec(),
    }
}

#[test]
fn an_edge_is_due_until_the_last_grant_that_needs_it_ends() {
    let a = GrantBuilder::membership("g", &["u"])
        .id(1)
        .window(0, 10)
        .build();
    let b = GrantBuilder::membership("g", &["u"])
        .id(2)
        .window(0, 30)
        .build();
    let grants = [a.clone(), b.clone()];
    let map = lookup(&grants);
    // The claim names the grant that first added the edge; a later grant still needs it.
    let action = add_users("g", &["u"], a.id, &[a.id, b.id]);
    assert_eq!(
        add_deadline(&action, |id| map.get(id).copied()),
        Some(at(30))
    );
    let alone = add_users("g", &["u"], a.id, &[a.id]);
    assert_eq!(
        add_deadline(&alone, |id| map.get(id).copied()),
        Some(at(10))
    );
}

#[test]
fn a_call_is_due_by_its_earliest_edge() {
    let a = GrantBuilder::membership("g", &["u"])
        .id(1)
        .window(0, 10)
        .build();
    let b = GrantBuilder::membership("g", &["v"])
        .id(2)
        .window(0, 30)
        .build();
    let grants = [a.clone(), b.clone()];
    let map = lookup(&grants);
    let mut action = add_users("g", &["u", "v"], a.id, &[a.id, b.id]);
    if let Action::UpdateGroupUsers { claims, .. } = &mut action {
        claims[1].added_by = b.id;
    }
    assert_eq!(
        add_deadline(&action, |id| map.get(id).copied()),
        Some(at(10))
    );
}

#[test]
fn creates_are_due_by_their_grant_and_removals_have_no_deadline() {
    let e = GrantBuilder::ephemeral(&["u"], &["r"])
        .id(3)
        .window(0, 20)
        .build();
    let grants = [e.clone()];
    let map = lookup(&grants);
    let create = Action::CreateGroup {
        grant: e.id,
        name: e.id.remote_name(),
        users: vec![rid("u")],
        resources: Vec::new(),
    };
    assert_eq!(
        add_deadline(&create, |id| map.get(id).copied()),
        Some(at(20))
    );
    let remove = Action::UpdateGroupUsers {
        group: rid("g"),
        add: Vec::new(),
        remove: vec![rid("u")],
        claims: Vec::new(),
        releases: vec![membership_edge("g", "u")],
        grants: vec![e.id],
    };
    assert_eq!(add_deadline(&remove, |id| map.get(id).copied()), None);
    // A grant lapse no longer holds needs nothing: its additions are already late.
    let unknown = add_users("g", &["u"], gid(99), &[gid(99)]);
    assert!(add_deadline(&unknown, |id| map.get(id).copied()).is_some_and(|t| t < at(0)));
}

//! Cost growth: the planner's CPU time for a pass with 100 due grants, over worlds of growing
//! size, planned whole (what every pass does today) and as a slice (what an incremental pass
//! plans over). In process, no daemon: a pass's CPU time beyond planning is its IO.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use lapse_core::plan::{Observation, Observed, PlanConfig, SliceIndex, World, plan, plan_slice};
use lapse_core::provider::{GroupInfo, GroupType};
use lapse_core::{
    Edge, EdgeKind, Grant, GrantId, GrantSpec, GrantState, OwnedEdge, Principal, RemoteId,
    RetryState,
};
use serde_json::json;

use crate::report::Report;

/// Members per group: the slice of one due grant holds its group's grants.
const GROUP_SIZE: usize = 100;
const DUE: usize = 100;

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds).
fn thread_cpu() -> anyhow::Result<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/thread-self/schedstat")?;
    Ok(std::time::Duration::from_nanos(ns))
}

fn cpu_of<T>(f: impl FnOnce() -> T) -> anyhow::Result<(T, f64)> {
    let before = thread_cpu()?;
    let out = f();
    Ok((out, (thread_cpu()? - before).as_secs_f64()))
}

struct Built {
    grants: Vec<Grant>,
    edges: Vec<OwnedEdge>,
    observed: Observed,
    due: BTreeSet<GrantId>,
}

/// `n` active membership grants of one user each, `GROUP_SIZE` to a group, every membership
/// owned, confirmed and seen; `DUE` of them (one in each of `DUE` groups) ended a moment ago,
/// the rest end in an hour.
fn world(n: usize, now: DateTime<Utc>) -> Built {
    let groups = n.div_ceil(GROUP_SIZE);
    let due_every = (groups / DUE).max(1) * GROUP_SIZE;
    let mut grants = Vec::with_capacity(n);
    let mut edges = Vec::with_capacity(n);
    let mut members: HashMap<usize, Vec<RemoteId>> = HashMap::new();
    let mut due = BTreeSet::new();
    for i in 0..n {
        let g = i / GROUP_SIZE;
        let group = RemoteId::new(format!("G{g}"));
        let user = RemoteId::new(format!("U{i}"));
        let id = GrantId::from_parts(now - Duration::hours(1), i as u128 + 1);
        let ended = i % due_every == 0 && due.len() < DUE;
        if ended {
            due.insert(id);
        }
        grants.push(Grant {
            id,
            spec: GrantSpec::GroupMembership {
                group: Principal {
                    id: group.clone(),
                    name: format!("group-{g}"),
                },
                users: vec![Principal {
                    id: user.clone(),
                    name: format!("user{i}@example.com"),
                }],
            },
            requester: "bench".into(),
            reason: "cost".into(),
            created_at: now - Duration::hours(1),
            starts_at: now - Duration::hours(1),
            expires_at: if ended {
                now - Duration::milliseconds(1)
            } else {
                now + Duration::hours(1)
            },
            state: GrantState::Active,
            revoked_at: None,
            revoke_reason: None,
            retry: RetryState::default(),
        });
        edges.push(OwnedEdge {
            edge: Edge::new(EdgeKind::Membership, &group, &user),
            added_by: id,
            expires_at: None,
            confirmed: true,
        });
        members.entry(g).or_default().push(user);
    }
    let mut observed = Observed::default();
    for (g, users) in members {
        let id = RemoteId::new(format!("G{g}"));
        observed.groups.insert(
            id.clone(),
            Observation {
                at: now - Duration::seconds(10),
                value: Some(GroupInfo {
                    id,
                    name: format!("group-{g}"),
                    group_type: GroupType::Manual,
                    is_active: true,
                    users,
                    resources: Vec::new(),
                }),
            },
        );
    }
    Built {
        grants,
        edges,
        observed,
        due,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(sizes: &[usize], reps: usize) -> anyhow::Result<Report> {
    let mut report = Report::new(
        "cost",
        json!({ "open_grants": sizes, "due_grants": DUE, "group_size": GROUP_SIZE, "reps": reps,
                "kind": "group-membership, one user each, every membership owned and seen",
                "clock": "/proc/thread-self/schedstat (CPU time of the planning thread)" }),
    );
    let cfg = PlanConfig::default();
    let mut first: Option<(f64, f64)> = None;
    for &n in sizes {
        let now = Utc::now();
        let w = world(n, now);
        let world = World {
            grants: &w.grants,
            edges: &w.edges,
            objects: &[],
            observed: &w.observed,
        };
        let (index, build) = cpu_of(|| SliceIndex::new(world, &cfg))?;
        let mut full = Vec::new();
        let mut inc = Vec::new();
        let mut writes = (0, 0);
        for _ in 0..reps {
            let (p, t) = cpu_of(|| plan(world, now, &cfg))?;
            full.push(t);
            writes.0 = p.actions.iter().filter(|a| a.is_write()).count();
            let (p, t) = cpu_of(|| {
                let s = index.slice(world, &w.due, &BTreeSet::new());
                plan_slice(s.world(), now, &cfg)
            })?;
            inc.push(t);
            writes.1 = p.actions.iter().filter(|a| a.is_write()).count();
        }
        let (full, inc) = (median(full), median(inc));
        report.fig(format!("{n} open: full plan"), Some(full * 1000.0), "ms");
        report.fig(
            format!("{n} open: slice + plan of the slice"),
            Some(inc * 1000.0),
            "ms",
        );
        report.fig(
            format!("{n} open: building the slice index (once)"),
            Some(build * 1000.0),
            "ms",
        );
        report.note(format!(
            "{n} open: writes planned: full {} / slice {}",
            writes.0, writes.1
        ));
        match first {
            None => first = Some((full, inc)),
            Some((f0, i0)) if n == *sizes.last().unwrap_or(&n) => {
                report.fig(
                    format!("growth {}→{n}: full plan", sizes[0]),
                    Some(full / f0),
                    "×",
                );
                report.at_most(
                    format!("growth {}→{n}: slice + plan of the slice", sizes[0]),
                    Some(inc / i0),
                    "×",
                    2.0,
                );
            }
            Some(_) => {}
        }
        drop(index);
    }
    Ok(report)
}

//! The scenarios of issue 7. Each starts its own sim and daemon in a temporary directory, drives
//! lapse only through its HTTP API, and judges it only by what the sim saw.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use twingate_sim::JournalEntry;

use crate::journal::{JournalTail, applied_at, is_op, rate_limited, var, var_list};
use crate::procs::{BASELINE_KEY, Bins, Lapse, LapseOpts, Sim, poll};
use crate::report::{Report, max, percentile};
use crate::seed::{SeedBuilder, resource_name, user_email, user_id};
use crate::{Args, Scenario};

const RESOURCES: usize = 10;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bins = Bins::locate(args.lapse_bin.clone(), args.sim_bin.clone())?;
    let list: Vec<Scenario> = match args.scenario {
        Scenario::Smoke => {
            vec![
                Scenario::Lateness,
                Scenario::Economy,
                Scenario::Budget,
                Scenario::Burst,
                Scenario::Coalesce,
                Scenario::Cost,
                Scenario::Sweep,
                Scenario::Submissions,
                Scenario::Recovery,
            ]
        }
        s => vec![s],
    };
    let quick = args.quick || args.scenario == Scenario::Smoke;
    for s in list {
        let tmp = tempfile::Builder::new().prefix("lapse-bench-").tempdir()?;
        let started = Instant::now();
        let ctx = Ctx {
            bins: &bins,
            dir: tmp.path(),
            args: &args,
            quick,
        };
        let mut report = match s {
            Scenario::Lateness => lateness(&ctx).await,
            Scenario::Economy => economy(&ctx).await,
            Scenario::Budget => budget(&ctx).await,
            Scenario::Burst => burst(&ctx).await,
            Scenario::Coalesce => coalesce(&ctx).await,
            Scenario::Sweep => sweep(&ctx).await,
            Scenario::Submissions => submissions(&ctx).await,
            Scenario::Memory => scale(&ctx, false).await,
            Scenario::Recovery => scale(&ctx, true).await,
            Scenario::Failover => failover(&ctx).await,
            Scenario::Cost => {
                let sizes = if quick {
                    vec![1_000, 10_000]
                } else {
                    vec![10_000, 100_000, args.grants.unwrap_or(1_000_000)]
                };
                crate::cost::run(&sizes, if quick { 3 } else { 5 })
            }
            Scenario::Smoke => unreachable_smoke(),
        }
        .with_context(|| format!("scenario {s:?} (files in {})", tmp.path().display()))?;
        report.wall_seconds = started.elapsed().as_secs_f64();
        report.print();
        report.write(&args.out)?;
        if args.keep {
            let kept = tmp.keep();
            println!("kept {}", kept.display());
        }
    }
    Ok(())
}

fn unreachable_smoke() -> anyhow::Result<Report> {
    bail!("smoke is expanded into the other scenarios")
}

struct Ctx<'a> {
    bins: &'a Bins,
    dir: &'a Path,
    args: &'a Args,
    quick: bool,
}

impl Ctx<'_> {
    fn pick<T>(&self, given: Option<T>, full: T, quick: T) -> T {
        given.unwrap_or(if self.quick { quick } else { full })
    }

    async fn sim(&self, seed: &SeedBuilder, flags: &[String]) -> anyhow::Result<Sim> {
        let path = self.dir.join("seed.json");
        seed.write(&path)?;
        Sim::start(&self.bins.sim, &path, flags, &self.dir.join("sim.log")).await
    }

    async fn lapse(&self, sim: &Sim, opts: &LapseOpts) -> anyhow::Result<Lapse> {
        let dir = self.dir.join("lapse");
        std::fs::create_dir_all(&dir)?;
        let mut l = Lapse::prepare(&self.bins.lapse, &dir, &sim.url, opts).await?;
        l.start().await?;
        Ok(l)
    }
}

fn no_limit_flags(latency_ms: u64) -> Vec<String> {
    vec![
        "--no-rate-limit".into(),
        "--latency-ms".into(),
        latency_ms.to_string(),
    ]
}

fn membership(group: &str, user: usize, expires_at: DateTime<Utc>) -> Value {
    json!({ "kind": "group-membership", "group": group, "users": [user_email(user)], "expires_at": expires_at, "reason": "benchmark" })
}

fn ephemeral(user: usize, resource: usize, expires_at: DateTime<Utc>) -> Value {
    json!({ "kind": "ephemeral-group", "users": [user_email(user)], "resources": [resource_name(resource)], "expires_at": expires_at, "reason": "benchmark" })
}

struct Submitted {
    idx: usize,
    status: u16,
    body: Value,
    latency: Duration,
}

/// Submit every body through the API with `clients` requests in flight.
async fn submit_all(lapse: &Lapse, bodies: Vec<Value>, clients: usize) -> Vec<Submitted> {
    let mut out: Vec<Submitted> = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(idx, b)| async move {
            let (status, body, latency) = lapse.submit(&b).await;
            Submitted {
                idx,
                status,
                body,
                latency,
            }
        })
        .buffer_unordered(clients.max(1))
        .collect()
        .await;
    out.sort_by_key(|s| s.idx);
    out
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn status_counts(subs: &[Submitted]) -> String {
    let mut m: HashMap<u16, usize> = HashMap::new();
    for s in subs {
        *m.entry(s.status).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_error(subs: &[Submitted]) -> Option<String> {
    subs.iter()
        .find(|s| s.status != 201)
        .map(|s| format!("HTTP {}: {}", s.status, s.body))
}

// ---------------------------------------------------------------------------------------------
// 1 + 7: lateness, with the baseline job in the same run

/// What the benchmark knows about one grant it submitted for lateness.
struct Tracked {
    expires_at: DateTime<Utc>,
    /// Answered 201; only acknowledged grants are measured.
    acked: bool,
    /// Ephemeral: the group's name; membership: (group id, user id).
    target: Target,
}

enum Target {
    Ephemeral(String),
    Member(String, String),
}

async fn lateness(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let n = ctx.pick(a.grants, 1_000, 40);
    let spread = ctx.pick(a.spread_secs, 60, 4);
    let period = ctx.pick(a.baseline_period_secs, 60, 2);
    let latency = a.latency_ms;
    let n_eph = n / 2;
    let n_mem = n - n_eph;
    let groups = 100.min(n_mem.max(1));
    let users = n_mem.div_ceil(groups).max(2);
    let mut report = Report::new(
        "lateness",
        json!({ "grants": n, "ephemeral_group": n_eph, "group_membership": n_mem, "spread_secs": spread, "sim_latency_ms": latency,
                "sim_rate_limit": "off", "baseline_period_secs": period, "baseline_concurrency": a.baseline_concurrency,
                "membership_groups": groups, "users": users }),
    );
    if ctx.quick && a.grants.is_none() {
        report.note("quick mode: small numbers; the baseline job runs every few seconds instead of once a minute");
    }

    let mut seed = SeedBuilder::new(users, RESOURCES);
    let group_ids: Vec<String> = (0..groups)
        .map(|j| seed.group(&format!("bench-g{j}"), &[], &[]))
        .collect();
    // The baseline job's own ephemeral groups, one per lapse ephemeral grant, same expiries.
    let baseline_ids: Vec<String> = (0..n_eph)
        .map(|k| seed.group(&format!("baseline-{k}"), &[k % users], &[k % RESOURCES]))
        .collect();
    seed.group("bench-calibration", &[], &[]);
    let sim = ctx.sim(&seed, &no_limit_flags(latency)).await?;
    let mut lapse = ctx.lapse(&sim, &LapseOpts::default()).await?;

    // Calibrate the submission rate so that every grant is active before the first expiry.
    let cal = (n / 20).clamp(20, 500);
    let far = Utc::now() + chrono::Duration::hours(2);
    let t = Instant::now();
    let cal_subs = submit_all(
        &lapse,
        (0..cal)
            .map(|k| ephemeral(k % users, k % RESOURCES, far))
            .collect(),
        a.clients,
    )
    .await;
    if let Some(e) = first_error(&cal_subs) {
        bail!("calibration submission failed: {e}");
    }
    let rate = cal as f64 / t.elapsed().as_secs_f64();
    let est = n as f64 / rate;
    let lead = a.lead_secs.map_or(
        (est * 1.5 + if ctx.quick { 3.0 } else { 15.0 }).ceil() as i64,
        |s| s as i64,
    );
    let base = (Utc::now() + chrono::Duration::seconds(lead)).trunc_subsecs(0);
    report.note(format!(
        "calibration: {cal} grants at {rate:.0}/s; first expiry set {lead} s ahead ({n} more to submit), plus {cal} long grants stay active"
    ));

    // Expiries evenly over [base, base + spread).
    let expiry = |k: usize, of: usize| {
        base + chrono::Duration::milliseconds(
            (spread as f64 * 1000.0 * k as f64 / of.max(1) as f64) as i64,
        )
    };
    let mut bodies = Vec::with_capacity(n);
    let mut tracked = Vec::with_capacity(n);
    let mut m = 0usize;
    for i in 0..n {
        // Interleave the kinds (odd: ephemeral k = i / 2) so both see the same load at once.
        let exp = expiry(i, n);
        if i % 2 == 1 {
            let k = i / 2;
            bodies.push(ephemeral(k % users, k % RESOURCES, exp));
            tracked.push(Tracked {
                expires_at: exp,
                acked: false,
                target: Target::Ephemeral(String::new()),
            });
        } else {
            let (g, u) = (m % groups, m / groups);
            m += 1;
            bodies.push(membership(&format!("bench-g{g}"), u, exp));
            tracked.push(Tracked {
                expires_at: exp,
                acked: false,
                target: Target::Member(group_ids[g].clone(), user_id(u)),
            });
        }
    }
    let t = Instant::now();
    let subs = submit_all(&lapse, bodies, a.clients).await;
    let submit_secs = t.elapsed().as_secs_f64();
    let ok = subs.iter().filter(|s| s.status == 201).count();
    report.fig("submitted (201)", Some(ok as f64), "grants");
    report.fig(
        "submission rate while seeding",
        Some(n as f64 / submit_secs),
        "grants/s",
    );
    if ok != n {
        report.note(format!(
            "submission statuses: {}; first error: {:?}",
            status_counts(&subs),
            first_error(&subs)
        ));
    }
    for s in &subs {
        if let (Target::Ephemeral(name), Some(g)) =
            (&mut tracked[s.idx].target, s.body["group"].as_str())
        {
            *name = g.to_owned();
        }
    }
    let window = chrono::Duration::seconds(spread as i64);
    let settle_within =
        (base + window - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(60);
    let settled = lapse.wait_settled(settle_within).await;
    let slack = secs(base - Utc::now());
    report.fig(
        "all applied this long before the first expiry",
        Some(slack),
        "s",
    );
    if !settled || slack < 0.0 {
        report.note("some grants were still being applied when expiries began; their lateness is still measured");
    }
    if let Some((hwm, rss)) = lapse.memory_kb() {
        report.fig(
            "daemon VmHWM with all grants active",
            Some(hwm as f64 / 1024.0),
            "MB",
        );
        report.fig(
            "daemon VmRSS with all grants active",
            Some(rss as f64 / 1024.0),
            "MB",
        );
    }
    let state = sim.state().await?;
    let by_name: HashMap<&str, &str> = state
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.id.as_str()))
        .collect();
    let mut eph_index: HashMap<String, usize> = HashMap::new();
    let mut mem_index: HashMap<(String, String), usize> = HashMap::new();
    for s in &subs {
        tracked[s.idx].acked = s.status == 201;
    }
    let n_acked = tracked.iter().filter(|t| t.acked).count();
    for (i, t) in tracked.iter().enumerate().filter(|(_, t)| t.acked) {
        match &t.target {
            Target::Ephemeral(name) => {
                if let Some(id) = by_name.get(name.as_str()) {
                    eph_index.insert((*id).to_owned(), i);
                }
            }
            Target::Member(g, u) => {
                mem_index.insert((g.clone(), u.clone()), i);
            }
        }
    }
    drop(state);
    sim.clear_journal().await?;

    // The baseline: a job run every `period` seconds (on the period's boundary, as cron does)
    // deleting the groups whose recorded time is up, through the same API.
    let table: Vec<(String, DateTime<Utc>)> = baseline_ids
        .iter()
        .enumerate()
        .map(|(k, id)| (id.clone(), expiry(2 * k + 1, n)))
        .collect();
    let deadline = base
        + window
        + chrono::Duration::seconds((2 * period + if ctx.quick { 15 } else { 90 }) as i64);
    let job = baseline_job(&sim, table, period, a.baseline_concurrency, deadline);

    // Follow the journal until every lapse grant's access is gone, or the deadline.
    let watch = async {
        let mut tail = JournalTail::default();
        let mut seen: HashSet<usize> = HashSet::new();
        loop {
            tokio::time::sleep(Duration::from_secs(if ctx.quick { 1 } else { 3 })).await;
            tail.poll(&sim).await?;
            seen.clear();
            for e in tail
                .entries
                .iter()
                .filter(|e| e.mutation_applied && e.api_key_name.as_deref() == Some("lapse"))
            {
                removal_targets(e, &eph_index, &mem_index, |i| {
                    seen.insert(i);
                });
            }
            if seen.len() >= n_acked || Utc::now() > deadline {
                return anyhow::Ok(tail);
            }
        }
    };
    let (job_result, tail) = tokio::join!(job, watch);
    let mut tail = tail?;
    job_result?;
    tail.poll(&sim).await?;

    // Lateness from the applied-mutation timestamps.
    let mut removed: HashMap<usize, DateTime<Utc>> = HashMap::new();
    let mut baseline_removed: Vec<f64> = Vec::new();
    let baseline_expiry: HashMap<&str, DateTime<Utc>> = baseline_ids
        .iter()
        .enumerate()
        .map(|(k, id)| (id.as_str(), expiry(2 * k + 1, n)))
        .collect();
    for e in tail.entries.iter().filter(|e| e.mutation_applied) {
        let at = applied_at(e, latency, 0.0);
        match e.api_key_name.as_deref() {
            Some("lapse") => removal_targets(e, &eph_index, &mem_index, |i| {
                removed.entry(i).or_insert(at);
            }),
            Some("baseline") if is_op(e, "groupDelete") => {
                if let Some(exp) = var(e, "id").and_then(|id| baseline_expiry.get(id)) {
                    baseline_removed.push(secs(at - *exp));
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    let mut by_kind: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (i, at) in &removed {
        let l = secs(*at - tracked[*i].expires_at);
        all.push(l);
        by_kind[usize::from(matches!(tracked[*i].target, Target::Member(..)))].push(l);
    }
    let missed = n_acked.saturating_sub(removed.len());
    let (p99_target, label) = if n >= 100_000 {
        (2.0, "≤ 2 s at 100,000")
    } else {
        (1.0, "≤ 1 s at ≤ 10,000")
    };
    report.fig("lateness p50 (lapse)", percentile(&all, 50.0), "s");
    report.at_most(
        "lateness p99 (lapse)",
        percentile(&all, 99.0),
        "s",
        p99_target,
    );
    report.fig("lateness max (lapse)", max(&all), "s");
    report.fig(
        "lateness min (lapse; < 0 would be early)",
        all.iter().copied().min_by(f64::total_cmp),
        "s",
    );
    report.at_most(
        "missed (no removal seen by the deadline)",
        Some(missed as f64),
        "grants",
        0.0,
    );
    for (k, name) in [(0, "ephemeral-group"), (1, "group-membership")] {
        report.fig(
            format!("lateness p50 / p99 / max, {name}"),
            percentile(&by_kind[k], 50.0),
            "s (p50)",
        );
        report.fig(
            format!("  … p99, {name}"),
            percentile(&by_kind[k], 99.0),
            "s",
        );
        report.fig(format!("  … max, {name}"), max(&by_kind[k]), "s");
    }
    report.fig(
        "baseline lateness p50",
        percentile(&baseline_removed, 50.0),
        "s",
    );
    report.fig(
        "baseline lateness p99",
        percentile(&baseline_removed, 99.0),
        "s",
    );
    report.fig("baseline lateness max", max(&baseline_removed), "s");
    report.fig(
        "baseline groups deleted",
        Some(baseline_removed.len() as f64),
        "groups",
    );
    for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
        let ratio = match (percentile(&baseline_removed, p), percentile(&by_kind[0], p)) {
            (Some(b), Some(l)) if l > 0.0 => Some(b / l),
            _ => None,
        };
        report.fig(
            format!("baseline ÷ lapse, ephemeral groups, {name}"),
            ratio,
            "×",
        );
    }
    report.fig(
        "journal entries lost between polls",
        Some(tail.lost as f64),
        "entries",
    );
    report.note(format!("p99 target {label}; lateness = applied time of the removing mutation (journal `at` + {latency} ms sim latency) − expires_at"));

    // The truth afterwards: nothing of the measured grants is left in the sim.
    let state = sim.state().await?;
    let groups_left = state
        .groups
        .iter()
        .filter(|g| eph_index.contains_key(&g.id))
        .count();
    let members_left: usize = state
        .groups
        .iter()
        .map(|g| {
            g.user_ids
                .iter()
                .filter(|u| mem_index.contains_key(&(g.id.clone(), (*u).clone())))
                .count()
        })
        .sum();
    report.at_most(
        "access still present at the end",
        Some((groups_left + members_left) as f64),
        "grants",
        0.0,
    );
    lapse.terminate().await?;
    Ok(report)
}

/// Calls `hit` with the index of every tracked grant whose access this mutation removed.
fn removal_targets(
    e: &JournalEntry,
    eph: &HashMap<String, usize>,
    mem: &HashMap<(String, String), usize>,
    mut hit: impl FnMut(usize),
) {
    let Some(id) = var(e, "id") else { return };
    if is_op(e, "groupDelete") {
        if let Some(i) = eph.get(id) {
            hit(*i);
        }
    } else if is_op(e, "groupUpdate") {
        for u in var_list(e, "removedUserIds") {
            if let Some(i) = mem.get(&(id.to_owned(), u)) {
                hit(*i);
            }
        }
    }
}

const GROUP_DELETE: &str = "mutation GroupDelete($id: ID!) { groupDelete(id: $id) { ok error } }";

/// The way teams do it without lapse: a job on a fixed schedule that deletes the groups whose
/// time (kept in its own table) is up.
async fn baseline_job(
    sim: &Sim,
    table: Vec<(String, DateTime<Utc>)>,
    period: u64,
    concurrency: usize,
    deadline: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut pending = table;
    let period_ms = (period.max(1) * 1000) as i64;
    while !pending.is_empty() && Utc::now() < deadline {
        let now_ms = Utc::now().timestamp_millis();
        let next = (now_ms / period_ms + 1) * period_ms;
        tokio::time::sleep(Duration::from_millis((next - now_ms).max(0) as u64)).await;
        let now = Utc::now();
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, exp)| *exp <= now);
        pending = later;
        let failed: Vec<(String, DateTime<Utc>)> = futures::stream::iter(due)
            .map(|(id, exp)| async move {
                let r = sim
                    .graphql(BASELINE_KEY, GROUP_DELETE, json!({ "id": id }))
                    .await;
                let ok =
                    matches!(&r, Ok((200, v)) if v["data"]["groupDelete"]["ok"] == json!(true));
                (!ok).then_some((id, exp))
            })
            .buffer_unordered(concurrency.max(1))
            .filter_map(|x| async move { x })
            .collect()
            .await;
        pending.extend(failed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2: economy

async fn economy(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let k = ctx.pick(ctx.args.grants, 20, 2);
    let coalesce = if ctx.quick { 20 } else { 500 };
    let lead = if ctx.quick { 2 } else { 4 };
    let mut report = Report::new(
        "economy",
        json!({ "grants_per_kind": k, "coalesce_grants": coalesce, "sim_latency_ms": ctx.args.latency_ms, "sim_rate_limit": "off",
                "grant_lifetime_secs": lead, "resources_per_grant": 1, "users_per_grant": 1 }),
    );
    let users = coalesce.max(k);
    let mut seed = SeedBuilder::new(users, RESOURCES);
    for i in 0..k {
        seed.group(&format!("econ-m-{i}"), &[], &[]);
        seed.group(&format!("econ-ga-{i}"), &[], &[]);
        seed.service_account(&format!("econ-sa-{i}"));
        seed.service_account(&format!("econ-sk-{i}"));
    }
    let coal_id = seed.group("coalesce", &[], &[]);
    let sim = ctx.sim(&seed, &no_limit_flags(ctx.args.latency_ms)).await?;
    let mut lapse = ctx.lapse(&sim, &LapseOpts::default()).await?;

    let kinds: [(&str, f64, &str); 5] = [
        (
            "ephemeral-group",
            3.0,
            "create group, add the resource edge with its backstop expiry, delete group",
        ),
        ("group-membership", 2.0, "add member, remove member"),
        ("group-access", 2.0, "add edge with expiresAt, remove edge"),
        ("service-access", 2.0, "add resource, remove resource"),
        ("service-key", 3.0, "create key, revoke key, delete key"),
    ];
    for (kind, min, how) in kinds {
        let label = if kind == "ephemeral-group" {
            "ephemeral-group (backstop on, the default)"
        } else {
            kind
        };
        economy_kind(
            &sim,
            &lapse,
            &mut report,
            kind,
            label,
            (k, lead, ctx.quick),
            min,
            how,
        )
        .await?;
    }
    // Restart without the ephemeral backstop for that kind's bare minimum.
    lapse.terminate().await?;
    let opts = LapseOpts {
        ephemeral_backstop: false,
        ..LapseOpts::default()
    };
    lapse.write_config(lapse.port(), &sim.url, &opts)?;
    lapse.start().await?;
    economy_kind(
        &sim,
        &lapse,
        &mut report,
        "ephemeral-group",
        "ephemeral-group (backstop off)",
        (k, lead, ctx.quick),
        2.0,
        "create group, delete group",
    )
    .await?;

    // Coalescing: `coalesce` membership grants on one group, all ending within one second.
    sim.clear_journal().await?;
    let end = (Utc::now() + chrono::Duration::seconds(lead + if ctx.quick { 1 } else { 4 }))
        .trunc_subsecs(0);
    let bodies: Vec<Value> = (0..coalesce)
        .map(|u| {
            membership(
                "coalesce",
                u,
                end + chrono::Duration::milliseconds((u * 900 / coalesce) as i64),
            )
        })
        .collect();
    let subs = submit_all(&lapse, bodies, ctx.args.clients).await;
    if let Some(e) = first_error(&subs) {
        bail!("coalescing submission failed: {e}");
    }
    let late_by = Utc::now() - end;
    if late_by > chrono::Duration::zero() {
        report.note(format!(
            "coalescing: submissions finished {:.1} s after the common expiry",
            secs(late_by)
        ));
    }
    let done = poll(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let j = sim.journal().await.ok()?;
            let removed: usize = j
                .iter()
                .filter(|e| {
                    e.mutation_applied
                        && is_op(e, "groupUpdate")
                        && var(e, "id") == Some(coal_id.as_str())
                })
                .map(|e| var_list(e, "removedUserIds").len())
                .sum();
            (removed >= coalesce).then_some(j)
        },
    )
    .await;
    let Some(j) = done else {
        bail!("coalescing: the {coalesce} members were not all removed within 60 s")
    };
    let updates: Vec<&JournalEntry> = j
        .iter()
        .filter(|e| {
            e.mutation_applied && is_op(e, "groupUpdate") && var(e, "id") == Some(coal_id.as_str())
        })
        .collect();
    let adds = updates
        .iter()
        .filter(|e| !var_list(e, "addedUserIds").is_empty())
        .count();
    let removes: Vec<usize> = updates
        .iter()
        .map(|e| var_list(e, "removedUserIds").len())
        .filter(|n| *n > 0)
        .collect();
    report.fig(
        format!("coalescing: group updates adding the {coalesce} members"),
        Some(adds as f64),
        "updates",
    );
    // No budget here: each removal goes when due. The target (≤ 2 under 20 writes a minute)
    // is the `coalesce` scenario's.
    report.fig(
        format!(
            "coalescing, no rate limit: group updates removing {coalesce} members ending within 1 s"
        ),
        Some(removes.len() as f64),
        "updates",
    );
    report.note(format!(
        "coalescing: members removed per update, in order: {removes:?}"
    ));
    lapse.terminate().await?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn economy_kind(
    sim: &Sim,
    lapse: &Lapse,
    report: &mut Report,
    kind: &str,
    label: &str,
    (k, lead, quick): (usize, i64, bool),
    min: f64,
    how: &str,
) -> anyhow::Result<()> {
    sim.clear_journal().await?;
    let end = Utc::now() + chrono::Duration::seconds(lead);
    let bodies: Vec<Value> = (0..k)
        .map(|i| {
            let r = resource_name(i % RESOURCES);
            let mut b = match kind {
                "ephemeral-group" => json!({ "users": [user_email(i)], "resources": [r] }),
                "group-membership" => {
                    json!({ "group": format!("econ-m-{i}"), "users": [user_email(i)] })
                }
                "group-access" => json!({ "group": format!("econ-ga-{i}"), "resources": [r] }),
                "service-access" => {
                    json!({ "service_account": format!("econ-sa-{i}"), "resources": [r] })
                }
                _ => json!({ "service_account": format!("econ-sk-{i}") }),
            };
            b["kind"] = json!(kind);
            b["expires_at"] = json!(end);
            b["reason"] = json!("benchmark");
            b
        })
        .collect();
    let subs = submit_all(lapse, bodies, 4).await;
    if let Some(e) = first_error(&subs) {
        bail!("{kind}: submission failed: {e}");
    }
    let ids: Vec<String> = subs
        .iter()
        .filter_map(|s| s.body["id"].as_str().map(str::to_owned))
        .collect();
    let finished = poll(
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async {
            for id in &ids {
                let (_, v) = lapse.get(&format!("/v1/grants/{id}")).await.ok()?;
                if !matches!(
                    v["grant"]["state"].as_str(),
                    Some("expired" | "revoked" | "failed")
                ) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    if finished.is_none() {
        report.note(format!("{label}: not every grant finished within 90 s"));
    }
    // Writes that follow the end (a key's later delete) get a few seconds to show up.
    tokio::time::sleep(Duration::from_millis(if quick { 500 } else { 3000 })).await;
    let j = sim.journal().await?;
    let ours: Vec<&JournalEntry> = j
        .iter()
        .filter(|e| e.api_key_name.as_deref() == Some("lapse"))
        .collect();
    let attempted = ours.iter().filter(|e| e.is_mutation).count();
    let applied = ours.iter().filter(|e| e.mutation_applied).count();
    let reads = ours.iter().filter(|e| !e.is_mutation).count();
    let mut by_op: HashMap<String, usize> = HashMap::new();
    for e in ours.iter().filter(|e| e.is_mutation) {
        *by_op.entry(e.root_fields.join("+")).or_default() += 1;
    }
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort();
    let kf = k as f64;
    if attempted as f64 > min * kf {
        // Show the writes beyond the minimum in order, so the reader can see what was repeated.
        let shown: Vec<String> = ours
            .iter()
            .filter(|e| e.is_mutation)
            .take(12)
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.at.format("%H:%M:%S%.3f"),
                    e.root_fields.join("+"),
                    e.variables
                )
            })
            .collect();
        report.note(format!(
            "{label}: first writes in order: {}",
            shown.join(" | ")
        ));
    }
    report.at_most(
        format!("writes per grant life, {label}"),
        Some(attempted as f64 / kf),
        "writes",
        min,
    );
    report.fig(
        format!("  … applied writes per grant, {label}"),
        Some(applied as f64 / kf),
        "writes",
    );
    report.fig(
        format!("  … reads per grant, {label}"),
        Some(reads as f64 / kf),
        "reads",
    );
    report.note(format!(
        "{label}: minimum {min} ({how}); seen over {k} grants: {}",
        ops.iter()
            .map(|(o, n)| format!("{o} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3: budget

async fn budget(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let w = ctx.pick(a.writes_per_minute, 20, 600);
    let reads = if w <= 60 { 60 } else { w * 3 };
    let r = ctx.pick(a.revocations, 50, 5);
    let g = ctx.pick(a.new_grants, 50, 5);
    let mut report = Report::new(
        "budget",
        json!({ "writes_per_minute": w, "reads_per_minute": reads, "due_revocations": r, "new_grants": g, "kind": "ephemeral-group (backstop off: one write to apply, one to revoke)" }),
    );
    let mut seed = SeedBuilder::new(r.max(g).max(2), 4);
    seed.group("budget-placeholder", &[], &[]);
    let flags = vec![
        "--rate-limit-writes".to_string(),
        w.to_string(),
        "--rate-limit-reads".into(),
        reads.to_string(),
    ];
    let sim = ctx.sim(&seed, &flags).await?;

    // Setup: the backlog's grants are applied with the sim's buckets refilled by moving its clock
    // (so that setup does not take the minutes the measured phase will).
    let setup = LapseOpts {
        ephemeral_backstop: false,
        ..LapseOpts::default()
    };
    let mut lapse = ctx.lapse(&sim, &setup).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let refill = {
        let stop = stop.clone();
        let sim_url = sim.url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .post(format!("{sim_url}/_sim/clock/advance"))
                    .json(&json!({ "seconds": 3600 }))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let setup_secs = if ctx.quick { 6 } else { 45 };
    let due_at = Utc::now() + chrono::Duration::seconds(setup_secs);
    let subs = submit_all(
        &lapse,
        (0..r).map(|i| ephemeral(i, i % 4, due_at)).collect(),
        4,
    )
    .await;
    if let Some(e) = first_error(&subs) {
        bail!("setup submission failed: {e}");
    }
    let settled = lapse
        .wait_settled(Duration::from_secs(setup_secs as u64))
        .await;
    let active = lapse.count_in("active", 10_000).await?;
    lapse.terminate().await?;
    stop.store(true, Ordering::Relaxed);
    let _ = refill.await;
    if !settled || active < r {
        report.note(format!(
            "setup: only {active} of {r} grants were active before they fell due"
        ));
    }
    let wait = (due_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;

    // Measured phase: lapse at the same budget as the sim, restarted with the due backlog, and
    // the new grants submitted as soon as the API answers.
    let offset = sim.clock_offset().await?;
    sim.clear_journal().await?;
    let measured = LapseOpts {
        reads_per_minute: reads,
        writes_per_minute: w,
        ephemeral_backstop: false,
        ..LapseOpts::default()
    };
    lapse.write_config(lapse.port(), &sim.url, &measured)?;
    let t0 = Utc::now();
    lapse.spawn()?;
    // Sample /readyz through the whole backlog: when it first answers 200, and whether it drops.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (http, url, watching) = (
            lapse.http.clone(),
            format!("{}/readyz", lapse.url),
            watching.clone(),
        );
        tokio::spawn(async move {
            let mut samples: Vec<(f64, bool)> = Vec::new();
            while watching.load(Ordering::Relaxed) {
                let ok = http
                    .get(&url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                samples.push((secs(Utc::now() - t0), ok));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    poll(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { lapse.ok("/healthz").await.then_some(()) },
    )
    .await
    .context("lapse API did not come up")?;
    let api_up = secs(Utc::now() - t0);
    let far = Utc::now() + chrono::Duration::hours(1);
    let new_subs = submit_all(
        &lapse,
        (0..g).map(|i| ephemeral(i, (i + 1) % 4, far)).collect(),
        4,
    )
    .await;
    let submitted_by = secs(Utc::now() - t0);
    let new_ok = new_subs.iter().filter(|s| s.status == 201).count();
    if new_ok != g {
        report.note(format!(
            "new grants: {}; first error: {:?}",
            status_counts(&new_subs),
            first_error(&new_subs)
        ));
    }
    let expected = (r + g) as f64 / w as f64 * 60.0;
    let within = Duration::from_secs_f64(expected * 1.5 + 60.0);
    let mut tail = JournalTail::default();
    let deadline = Instant::now() + within;
    let mut done = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tail.poll(&sim).await?;
        let deletes = tail
            .entries
            .iter()
            .filter(|e| e.mutation_applied && is_op(e, "groupDelete"))
            .count();
        let creates = tail
            .entries
            .iter()
            .filter(|e| e.mutation_applied && is_op(e, "groupCreate"))
            .count();
        if deletes >= active && creates >= new_ok {
            done = Some(());
            break;
        }
    }
    if done.is_none() {
        report.note(format!(
            "the backlog was not drained within {:.0} s",
            within.as_secs_f64()
        ));
    }
    tail.poll(&sim).await?;
    let ours: Vec<&JournalEntry> = tail
        .entries
        .iter()
        .filter(|e| e.api_key_name.as_deref() == Some("lapse"))
        .collect();
    let at = |e: &JournalEntry| applied_at(e, 0, offset);
    let deletes: Vec<DateTime<Utc>> = ours
        .iter()
        .filter(|e| e.mutation_applied && is_op(e, "groupDelete"))
        .map(|e| at(e))
        .collect();
    let creates: Vec<DateTime<Utc>> = ours
        .iter()
        .filter(|e| e.mutation_applied && is_op(e, "groupCreate"))
        .map(|e| at(e))
        .collect();
    let writes: Vec<DateTime<Utc>> = ours
        .iter()
        .filter(|e| e.is_mutation && !rate_limited(e))
        .map(|e| at(e))
        .collect();
    let last_delete = deletes.iter().max().copied();
    let creates_before = last_delete.map_or(0, |d| creates.iter().filter(|c| **c < d).count());
    report.fig(
        "due revocations done",
        Some(deletes.len() as f64),
        "groups deleted",
    );
    report.fig(
        "new grants applied",
        Some(creates.len() as f64),
        "groups created",
    );
    report.at_most(
        "new grants applied before the last due revocation",
        Some(creates_before as f64),
        "grants",
        0.0,
    );
    let end = deletes.iter().chain(creates.iter()).max().copied();
    let start = writes.iter().min().copied();
    let util = match (start, end) {
        (Some(s), Some(e)) if e > s => {
            let used = writes.iter().filter(|t| **t <= e).count() as f64;
            let allowed = secs(e - s) * w as f64 / 60.0 + 1.0;
            report.fig("backlog drained in", Some(secs(e - t0)), "s after restart");
            report.fig("writes used while the backlog lasted", Some(used), "writes");
            report.fig(
                "writes allowed over the same time (rate × time + 1)",
                Some(allowed),
                "writes",
            );
            Some(used / allowed)
        }
        _ => None,
    };
    report.at_least("writes used ÷ writes allowed", util, "", 0.95);
    let limited_w = ours
        .iter()
        .filter(|e| e.is_mutation && rate_limited(e))
        .count();
    let limited_r = ours
        .iter()
        .filter(|e| !e.is_mutation && rate_limited(e))
        .count();
    report.at_most("429s received on writes", Some(limited_w as f64), "", 0.0);
    report.at_most("429s received on reads", Some(limited_r as f64), "", 0.0);
    report.fig(
        "reads used while the backlog lasted",
        Some(ours.iter().filter(|e| !e.is_mutation).count() as f64),
        "reads",
    );
    report.fig("API answering after restart", Some(api_up), "s");
    report.fig(
        "new grants all answered",
        Some(submitted_by),
        "s after restart",
    );
    watching.store(false, Ordering::Relaxed);
    let samples = watcher.await.unwrap_or_default();
    let first_ready = samples.iter().find(|(_, ok)| *ok).map(|(t, _)| *t);
    let dropped = first_ready.map_or(0, |f| {
        samples.iter().filter(|(t, ok)| *t > f && !ok).count()
    });
    report.fig("ready (/readyz 200) after restart", first_ready, "s");
    report.fig(
        "/readyz samples not ready after first ready (every 250 ms)",
        Some(dropped as f64),
        "samples",
    );
    if first_ready.is_none() {
        report.note("/readyz never answered 200 while the backlog lasted");
    }
    report.fig(
        "journal entries lost between polls",
        Some(tail.lost as f64),
        "entries",
    );
    lapse.terminate().await?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// 4: submissions

async fn submissions(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let clients = if ctx.quick {
        a.clients.min(4)
    } else {
        a.clients
    };
    let dur = ctx.pick(a.duration_secs, 30, 2);
    let (users, groups) = (1000, 100);
    let mut report = Report::new(
        "submissions",
        json!({ "clients": clients, "duration_secs": dur, "kind": "group-membership, one user", "sim_latency_ms": a.latency_ms, "groups": groups, "users": users }),
    );
    let mut seed = SeedBuilder::new(users, RESOURCES);
    for j in 0..groups {
        seed.group(&format!("bench-g{j}"), &[], &[]);
    }
    let sim = ctx.sim(&seed, &no_limit_flags(a.latency_ms)).await?;
    let mut lapse = ctx.lapse(&sim, &LapseOpts::default()).await?;
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(dur);
    let lapse_ref = &lapse;
    let per_client: Vec<Vec<(u16, Option<String>, Duration)>> =
        futures::future::join_all((0..clients).map(|c| async move {
            let mut out = Vec::new();
            let mut i = 0usize;
            while Instant::now() < stop_at {
                let n = c * 1_000_003 + i;
                let mut b = membership(
                    &format!("bench-g{}", n % groups),
                    (n / groups) % users,
                    Utc::now(),
                );
                b.as_object_mut().map(|o| o.remove("expires_at"));
                b["duration"] = json!("1h");
                let (status, v, lat) = lapse_ref.submit(&b).await;
                out.push((status, v["id"].as_str().map(str::to_owned), lat));
                i += 1;
            }
            out
        }))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let all: Vec<&(u16, Option<String>, Duration)> = per_client.iter().flatten().collect();
    let acked: Vec<String> = all
        .iter()
        .filter(|x| x.0 == 201)
        .filter_map(|x| x.1.clone())
        .collect();
    let lat_ms: Vec<f64> = all.iter().map(|x| x.2.as_secs_f64() * 1000.0).collect();
    let failed = all.len() - acked.len();
    report.at_least(
        "grants a second (201s ÷ time)",
        Some(acked.len() as f64 / elapsed),
        "grants/s",
        2000.0,
    );
    report.fig("latency p50", percentile(&lat_ms, 50.0), "ms");
    report.at_most("latency p99", percentile(&lat_ms, 99.0), "ms", 50.0);
    report.fig("latency max", max(&lat_ms), "ms");
    report.fig("requests not answered 201", Some(failed as f64), "requests");
    // Every acknowledged grant must be in the database.
    let lapse2 = &lapse;
    let missing: usize = futures::stream::iter(acked.iter())
        .map(|id| async move {
            match lapse2.get(&format!("/v1/grants/{id}")).await {
                Ok((200, v)) if v["grant"]["id"].as_str() == Some(id.as_str()) => 0usize,
                _ => 1,
            }
        })
        .buffer_unordered(16)
        .fold(0usize, |acc, x| async move { acc + x })
        .await;
    report.fig("acknowledged grants", Some(acked.len() as f64), "grants");
    report.at_most(
        "acknowledged grants missing from the database",
        Some(missing as f64),
        "grants",
        0.0,
    );
    if let Some((hwm, _)) = lapse.memory_kb() {
        report.fig(
            "daemon VmHWM after the run",
            Some(hwm as f64 / 1024.0),
            "MB",
        );
    }
    lapse.terminate().await?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// 5 + 6: memory and recovery

async fn scale(ctx: &Ctx<'_>, restart: bool) -> anyhow::Result<Report> {
    let a = ctx.args;
    let n = ctx.pick(a.grants, 100_000, 100);
    let n_eph = n / 2;
    let n_mem = n - n_eph;
    let groups = 100.min(n_mem.max(1));
    let users = n_mem.div_ceil(groups).max(2);
    let name = if restart { "recovery" } else { "memory" };
    let mut report = Report::new(
        name,
        json!({ "grants": n, "ephemeral_group": n_eph, "group_membership": n_mem, "grant_duration": "2h", "sim_latency_ms": a.latency_ms, "clients": a.clients }),
    );
    let mut seed = SeedBuilder::new(users, RESOURCES);
    for j in 0..groups {
        seed.group(&format!("bench-g{j}"), &[], &[]);
    }
    let sim = ctx.sim(&seed, &no_limit_flags(a.latency_ms)).await?;
    let mut lapse = ctx.lapse(&sim, &LapseOpts::default()).await?;
    let exp = Utc::now() + chrono::Duration::hours(2);
    let bodies: Vec<Value> = (0..n)
        .map(|i| {
            let k = i / 2;
            if i % 2 == 1 {
                ephemeral(k % users, k % RESOURCES, exp)
            } else {
                membership(&format!("bench-g{}", k % groups), k / groups, exp)
            }
        })
        .collect();
    let t = Instant::now();
    let subs = submit_all(&lapse, bodies, a.clients).await;
    let submit_secs = t.elapsed().as_secs_f64();
    let ok = subs.iter().filter(|s| s.status == 201).count();
    report.fig("seeded through the API (201)", Some(ok as f64), "grants");
    report.fig("seeding rate", Some(n as f64 / submit_secs), "grants/s");
    let lat: Vec<f64> = subs
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    report.fig("seeding latency p99", percentile(&lat, 99.0), "ms");
    if ok != n {
        report.note(format!(
            "seeding statuses: {}; first error: {:?}",
            status_counts(&subs),
            first_error(&subs)
        ));
    }
    drop(subs);
    let settled = lapse.wait_settled(Duration::from_secs(600)).await;
    report.fig(
        "all applied after seeding began",
        Some(t.elapsed().as_secs_f64()),
        "s",
    );
    if !settled {
        report.note("not every grant was applied within 10 minutes");
    }
    let active = lapse.count_in("active", 10_000).await?;
    report.fig(
        "active grants listed (list limit 10,000)",
        Some(active as f64),
        "grants",
    );
    let (hwm, rss) = lapse
        .memory_kb()
        .context("reading the daemon's /proc status")?;
    report.at_most(
        "daemon peak RSS (VmHWM) with all grants active",
        Some(hwm as f64 / 1024.0),
        "MB",
        100.0,
    );
    report.fig(
        "daemon RSS (VmRSS) with all grants active",
        Some(rss as f64 / 1024.0),
        "MB",
    );
    let db = std::fs::metadata(lapse.dir.join("lapse.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    report.fig("database file", Some(db as f64 / 1_048_576.0), "MB");
    if restart {
        let t = Instant::now();
        lapse.terminate().await?;
        report.fig(
            "clean shutdown (SIGTERM → exit)",
            Some(t.elapsed().as_secs_f64()),
            "s",
        );
        let t = Instant::now();
        lapse.spawn()?;
        let up = poll(
            Duration::from_secs(600),
            Duration::from_millis(10),
            || async { lapse.ok("/healthz").await.then_some(t.elapsed()) },
        )
        .await;
        let ready = poll(
            Duration::from_secs(600),
            Duration::from_millis(10),
            || async { lapse.ok("/readyz").await.then_some(t.elapsed()) },
        )
        .await;
        report.fig(
            "restart → API answering (/healthz)",
            up.map(|d| d.as_secs_f64()),
            "s",
        );
        report.at_most(
            "restart → ready (/readyz: loaded, first pass done)",
            ready.map(|d| d.as_secs_f64()),
            "s",
            2.0,
        );
        let (_, v) = lapse.get("/readyz").await.unwrap_or((0, Value::Null));
        report.fig("passes when first ready", v["passes"].as_f64(), "passes");
        if let Some((hwm, rss)) = lapse.memory_kb() {
            report.fig("restarted daemon VmHWM", Some(hwm as f64 / 1024.0), "MB");
            report.fig("restarted daemon VmRSS", Some(rss as f64 / 1024.0), "MB");
        }
        report.note("readiness is answered only once the engine has finished a pass, so ready = first full pass done");
    }
    lapse.terminate().await?;
    Ok(report)
}

/// Revocations of `n` memberships on `n` groups falling due at one instant, with Twingate's 20
/// writes a minute enforced by the sim as a sliding minute and the budget idle for over a minute
/// before: all should go at once, not one per 3 s.
async fn burst(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let n = ctx.pick(a.revocations, 10, 3);
    let w = ctx.pick(a.writes_per_minute, 20, 20);
    // The applies (n writes) are over a minute old when the grants end, so the budget is idle.
    let idle_secs: i64 = if ctx.quick { 5 } else { 70 };
    let mut report = Report::new(
        "burst",
        json!({ "revocations": n, "groups": n, "writes_per_minute": w, "sim_window": "sliding-minute", "idle_before_secs": idle_secs, "latency_ms": a.latency_ms }),
    );
    let mut seed = SeedBuilder::new(n.max(2), 4);
    for i in 0..n {
        seed.group(&format!("burst-{i}"), &[], &[]);
    }
    let flags = vec![
        "--rate-limit-writes".to_string(),
        w.to_string(),
        "--rate-limit-reads".into(),
        "60".into(),
        "--rate-limit-window".into(),
        "sliding-minute".into(),
        "--latency-ms".into(),
        a.latency_ms.to_string(),
    ];
    let sim = ctx.sim(&seed, &flags).await?;
    let opts = LapseOpts {
        reads_per_minute: 60,
        writes_per_minute: w,
        ephemeral_backstop: false,
        ..LapseOpts::default()
    };
    let lapse = ctx.lapse(&sim, &opts).await?;
    let due_at = (Utc::now() + chrono::Duration::seconds(idle_secs + 10)).trunc_subsecs(3);
    let subs = submit_all(
        &lapse,
        (0..n)
            .map(|i| membership(&format!("burst-{i}"), i, due_at))
            .collect(),
        4,
    )
    .await;
    if let Some(e) = first_error(&subs) {
        bail!("submission failed: {e}");
    }
    if !lapse.wait_settled(Duration::from_secs(30)).await {
        report.note("not every grant was applied within 30 s");
    }
    let offset = sim.clock_offset().await?;
    let wait = (due_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(5);
    tokio::time::sleep(wait).await;
    let mut tail = JournalTail::default();
    poll(Duration::from_secs(120), Duration::from_secs(1), || async {
        let entries = sim.journal().await.ok()?;
        let done = entries
            .iter()
            .filter(|e| e.mutation_applied && !var_list(e, "removedUserIds").is_empty())
            .count();
        (done >= n).then_some(())
    })
    .await;
    tail.poll(&sim).await?;
    let removals: Vec<f64> = tail
        .entries
        .iter()
        .filter(|e| e.mutation_applied && !var_list(e, "removedUserIds").is_empty())
        .map(|e| secs(applied_at(e, a.latency_ms, offset) - due_at))
        .collect();
    let mut sorted = removals.clone();
    sorted.sort_by(f64::total_cmp);
    report.fig("removals done", Some(removals.len() as f64), "of n");
    report.fig("lateness, first removal", sorted.first().copied(), "s");
    report.fig("lateness p50", percentile(&sorted, 50.0), "s");
    report.at_most("lateness, last removal", max(&sorted), "s", 1.0);
    report.at_most(
        "429s received",
        Some(tail.entries.iter().filter(|e| rate_limited(e)).count() as f64),
        "",
        0.0,
    );
    report.fig(
        "writes in all (applies and removals)",
        Some(tail.entries.iter().filter(|e| e.is_mutation).count() as f64),
        "writes",
    );
    Ok(report)
}

/// `n` membership grants on one group, ending spread over 0.9 s, with Twingate's 20 writes a
/// minute enforced by the sim as a sliding minute: the removals should share at most 2 updates.
async fn coalesce(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let n = ctx.pick(a.grants, 500, 20);
    let w = ctx.pick(a.writes_per_minute, 20, 20);
    let lead: i64 = if ctx.quick { 8 } else { 20 };
    let mut report = Report::new(
        "coalesce",
        json!({ "memberships": n, "groups": 1, "ends_within_ms": 900, "writes_per_minute": w, "reads_per_minute": 100_000, "sim_window": "sliding-minute", "latency_ms": a.latency_ms }),
    );
    let mut seed = SeedBuilder::new(n.max(2), 4);
    let group = seed.group("coalesce", &[], &[]);
    let flags = vec![
        "--rate-limit-writes".to_string(),
        w.to_string(),
        // Reads are not what this measures: 500 users resolved at 60 reads a minute would take
        // over 8 minutes to submit.
        "--rate-limit-reads".into(),
        "100000".into(),
        "--rate-limit-window".into(),
        "sliding-minute".into(),
        "--latency-ms".into(),
        a.latency_ms.to_string(),
    ];
    let sim = ctx.sim(&seed, &flags).await?;
    let opts = LapseOpts {
        reads_per_minute: 100_000,
        writes_per_minute: w,
        ephemeral_backstop: false,
        ..LapseOpts::default()
    };
    let lapse = ctx.lapse(&sim, &opts).await?;
    let end = (Utc::now() + chrono::Duration::seconds(lead)).trunc_subsecs(0);
    let bodies: Vec<Value> = (0..n)
        .map(|u| {
            membership(
                "coalesce",
                u,
                end + chrono::Duration::milliseconds((u * 900 / n) as i64),
            )
        })
        .collect();
    let subs = submit_all(&lapse, bodies, a.clients).await;
    if let Some(e) = first_error(&subs) {
        bail!("submission failed: {e}");
    }
    if !lapse.wait_settled(Duration::from_secs(lead as u64)).await {
        report.note("not every grant was applied before the first end");
    }
    let offset = sim.clock_offset().await?;
    let wait = (end - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let removals = |entries: &[JournalEntry]| -> Vec<JournalEntry> {
        entries
            .iter()
            .filter(|e| {
                e.mutation_applied
                    && is_op(e, "groupUpdate")
                    && var(e, "id") == Some(group.as_str())
                    && !var_list(e, "removedUserIds").is_empty()
            })
            .cloned()
            .collect()
    };
    let done = poll(
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let j = sim.journal().await.ok()?;
            let r = removals(&j);
            let removed: usize = r.iter().map(|e| var_list(e, "removedUserIds").len()).sum();
            (removed >= n).then_some(j)
        },
    )
    .await;
    let Some(j) = done else {
        bail!("the {n} members were not all removed within 120 s")
    };
    let adds = j
        .iter()
        .filter(|e| {
            e.mutation_applied
                && is_op(e, "groupUpdate")
                && var(e, "id") == Some(group.as_str())
                && !var_list(e, "addedUserIds").is_empty()
        })
        .count();
    let r = removals(&j);
    let sizes: Vec<usize> = r
        .iter()
        .map(|e| var_list(e, "removedUserIds").len())
        .collect();
    // Lateness of each member's removal against its own end.
    let ends: HashMap<String, DateTime<Utc>> = (0..n)
        .map(|u| {
            (
                user_id(u),
                end + chrono::Duration::milliseconds((u * 900 / n) as i64),
            )
        })
        .collect();
    let mut late: Vec<f64> = r
        .iter()
        .flat_map(|e| {
            let at = applied_at(e, a.latency_ms, offset);
            var_list(e, "removedUserIds")
                .into_iter()
                .filter_map(|u| ends.get(u.as_str()).map(|t| secs(at - *t)))
                .collect::<Vec<_>>()
        })
        .collect();
    late.sort_by(f64::total_cmp);
    report.at_most(
        format!("group updates removing {n} members ending within 1 s"),
        Some(sizes.len() as f64),
        "updates",
        2.0,
    );
    report.note(format!("members removed per update, in order: {sizes:?}"));
    report.fig("group updates adding them", Some(adds as f64), "updates");
    report.fig("lateness p50", percentile(&late, 50.0), "s");
    report.fig("lateness p99", percentile(&late, 99.0), "s");
    report.fig("lateness max", max(&late), "s");
    report.at_most(
        "429s received",
        Some(j.iter().filter(|e| rate_limited(e)).count() as f64),
        "",
        0.0,
    );
    Ok(report)
}

/// `m` ephemeral grants applied and ended; then, with nothing live, three sweep intervals are
/// watched: the sweep should read nothing that has ended.
async fn sweep(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let m = ctx.pick(a.grants, 1000, 20);
    let interval: u64 = if ctx.quick { 3 } else { 10 };
    let mut report = Report::new(
        "sweep",
        json!({ "ephemeral_grants": m, "sweep_interval_secs": interval, "watched_secs": interval * 3, "latency_ms": a.latency_ms, "backstop": true }),
    );
    let seed = SeedBuilder::new(m.clamp(2, 200), RESOURCES);
    let sim = ctx.sim(&seed, &no_limit_flags(a.latency_ms)).await?;
    let opts = LapseOpts {
        sweep_interval: Some(format!("{interval}s")),
        ..LapseOpts::default()
    };
    let lapse = ctx.lapse(&sim, &opts).await?;
    let lead = 20 + (m as i64) / 100;
    let due_at = (Utc::now() + chrono::Duration::seconds(lead)).trunc_subsecs(3);
    let subs = submit_all(
        &lapse,
        (0..m)
            .map(|i| ephemeral(i % m.clamp(2, 200), i % RESOURCES, due_at))
            .collect(),
        16,
    )
    .await;
    if let Some(e) = first_error(&subs) {
        bail!("submission failed: {e}");
    }
    let limit = u32::try_from(m + 10).unwrap_or(u32::MAX);
    let ended = poll(
        Duration::from_secs(lead as u64 + 120),
        Duration::from_secs(1),
        || async {
            let n = lapse.count_in("expired", limit).await.ok()?;
            (n >= m).then_some(())
        },
    )
    .await;
    if ended.is_none() {
        report.note("not every grant had expired before the watch began");
    }
    let groups_left = sim
        .state()
        .await?
        .groups
        .iter()
        .filter(|g| g.name.starts_with("lapse-"))
        .count();
    report.at_most("lapse groups left", Some(groups_left as f64), "", 0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.clear_journal().await?;
    tokio::time::sleep(Duration::from_secs(interval * 3)).await;
    let journal = sim.journal().await?;
    let reads = journal.iter().filter(|e| !e.is_mutation).count();
    report.at_most(
        "reads during three idle sweep intervals",
        Some(reads as f64),
        "reads",
        0.0,
    );
    report.fig(
        "writes during them",
        Some(journal.iter().filter(|e| e.is_mutation).count() as f64),
        "writes",
    );
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// failover: two daemons on one PostgreSQL database, the leader killed while grants fall due

async fn failover(ctx: &Ctx<'_>) -> anyhow::Result<Report> {
    let a = ctx.args;
    let lease: u64 = if ctx.quick { 2 } else { 10 };
    let grants = ctx.pick(a.grants, 400, 60);
    let clients = a.clients.clamp(1, 16);
    let (users, groups) = (1000, 50);
    let mut report = Report::new(
        "failover",
        json!({ "grants": grants, "lease_secs": lease, "clients": clients, "kind": "group-membership, one user", "sim_latency_ms": a.latency_ms }),
    );
    let Some(scratch) = lapse_store::scratch::ScratchDb::create().await else {
        bail!("the failover scenario needs PostgreSQL (LAPSE_TEST_PG_URL)");
    };
    let (url, password) = scratch.url_and_password();
    let pw_file = match password {
        Some(pw) => {
            let f = ctx.dir.join("database.password");
            std::fs::write(&f, pw)?;
            Some(f)
        }
        None => None,
    };
    let mut seed = SeedBuilder::new(users, RESOURCES);
    for j in 0..groups {
        seed.group(&format!("bench-g{j}"), &[], &[]);
    }
    let sim = ctx.sim(&seed, &no_limit_flags(a.latency_ms)).await?;
    let opts = |node: &str| LapseOpts {
        database_url: Some((url.clone(), pw_file.clone())),
        ha: Some((lease, node.to_owned())),
        token_name: format!("bench-{node}"),
        ..LapseOpts::default()
    };
    let dir_a = ctx.dir.join("lapse-a");
    let dir_b = ctx.dir.join("lapse-b");
    std::fs::create_dir_all(&dir_a)?;
    std::fs::create_dir_all(&dir_b)?;
    let mut leader = Lapse::prepare(&ctx.bins.lapse, &dir_a, &sim.url, &opts("a")).await?;
    let mut standby = Lapse::prepare(&ctx.bins.lapse, &dir_b, &sim.url, &opts("b")).await?;
    leader.start().await?;
    standby.spawn()?;
    // Every daemon serves the API: the standby is ready at once, as a standby.
    standby.wait_ready(Duration::from_secs(30)).await?;

    // Submissions a second through the leader, on PostgreSQL.
    let dur = ctx.pick(a.duration_secs, 10, 2);
    let stop_at = Instant::now() + Duration::from_secs(dur);
    let leader_ref = &leader;
    let started = Instant::now();
    let counts: Vec<usize> = futures::future::join_all((0..clients).map(|c| async move {
        let mut ok = 0;
        let mut i = 0usize;
        while Instant::now() < stop_at {
            let n = c * 1_000_003 + i;
            let mut b = membership(
                &format!("bench-g{}", n % groups),
                (n / groups) % users,
                Utc::now(),
            );
            b.as_object_mut().map(|o| o.remove("expires_at"));
            b["duration"] = json!("1h");
            if leader_ref.submit(&b).await.0 == 201 {
                ok += 1;
            }
            i += 1;
        }
        ok
    }))
    .await;
    report.fig(
        "grants a second on PostgreSQL (201s ÷ time)",
        Some(counts.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()),
        "grants/s",
    );

    // The same through both daemons at once: `clients` to each.
    let stop_at = Instant::now() + Duration::from_secs(dur);
    let daemons = [&leader, &standby];
    let started = Instant::now();
    let per_client: Vec<(usize, usize, Vec<f64>)> =
        futures::future::join_all((0..2 * clients).map(|c| async move {
            let daemon = daemons[c % 2];
            let (mut ok, mut other, mut ms) = (0, 0, Vec::new());
            let mut i = 0usize;
            while Instant::now() < stop_at {
                let n = (c + 2 * clients) * 1_000_003 + i;
                let mut b = membership(
                    &format!("bench-g{}", n % groups),
                    (n / groups) % users,
                    Utc::now(),
                );
                b.as_object_mut().map(|o| o.remove("expires_at"));
                b["duration"] = json!("1h");
                let (status, _, took) = daemon.submit(&b).await;
                if status == 201 {
                    ok += 1;
                    ms.push(took.as_secs_f64() * 1000.0);
                } else {
                    other += 1;
                }
                i += 1;
            }
            (ok, other, ms)
        }))
        .await;
    let both_ok: usize = per_client.iter().map(|c| c.0).sum();
    let refused: usize = per_client.iter().map(|c| c.1).sum();
    let ms: Vec<f64> = per_client
        .iter()
        .flat_map(|c| c.2.iter().copied())
        .collect();
    report.fig(
        "grants a second, two daemons on PostgreSQL (201s ÷ time)",
        Some(both_ok as f64 / started.elapsed().as_secs_f64()),
        "grants/s",
    );
    report.fig(
        "two daemons: submission latency p50",
        percentile(&ms, 50.0),
        "ms",
    );
    report.fig(
        "two daemons: submission latency p99",
        percentile(&ms, 99.0),
        "ms",
    );
    report.at_most(
        "two daemons: submissions not answered 201",
        Some(refused as f64),
        "submissions",
        0.0,
    );

    // Grants falling due from just before the kill until well after the takeover.
    let kill_at = Utc::now() + chrono::Duration::seconds(8);
    let spread_ms = i64::try_from((lease + 6) * 1000).unwrap_or(i64::MAX);
    let bodies: Vec<Value> = (0..grants)
        .map(|i| {
            let offset = -1000 + spread_ms * i as i64 / grants.max(1) as i64;
            membership(
                &format!("bench-g{}", i % groups),
                (i / groups + 500) % users,
                kill_at + chrono::Duration::milliseconds(offset),
            )
        })
        .collect();
    let submitted = submit_all(&leader, bodies, clients).await;
    let ids: Vec<String> = submitted
        .iter()
        .filter(|s| s.status == 201)
        .filter_map(|s| s.body["id"].as_str().map(str::to_owned))
        .collect();
    if ids.len() != grants {
        bail!("only {} of {grants} grants were accepted", ids.len());
    }
    let wait = (kill_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let killed = Instant::now();
    leader.kill9().await;
    standby
        .wait_leading(Duration::from_secs(lease + 30))
        .await?;
    report.at_most(
        "kill to the standby's /readyz saying leader",
        Some(killed.elapsed().as_secs_f64()),
        "s",
        (lease + 2) as f64,
    );
    let last_due = kill_at + chrono::Duration::milliseconds(spread_ms);
    let settle = (last_due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(30);
    let standby_ref = &standby;
    let lateness: Vec<Option<f64>> = futures::stream::iter(ids.iter())
        .map(|id| async move {
            poll(settle, Duration::from_millis(250), || async {
                let (_, v) = standby_ref.get(&format!("/v1/grants/{id}")).await.ok()?;
                v["history"]
                    .as_array()?
                    .iter()
                    .find(|h| h["event"] == "expired")
                    .and_then(|h| h["detail"]["lateness_seconds"].as_f64())
            })
            .await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let late: Vec<f64> = lateness.iter().flatten().copied().collect();
    report.at_most(
        "grants not revoked",
        Some((lateness.len() - late.len()) as f64),
        "grants",
        0.0,
    );
    report.fig("revocation lateness p50", percentile(&late, 50.0), "s");
    report.at_most(
        "revocation lateness p99 across the kill",
        percentile(&late, 99.0),
        "s",
        (lease + 2) as f64,
    );
    report.fig("revocation lateness max", max(&late), "s");
    let state = sim.state().await?;
    let still = state
        .groups
        .iter()
        .filter(|g| g.name.starts_with("bench-g"))
        .map(|g| g.user_ids.len())
        .sum::<usize>();
    report.fig(
        "memberships left in bench groups (the 1h grants of the first two phases)",
        Some(still as f64),
        "memberships",
    );
    standby.terminate().await?;
    Ok(report)
}

//! Measures how many GraphQL requests a second the stand-in answers on loopback.
//!
//! Run with `cargo run --release -p twingate-sim --example throughput [-- REQUESTS CONCURRENCY MIX]`.
//! MIX is `heavy` (default: a group with 50 members and its resources, plus one write in five)
//! or `lookup` (lapse's find-by-name lookups, plus one write in five).

use std::time::{Duration, Instant};

use serde_json::json;
use twingate_sim::{DEMO_ADMIN_KEY, SimConfig};

const READ: &str = "query Group($id: ID!) { group(id: $id) { id name type isActive \
    users(first: 50) { totalCount edges { node { id email } } } resources { edges { node { id name } } } } }";
const LOOKUP: &str = "query FindGroup($name: String!) { groups(filter: {name: {eq: $name}}, first: 100) { \
    edges { node { id name type isActive } } pageInfo { hasNextPage endCursor } } }";
const WRITE: &str = "mutation AddUsers($addedUserIds: [ID!]!, $id: ID!) { \
    groupUpdate(addedUserIds: $addedUserIds, id: $id) { ok error entity { id } } }";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let mix = args.next().unwrap_or_else(|| "heavy".to_string());
    let lookup = match mix.as_str() {
        "heavy" => false,
        "lookup" => true,
        other => anyhow::bail!("unknown mix {other}: expected heavy or lookup"),
    };

    let sim = twingate_sim::start(SimConfig::default()).await?;
    let admin = sim.admin();
    let users = admin.create_users(200, "bench")?;
    let group = admin.create_group("bench", twingate_sim::GroupType::Manual)?;
    admin.add_group_users(&group, &users[..100])?;
    let url = format!("{}/api/graphql/", sim.base_url());
    let http = reqwest::Client::new();

    let started = Instant::now();
    let per_task = total / concurrency;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (http, url, group, users) = (http.clone(), url.clone(), group.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                // One write in five, like a reconcile pass that mostly reads.
                let body = if i % 5 == 0 {
                    let user = &users[(t * per_task + i) % users.len()];
                    json!({"query": WRITE, "operationName": "AddUsers", "variables": {"addedUserIds": [user], "id": group}})
                } else if lookup {
                    json!({"query": LOOKUP, "operationName": "FindGroup", "variables": {"name": "bench"}})
                } else {
                    json!({"query": READ, "operationName": "Group", "variables": {"id": group}})
                };
                let sent = Instant::now();
                let resp = http
                    .post(&url)
                    .header("X-API-KEY", DEMO_ADMIN_KEY)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
                resp.bytes().await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let journaled = sim.journal().len();
    println!("requests:     {}", latencies.len());
    println!("concurrency:  {concurrency}");
    println!("mix:          {mix}");
    println!("elapsed:      {:.2} s", elapsed.as_secs_f64());
    println!(
        "throughput:   {:.0} requests/s (80% reads, 20% writes)",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:      p50 {:.2} ms, p99 {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!("journaled:    {journaled}");
    sim.shutdown().await;
    Ok(())
}

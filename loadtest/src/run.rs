//! A run of the chosen scenarios against a cluster, in the benchmark's order, into one
//! [`Report`]. A setting the run cannot change (the original service has no
//! `max_messages_per_second` setting, nor an admin API that takes numbers) is a warning
//! in the report, not a stop.

use std::time::Duration;

use crate::report::Report;
use crate::scenarios::{connections, fanout, parity, throughput};
use crate::{Target, api, ceilings, costs};

/// One group size of the fan-out and costs scenarios, at its own rate when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSpec {
    /// Members.
    pub size: usize,
    /// Messages per second, when not the run's `--group-rate`.
    pub rate: Option<u64>,
}

impl std::str::FromStr for GroupSpec {
    type Err = String;

    /// `1000` or `10000@1` (size, then messages per second).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("group {s:?}: SIZE or SIZE@RATE");
        let (size, rate) = match s.trim().split_once('@') {
            Some((size, rate)) => (size, Some(rate.parse().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let size: usize = size.parse().map_err(|_| bad())?;
        if size < 2 {
            return Err(format!("group {s:?}: at least 2 members"));
        }
        Ok(GroupSpec { size, rate })
    }
}

/// What to run, and how.
pub struct Opts {
    /// Scenario names (`all` for every one).
    pub scenarios: Vec<String>,
    /// The cluster.
    pub target: Target,
    /// Length of each load window.
    pub duration: Duration,
    /// Fixed rates of the latency (and costs) steps.
    pub rates: Vec<u64>,
    /// One-to-one pairs.
    pub pairs: usize,
    /// Fan-out group sizes.
    pub groups: Vec<GroupSpec>,
    /// Messages per second into each group, unless its spec says otherwise.
    pub group_rate: u64,
    /// Idle connection counts.
    pub connections: Vec<usize>,
    /// How long idle connections are held.
    pub hold: Duration,
    /// Redis for the PUBLISH ceiling (and the costs, unless `redis_count_urls`).
    pub redis_url: Option<String>,
    /// Redis servers whose counters `costs` sums.
    pub redis_count_urls: Vec<String>,
    /// PostgreSQL for the ceilings and the costs.
    pub database_url: Option<String>,
    /// Exactly-once checks.
    pub verify: bool,
    /// Where to write the report.
    pub out: Option<String>,
    /// The p99 bound of "sustained", ms.
    pub p99_target: f64,
    /// Settings to make through the admin API before the run, as (key, value).
    pub settings: Vec<(String, String)>,
}

impl GroupSpec {
    fn rate(&self, o: &Opts) -> u64 {
        self.rate.unwrap_or(o.group_rate)
    }
}

/// Sets `key` through the admin API; a failure becomes a warning of the report.
async fn setting(o: &Opts, report: &mut Report, key: &str, value: &str, why: &str) {
    if let Err(e) = api::set_setting(&o.target.nodes[0], &o.target.secret, key, value).await {
        let w = format!("could not set {key} = {value} ({e}); {why}");
        eprintln!("warning: {w}");
        report.warnings.push(w);
    }
}

/// Runs the scenarios `o` asks for; `report` already carries the machine and date.
pub async fn run(o: &Opts, mut report: Report) -> Result<Report, String> {
    // Load needs the per-user rate limit out of the way; a server without the setting
    // keeps its own limit, and its refusals are counted and sent again.
    setting(
        o,
        &mut report,
        "max_messages_per_second",
        "0",
        "the server's own per-user rate limit stays: its refusals are counted as refused and sent again",
    )
    .await;
    for (key, value) in &o.settings {
        setting(o, &mut report, key, value, "the run goes on without it").await;
    }
    let all = o.scenarios.iter().any(|s| s == "all");
    let wants = |s: &str| all || o.scenarios.iter().any(|x| x == s);

    if wants("ceilings") {
        let mut c = ceilings::Ceilings {
            payload_bytes: 420,
            ..Default::default()
        };
        let d = Duration::from_secs(5);
        if let Some(url) = &o.redis_url {
            eprintln!("ceiling: Redis PUBLISH");
            c.redis_publish_per_second = ceilings::redis_publish(url, c.payload_bytes, d).await?;
        }
        if let Some(url) = &o.database_url {
            eprintln!("ceiling: PostgreSQL insert");
            c.pg_insert_rows_per_second = ceilings::pg_insert(url, d).await?;
            eprintln!("ceiling: minimal send SQL");
            // dinq-message's schema (partitioned messages, seq): a database of another
            // server (the original's) has not, and the run goes on without this ceiling.
            match ceilings::pg_minimal_send(url, d).await {
                Ok((rate, durability)) => {
                    c.pg_minimal_send_per_second = Some(rate);
                    c.pg_durability = Some(durability);
                }
                Err(e) => {
                    let w = format!("minimal send SQL ceiling not measured: {e}");
                    eprintln!("warning: {w}");
                    report.warnings.push(w);
                }
            }
        }
        eprintln!("ceiling: WebSocket echo");
        c.ws_echo_per_second = ceilings::ws_echo(64, d).await?;
        report.ceilings = Some(c);
    }
    if wants("parity") {
        report.parity.push(parity::pairs(&o.target, 100).await?);
        report
            .parity
            .push(parity::capacity(&o.target, 500, 5).await?);
        report
            .parity
            .push(parity::high_throughput(&o.target, 100, 50).await?);
    }
    if wants("throughput") || wants("latency") || wants("smoke") {
        let pairs = throughput::setup(&o.target, o.pairs, o.target.nodes.len() > 1).await?;
        if wants("throughput") {
            // Raise the rate until it is no longer sustained.
            let mut rate = 2_000u64;
            loop {
                eprintln!("throughput: {rate}/s for {:?}", o.duration);
                let step = throughput::run(&pairs, rate, o.duration, o.verify).await;
                let ok = step.sustained(o.p99_target);
                eprintln!(
                    "  delivered {:.0}/s p99 {:.1} ms sustained={ok}",
                    step.delivered_per_second, step.latency.p99_ms
                );
                report.throughput.push(step);
                if !ok {
                    break;
                }
                report.max_sustained_rate = Some(rate);
                rate = rate * 3 / 2;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            // Overload: twice the sustained rate; what is accepted must still flow.
            if let Some(sustained) = report.max_sustained_rate {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let rate = 2 * sustained;
                eprintln!("overload: {rate}/s for {:?}", o.duration);
                let step = throughput::run(&pairs, rate, o.duration, o.verify).await;
                eprintln!(
                    "  accepted {} refused {} delivered {:.0}/s accepted p99 {:.1} ms",
                    step.echoed,
                    step.refused,
                    step.delivered_per_second,
                    step.accepted_latency.p99_ms
                );
                report.overload.push(step);
            }
        }
        if wants("latency") || wants("smoke") {
            for &rate in &o.rates {
                eprintln!("latency: {rate}/s for {:?}", o.duration);
                let step =
                    throughput::run(&pairs, rate, o.duration, o.verify || wants("smoke")).await;
                eprintln!(
                    "  delivered {:.0}/s p50 {:.1} ms p99 {:.1} ms, refused {}",
                    step.delivered_per_second,
                    step.latency.p50_ms,
                    step.latency.p99_ms,
                    step.refused
                );
                report.latency.push(step);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    if wants("crossnode") && o.target.nodes.len() > 1 {
        let rate = o.rates.first().copied().unwrap_or(1000);
        let same = throughput::setup(&o.target, o.pairs.min(200), false).await?;
        report.same_node = Some(throughput::run(&same, rate, o.duration, false).await);
        let cross = throughput::setup(&o.target, o.pairs.min(200), true).await?;
        report.cross_node = Some(throughput::run(&cross, rate, o.duration, false).await);
    }
    if wants("fanout") {
        for g in &o.groups {
            let rate = g.rate(o);
            eprintln!("fan-out: group of {} at {rate}/s", g.size);
            let f = fanout::group(&o.target, g.size, rate, o.duration).await?;
            eprintln!(
                "  {}/{} delivered, {:.0}/s achieved, p99 {:.1} ms",
                f.deliveries,
                f.expected_deliveries,
                f.achieved_deliveries_per_second.unwrap_or(0.0),
                f.latency.p99_ms
            );
            report.fanout.push(f);
        }
    }
    if wants("costs") {
        let db = o
            .database_url
            .as_deref()
            .ok_or("costs needs --database-url")?;
        let mut urls = o.redis_count_urls.clone();
        if urls.is_empty() {
            urls.extend(o.redis_url.clone());
        }
        let mut meters = costs::Meters::connect(&o.target.nodes, &urls, db).await?;
        let pairs =
            throughput::setup(&o.target, o.pairs.min(500), o.target.nodes.len() > 1).await?;
        // The first two rates: a light load (little batching) and a heavier one.
        for &rate in o.rates.iter().take(2) {
            eprintln!("costs: one-to-one at {rate}/s");
            let cost = costs::measure(
                &mut meters,
                &format!("1:1 at {rate}/s"),
                o.duration,
                || async {
                    let step = throughput::run(&pairs, rate, o.duration, false).await;
                    Ok((step.sent, step.delivered))
                },
            )
            .await?;
            report.costs.push(cost);
        }
        drop(pairs);
        for g in &o.groups {
            let (size, rate) = (g.size, g.rate(o));
            eprintln!("costs: group of {size} at {rate}/s");
            let group = fanout::prepare(&o.target, size).await?;
            let cost = costs::measure(
                &mut meters,
                &format!("group of {size} at {rate}/s"),
                o.duration,
                || async {
                    let r = group.run(rate, o.duration).await;
                    Ok((r.messages, r.deliveries))
                },
            )
            .await?;
            report.costs.push(cost);
        }
    }
    if wants("connections") {
        for &n in &o.connections {
            eprintln!("connections: {n} idle for {:?}", o.hold);
            report
                .connections
                .push(connections::idle(&o.target, n, o.hold).await?);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    if wants("smoke") {
        // Correctness, not speed: every message accepted and delivered exactly once.
        for s in &report.latency {
            if s.lost != Some(0)
                || s.duplicates != Some(0)
                || s.errors != 0
                || s.never_accepted != 0
            {
                return Err(format!(
                    "smoke failed at {}/s: lost {:?}, duplicates {:?}, errors {}, never accepted {}",
                    s.target_rate, s.lost, s.duplicates, s.errors, s.never_accepted
                ));
            }
        }
    }
    Ok(report)
}

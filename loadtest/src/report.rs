//! The report: every result of a run as JSON, and Markdown tables with each scenario's
//! ratio to a ceiling of the same run. Every rate is labelled offered (what the load
//! generator sent at) or achieved (what arrived, over the window from the first send to
//! the last delivery); refused sends are shown apart from lost ones.

use serde::{Deserialize, Serialize};

use crate::ceilings::Ceilings;
use crate::costs::Cost;
use crate::scenarios::connections::ConnectionsResult;
use crate::scenarios::fanout::FanoutResult;
use crate::scenarios::parity::ParityResult;
use crate::scenarios::throughput::Step;

/// Everything one run measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Machine and date.
    pub machine: String,
    /// When.
    pub date: String,
    /// How the cluster ran.
    pub setup: String,
    /// Ceilings of this machine.
    pub ceilings: Option<Ceilings>,
    /// Rate steps of the throughput search (cross-node pairs).
    pub throughput: Vec<Step>,
    /// Highest sustained rate.
    pub max_sustained_rate: Option<u64>,
    /// The p99 bound of "sustained", ms.
    pub p99_target: f64,
    /// Fixed-rate latency steps (cross-node).
    pub latency: Vec<Step>,
    /// Overload: one step at twice the highest sustained rate, after the ramp.
    #[serde(default)]
    pub overload: Vec<Step>,
    /// Same-node against cross-node at one rate.
    pub same_node: Option<Step>,
    /// Cross-node at the same rate.
    pub cross_node: Option<Step>,
    /// Group fan-out.
    pub fanout: Vec<FanoutResult>,
    /// Idle connections.
    pub connections: Vec<ConnectionsResult>,
    /// Redis and PostgreSQL work per message.
    #[serde(default)]
    pub costs: Vec<Cost>,
    /// The original's tests.
    pub parity: Vec<ParityResult>,
    /// Scenarios that could not run to the end, and why.
    pub errors: Vec<String>,
    /// What the run could not set up as asked and went on without (e.g. a setting the
    /// server does not have).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Report {
    /// The lowest of the bare ceilings that bound one-to-one delivery (messages per
    /// second): each message is one insert and two publishes (recipient and the sender's
    /// echo) and two socket writes.
    pub fn one_to_one_ceiling(&self) -> Option<f64> {
        self.ceilings.as_ref().map(|c| {
            [
                c.pg_insert_rows_per_second,
                c.redis_publish_per_second / 2.0,
                c.ws_echo_per_second / 2.0,
            ]
            .into_iter()
            .fold(f64::INFINITY, f64::min)
        })
    }

    /// The minimal send SQL ceiling, messages per second, when measured.
    pub fn minimal_send_ceiling(&self) -> Option<f64> {
        self.ceilings
            .as_ref()
            .and_then(|c| c.pg_minimal_send_per_second)
    }

    /// Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "# dinq-message benchmark\n\n- machine: {}\n- date: {}\n- setup: {}\n\n",
            self.machine, self.date, self.setup
        ));
        if !self.warnings.is_empty() {
            md.push_str("## Warnings\n\n");
            for w in &self.warnings {
                md.push_str(&format!("- {w}\n"));
            }
            md.push('\n');
        }
        if let Some(c) = &self.ceilings {
            ceilings(&mut md, c);
        }
        md.push_str(&crate::targets::markdown(self));
        md.push_str(&crate::report_steps::markdown(self));
        if !self.fanout.is_empty() {
            fanout(&mut md, self);
        }
        if !self.connections.is_empty() {
            md.push_str("## Idle connections\n\n| target | opened | failed | connects/s | node memory per connection |\n|---|---|---|---|---|\n");
            for c in &self.connections {
                md.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {:.0} B ({:.2} KiB) |\n",
                    c.target,
                    c.opened,
                    c.failed,
                    c.connects_per_second,
                    c.bytes_per_connection,
                    c.bytes_per_connection / 1024.0
                ));
            }
            md.push('\n');
        }
        if !self.costs.is_empty() {
            costs(&mut md, &self.costs);
        }
        if !self.parity.is_empty() {
            md.push_str("## Parity with the original's performance tests\n\n| test | original | attempted | succeeded | msg/s | avg ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|---|\n");
            for p in &self.parity {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {:.0} | {} | {} | {} |\n",
                    p.name,
                    p.original,
                    p.attempted,
                    p.succeeded,
                    p.messages_per_second,
                    ms(p.latency.mean_ms),
                    ms(p.latency.p95_ms),
                    ms(p.latency.p99_ms)
                ));
            }
            md.push('\n');
        }
        md.push_str("What bounds these numbers on this machine, and the profile behind it: the README's \"Performance\" section.\n\n");
        if !self.errors.is_empty() {
            md.push_str("## Scenarios that did not complete\n\n");
            for e in &self.errors {
                md.push_str(&format!("- {e}\n"));
            }
            md.push('\n');
        }
        md
    }
}

/// A figure in milliseconds.
pub fn ms(v: f64) -> String {
    format!("{v:.1}")
}

/// `v / ceiling`, or "-" without a ceiling.
pub fn ratio(v: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) if c > 0.0 => format!("{:.2}", v / c),
        _ => "-".into(),
    }
}

fn ceilings(md: &mut String, c: &Ceilings) {
    md.push_str("## Ceilings of this machine (same run)\n\n| ceiling | per second |\n|---|---|\n");
    md.push_str(&format!(
        "| Redis PUBLISH, {} B payload, pipelined | {:.0} |\n",
        c.payload_bytes, c.redis_publish_per_second
    ));
    md.push_str(&format!(
        "| PostgreSQL bare batched insert into a scratch copy of `messages` (100 rows/tx) | {:.0} rows |\n",
        c.pg_insert_rows_per_second
    ));
    if let Some(v) = c.pg_minimal_send_per_second {
        md.push_str(&format!(
            "| minimal send SQL: message row in the real `messages` + its conversation's `last_seq` bump, {} messages/tx, {} connections, {} | {v:.0} messages |\n",
            crate::ceilings::MINIMAL_SEND_BATCH,
            crate::ceilings::MINIMAL_SEND_CONNECTIONS,
            c.pg_durability.as_deref().unwrap_or("durability not read"),
        ));
    }
    md.push_str(&format!(
        "| bare fastwebsockets echo | {:.0} round trips |\n\n",
        c.ws_echo_per_second
    ));
}

fn fanout(md: &mut String, r: &Report) {
    md.push_str("## Group fan-out\n\nOffered deliveries/s: messages sent × other members over the sending window. Achieved deliveries/s: deliveries received over the delivery window (first send → last delivery). Latency from the first send of each message.\n\n| members | offered msg/s | messages | accepted | refused | deliveries | delivered | offered deliveries/s | achieved deliveries/s | p50 ms | p99 ms | errors | achieved ratio to Redis PUBLISH ceiling |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let publish = r.ceilings.as_ref().map(|c| c.redis_publish_per_second);
    for f in &r.fanout {
        // Reports from before the rate was recorded have no accepted, refused or offered.
        let old = f.rate == 0;
        let figure = |v: String| if old { "-".to_string() } else { v };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}/{} | {:.1} % | {} | {} | {} | {} | {} | {} |\n",
            f.members,
            figure(f.rate.to_string()),
            f.messages,
            figure(f.accepted.to_string()),
            figure(f.refused.to_string()),
            f.deliveries,
            f.expected_deliveries,
            f.delivered_fraction() * 100.0,
            figure(format!("{:.0}", f.offered_deliveries_per_second)),
            f.achieved_deliveries_per_second
                .map_or("not measured".into(), |v| format!("{v:.0}")),
            ms(f.latency.p50_ms),
            ms(f.latency.p99_ms),
            f.errors,
            f.achieved_deliveries_per_second
                .map_or("-".into(), |v| ratio(v, publish)),
        ));
    }
    md.push('\n');
}

fn costs(md: &mut String, costs: &[Cost]) {
    md.push_str("## Work per message (server counters, idle baseline subtracted)\n\n| traffic | messages | deliveries/msg | node CPU µs/msg | node CPU µs/delivery | PG CPU µs/msg | Redis CPU µs/msg | Redis commands/msg | publishes/msg | PG commits/msg | rows inserted/msg | rows updated/msg | WAL bytes/msg | idle Redis cmds/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for c in costs {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.3} | {:.2} | {:.2} | {:.0} | {:.0} |\n",
            c.traffic,
            c.messages,
            c.deliveries_per_message,
            c.node_cpu_us_per_message,
            c.node_cpu_us_per_delivery()
                .map_or("-".into(), |v| format!("{v:.1}")),
            c.pg_cpu_us_per_message,
            c.redis_cpu_us_per_message,
            c.redis_commands_per_message,
            c.redis_publishes_per_message,
            c.pg_commits_per_message,
            c.pg_rows_inserted_per_message,
            c.pg_rows_updated_per_message,
            c.wal_bytes_per_message,
            c.idle_redis_commands_per_second
        ));
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reports_still_load_and_show_no_offered_rate_as_achieved() {
        for json in [
            include_str!("../report.json"),
            include_str!("../report-cluster.json"),
        ] {
            let r: Report = serde_json::from_str(json).expect("report loads");
            let md = r.markdown();
            let fanout = &md[md.find("## Group fan-out").unwrap_or(0)..];
            for f in &r.fanout {
                if f.achieved_deliveries_per_second.is_none() {
                    let row = fanout
                        .lines()
                        .find(|l| l.starts_with(&format!("| {} | ", f.members)))
                        .expect("fan-out row");
                    assert!(row.contains("| not measured |"), "{row}");
                }
            }
            assert!(md.contains("| offered/s |"), "{md}");
        }
    }
}

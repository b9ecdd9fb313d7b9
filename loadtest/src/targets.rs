//! The issues' targets (one-to-one rate, latency, overload, work per message, group
//! fan-out, connections, parity), each set against what the run measured: the "against
//! the targets" table of the report. A target the run did not measure shows as not
//! measured; a figure reported without a threshold shows "-" as met.

use crate::report::Report;
use crate::scenarios::throughput::Step;

/// One target and what the run measured for it.
struct Row {
    target: &'static str,
    measured: String,
    met: Option<bool>,
}

fn row(target: &'static str, measured: Option<(String, bool)>) -> Row {
    match measured {
        Some((measured, met)) => Row {
            target,
            measured,
            met: Some(met),
        },
        None => Row {
            target,
            measured: "not measured".into(),
            met: None,
        },
    }
}

/// What the original claims per parity test, as (unit, figure, higher is better).
fn original_figure(name: &str) -> Option<(&'static str, f64)> {
    if name.starts_with("100 pairs") {
        Some(("s for 100 pairs", 5.0))
    } else if name.starts_with("500 connections") {
        Some(("msg/s", 1000.0))
    } else if name.starts_with("100 users") {
        Some(("msg/s", 700.0))
    } else {
        None
    }
}

/// One-to-one figures of a step, for the overload target.
fn overload_step(name: &str, s: &Step, sustained: Option<u64>) -> (String, bool) {
    let floor = sustained.map(|v| 0.9 * v as f64);
    let ok = floor.is_some_and(|f| s.delivered_per_second >= f)
        && s.accepted_latency.count > 0
        && s.accepted_latency.p99_ms <= 250.0
        && s.errors == 0
        && s.never_accepted == 0
        && s.lost == Some(0)
        && s.duplicates == Some(0);
    let accepted_p99 = if s.accepted_latency.count == 0 {
        "not measured".to_string()
    } else {
        format!("{:.1} ms", s.accepted_latency.p99_ms)
    };
    (
        format!(
            "{name} ({}/s offered): {:.0}/s delivered, accepted p99 {accepted_p99}, {} refused, {} never accepted, lost {}, duplicated {}",
            s.target_rate,
            s.delivered_per_second,
            s.refused,
            s.never_accepted,
            s.lost.map_or("-".into(), |v| v.to_string()),
            s.duplicates.map_or("-".into(), |v| v.to_string()),
        ),
        ok,
    )
}

fn rows(r: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(row(
        "sustained one-to-one rate (p99 within the bound) >= 15,000/s; moonshot 20,000/s",
        r.max_sustained_rate.map(|v| {
            let moon = if v >= 20_000 { ", moonshot met" } else { "" };
            (
                format!("{v}/s (p99 <= {} ms){moon}", r.p99_target),
                v >= 15_000,
            )
        }),
    ));
    let at_5k = r.latency.iter().find(|s| s.target_rate == 5000);
    rows.push(row(
        "at 5,000/s: p99 <= 20 ms and p50 <= 3 ms",
        at_5k.map(|s| {
            (
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms",
                    s.latency.p50_ms, s.latency.p99_ms
                ),
                s.latency.p99_ms <= 20.0 && s.latency.p50_ms <= 3.0,
            )
        }),
    ));
    let twice = r
        .overload
        .first()
        .map(|s| overload_step("2x", s, r.max_sustained_rate));
    let top = r
        .latency
        .iter()
        .find(|s| s.target_rate == 20_000)
        .map(|s| overload_step("top step", s, r.max_sustained_rate));
    rows.push(match (twice, top) {
        (None, None) => row(OVERLOAD, None),
        (Some((a, a_ok)), Some((b, b_ok))) => {
            row(OVERLOAD, Some((format!("{a}; {b}"), a_ok && b_ok)))
        }
        (Some((m, _)), None) | (None, Some((m, _))) => Row {
            target: OVERLOAD,
            measured: format!("{m}; the other step not measured"),
            met: None,
        },
    });
    let cost = |prefix: &str| r.costs.iter().find(|c| c.traffic.starts_with(prefix));
    rows.push(row(
        "at 5,000/s (costs): PostgreSQL CPU <= 50 µs and node CPU (all nodes) <= 40 µs per message",
        cost("1:1 at 5000/s").map(|c| {
            (
                format!(
                    "PostgreSQL {:.0} µs, nodes {:.0} µs",
                    c.pg_cpu_us_per_message, c.node_cpu_us_per_message
                ),
                c.pg_cpu_us_per_message <= 50.0 && c.node_cpu_us_per_message <= 40.0,
            )
        }),
    ));
    rows.push(Row {
        target: "sustained rate as a ratio of the minimal send SQL ceiling (no threshold)",
        measured: match (r.max_sustained_rate, r.minimal_send_ceiling()) {
            (Some(v), Some(c)) => format!("{:.2} ({v} of {c:.0}/s)", v as f64 / c),
            _ => "not measured".into(),
        },
        met: None,
    });
    let group = r.fanout.iter().find(|f| f.members == 1000);
    rows.push(row(
        "group of 1,000 at 200 msg/s: every delivery arrives, >= 200,000 deliveries/s achieved, p99 <= 100 ms",
        group.and_then(|f| {
            let achieved = f.achieved_deliveries_per_second?;
            Some((
                format!(
                    "{:.1} % delivered, {achieved:.0}/s achieved ({:.0}/s offered), p99 {:.1} ms",
                    f.delivered_fraction() * 100.0,
                    f.offered_deliveries_per_second,
                    f.latency.p99_ms
                ),
                f.deliveries == f.expected_deliveries
                    && achieved >= 200_000.0
                    && f.latency.p99_ms <= 100.0,
            ))
        }),
    ));
    rows.push(row(
        "group of 1,000 (costs): node CPU <= 4 µs per delivery",
        cost("group of 1000 ").and_then(|c| {
            let v = c.node_cpu_us_per_delivery()?;
            Some((format!("{v:.1} µs"), v <= 4.0))
        }),
    ));
    let big = r.fanout.iter().find(|f| f.members == 10_000);
    rows.push(row(
        "group of 10,000: every live delivery arrives",
        big.map(|f| {
            (
                format!(
                    "{}/{} delivered, p99 {:.1} ms",
                    f.deliveries, f.expected_deliveries, f.latency.p99_ms
                ),
                f.deliveries == f.expected_deliveries && f.errors == 0,
            )
        }),
    ));
    let biggest = r.connections.iter().max_by_key(|c| c.opened);
    rows.push(row(
        "100,000 idle connections on one node at <= 8 KiB each",
        biggest.map(|c| {
            (
                format!(
                    "{} opened, {:.1} KiB each",
                    c.opened,
                    c.bytes_per_connection / 1024.0
                ),
                c.opened >= 100_000 && c.bytes_per_connection <= 8192.0,
            )
        }),
    ));
    let parity: Vec<(String, f64)> = r
        .parity
        .iter()
        .filter_map(|p| {
            let (unit, figure) = original_figure(&p.name)?;
            let times = if unit.starts_with("s ") {
                figure / p.seconds.max(1e-9)
            } else {
                p.messages_per_second / figure
            };
            Some((format!("{}: {times:.1}x", p.name), times))
        })
        .collect();
    rows.push(row(
        "every parity test >= 10x the original's figure",
        (!parity.is_empty()).then(|| {
            (
                parity
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                parity.iter().all(|(_, t)| *t >= 10.0),
            )
        }),
    ));
    rows
}

const OVERLOAD: &str = "overload (2x the sustained rate, and 20,000/s): >= 0.9 of the sustained rate delivered, accepted p99 <= 250 ms, the rest refused and nothing lost, duplicated or left unaccepted";

/// The "against the targets" section.
pub fn markdown(r: &Report) -> String {
    let mut md = String::from(
        "## Against the targets (2-core machine, PostgreSQL, Redis and the load generator on it)\n\n| target | measured | met |\n|---|---|---|\n",
    );
    for row in rows(r) {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        md.push_str(&format!("| {} | {} | {met} |\n", row.target, row.measured));
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::fanout::FanoutResult;

    fn find<'a>(rows: &'a [Row], prefix: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}"))
    }

    #[test]
    fn unmeasured_targets_say_so_and_measured_ones_are_judged() {
        let mut r = Report {
            max_sustained_rate: Some(16_000),
            p99_target: 100.0,
            ..Report::default()
        };
        r.fanout.push(FanoutResult {
            members: 1000,
            messages: 10,
            expected_deliveries: 9990,
            deliveries: 9990,
            offered_deliveries_per_second: 250_000.0,
            achieved_deliveries_per_second: Some(150_000.0),
            ..Default::default()
        });
        let rows = rows(&r);
        let sustained = find(&rows, "sustained one-to-one");
        assert_eq!(sustained.met, Some(true), "{}", sustained.measured);
        assert!(!sustained.measured.contains("moonshot"));
        assert_eq!(find(&rows, "at 5,000/s: p99").met, None);
        assert_eq!(find(&rows, "at 5,000/s: p99").measured, "not measured");
        let group = find(&rows, "group of 1,000 at");
        assert_eq!(
            group.met,
            Some(false),
            "150k/s achieved is short of 200k/s, whatever was offered"
        );
        assert!(
            group.measured.contains("150000/s achieved"),
            "{}",
            group.measured
        );
        assert_eq!(
            find(&rows, "sustained rate as a ratio").measured,
            "not measured"
        );
        assert_eq!(find(&rows, "overload").met, None);
        assert!(markdown(&r).contains("| not measured | - |"));
    }

    #[test]
    fn an_old_report_without_an_achieved_rate_is_not_judged_on_its_offered_one() {
        let mut r = Report::default();
        r.fanout.push(FanoutResult {
            members: 1000,
            expected_deliveries: 100,
            deliveries: 100,
            offered_deliveries_per_second: 300_000.0,
            achieved_deliveries_per_second: None,
            ..Default::default()
        });
        let rows = rows(&r);
        assert_eq!(find(&rows, "group of 1,000 at").met, None);
    }

    #[test]
    fn overload_is_judged_on_accepted_latency_and_refusals_are_not_losses() {
        let step = |rate: u64, delivered: f64, accepted_p99: f64| Step {
            target_rate: rate,
            seconds: 10.0,
            sending_seconds: 10.0,
            sent: rate * 10,
            echoed: rate * 10,
            delivered: rate * 10,
            errors: 0,
            refused: rate * 5,
            retried: rate * 5,
            never_accepted: 0,
            delivered_per_second: delivered,
            latency: Default::default(),
            accepted_latency: crate::stats::Percentiles {
                count: 10,
                p99_ms: accepted_p99,
                ..Default::default()
            },
            echo_latency: Default::default(),
            lost: Some(0),
            duplicates: Some(0),
        };
        let mut r = Report {
            max_sustained_rate: Some(10_000),
            ..Report::default()
        };
        r.overload.push(step(20_000, 9_500.0, 120.0));
        r.latency.push(step(20_000, 9_100.0, 200.0));
        assert_eq!(find(&rows(&r), "overload").met, Some(true));
        r.latency[0].accepted_latency.p99_ms = 300.0;
        assert_eq!(find(&rows(&r), "overload").met, Some(false));
        r.latency[0].accepted_latency.p99_ms = 200.0;
        r.latency[0].delivered_per_second = 8_000.0;
        assert_eq!(find(&rows(&r), "overload").met, Some(false));
    }
}

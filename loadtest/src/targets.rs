//! The targets, each set against what the run measured: the "against the targets"
//! table of the report. A target the run did not measure shows as not measured; a figure
//! reported without a threshold shows "-" as met.

use crate::report::Report;

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

fn rows(r: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(row(
        ">= 20,000 one-to-one messages/s persisted and delivered (sustained)",
        r.max_sustained_rate
            .map(|v| (format!("{v}/s (p99 <= {} ms)", r.p99_target), v >= 20_000)),
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
    rows.push(Row {
        target: "sustained rate as a ratio of the minimal send SQL ceiling (no threshold)",
        measured: match (r.max_sustained_rate, r.minimal_send_ceiling()) {
            (Some(v), Some(c)) => format!("{:.2} ({v} of {c:.0}/s)", v as f64 / c),
            _ => "not measured".into(),
        },
        met: None,
    });
    rows
}

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

    #[test]
    fn unmeasured_targets_say_so_and_measured_ones_are_judged() {
        let mut r = Report {
            max_sustained_rate: Some(25_000),
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
        assert_eq!(rows[0].met, Some(true), "{}", rows[0].measured);
        assert_eq!(rows[1].met, None);
        assert_eq!(rows[1].measured, "not measured");
        assert_eq!(
            rows[3].met,
            Some(false),
            "150k/s achieved is short of 200k/s, whatever was offered"
        );
        assert!(
            rows[3].measured.contains("150000/s achieved"),
            "{}",
            rows[3].measured
        );
        assert_eq!(rows[5].measured, "not measured", "no ceilings measured");
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
        assert_eq!(rows(&r)[3].met, None);
    }
}

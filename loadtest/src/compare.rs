//! `dinq-loadtest compare a.json b.json`: two runs side by side (e.g. single Redis and a
//! 3-shard Redis Cluster), one row per figure both or either measured, with b's change
//! against a.

use crate::report::Report;

/// One compared figure: its name, a's value, b's value, and whether higher is better.
struct Row {
    name: String,
    a: Option<f64>,
    b: Option<f64>,
    higher_is_better: bool,
    unit: &'static str,
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}{unit}"),
        Some(v) if v >= 10.0 => format!("{v:.1}{unit}"),
        Some(v) => format!("{v:.2}{unit}"),
    }
}

fn change(r: &Row) -> String {
    match (r.a, r.b) {
        (Some(a), Some(b)) if a > 0.0 => {
            let pct = (b - a) / a * 100.0;
            let better = if r.higher_is_better {
                pct >= 0.0
            } else {
                pct <= 0.0
            };
            let mark = if pct.abs() < 5.0 {
                "≈"
            } else if better {
                "better"
            } else {
                "worse"
            };
            format!("{pct:+.0}% ({mark})")
        }
        _ => "-".into(),
    }
}

/// Every figure of `r`, by name, in report order.
fn figures(r: &Report) -> Vec<(String, f64, bool, &'static str)> {
    let mut out = Vec::new();
    if let Some(c) = &r.ceilings {
        out.push((
            "ceiling: Redis PUBLISH/s (one server)".into(),
            c.redis_publish_per_second,
            true,
            "",
        ));
        out.push((
            "ceiling: PostgreSQL rows/s".into(),
            c.pg_insert_rows_per_second,
            true,
            "",
        ));
        if let Some(v) = c.pg_minimal_send_per_second {
            out.push(("ceiling: minimal send SQL msg/s".into(), v, true, ""));
        }
    }
    if let Some(m) = r.max_sustained_rate {
        out.push(("1:1 highest sustained msg/s".into(), m as f64, true, ""));
    }
    for s in &r.latency {
        let name = format!("1:1 at {}/s", s.target_rate);
        out.push((
            format!("{name}: delivered/s (achieved)"),
            s.delivered_per_second,
            true,
            "",
        ));
        out.push((format!("{name}: refused"), s.refused as f64, false, ""));
        out.push((format!("{name}: p50"), s.latency.p50_ms, false, " ms"));
        out.push((format!("{name}: p99"), s.latency.p99_ms, false, " ms"));
        if let (Some(l), Some(d)) = (s.lost, s.duplicates) {
            out.push((
                format!("{name}: not delivered in 30 s + duplicated"),
                (l + d) as f64,
                false,
                "",
            ));
        }
    }
    for f in &r.fanout {
        let name = format!("group of {}", f.members);
        if let Some(v) = f.achieved_deliveries_per_second {
            out.push((format!("{name}: deliveries/s (achieved)"), v, true, ""));
        }
        out.push((
            format!("{name}: delivered in window"),
            f.delivered_fraction() * 100.0,
            true,
            " %",
        ));
        out.push((format!("{name}: p99"), f.latency.p99_ms, false, " ms"));
    }
    for c in &r.costs {
        out.push((
            format!("{}: node CPU µs/msg", c.traffic),
            c.node_cpu_us_per_message,
            false,
            "",
        ));
        if let Some(v) = c.node_cpu_us_per_delivery() {
            out.push((format!("{}: node CPU µs/delivery", c.traffic), v, false, ""));
        }
        out.push((
            format!("{}: PostgreSQL CPU µs/msg", c.traffic),
            c.pg_cpu_us_per_message,
            false,
            "",
        ));
        out.push((
            format!("{}: Redis CPU µs/msg", c.traffic),
            c.redis_cpu_us_per_message,
            false,
            "",
        ));
        out.push((
            format!("{}: Redis commands/msg", c.traffic),
            c.redis_commands_per_message,
            false,
            "",
        ));
        out.push((
            format!("{}: PG commits/msg", c.traffic),
            c.pg_commits_per_message,
            false,
            "",
        ));
        out.push((
            format!("{}: WAL bytes/msg", c.traffic),
            c.wal_bytes_per_message,
            false,
            "",
        ));
    }
    for c in &r.connections {
        out.push((
            format!("{} idle connections: node KiB each", c.target),
            c.bytes_per_connection / 1024.0,
            false,
            "",
        ));
    }
    out
}

/// The Markdown comparison of `a` (named `a_name`) and `b`.
pub fn markdown(a_name: &str, a: &Report, b_name: &str, b: &Report) -> String {
    let fa = figures(a);
    let fb = figures(b);
    let mut rows: Vec<Row> = Vec::new();
    for (name, v, hib, unit) in &fa {
        rows.push(Row {
            name: name.clone(),
            a: Some(*v),
            b: fb.iter().find(|f| &f.0 == name).map(|f| f.1),
            higher_is_better: *hib,
            unit,
        });
    }
    for (name, v, hib, unit) in &fb {
        if !fa.iter().any(|f| &f.0 == name) {
            rows.push(Row {
                name: name.clone(),
                a: None,
                b: Some(*v),
                higher_is_better: *hib,
                unit,
            });
        }
    }
    let mut md = format!(
        "# dinq-message: {a_name} against {b_name}\n\n- {a_name}: {} ({}; {})\n- {b_name}: {} ({}; {})\n\n| figure | {a_name} | {b_name} | change |\n|---|---|---|---|\n",
        a.date, a.machine, a.setup, b.date, b.machine, b.setup
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.name,
            fmt(r.a, r.unit),
            fmt(r.b, r.unit),
            change(r)
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::fanout::FanoutResult;

    #[test]
    fn rows_pair_up_by_name_and_judge_direction() {
        let mut a = Report::default();
        let mut b = Report::default();
        a.max_sustained_rate = Some(10_000);
        b.max_sustained_rate = Some(12_000);
        a.fanout.push(FanoutResult {
            members: 100,
            expected_deliveries: 1000,
            deliveries: 1000,
            offered_deliveries_per_second: 800.0,
            achieved_deliveries_per_second: Some(500.0),
            ..Default::default()
        });
        // A report from before achieved rates were measured shows none (its figure was
        // deliveries over the sending window, not an achieved rate).
        b.fanout.push(FanoutResult {
            members: 100,
            expected_deliveries: 1000,
            deliveries: 900,
            ..Default::default()
        });
        let md = markdown("single", &a, "cluster", &b);
        assert!(
            md.contains("| 1:1 highest sustained msg/s | 10000 | 12000 | +20% (better) |"),
            "{md}"
        );
        assert!(
            md.contains("| group of 100: deliveries/s (achieved) | 500 | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| group of 100: delivered in window | 100 % | 90.0 % | -10% (worse) |"),
            "{md}"
        );
        assert!(!md.contains("800"), "the offered rate is no figure: {md}");
    }
}

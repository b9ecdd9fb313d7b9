//! The report's one-to-one sections: the throughput ramp, the overload step, the
//! fixed-rate latency steps and same node against cross node. Each step shows what was
//! offered, accepted, refused (and sent again) and delivered; delivered/s is achieved,
//! over the window from the first send to the last delivery.

use crate::report::{Report, ms, ratio};
use crate::scenarios::throughput::Step;

/// How the tables measure latency, said once under each.
const LATENCY_NOTE: &str = "Latency is measured from each message's first send, so a message refused and sent again after `retry_after_ms` counts its wait; \"accepted p99\" measures from the attempt the server accepted (the same figure when nothing was refused). Refused attempts are never counted as lost: \"never accepted\" are messages still refused when the step stopped waiting, \"lost\" are accepted messages not delivered within 30 s.\n\n";

fn refused(s: &Step) -> String {
    if s.refused == 0 {
        "0".into()
    } else {
        format!("{} ({} sent again)", s.refused, s.retried)
    }
}

/// The p99 of the accepted attempts ("-" in reports from before it was measured).
fn accepted_p99(s: &Step) -> String {
    if s.accepted_latency.count == 0 {
        "-".into()
    } else {
        ms(s.accepted_latency.p99_ms)
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The one-to-one sections of `r`.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let ceiling = r.minimal_send_ceiling();
    if !r.throughput.is_empty() {
        md.push_str("## One-to-one throughput (users on different nodes)\n\n| offered/s | sent | accepted | refused | delivered | delivered/s (achieved) | errors | p50 ms | p99 ms | accepted p99 ms | sustained | delivered/s ÷ minimal send SQL |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for s in &r.throughput {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
                s.target_rate,
                s.sent,
                s.echoed,
                refused(s),
                s.delivered,
                s.delivered_per_second,
                s.errors,
                ms(s.latency.p50_ms),
                ms(s.latency.p99_ms),
                accepted_p99(s),
                if s.sustained(r.p99_target) {
                    "yes"
                } else {
                    "no"
                },
                ratio(s.delivered_per_second, ceiling)
            ));
        }
        md.push('\n');
        if let Some(rate) = r.max_sustained_rate {
            md.push_str(&format!(
                "Highest sustained rate (everything accepted at once and delivered, p99 ≤ {} ms): **{rate} messages/s** persisted and delivered",
                r.p99_target
            ));
            match ceiling {
                Some(c) => md.push_str(&format!(
                    ", **{} of the minimal send SQL ceiling** ({c:.0}/s)",
                    ratio(rate as f64, Some(c))
                )),
                None => md.push_str(" (minimal send SQL ceiling not measured)"),
            }
            if let Some(low) = r.one_to_one_ceiling() {
                md.push_str(&format!(
                    "; {} of the lowest bare ceiling ({low:.0}/s)",
                    ratio(rate as f64, Some(low))
                ));
            }
            md.push_str(".\n\n");
        }
        md.push_str(LATENCY_NOTE);
    }
    if !r.overload.is_empty() {
        md.push_str("## Overload (twice the highest sustained rate)\n\n");
        steps(&mut md, &r.overload);
    }
    if !r.latency.is_empty() {
        md.push_str("## Latency at fixed rates (send → recipient, end to end)\n\n");
        steps(&mut md, &r.latency);
    }
    if let (Some(same), Some(cross)) = (&r.same_node, &r.cross_node) {
        md.push_str("## Same node against cross node\n\n| pairs | offered/s | p50 ms | p99 ms |\n|---|---|---|---|\n");
        for (name, s) in [("same node", same), ("cross node", cross)] {
            md.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                s.target_rate,
                ms(s.latency.p50_ms),
                ms(s.latency.p99_ms)
            ));
        }
        md.push('\n');
    }
    md
}

/// A table of fixed-rate steps.
fn steps(md: &mut String, steps: &[Step]) {
    md.push_str("| offered/s | sent | accepted | refused | delivered | delivered/s (achieved) | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | accepted p99 ms | echo p99 ms | never accepted | lost | duplicates |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in steps {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.target_rate,
            s.sent,
            s.echoed,
            refused(s),
            s.delivered,
            s.delivered_per_second,
            ms(s.latency.p50_ms),
            ms(s.latency.p95_ms),
            ms(s.latency.p99_ms),
            ms(s.latency.p999_ms),
            ms(s.latency.max_ms),
            accepted_p99(s),
            ms(s.echo_latency.p99_ms),
            s.never_accepted,
            opt(s.lost),
            opt(s.duplicates)
        ));
    }
    md.push('\n');
    md.push_str(LATENCY_NOTE);
}

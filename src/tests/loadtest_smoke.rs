//! The load-test tool's short mode as a smoke test: its scenarios run against real nodes
//! and must deliver every message exactly once, also when the server refuses sends (its
//! per-user rate limit): refused sends are counted, sent again with their
//! `client_msg_id`, and never lost or duplicated. A setting the tool cannot make is a
//! warning, not a stop; the minimal send SQL ceiling runs against the real schema. Correctness, not speed: nothing here asserts a timing.

use std::time::Duration;

use dinq_loadtest::report::Report;
use dinq_loadtest::run::{self, GroupSpec, Opts};
use dinq_loadtest::scenarios::{fanout, parity, throughput};
use dinq_loadtest::{Target, ceilings};

use super::realtime::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_short_mode_delivers_everything_exactly_once() {
    let c = Cluster::start(2, &[]).await;
    c.set("max_messages_per_second", "0").await;
    let target = Target {
        nodes: c.nodes.iter().map(|n| n.url()).collect(),
        secret: c.env.secret.clone(),
        sources: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
    };
    let pairs = throughput::setup(&target, 20, true).await.expect("pairs");
    for rate in [200, 400] {
        let step = throughput::run(&pairs, rate, Duration::from_secs(2), true).await;
        assert!(step.sent > 0);
        assert_eq!(step.errors, 0, "{step:?}");
        assert_eq!(step.refused, 0, "{step:?}");
        assert_eq!(step.lost, Some(0), "{step:?}");
        assert_eq!(step.duplicates, Some(0), "{step:?}");
        assert_eq!(step.delivered, step.sent, "{step:?}");
        assert_eq!(step.echoed, step.sent, "{step:?}");
    }

    // 20 messages/s per sender for 2 s against a limit of 5/s (bursts of 10): at most
    // 20 of each sender's 40 sends can be admitted in the window, the rest are refused
    // (`rate_limited`, which names no send) and must be sent again until accepted.
    c.set("max_messages_per_second", "5").await;
    let step = throughput::run(&pairs, 400, Duration::from_secs(2), true).await;
    assert!(step.refused > 0, "the limit refuses sends: {step:?}");
    assert!(step.retried > 0, "{step:?}");
    assert_eq!(step.errors, 0, "refusals are not errors: {step:?}");
    assert_eq!(step.never_accepted, 0, "{step:?}");
    assert_eq!(step.lost, Some(0), "{step:?}");
    assert_eq!(step.duplicates, Some(0), "{step:?}");
    assert_eq!(step.echoed, step.sent, "each send accepted once: {step:?}");
    assert_eq!(step.delivered, step.sent, "{step:?}");
    c.set("max_messages_per_second", "0").await;

    let group = fanout::group(&target, 12, 20, Duration::from_secs(2))
        .await
        .expect("fan-out");
    assert_eq!(group.errors, 0);
    assert_eq!(group.deliveries, group.expected_deliveries, "{group:?}");
    assert_eq!(group.accepted, group.messages, "{group:?}");
    assert!(
        group.achieved_deliveries_per_second.is_some(),
        "an achieved rate over the delivery window: {group:?}"
    );
    let p = parity::high_throughput(&target, 10, 10)
        .await
        .expect("parity");
    assert_eq!(p.succeeded, p.attempted, "{p:?}");

    // A setting the server refuses (an empty value) is a warning; the run goes on.
    let o = Opts {
        scenarios: vec!["fanout".into()],
        target: target.clone(),
        duration: Duration::from_secs(1),
        rates: Vec::new(),
        pairs: 0,
        groups: vec![GroupSpec {
            size: 4,
            rate: Some(10),
        }],
        group_rate: 20,
        connections: Vec::new(),
        hold: Duration::ZERO,
        redis_url: None,
        redis_count_urls: Vec::new(),
        database_url: None,
        verify: true,
        out: None,
        p99_target: 100.0,
        settings: vec![("loadtest_smoke_setting".into(), String::new())],
    };
    let report = run::run(&o, Report::default())
        .await
        .expect("a setting it cannot make is no stop");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("loadtest_smoke_setting"));
    let f = &report.fanout[0];
    assert_eq!(f.deliveries, f.expected_deliveries, "{f:?}");

    // The minimal send SQL ceiling runs against the real schema and leaves nothing behind.
    let (rate, durability) =
        ceilings::pg_minimal_send(&c.env.database_url, Duration::from_millis(500))
            .await
            .expect("minimal send SQL");
    assert!(rate > 0.0, "at least one batch: {rate}");
    assert!(durability.starts_with("fsync "), "{durability}");
    let (db, conn) = tokio_postgres::connect(&c.env.database_url, tokio_postgres::NoTls)
        .await
        .expect("database");
    tokio::spawn(conn);
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM conversations WHERE group_name = 'loadtest ceiling'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    c.stop().await;
}

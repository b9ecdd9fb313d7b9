//! Group fan-out: one group of `size` members spread over the nodes; its owner sends at a
//! fixed rate; every other member receives each message. Reports deliveries per second and
//! end-to-end latency.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{Recorder, bounded, connect};
use crate::Target;
use crate::api;
use crate::stats::Percentiles;

/// The outcome of one group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Members.
    pub members: usize,
    /// Messages sent by the owner.
    pub messages: u64,
    /// Deliveries expected (messages × other members).
    pub expected_deliveries: u64,
    /// Deliveries received.
    pub deliveries: u64,
    /// Deliveries per second of sending.
    pub deliveries_per_second: f64,
    /// Send → member.
    pub latency: Percentiles,
    /// `error` events other than refusals.
    pub errors: u64,
}

/// Runs one group of `size` members at `rate` messages per second for `duration`.
pub async fn group(
    target: &Target,
    size: usize,
    rate: u64,
    duration: Duration,
) -> Result<FanoutResult, String> {
    Ok(prepare(target, size).await?.run(rate, duration).await)
}

/// A group of connected members, ready to send.
pub struct Group {
    rec: Arc<Recorder>,
    members: Vec<super::Peer>,
    id: Uuid,
}

/// Connects `size` members and creates their group.
pub async fn prepare(target: &Target, size: usize) -> Result<Group, String> {
    let rec = Arc::new(Recorder::default());
    let t = Arc::new(target.clone());
    let r = rec.clone();
    let ids: Vec<Uuid> = (0..size).map(|_| Uuid::new_v4()).collect();
    let members = bounded(
        "fan-out: connecting",
        ids.clone().into_iter().enumerate().collect(),
        128,
        move |(i, id)| {
            let (t, r) = (t.clone(), r.clone());
            async move { connect(&t, &r, id, i, i).await }
        },
    )
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| e.to_string())?;
    let owner = ids[0];
    let (status, body) = api::request(
        "POST",
        &target.nodes[0],
        "/api/v1/conversations/group",
        Some(&api::token(&target.secret, owner, false)),
        Some(&json!({"group_name": format!("fanout-{size}"), "member_ids": &ids[1..]})),
    )
    .await?;
    if status != 200 {
        return Err(format!("group creation: {status} {body}"));
    }
    let group: Uuid = body["data"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no group id")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Group {
        rec,
        members,
        id: group,
    })
}

impl Group {
    /// Sends from the owner at `rate` for `duration`, waits for the deliveries (15 s at
    /// most, refused sends being sent again meanwhile), then disconnects every member.
    pub async fn run(self, rate: u64, duration: Duration) -> FanoutResult {
        let Group {
            rec,
            members,
            id: group,
        } = self;
        let size = members.len();
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while started.elapsed() < duration {
            tick.tick().await;
            let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
            while sent < due {
                members[0].send_load(group, 0, sent).await;
                sent += 1;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let expected = sent * (size as u64 - 1);
        let deadline = Instant::now() + Duration::from_secs(15);
        while (rec.delivered.load(Ordering::Relaxed) < expected
            || rec.echoed.load(Ordering::Relaxed) < sent)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        members[0].give_up();
        let deliveries = rec.delivered.load(Ordering::Relaxed);
        for m in &members {
            m.conn.close().await;
        }
        FanoutResult {
            members: size,
            messages: sent,
            expected_deliveries: expected,
            deliveries,
            deliveries_per_second: deliveries as f64 / seconds,
            latency: rec.latency.percentiles(),
            errors: rec.errors.load(Ordering::Relaxed),
        }
    }
}

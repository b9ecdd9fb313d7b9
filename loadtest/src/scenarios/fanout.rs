//! Group fan-out: one group of `size` members spread over the nodes; its owner sends at a
//! fixed rate; every other member receives each message. Reports the deliveries offered
//! per second (messages sent × other members over the sending window) apart from the
//! deliveries achieved per second (received over the delivery window, first send → last
//! delivery), the fraction delivered, and end-to-end latency. Groups of 10,000 members
//! work too: the creation request carries 9,999 member ids (about 390 KB, within the
//! server's 1 MiB body limit; a larger group is refused here before it is sent).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{Recorder, bounded, connect};
use crate::Target;
use crate::api;
use crate::stats::{Percentiles, now_micros};

/// The outcome of one group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Members.
    pub members: usize,
    /// Messages per second the owner was to send.
    #[serde(default)]
    pub rate: u64,
    /// Messages sent by the owner.
    pub messages: u64,
    /// Messages accepted (echoed to the owner).
    #[serde(default)]
    pub accepted: u64,
    /// Refused attempts (sent again, never counted as lost).
    #[serde(default)]
    pub refused: u64,
    /// Deliveries expected (messages × other members).
    pub expected_deliveries: u64,
    /// Deliveries received.
    pub deliveries: u64,
    /// Seconds of sending.
    #[serde(default)]
    pub sending_seconds: f64,
    /// Seconds from the first send to the last delivery.
    #[serde(default)]
    pub delivery_seconds: f64,
    /// Deliveries offered per second: expected deliveries over the sending window.
    #[serde(default)]
    pub offered_deliveries_per_second: f64,
    /// Deliveries achieved per second: deliveries received over the delivery window
    /// (none in reports written before it was measured).
    #[serde(default)]
    pub achieved_deliveries_per_second: Option<f64>,
    /// First send → member.
    pub latency: Percentiles,
    /// `error` events other than refusals.
    pub errors: u64,
}

impl FanoutResult {
    /// Deliveries received over deliveries expected (1 when none were expected).
    pub fn delivered_fraction(&self) -> f64 {
        if self.expected_deliveries == 0 {
            1.0
        } else {
            self.deliveries as f64 / self.expected_deliveries as f64
        }
    }
}

/// The largest request body the server reads (its `MAX_BODY_BYTES`).
const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    let request = json!({"group_name": format!("fanout-{size}"), "member_ids": &ids[1..]});
    let bytes = serde_json::to_vec(&request).map_or(0, |b| b.len());
    if bytes > MAX_BODY_BYTES {
        return Err(format!(
            "group of {size}: the creation request would be {bytes} bytes, over the server's \
             {MAX_BODY_BYTES}-byte limit"
        ));
    }
    let (status, body) = api::request(
        "POST",
        &target.nodes[0],
        "/api/v1/conversations/group",
        Some(&api::token(&target.secret, owner, false)),
        Some(&request),
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
        let started_us = now_micros();
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
        let sending_seconds = started.elapsed().as_secs_f64();
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
        let last = rec.last_delivery_us.load(Ordering::Relaxed);
        let delivery_seconds = last.saturating_sub(started_us) as f64 / 1e6;
        for m in &members {
            m.conn.close().await;
        }
        FanoutResult {
            members: size,
            rate,
            messages: sent,
            accepted: rec.echoed.load(Ordering::Relaxed),
            refused: rec.refused.load(Ordering::Relaxed),
            expected_deliveries: expected,
            deliveries,
            sending_seconds,
            delivery_seconds,
            offered_deliveries_per_second: expected as f64 / sending_seconds.max(0.001),
            achieved_deliveries_per_second: (delivery_seconds > 0.0)
                .then(|| deliveries as f64 / delivery_seconds),
            latency: rec.latency.percentiles(),
            errors: rec.errors.load(Ordering::Relaxed),
        }
    }
}

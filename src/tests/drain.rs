//! Graceful drain: one of three nodes is stopped under traffic. Its clients are closed
//! with 1012, reconnect to another node, and no message is lost or delivered twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::realtime::{Cluster, befriend};
use super::ws_client::{Seen, Ws};

/// Sends `count` messages to `conv`, reconnecting to `c_addr` when the node drains, and
/// resending unacknowledged ones with the same client_msg_id. Returns acknowledged ids.
pub async fn sender(
    mut ws: Ws,
    c_addr: std::net::SocketAddr,
    token: String,
    conv: Uuid,
    count: usize,
) -> (Vec<String>, u16) {
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut close_code = 0;
    let mut next = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.len() < count && tokio::time::Instant::now() < deadline {
        if next < count {
            let cmid = format!("{conv}-{next}");
            ws.send(json!({"type": "message", "data": {
                "conversation_id": conv, "message_type": "text",
                "content": format!("m{next}"), "client_msg_id": cmid}}))
                .await;
            next += 1;
        }
        let mut reconnect = false;
        loop {
            match ws.next(Duration::from_millis(20)).await {
                Some(Seen::Event(v))
                    if v["type"] == "message" && v["data"]["sender_id"] == ws.user.to_string() =>
                {
                    let cmid = v["data"]["client_msg_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    acked.insert(cmid, v["data"]["id"].as_str().unwrap().to_string());
                }
                Some(Seen::Event(_)) => {}
                Some(Seen::Closed(code, _)) => {
                    close_code = code;
                    reconnect = true;
                    break;
                }
                Some(Seen::Gone) => {
                    reconnect = true;
                    break;
                }
                None => break,
            }
        }
        if reconnect {
            ws = Ws::connect(c_addr, &token, ws.user)
                .await
                .expect("reconnect");
            // Everything not acknowledged is sent again; the server returns the original.
            for n in 0..next {
                let cmid = format!("{conv}-{n}");
                if !acked.contains_key(&cmid) {
                    ws.send(json!({"type": "message", "data": {
                        "conversation_id": conv, "message_type": "text",
                        "content": format!("m{n}"), "client_msg_id": cmid}}))
                        .await;
                }
            }
        }
    }
    (acked.into_values().collect(), close_code)
}

/// Whether a message is one of [`sender`]'s (`m0`, `m1`…): a reconnect may replay the
/// messages that set the conversation up, and those must not count.
fn is_numbered(content: &serde_json::Value) -> bool {
    content
        .as_str()
        .and_then(|c| c.strip_prefix('m'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Collects message ids (duplicates included) until `expect` distinct ones arrived,
/// reconnecting to `fallback` when closed.
pub async fn receiver(
    mut ws: Ws,
    fallback: std::net::SocketAddr,
    token: String,
    expect: usize,
) -> (Vec<String>, u16) {
    let mut got = Vec::new();
    let mut unique = HashSet::new();
    let mut close_code = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while unique.len() < expect && tokio::time::Instant::now() < deadline {
        match ws.next(Duration::from_millis(200)).await {
            Some(Seen::Event(v))
                if (v["type"] == "message" || v["type"] == "offline_message")
                    && v["data"]["sender_id"] != ws.user.to_string()
                    && is_numbered(&v["data"]["content"]) =>
            {
                let id = v["data"]["id"].as_str().unwrap().to_string();
                unique.insert(id.clone());
                got.push(id);
            }
            Some(Seen::Closed(code, _)) => {
                close_code = code;
                ws = Ws::connect(fallback, &token, ws.user)
                    .await
                    .expect("reconnect");
            }
            Some(Seen::Gone) => {
                ws = Ws::connect(fallback, &token, ws.user)
                    .await
                    .expect("reconnect")
            }
            _ => {}
        }
    }
    (got, close_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_under_traffic_loses_nothing() {
    let mut c = Cluster::start(3, &[]).await;
    c.set("max_messages_per_second", "0").await;
    let per_sender = 40;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..4 {
        // Half the senders and every receiver start on node 1, the one that drains.
        let mut a = c.user(if i % 2 == 0 { 1 } else { 0 }).await;
        let mut b = c.user(1).await;
        let conv = befriend(&mut a, &mut b).await;
        let (ta, tb) = (c.env.token(a.user, false), c.env.token(b.user, false));
        senders.push(tokio::spawn(sender(
            a,
            c.nodes[0].addr,
            ta,
            conv,
            per_sender,
        )));
        receivers.push(tokio::spawn(receiver(b, c.nodes[2].addr, tb, per_sender)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let drained = c.nodes.remove(1);
    drained.stop().await;

    let mut acked: Vec<Vec<String>> = Vec::new();
    for s in senders {
        let (ids, _) = s.await.unwrap();
        assert_eq!(
            ids.len(),
            per_sender,
            "every send was acknowledged in the end"
        );
        acked.push(ids);
    }
    for (i, r) in receivers.into_iter().enumerate() {
        let (got, code) = r.await.unwrap();
        assert_eq!(code, 1012, "receiver {i} was told to reconnect elsewhere");
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "receiver {i}: no message twice");
        let want: HashSet<&String> = acked[i].iter().collect();
        assert_eq!(
            unique, want,
            "receiver {i}: every acknowledged message arrived"
        );
    }
    let db = c.env.db().await;
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE client_msg_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        4 * per_sender as i64,
        "retries stored nothing twice"
    );
    c.stop().await;
}

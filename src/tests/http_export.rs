//! Conversation export (issue 19 §6) against real nodes: `GET /conversations/:id/export`
//! answers NDJSON, one history item per line in seq order (recalled ones without content),
//! `after_seq` resumes, a lagging read replica does not cut the tail, a slow client holds
//! the server to a bounded read-ahead (constant memory), and the refusals (bad id, bad
//! `after_seq`, non-member, former member, wrong method, no token).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::harness::{create_database, stack};
use super::http_api::Api;
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use crate::store::migrate;

/// `GET /conversations/:id/export{query}` as `api`'s user: the raw answer.
async fn export(api: &Api, conversation: Uuid, query: &str) -> client::Answer {
    let auth = format!("Bearer {}", api.token);
    client::send(
        "GET",
        &format!("{}/conversations/{conversation}/export{query}", api.base),
        &[("authorization", auth.as_str())],
        None,
    )
    .await
    .expect("GET export")
}

/// The lines of a 200 NDJSON answer, parsed.
fn lines(a: &client::Answer) -> Vec<Value> {
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.headers["content-type"], "application/x-ndjson");
    let text = std::str::from_utf8(&a.body).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "every line ends: {text:?}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every history item of `conversation`, oldest first.
async fn history(api: &Api, conversation: Uuid) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_the_history_items_as_ndjson_in_seq_order() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let mut sent = Vec::new();
    for text in ["one", "two\nlines", "three \"quoted\"", "four"] {
        sent.push(send_text(&mut a, Some(conv), None, text).await);
    }
    let a_api = Api::new(&c, 0, a.user);
    let recalled = sent[1]["id"].as_str().unwrap();
    let (status, body) = a_api
        .post(&format!("/messages/{recalled}/recall"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // B exports on the other node: the history, item for item, oldest first.
    let b_api = Api::new(&c, 1, b.user);
    let answer = export(&b_api, conv, "").await;
    let items = lines(&answer);
    assert_eq!(items, history(&b_api, conv).await);
    let seqs: Vec<i64> = items.iter().map(|i| i["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    let contents: Vec<&Value> = items.iter().map(|i| &i["content"]).collect();
    assert_eq!(
        contents,
        [
            &json!("hi"),
            &json!("hello"),
            &json!("one"),
            &Value::Null,
            &json!("three \"quoted\""),
            &json!("four")
        ]
    );
    let gone = &items[3];
    assert_eq!(gone["id"], recalled);
    assert_eq!(gone["is_recalled"], true);
    assert!(
        gone.get("content").is_none() && gone.get("recalled_at").is_some(),
        "{gone}"
    );
    assert!(
        answer.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("conversation-{conv}.ndjson"))
    );

    // after_seq resumes after a seq; past the end the answer is empty.
    let rest = lines(&export(&a_api, conv, "?after_seq=4").await);
    assert_eq!(rest, items[4..].to_vec());
    assert_eq!(
        lines(&export(&a_api, conv, "?after_seq=6").await),
        Vec::<Value>::new()
    );
    assert_eq!(
        lines(&export(&a_api, conv, "?after_seq=600").await),
        Vec::<Value>::new()
    );
    assert_eq!(lines(&export(&a_api, conv, "?after_seq=0").await), items);

    // A group with nothing in it exports nothing; a late member exports it all.
    let group = a_api.group("export", &[b.user]).await;
    assert_eq!(lines(&export(&b_api, group, "").await), Vec::<Value>::new());
    send_text(&mut a, Some(group), None, "before the late one").await;
    let late = Uuid::new_v4();
    let (status, body) = a_api
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [late]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let late_items = lines(&export(&Api::new(&c, 1, late), group, "").await);
    assert_eq!(late_items, history(&a_api, group).await);
    assert_eq!(late_items.len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refusals() {
    let c = Cluster::start(2, &[]).await;
    let mut owner = c.user(0).await;
    let owner_api = Api::new(&c, 0, owner.user);
    let leaver = Api::new(&c, 1, Uuid::new_v4());
    let stranger = Api::new(&c, 1, Uuid::new_v4());
    let group = owner_api.group("export refusals", &[leaver.user]).await;
    send_text(&mut owner, Some(group), None, "private to members").await;
    assert_eq!(lines(&export(&leaver, group, "").await).len(), 1);

    let error = |a: &client::Answer| -> (u16, Value) {
        let body = a.json();
        assert_eq!(body["code"], a.status, "an error envelope: {body}");
        assert_eq!(
            a.headers["content-type"], "application/json; charset=utf-8",
            "{body}"
        );
        (a.status, body["error"].clone())
    };
    // Bad ids and bad after_seq.
    for bad in ["abc", "1", "00000000-0000-0000-0000-00000000000z"] {
        let auth = format!("Bearer {}", owner_api.token);
        let a = client::send(
            "GET",
            &format!("{}/conversations/{bad}/export", owner_api.base),
            &[("authorization", auth.as_str())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(error(&a), (400, json!("invalid_id")), "{bad}");
    }
    for bad in ["-1", "abc", "1.5", "", "99999999999999999999"] {
        let a = export(&owner_api, group, &format!("?after_seq={bad}")).await;
        assert_eq!(error(&a), (400, json!("invalid_seq")), "after_seq={bad}");
    }
    // A non-member, a made-up conversation.
    for conv in [group, Uuid::new_v4()] {
        let a = export(&stranger, conv, "").await;
        assert_eq!(error(&a), (403, json!("not_member")));
    }
    // A former member.
    let (status, body) = leaver
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let a = export(&leaver, group, "").await;
    assert_eq!(error(&a), (403, json!("not_member")));
    // Wrong method, no token.
    let (status, body) = owner_api
        .post(&format!("/conversations/{group}/export"), json!({}))
        .await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = client::get(
        &format!("{}/conversations/{group}/export", owner_api.base),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_does_not_cut_the_export_short() {
    let replica_url = format!("{}/{}", stack().pg_base, create_database(stack()).await);
    let c = Cluster::start(1, &[("DATABASE_READ_URL", replica_url.as_str())]).await;
    let mut a = c.user(0).await;
    let b = Uuid::new_v4();
    let first = send_text(&mut a, None, Some(b), "first").await;
    let conv = uuid_of(&first["conversation_id"]);
    c.set("enable_first_message_limit", "false").await;
    for text in ["second", "third"] {
        send_text(&mut a, Some(conv), None, text).await;
    }
    // The replica has replayed the first message only.
    let (mut replica, conn) = tokio_postgres::connect(&replica_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    migrate::run(&mut replica).await.unwrap();
    replica
        .batch_execute(&format!(
            "INSERT INTO conversations (id, conversation_type, last_seq, last_message_at) VALUES ('{conv}', 'private', 1, now());
             INSERT INTO conversation_members (conversation_id, user_id) VALUES ('{conv}', '{a}'), ('{conv}', '{b}');
             INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, bucket)
                 VALUES ('{mid}', '{conv}', 1, '{a}', 'text', 'first', msg_bucket('{conv}'));",
            a = a.user,
            mid = first["id"].as_str().unwrap(),
        ))
        .await
        .unwrap();
    let api = Api::new(&c, 0, a.user);
    // History reads the replica (the lag shows there) ...
    assert_eq!(history(&api, conv).await.len(), 1);
    // ... the export goes to the primary for what the replica does not have yet.
    let items = lines(&export(&api, conv, "").await);
    let contents: Vec<&str> = items
        .iter()
        .map(|i| i["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "second", "third"]);
    c.stop().await;
}

/// The value of `dinq_exported_messages_total` (process-wide: the nodes of the tests share
/// one recorder).
async fn exported(c: &Cluster) -> f64 {
    let a = client::send("GET", &format!("{}/metrics", c.nodes[0].url()), &[], None)
        .await
        .unwrap();
    String::from_utf8_lossy(&a.body)
        .lines()
        .find(|l| l.starts_with("dinq_exported_messages_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_export_to_a_bounded_read_ahead() {
    const N: i64 = 8000;
    let c = Cluster::start(1, &[]).await;
    let api = Api::new(&c, 0, Uuid::new_v4());
    let conv = api.group("big", &[]).await;
    // N messages of ~4 KB each (in metadata, so the search indexer has nothing to do),
    // written straight into PostgreSQL: ~32 MB of NDJSON.
    let ids: Vec<Uuid> = (0..N)
        .map(|_| crate::store::messages::new_id(conv.into()).into())
        .collect();
    let db = c.env.db().await;
    db.execute(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, metadata, bucket, created_at)
         SELECT i.id, $1, i.n, $2, 'image', jsonb_build_object('blob', repeat('x', 4000), 'n', i.n),
                msg_bucket($1), now()
         FROM unnest($3::uuid[]) WITH ORDINALITY AS i(id, n)",
        &[&conv, &api.user, &ids],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE conversations SET last_seq = $2, last_message_id = $3, last_message_at = now() WHERE id = $1",
        &[&conv, &N, &ids[N as usize - 1]],
    )
    .await
    .unwrap();

    // A client with a small receive buffer that reads the head and then nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let stream = socket.connect(c.nodes[0].addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let before = exported(&c).await;
    let req = Request::get(format!("/api/v1/conversations/{conv}/export"))
        .header("host", c.nodes[0].addr.to_string())
        .header("authorization", format!("Bearer {}", api.token))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Wait until the server stops reading (its pages wait on the client), then count.
    let mut last = exported(&c).await;
    let mut still = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = exported(&c).await;
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still == 5 {
            break;
        }
    }
    assert_eq!(still, 5, "the export never stopped reading");
    let read_ahead = last - before;
    assert!(
        read_ahead < (N / 2) as f64,
        "{read_ahead} of {N} messages read while the client read nothing"
    );

    // Reading on, the client gets all of them, in order.
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let mut n = 0;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        n += 1;
        let item: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(item["seq"], n);
        assert_eq!(item["metadata"]["n"], n);
    }
    assert_eq!(n, N);
    c.stop().await;
}

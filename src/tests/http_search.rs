//! Searches and profiles over HTTP against real nodes: message search (escaping, Chinese,
//! scope, recall), the partner-name searches, profile enrichment from a fake agent
//! service (cached, and harmless when the agent is down or hangs), and the cost of a long
//! conversation list.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::free_port;
use super::http_api::{Api, assert_error, assert_paging_bounds};
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::search_index::pause_indexer;

/// A fake profile service answering `POST /api/v1/user-data/batch`.
struct Agent {
    url: String,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Agent {
    async fn start(profiles: HashMap<Uuid, Value>) -> Agent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let (counter, profiles) = (calls.clone(), Arc::new(profiles));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (counter, profiles) = (counter.clone(), profiles.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (counter, profiles) = (counter.clone(), profiles.clone());
                        async move {
                            let path_ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/api/v1/user-data/batch";
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let mut data = serde_json::Map::new();
                            for id in asked["user_ids"].as_array().into_iter().flatten() {
                                let id = uuid_of(id);
                                if let Some(p) = profiles.get(&id) {
                                    data.insert(id.to_string(), p.clone());
                                }
                            }
                            counter.fetch_add(1, Ordering::SeqCst);
                            let answer = if path_ok {
                                json!({"code": 0, "data": data})
                            } else {
                                json!({"code": 404})
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from(answer.to_string()),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Agent { url, calls, task }
    }
}

/// Waits until the search table holds every stored message with text (the cluster's
/// indexer copies messages a couple of seconds after their commit; until then search
/// reads them from `messages`).
pub async fn search_caught_up(c: &Cluster) {
    let db = c.env.db().await;
    for _ in 0..300 {
        let behind: i64 = db
            .query_one(
                "SELECT (SELECT count(*) FROM messages WHERE content IS NOT NULL AND content <> '')
                      - (SELECT count(*) FROM message_search)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if behind == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the search table did not catch up within 15 s");
}

fn profile(name: &str, domain: &str) -> Value {
    json!({"name": name, "avatar_url": format!("https://img/{domain}.png"), "domain": domain, "full_position": "Engineer"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_search_is_literal_scoped_and_newest_first() {
    let c = Cluster::start(2, &[]).await;
    let mut a_ws = c.user(0).await;
    let mut b_ws = c.user(1).await;
    let conv = befriend(&mut a_ws, &mut b_ws).await;
    let texts = [
        "Hello World",
        "say HELLO",
        "100% sure",
        "100 percent",
        "under_score",
        "underXscore",
        "back\\slash",
        "你好世界",
        "世界和平",
    ];
    // The first two are indexed, the rest (and the other pair's) are read from the tail
    // the indexer has not reached: answers and pages span both parts.
    let mut sent = HashMap::new();
    let mut paused = None;
    for (i, t) in texts.into_iter().enumerate() {
        if i == 1 {
            search_caught_up(&c).await;
            paused = Some(pause_indexer(&c).await);
        }
        sent.insert(
            t,
            send_text(&mut a_ws, Some(conv), None, t).await["id"].clone(),
        );
    }
    // Another pair's conversation holds a match A must not see.
    let mut x = c.user(0).await;
    let mut y = c.user(1).await;
    let other = befriend(&mut x, &mut y).await;
    send_text(&mut x, Some(other), None, "hello from elsewhere").await;
    let a = Api::new(&c, 0, a_ws.user);
    let search = |q: &str| {
        let a = &a;
        let q = q.to_string();
        async move {
            let (status, body) = a.get(&format!("/messages/search?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["data"]["messages"].as_array().unwrap().clone()
        }
    };
    let contents = |ms: &[Value]| -> Vec<String> {
        ms.iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    // befriend's "hello" counts too; newest first.
    assert_eq!(
        contents(&search("q=hello").await),
        ["say HELLO", "Hello World", "hello"]
    );
    assert_eq!(contents(&search("keyword=%25").await), ["100% sure"]);
    assert_eq!(contents(&search("q=_").await), ["under_score"]);
    assert_eq!(contents(&search("q=%5C").await), ["back\\slash"]);
    assert_eq!(
        contents(&search("q=%E4%B8%96%E7%95%8C").await),
        ["世界和平", "你好世界"]
    );
    assert_eq!(
        contents(&search("q=%E4%BD%A0%E5%A5%BD").await),
        ["你好世界"]
    );
    let page = search("q=hello&limit=1&offset=1").await;
    assert_eq!(page[0]["id"], sent["Hello World"]);
    assert_eq!(page[0]["seq"], 3);
    assert_eq!(
        contents(&search(&format!("q=hello&conversation_id={conv}")).await).len(),
        3
    );
    // A recalled message is not found.
    a_ws.send(json!({"type": "recall", "data": {"message_id": sent["say HELLO"]}}))
        .await;
    b_ws.expect("recalled").await;
    assert_eq!(contents(&search("q=hello").await), ["Hello World", "hello"]);
    // Once everything is indexed, the same answers come from the search table.
    paused.expect("held off").resume().await;
    search_caught_up(&c).await;
    assert_eq!(contents(&search("q=hello").await), ["Hello World", "hello"]);
    assert_eq!(
        contents(&search("q=%E4%B8%96%E7%95%8C").await),
        ["世界和平", "你好世界"]
    );
    assert_eq!(contents(&search("q=_").await), ["under_score"]);
    let page = search("q=hello&limit=1&offset=1").await;
    assert_eq!(page[0]["content"], "hello");
    // Refusals.
    assert_error(
        &a.get("/messages/search").await,
        400,
        "q or keyword is required",
    );
    assert_error(
        &a.get("/messages/search?q=%20%20").await,
        400,
        "q or keyword is required",
    );
    assert_error(
        &a.get("/messages/search?q=x&conversation_id=nope").await,
        400,
        "Invalid conversation_id",
    );
    for foreign in [other, Uuid::new_v4()] {
        assert_error(
            &a.get(&format!(
                "/messages/search?q=hello&conversation_id={foreign}"
            ))
            .await,
            403,
            "you are not a member of this conversation",
        );
    }
    assert_paging_bounds(&a, "/messages/search?q=hello").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_enrich_lists_and_drive_the_name_searches() {
    let (alice, bob, nobody) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let agent = Agent::start(HashMap::from([
        (alice, profile("Alice Wonder", "alice")),
        (bob, profile("Bob", "bobby-dev")),
    ]))
    .await;
    let c = Cluster::start(2, &[("AGENT_URL", agent.url.as_str())]).await;
    let me = Api::new(&c, 0, Uuid::new_v4());
    let mut convs = HashMap::new();
    for other in [alice, bob, nobody] {
        let (status, body) = me
            .post("/conversations/private", json!({"receiver_id": other}))
            .await;
        assert_eq!(status, 200, "{body}");
        convs.insert(other, uuid_of(&body["data"]["conversation"]["id"]));
    }
    let list = me.list("").await;
    let member_of = |item: &Value, user: Uuid| -> Value {
        item["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == user.to_string())
            .cloned()
            .unwrap()
    };
    let alice_item = list
        .iter()
        .find(|i| i["id"] == convs[&alice].to_string())
        .unwrap();
    let m = member_of(alice_item, alice);
    assert_eq!(
        (
            &m["name"],
            &m["username"],
            &m["avatar_url"],
            &m["full_position"]
        ),
        (
            &json!("Alice Wonder"),
            &json!("alice"),
            &json!("https://img/alice.png"),
            &json!("Engineer")
        )
    );
    let nobody_item = list
        .iter()
        .find(|i| i["id"] == convs[&nobody].to_string())
        .unwrap();
    let m = member_of(nobody_item, nobody);
    assert!(
        m.get("name").is_none() && m.get("username").is_none(),
        "unknown users have no profile fields: {m}"
    );
    // Cached in Redis: another list, on another node, does not call the agent again.
    let calls = agent.calls.load(Ordering::SeqCst);
    assert!(calls >= 1);
    Api::new(&c, 1, me.user).list("").await;
    assert_eq!(agent.calls.load(Ordering::SeqCst), calls);

    // GET /conversations/search: name only, hidden included, total counts every match.
    let search = |q: &str| {
        let (me, q) = (&me, q.to_string());
        async move {
            let (status, body) = me.get(&format!("/conversations/search?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["data"].clone()
        }
    };
    let found = search("q=alice").await;
    assert_eq!(found["total"], 1);
    let hit = &found["conversations"][0];
    assert_eq!(hit["conversation_id"], convs[&alice].to_string());
    assert_eq!(hit["conversation_type"], "private");
    assert_eq!(
        hit["other_user"],
        json!({"user_id": alice, "name": "Alice Wonder", "avatar_url": "https://img/alice.png", "full_position": "Engineer"})
    );
    assert_eq!(hit["unread_count"], 0);
    assert!(hit.get("last_message").is_none(), "no messages yet: {hit}");
    assert_eq!(
        search("q=bobby").await["total"],
        0,
        "domain is not searched here"
    );
    assert_eq!(search("keyword=O").await["total"], 2);
    let one = search("q=o&limit=1&offset=1").await;
    assert_eq!(
        (
            one["total"].clone(),
            one["conversations"].as_array().unwrap().len()
        ),
        (json!(2), 1)
    );
    me.post(&format!("/conversations/{}/hide", convs[&alice]), json!({}))
        .await;
    assert_eq!(
        search("q=alice").await["total"],
        1,
        "hidden conversations are searched"
    );
    assert_error(
        &me.get("/conversations/search").await,
        400,
        "q or keyword is required",
    );
    assert_paging_bounds(&me, "/conversations/search?q=o").await;

    // The list's own search: name or domain, hidden ones left out.
    let listed = |q: &str| {
        let (me, q) = (&me, q.to_string());
        async move {
            me.list(&q)
                .await
                .iter()
                .map(|i| uuid_of(&i["id"]))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("search=BOBBY-DEV").await, [convs[&bob]]);
    assert_eq!(listed("search=bob").await, [convs[&bob]]);
    assert!(listed("search=alice").await.is_empty(), "hidden");
    assert!(listed("search=zzz").await.is_empty());

    // A message shows in the search item, with its text.
    let mut me_ws = c.connect(0, me.user).await;
    send_text(&mut me_ws, Some(convs[&bob]), None, "hey bob").await;
    let hit = search("q=bob").await["conversations"][0].clone();
    assert_eq!(
        hit["last_message"],
        json!({"content": "hey bob", "message_type": "text", "sender_id": me.user})
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hanging_agent_costs_no_more_than_its_timeout() {
    // Nothing listens: refused at once.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = Cluster::start(1, &[("AGENT_URL", dead.as_str())]).await;
    let me = Api::new(&c, 0, Uuid::new_v4());
    me.post(
        "/conversations/private",
        json!({"receiver_id": Uuid::new_v4()}),
    )
    .await;
    let started = Instant::now();
    let list = me.list("").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        list[0]["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("name").is_none())
    );
    let (status, body) = me.get("/conversations/search?q=a").await;
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"conversations": [], "total": 0}))
    );
    c.stop().await;

    // Accepts and never answers: the 2 s budget, then a pause before trying again.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hanging.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hanging.accept().await {
            held.push(s);
        }
    });
    let c = Cluster::start(1, &[("AGENT_URL", url.as_str())]).await;
    let me = Api::new(&c, 0, Uuid::new_v4());
    let started = Instant::now();
    let (status, body) = me
        .post(
            "/conversations/private",
            json!({"receiver_id": Uuid::new_v4()}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        body["data"]["conversation"]["members"][0]
            .get("name")
            .is_none()
    );
    let started = Instant::now();
    me.list("").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_fifty_answers_well_under_a_second() {
    let agent = Agent::start(HashMap::new()).await;
    let c = Cluster::start(1, &[("AGENT_URL", agent.url.as_str())]).await;
    let mut me_ws = c.user(0).await;
    let me = Api::new(&c, 0, me_ws.user);
    let mut convs = Vec::new();
    for i in 0..45 {
        let (_, body) = me
            .post(
                "/conversations/private",
                json!({"receiver_id": Uuid::new_v4()}),
            )
            .await;
        let conv = uuid_of(&body["data"]["conversation"]["id"]);
        if i % 3 == 0 {
            send_text(&mut me_ws, Some(conv), None, &format!("note {i}")).await;
        }
        convs.push(conv);
    }
    for i in 0..5 {
        let members: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        let g = me.group(&format!("group {i}"), &members).await;
        send_text(&mut me_ws, Some(g), None, "hello group").await;
    }
    me.list("limit=50").await; // warm the statement cache and the profile cache
    let started = Instant::now();
    let list = me.list("limit=50").await;
    let took = started.elapsed();
    assert_eq!(list.len(), 50);
    let members: usize = list
        .iter()
        .map(|i| i["members"].as_array().unwrap().len())
        .sum();
    assert_eq!(members, 45 * 2 + 5 * 21);
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Those with a message come first, newest first.
    assert_eq!(list[0]["group_name"], "group 4");
    assert!(list[..20].iter().all(|i| !i["last_message_text"].is_null()));
    assert!(list[20..].iter().all(|i| i["last_message_text"].is_null()));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_adds_what_a_node_never_indexed() {
    let c = Cluster::start(1, &[]).await;
    let mut a = c.user(0).await;
    let b = Uuid::new_v4();
    let m = send_text(&mut a, None, Some(b), "needle in a haystack").await;
    let id = uuid_of(&m["id"]);
    search_caught_up(&c).await;
    let db = c.env.db().await;
    // As if the node had died before writing the search row.
    db.execute("DELETE FROM message_search WHERE message_id = $1", &[&id])
        .await
        .unwrap();
    db.execute(
        "UPDATE messages SET created_at = now() - interval '1 minute' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let store = crate::store::Store::new(&c.env.database_url, 2).unwrap();
    let since = crate::model::Timestamp(crate::model::Timestamp::now().micros() - 300_000_000);
    assert_eq!(
        crate::domain::search_index::sweep(&store, since)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        crate::domain::search_index::sweep(&store, since)
            .await
            .unwrap(),
        0,
        "nothing twice"
    );
    let api = Api::new(&c, 0, a.user);
    let (status, body) = api.get("/messages/search?q=haystack").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["messages"][0]["id"], m["id"]);
    c.stop().await;
}

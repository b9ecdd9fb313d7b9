//! The sharded subscriber's bounded push queue against a real Redis Cluster: while the
//! reader is stalled, a push that finds the queue full is dropped, and the subscriber
//! restores and repairs what it left in doubt (one user for a user's message, everything
//! for a control message).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use super::subscribe_loop;
use crate::cluster::dispatch::{Dispatch, LocalSink};
use crate::cluster::envelope::{origin_of, with_header};
use crate::cluster::wishes::Wishes;
use crate::cluster::{Keys, Redis, conn};
use crate::config::RedisConfig;
use crate::tests::redis_cluster_harness::RedisCluster;

/// Longest wait for something the subscriber must do (a failure bound, not a timing
/// assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// A sink with one local user. While `stall` is set, the next delivery blocks the reader
/// until the test sends on `release`.
struct Sink {
    user: Uuid,
    stall: AtomicBool,
    stalled: Notify,
    release: Mutex<Option<std_mpsc::Receiver<()>>>,
    delivered: Mutex<Vec<Bytes>>,
    delivered_notify: Notify,
    control: Mutex<Vec<Bytes>>,
    subscribed: Notify,
    repaired: Mutex<Vec<Uuid>>,
    repaired_notify: Notify,
    reconnected: AtomicUsize,
    reconnected_notify: Notify,
}

impl Sink {
    fn new(user: Uuid) -> Sink {
        Sink {
            user,
            stall: AtomicBool::new(false),
            stalled: Notify::new(),
            release: Mutex::new(None),
            delivered: Mutex::new(Vec::new()),
            delivered_notify: Notify::new(),
            control: Mutex::new(Vec::new()),
            subscribed: Notify::new(),
            repaired: Mutex::new(Vec::new()),
            repaired_notify: Notify::new(),
            reconnected: AtomicUsize::new(0),
            reconnected_notify: Notify::new(),
        }
    }

    /// The next delivery blocks until the returned sender sends.
    fn stall_next(&self) -> std_mpsc::Sender<()> {
        let (tx, rx) = std_mpsc::channel();
        *self.release.lock().unwrap() = Some(rx);
        self.stall.store(true, Ordering::SeqCst);
        tx
    }

    fn wait_if_stalled(&self) {
        if self.stall.swap(false, Ordering::SeqCst) {
            let rx = self.release.lock().unwrap().take().expect("a release");
            self.stalled.notify_one();
            // Off the worker, so the tasks queued on it keep running elsewhere.
            tokio::task::block_in_place(|| rx.recv()).expect("released");
        }
    }
}

impl LocalSink for Sink {
    fn deliver(&self, _: Uuid, _: u64, body: Bytes) {
        self.wait_if_stalled();
        self.delivered.lock().unwrap().push(body);
        self.delivered_notify.notify_one();
    }
    fn wants(&self, user: Uuid) -> bool {
        user == self.user
    }
    fn users(&self) -> Vec<Uuid> {
        vec![self.user]
    }
    fn subscribed(&self, users: &[Uuid]) {
        if users.contains(&self.user) {
            self.subscribed.notify_one();
        }
    }
    fn reconnected(&self) {
        self.reconnected.fetch_add(1, Ordering::SeqCst);
        self.reconnected_notify.notify_one();
    }
    fn repair(&self, users: Vec<Uuid>) {
        self.repaired.lock().unwrap().extend(users);
        self.repaired_notify.notify_one();
    }
    fn control(&self, message: Bytes) {
        self.wait_if_stalled();
        self.control.lock().unwrap().push(message);
    }
}

async fn wait(what: &str, notify: &Notify) {
    tokio::time::timeout(PATIENCE, notify.notified())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting: {what}"));
}

/// `SPUBLISH`es `body` from another node on `channel`.
async fn publish(publisher: &Redis, channel: &str, body: &'static [u8]) {
    let mut env = with_header(origin_of("elsewhere"), body.len());
    env.extend_from_slice(body);
    let mut conn = publisher.clone();
    redis::cmd("SPUBLISH")
        .arg(channel)
        .arg(env.as_ref())
        .query_async::<i64>(&mut conn)
        .await
        .expect("SPUBLISH");
}

fn bodies(list: &Mutex<Vec<Bytes>>) -> Vec<Bytes> {
    list.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_dropped_by_the_full_queue_is_repaired() {
    let rc = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    let urls: Vec<String> = rc
        .seeds()
        .split(',')
        .map(|s| format!("redis://{s}"))
        .collect();
    let config = RedisConfig {
        url: urls[0].clone(),
        key_prefix: String::new(),
        cluster_urls: urls,
    };
    let publisher = conn::open(&config).await.expect("cluster connection");
    let keys = Keys::for_cluster("");
    let dispatch = Arc::new(Dispatch::new(origin_of("here"), keys.clone()));
    let user = Uuid::new_v4();
    let sink = Arc::new(Sink::new(user));
    let weak = Arc::downgrade(&(sink.clone() as Arc<dyn LocalSink>));
    // A queue of one push: the reader holds one, the queue one more, the next is dropped.
    let task = tokio::spawn(subscribe_loop(
        dispatch,
        Arc::new(Wishes::default()),
        config,
        weak,
        1,
    ));
    wait("the user's channel subscribed", &sink.subscribed).await;
    let channel = keys.user_channel(user);

    // A user's message dropped: that user is subscribed again and repaired.
    let release = sink.stall_next();
    publish(&publisher, &channel, b"1").await;
    wait("the reader stalled on 1", &sink.stalled).await;
    publish(&publisher, &channel, b"2").await;
    publish(&publisher, &channel, b"3").await;
    wait("the user repaired", &sink.repaired_notify).await;
    assert_eq!(*sink.repaired.lock().unwrap(), vec![user]);
    release.send(()).unwrap();
    publish(&publisher, &channel, b"4").await;
    while bodies(&sink.delivered).len() < 3 {
        wait("deliveries", &sink.delivered_notify).await;
    }
    assert_eq!(
        bodies(&sink.delivered),
        [&b"1"[..], b"2", b"4"].map(Bytes::from_static),
        "3 was dropped, the rest delivered in order"
    );

    // A control message dropped: every subscription is restored and everyone repaired.
    let control = keys.control_channel();
    let release = sink.stall_next();
    publish(&publisher, &channel, b"5").await;
    wait("the reader stalled on 5", &sink.stalled).await;
    publish(&publisher, &control, b"c1").await;
    publish(&publisher, &control, b"c2").await;
    wait("every subscription restored", &sink.reconnected_notify).await;
    release.send(()).unwrap();
    publish(&publisher, &channel, b"6").await;
    while bodies(&sink.delivered).len() < 5 {
        wait("deliveries", &sink.delivered_notify).await;
    }
    assert_eq!(
        bodies(&sink.delivered)[3..],
        [&b"5"[..], b"6"].map(Bytes::from_static)
    );
    assert_eq!(bodies(&sink.control), vec![Bytes::from_static(b"c1")]);
    assert!(sink.reconnected.load(Ordering::SeqCst) >= 1);

    task.abort();
    drop(rc);
}

//! The sharded subscriber's bounded push queue against a real Redis Cluster: while the
//! reader is stalled, a push that finds the queue full is dropped, and the subscriber
//! restores and repairs what it left in doubt (one user for a user's message, everything
//! for a control message).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::subscribe_loop;
use crate::cluster::dispatch::{Dispatch, LocalSink};
use crate::cluster::envelope::{origin_of, with_header};
use crate::cluster::wishes::Wishes;
use crate::cluster::{Keys, Redis, conn};
use crate::config::RedisConfig;
use crate::model::UserId;
use crate::tests::redis_cluster_harness::RedisCluster;

/// Longest wait for something the subscriber must do (a failure bound, not a timing
/// assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// A sink with one local user, recording what reaches it. While `stall` is set, the next
/// delivery blocks the reader until the test sends on the returned release.
struct Sink {
    user: UserId,
    stall: AtomicBool,
    release: Mutex<Option<std_mpsc::Receiver<()>>>,
    stalls: AtomicUsize,
    subscriptions: AtomicUsize,
    delivered: Mutex<Vec<Bytes>>,
    control: Mutex<Vec<Bytes>>,
    repaired: Mutex<Vec<UserId>>,
    reconnected: AtomicUsize,
    /// Something above changed.
    event: Notify,
}

impl Sink {
    fn new(user: UserId) -> Sink {
        Sink {
            user,
            stall: AtomicBool::new(false),
            release: Mutex::new(None),
            stalls: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
            control: Mutex::new(Vec::new()),
            repaired: Mutex::new(Vec::new()),
            reconnected: AtomicUsize::new(0),
            event: Notify::new(),
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
            self.stalls.fetch_add(1, Ordering::SeqCst);
            self.event.notify_one();
            // Off the worker, so the tasks queued on it keep running elsewhere.
            tokio::task::block_in_place(|| rx.recv()).expect("released");
        }
    }

    fn delivered(&self) -> Vec<Bytes> {
        self.delivered.lock().unwrap().clone()
    }

    fn control(&self) -> Vec<Bytes> {
        self.control.lock().unwrap().clone()
    }

    /// Waits until `done` holds (checked after every event).
    async fn until(&self, what: &str, done: impl Fn(&Sink) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self) {
            if tokio::time::timeout_at(deadline, self.event.notified())
                .await
                .is_err()
            {
                panic!("timed out waiting: {what}");
            }
        }
    }
}

impl LocalSink for Sink {
    fn deliver(&self, _: UserId, _: u64, body: Bytes) {
        self.wait_if_stalled();
        self.delivered.lock().unwrap().push(body);
        self.event.notify_one();
    }
    fn wants(&self, user: UserId) -> bool {
        user == self.user
    }
    fn users(&self) -> Vec<UserId> {
        vec![self.user]
    }
    fn subscribed(&self, users: &[UserId]) {
        if users.contains(&self.user) {
            self.subscriptions.fetch_add(1, Ordering::SeqCst);
            self.event.notify_one();
        }
    }
    fn reconnected(&self) {
        self.reconnected.fetch_add(1, Ordering::SeqCst);
        self.event.notify_one();
    }
    fn repair(&self, users: Vec<UserId>) {
        self.repaired.lock().unwrap().extend(users);
        self.event.notify_one();
    }
    fn control(&self, message: Bytes) {
        self.wait_if_stalled();
        self.control.lock().unwrap().push(message);
        self.event.notify_one();
    }
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

fn bodies(list: &[&'static [u8]]) -> Vec<Bytes> {
    list.iter().map(|b| Bytes::from_static(b)).collect()
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
        tls: Default::default(),
    };
    let publisher = conn::open(&config).await.expect("cluster connection");
    let keys = Keys::for_cluster("");
    let dispatch = Arc::new(Dispatch::new(origin_of("here"), keys.clone()));
    let user = UserId::new_v4();
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
    sink.until("the user's channel subscribed", |s| {
        s.subscriptions.load(Ordering::SeqCst) > 0
    })
    .await;
    let channel = keys.user_channel(user);

    // A user's message dropped: that user is subscribed again and repaired.
    let release = sink.stall_next();
    publish(&publisher, &channel, b"1").await;
    sink.until("the reader stalled on 1", |s| {
        s.stalls.load(Ordering::SeqCst) == 1
    })
    .await;
    publish(&publisher, &channel, b"2").await;
    publish(&publisher, &channel, b"3").await;
    sink.until("the user repaired", |s| {
        !s.repaired.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*sink.repaired.lock().unwrap(), vec![user]);
    release.send(()).unwrap();
    // The queue is empty again once 2 is delivered.
    sink.until("1 and 2 delivered", |s| s.delivered().len() == 2)
        .await;
    publish(&publisher, &channel, b"4").await;
    sink.until("4 delivered", |s| s.delivered().len() == 3)
        .await;
    assert_eq!(
        sink.delivered(),
        bodies(&[b"1", b"2", b"4"]),
        "3 was dropped, the rest delivered in order"
    );

    // A control message dropped: every subscription is restored and everyone repaired.
    let control = keys.control_channel();
    let release = sink.stall_next();
    publish(&publisher, &channel, b"5").await;
    sink.until("the reader stalled on 5", |s| {
        s.stalls.load(Ordering::SeqCst) == 2
    })
    .await;
    publish(&publisher, &control, b"c1").await;
    publish(&publisher, &control, b"c2").await;
    sink.until("every subscription restored", |s| {
        s.reconnected.load(Ordering::SeqCst) > 0
    })
    .await;
    release.send(()).unwrap();
    // The queue is empty again once c1 (queued behind 5) is handled.
    sink.until("c1 handled", |s| !s.control().is_empty()).await;
    publish(&publisher, &channel, b"6").await;
    sink.until("6 delivered", |s| s.delivered().len() == 5)
        .await;
    assert_eq!(sink.delivered()[3..], bodies(&[b"5", b"6"]));
    assert_eq!(sink.control(), bodies(&[b"c1"]), "c2 was dropped");

    task.abort();
    drop(rc);
}

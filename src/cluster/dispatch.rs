//! What both subscribers (single server in [`super::subscriber`], Redis Cluster in
//! [`super::sharded`]) do with a received message: read the envelope header once, drop this
//! node's own envelopes (Redis echoes what we publish), and hand the body to the local sink
//! as a user's event, one event for many users (a fan-out channel), or a control message.

use bytes::Bytes;

use super::Keys;
use super::envelope;
use crate::metrics as m;
use crate::model::UserId;

/// What the bus delivers to and asks of this node's connections (implemented by the hub).
pub trait LocalSink: Send + Sync + 'static {
    /// An envelope's body for `user`, published by the node whose origin hash is `origin`
    /// (this node's own when it comes from [`super::bus::Bus::route`]).
    fn deliver(&self, user: UserId, origin: u64, body: Bytes);
    /// One envelope's body for each of `users` that has devices here (a fan-out envelope,
    /// or [`super::bus::Bus::route_many`]'s local delivery); the others are skipped. The
    /// default hands it to [`LocalSink::deliver`] user by user; the hub decodes it once.
    fn deliver_many(&self, users: &[UserId], origin: u64, body: Bytes) {
        for user in users {
            if self.wants(*user) {
                self.deliver(*user, origin, body.clone());
            }
        }
    }
    /// True while `user` has devices on this node (so their channel should be subscribed).
    fn wants(&self, user: UserId) -> bool;
    /// Every user with devices on this node.
    fn users(&self) -> Vec<UserId>;
    /// These users' channels are subscribed now.
    fn subscribed(&self, users: &[UserId]);
    /// The subscription connection was lost and is back: live events may have been missed.
    fn reconnected(&self);
    /// These users' subscriptions were ended by Redis and are back: repair what they may
    /// have missed.
    fn repair(&self, users: Vec<UserId>);
    /// The body of a message on the control channel.
    fn control(&self, message: Bytes);
}

/// Routes received messages to the sink; one per node, shared by its subscriber tasks.
pub(super) struct Dispatch {
    /// This node's origin hash.
    pub(super) origin: u64,
    pub(super) keys: Keys,
    /// The control channel's name.
    pub(super) control: String,
    /// The fan-out channels' names.
    pub(super) fanout: Vec<String>,
}

impl Dispatch {
    pub(super) fn new(origin: u64, keys: Keys) -> Dispatch {
        let control = keys.control_channel();
        let fanout = keys.fanout_channels();
        Dispatch {
            origin,
            keys,
            control,
            fanout,
        }
    }

    /// True for one of the fan-out channels.
    pub(super) fn is_fanout(&self, channel: &str) -> bool {
        self.fanout.iter().any(|c| c == channel)
    }

    /// Hands a message received on `channel` to `sink`: a user's envelope to `deliver`, a
    /// fan-out envelope to `deliver_many`, the control channel's to `control`; this node's
    /// own envelopes and malformed ones are dropped.
    pub(super) fn on_message(&self, sink: &dyn LocalSink, channel: &str, payload: Bytes) {
        let Some((origin, body)) = envelope::split(&payload) else {
            tracing::debug!(channel, "malformed envelope dropped");
            return;
        };
        if origin == self.origin {
            return;
        }
        if channel == self.control {
            sink.control(body);
            return;
        }
        if self.is_fanout(channel) {
            match envelope::split_fanout(&body) {
                Some((users, inner)) => {
                    metrics::counter!(m::REDIS_RECEIVED).increment(1);
                    sink.deliver_many(&users, origin, inner);
                }
                None => tracing::debug!(channel, "malformed fan-out envelope dropped"),
            }
            return;
        }
        match self.user_of(channel) {
            Some(user) => {
                metrics::counter!(m::REDIS_RECEIVED).increment(1);
                sink.deliver(user, origin, body);
            }
            None => tracing::debug!(channel, "message on an unknown channel"),
        }
    }

    /// The user of a channel named by [`Keys::user_channel`] (hash-tagged or not).
    pub(super) fn user_of(&self, channel: &str) -> Option<UserId> {
        parse_user_channel(channel, self.keys.prefix())
    }
}

fn parse_user_channel(channel: &str, prefix: &str) -> Option<UserId> {
    let id = channel.strip_prefix(prefix)?.strip_prefix("u:")?;
    let id = id
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(id);
    id.parse::<UserId>().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what reaches the sink.
    #[derive(Default)]
    struct Recorder {
        delivered: Mutex<Vec<(UserId, u64, Bytes)>>,
        control: Mutex<Vec<Bytes>>,
    }

    impl LocalSink for Recorder {
        fn deliver(&self, user: UserId, origin: u64, body: Bytes) {
            self.delivered.lock().unwrap().push((user, origin, body));
        }
        fn wants(&self, _: UserId) -> bool {
            true
        }
        fn users(&self) -> Vec<UserId> {
            Vec::new()
        }
        fn subscribed(&self, _: &[UserId]) {}
        fn reconnected(&self) {}
        fn repair(&self, _: Vec<UserId>) {}
        fn control(&self, message: Bytes) {
            self.control.lock().unwrap().push(message);
        }
    }

    fn envelope(origin: u64, body: &[u8]) -> Bytes {
        let mut env = envelope::with_header(origin, body.len());
        env.extend_from_slice(body);
        env.freeze()
    }

    #[test]
    fn the_header_is_read_once_and_own_envelopes_are_dropped() {
        let (here, there) = (envelope::origin_of("here"), envelope::origin_of("there"));
        for keys in [Keys::new("p:"), Keys::for_cluster("p:")] {
            let dispatch = Dispatch::new(here, keys.clone());
            let sink = Recorder::default();
            let user = UserId::new_v4();
            let channel = keys.user_channel(user);
            dispatch.on_message(&sink, &channel, envelope(there, b"event"));
            dispatch.on_message(&sink, &channel, envelope(here, b"echo"));
            dispatch.on_message(&sink, &channel, Bytes::from_static(b"\x01short"));
            dispatch.on_message(&sink, "p:u:nobody", envelope(there, b"lost"));
            dispatch.on_message(&sink, &keys.control_channel(), envelope(there, b"reload"));
            dispatch.on_message(&sink, &keys.control_channel(), envelope(here, b"mine"));
            assert_eq!(
                *sink.delivered.lock().unwrap(),
                vec![(user, there, Bytes::from_static(b"event"))]
            );
            assert_eq!(
                *sink.control.lock().unwrap(),
                vec![Bytes::from_static(b"reload")]
            );
        }
    }

    #[test]
    fn a_fanout_envelope_reaches_each_listed_user_once() {
        let (here, there) = (envelope::origin_of("here"), envelope::origin_of("there"));
        for keys in [Keys::new("p:"), Keys::for_cluster("p:")] {
            let dispatch = Dispatch::new(here, keys.clone());
            let sink = Recorder::default();
            let users = [UserId::new_v4(), UserId::new_v4(), UserId::new_v4()];
            let conversation = crate::model::ConversationId::new_v4();
            let channel = keys.fanout_channel(keys.fanout_index(conversation));
            dispatch.on_message(&sink, &channel, envelope::fanout(there, &users, b"event"));
            dispatch.on_message(&sink, &channel, envelope::fanout(here, &users, b"echo"));
            // A list running past the end.
            let mut bad = envelope::with_header(there, 8);
            bad.extend_from_slice(&[0, 0, 0, 9, 1, 2, 3]);
            dispatch.on_message(&sink, &channel, bad.freeze());
            // A fan-out envelope on a user's channel is not one: its body goes to the user.
            dispatch.on_message(
                &sink,
                &keys.user_channel(users[0]),
                envelope::fanout(there, &users[1..], b""),
            );
            let delivered = sink.delivered.lock().unwrap();
            assert_eq!(delivered.len(), 4, "{delivered:?}");
            for (i, u) in users.iter().enumerate() {
                assert_eq!(delivered[i], (*u, there, Bytes::from_static(b"event")));
            }
            assert_eq!(delivered[3].0, users[0]);
        }
    }

    #[test]
    fn fanout_channels_are_one_on_a_server_and_spread_on_a_cluster() {
        let single = Keys::new("p:");
        assert_eq!(single.fanout_channels(), ["p:dinq:fanout:0"]);
        let cluster = Keys::for_cluster("p:");
        let names = cluster.fanout_channels();
        assert_eq!(names.len(), crate::cluster::keys::FANOUT_CHANNELS_CLUSTER);
        assert_eq!(names[3], "p:dinq:fanout:{3}");
        // Every conversation has one channel of the list; they spread over the channels, and
        // the channels over the slots of a three-master cluster.
        let mut used = std::collections::HashSet::new();
        for _ in 0..1000 {
            let c = crate::model::ConversationId::new_v4();
            let k = cluster.fanout_index(c);
            assert_eq!(k, cluster.fanout_index(c));
            used.insert(k);
            assert_eq!(single.fanout_index(c), 0);
        }
        assert_eq!(used.len(), names.len());
        let thirds: std::collections::HashSet<u16> = names
            .iter()
            .map(|n| crate::cluster::conn::slots::slot(n.as_bytes()) / 5462)
            .collect();
        assert_eq!(thirds.len(), 3, "{names:?}");
        let dispatch = Dispatch::new(1, cluster.clone());
        assert!(names.iter().all(|n| dispatch.is_fanout(n)));
        assert!(!dispatch.is_fanout(&cluster.control_channel()));
        assert!(!dispatch.is_fanout("p:dinq:fanout:{16}"));
    }

    #[test]
    fn channel_names_round_trip() {
        let user = UserId::new_v4();
        for keys in [Keys::new("p:"), Keys::for_cluster("p:")] {
            let name = keys.user_channel(user);
            let mut buf = b"stale".to_vec();
            keys.user_channel_into(&mut buf, user);
            assert_eq!(buf, name.as_bytes());
            assert_eq!(parse_user_channel(&name, "p:"), Some(user), "{name}");
            assert_eq!(parse_user_channel(&name, "q:"), None);
        }
        assert_eq!(
            Keys::for_cluster("p:").user_channel(user),
            format!("p:u:{{{user}}}")
        );
        assert_eq!(parse_user_channel("p:u:nope", "p:"), None);
        assert_eq!(parse_user_channel("p:u:{nope}", "p:"), None);
    }
}

//! Redis Cluster slots: the hash slot of a key (CRC16 with hash tags, as Redis computes
//! it), which commands may be grouped by slot ([`FIRST_KEY_COMMANDS`]), `CLUSTER SLOTS`
//! read into ranges, and the slot map (the master of every slot) that
//! [`Shards`](super::shards::Shards) keeps.

use std::time::Instant;

use redis::cluster_async::ClusterConnection;
use redis::{Arg, Cmd, RedisResult, Value};

/// Hash slots of a Redis Cluster.
pub(super) const SLOTS: u16 = 16384;
/// No master known for a slot.
pub(super) const UNKNOWN: u16 = u16::MAX;

/// Commands whose only key is their first argument, so they run on the master of that
/// key's slot and may share its pipeline. Any other command goes through the cluster
/// connection on its own.
pub const FIRST_KEY_COMMANDS: &[&[u8]] = &[
    b"SPUBLISH",
    b"SET",
    b"SETEX",
    b"PSETEX",
    b"EXPIRE",
    b"PEXPIRE",
    b"PERSIST",
    b"INCR",
    b"INCRBY",
    b"DECR",
    b"DECRBY",
    b"SADD",
    b"SREM",
    b"HSET",
    b"HDEL",
    b"HINCRBY",
    b"ZADD",
    b"ZREM",
    b"LPUSH",
    b"RPUSH",
    b"LTRIM",
];

/// A slot range and its master, as `CLUSTER SLOTS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    /// The master's host (empty when the node did not say).
    pub host: String,
    pub port: u16,
}

/// Every slot range and its master (`CLUSTER SLOTS`), sorted.
pub async fn slot_ranges(conn: &ClusterConnection) -> RedisResult<Vec<SlotRange>> {
    let value: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn.clone())
        .await?;
    Ok(parse_slot_ranges(value))
}

pub(super) fn parse_slot_ranges(value: Value) -> Vec<SlotRange> {
    let mut ranges = Vec::new();
    let Value::Array(entries) = value else {
        return ranges;
    };
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => String::new(),
        };
        let port = match master.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).unwrap_or(0),
            _ => 0,
        };
        let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last)) else {
            continue;
        };
        ranges.push(SlotRange {
            first,
            last,
            host,
            port,
        });
    }
    ranges.sort();
    ranges
}

/// CRC16/XMODEM, the checksum behind Redis Cluster hash slots.
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

pub(super) fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The hash slot of `key`: of its hash tag (the bytes between the first `{` and the next
/// `}`) when that is not empty, else of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// The slot of `cmd`'s key, when it is one of [`FIRST_KEY_COMMANDS`].
pub(super) fn first_key_slot(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter();
    let Arg::Simple(name) = args.next()? else {
        return None;
    };
    if !FIRST_KEY_COMMANDS
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known))
    {
        return None;
    }
    match args.next()? {
        Arg::Simple(key) => Some(slot(key)),
        _ => None,
    }
}

/// A node, by address.
pub(super) type Node = (String, u16);

/// `host:port` as a redirection names a node.
pub(super) fn parse_node(addr: &str) -> Option<Node> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// The master of every slot.
pub(super) struct SlotMap {
    /// Index into `nodes` of each slot's master, or [`UNKNOWN`].
    owner: Vec<u16>,
    pub(super) nodes: Vec<Node>,
    pub(super) read_at: Instant,
}

impl SlotMap {
    pub(super) fn empty() -> SlotMap {
        SlotMap {
            owner: vec![UNKNOWN; usize::from(SLOTS)],
            nodes: Vec::new(),
            read_at: Instant::now(),
        }
    }

    pub(super) fn new(ranges: &[SlotRange]) -> SlotMap {
        let mut map = SlotMap::empty();
        for r in ranges {
            if r.host.is_empty() || r.host == "?" || r.port == 0 || r.first > r.last {
                continue;
            }
            let node = (r.host.clone(), r.port);
            let index = match map.nodes.iter().position(|n| *n == node) {
                Some(i) => i,
                None => {
                    map.nodes.push(node);
                    map.nodes.len() - 1
                }
            };
            let last = r.last.min(SLOTS - 1);
            for s in r.first..=last {
                map.owner[usize::from(s)] = index as u16;
            }
        }
        map
    }

    pub(super) fn owner(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)) {
            Some(&i) if i != UNKNOWN => Some(usize::from(i)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::{Route, SlotAddr};

    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{foo}bar"), 12182);
        assert_eq!(slot(b"baz"), 4813);
        // An empty tag or an unclosed brace hashes the whole key; only the first tag counts.
        assert_eq!(slot(b"{}foo"), crc16(b"{}foo") % SLOTS);
        assert_eq!(slot(b"{foo"), crc16(b"{foo") % SLOTS);
        assert_eq!(slot(b"a{b}{c}"), slot(b"b"));
        assert_eq!(slot(b"a{{b}}"), slot(b"{b"));
        let user = uuid::Uuid::new_v4();
        assert_eq!(
            slot(format!("p:u:{{{user}}}").as_bytes()),
            slot(format!("online:{{{user}}}").as_bytes())
        );
        // The crate's own slot computation agrees.
        for i in 0..5000 {
            let key = format!("key:{i}:{{tag{}}}", i % 97);
            let key = if i % 3 == 0 { format!("plain{i}") } else { key };
            assert_eq!(
                Route::new(slot(key.as_bytes()), SlotAddr::Master),
                Route::with_key(key.as_bytes(), SlotAddr::Master),
                "{key}"
            );
        }
    }

    #[test]
    fn only_first_key_commands_are_grouped() {
        let mut spublish = redis::cmd("SPUBLISH");
        spublish.arg("u:{x}").arg(b"payload".as_slice());
        assert_eq!(first_key_slot(&spublish), Some(slot(b"x")));
        let mut set = redis::cmd("set");
        set.arg("online:{y}").arg("1").arg("EX").arg(30);
        assert_eq!(first_key_slot(&set), Some(slot(b"y")));
        let mut del = redis::cmd("DEL");
        del.arg("a").arg("b");
        assert_eq!(first_key_slot(&del), None);
        let mut eval = redis::cmd("EVAL");
        eval.arg("return 1").arg(1).arg("k");
        assert_eq!(first_key_slot(&eval), None);
        assert_eq!(first_key_slot(&redis::cmd("SET")), None);
    }

    #[test]
    fn slot_map_follows_cluster_slots() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk("10.0.0.2"), Value::Int(7001), bulk("id2")]),
                Value::Array(vec![bulk("10.0.0.5"), Value::Int(7004), bulk("id5")]),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(7000), bulk("id1")]),
            ]),
            Value::Array(vec![
                Value::Int(100),
                Value::Int(200),
                Value::Array(vec![bulk(""), Value::Int(7009), bulk("id9")]),
            ]),
        ]);
        let ranges = parse_slot_ranges(reply);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].first, 0);
        let map = SlotMap::new(&ranges);
        assert_eq!(map.nodes.len(), 2);
        let node = |slot| map.owner(slot).map(|i| map.nodes[i].clone());
        assert_eq!(node(0), Some(("10.0.0.1".to_string(), 7000)));
        assert_eq!(node(5460), Some(("10.0.0.1".to_string(), 7000)));
        assert_eq!(node(5461), Some(("10.0.0.2".to_string(), 7001)));
        assert_eq!(node(16383), Some(("10.0.0.2".to_string(), 7001)));
        assert_eq!(node(16384), None);
        assert!(SlotMap::empty().owner(0).is_none());
    }
}

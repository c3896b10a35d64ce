//! The only place that knows Redis key names.
//!
//! Keys are grouped: every key that one script or pipeline touches carries
//! the same hash tag, so that on a Redis Cluster it lives in one slot, and
//! the groups' tags spread over the cluster's masters. An asset belongs to
//! group `id % groups`: one group on a standalone Redis (one node: nothing
//! to spread), [`CLUSTER_GROUPS`] on a cluster.
//!
//! Under the deployment's prefix `P`, per group `n`:
//! - `P{n}:latest` (hash): asset id -> the latest quote (JSON `StoredQuote`).
//! - `P{n}:points:ID` (sorted set): score = Unix second, member = the
//!   point's JSON as clients get it; trimmed to the live window.
//! - `P{n}:archive` (stream): one entry per tick, `points` = JSON array of
//!   the tick's points of the group, read by the archiver through the
//!   consumer group `archiver` and deleted once committed to PostgreSQL.
//! - `P{n}:live` (channel; sharded on a cluster): the same JSON array, for
//!   live subscribers.
//! - `P{n}:epoch` (string): set by every tick; its absence tells the worker
//!   that Redis lost the group's data and the windows need rebuilding.
//! - `P{n}:fence` (string): the newest writer generation that wrote a tick;
//!   a tick of an older generation is refused.
//!
//! Catalog-wide, tag `{meta}`:
//! - `P{meta}:sources` (hash): "priority:name" -> the upstream's breaker
//!   status (JSON), written by the leading worker, read by `/health/ready`.
//! - `P{meta}:leader` (string, with a TTL): the writer's lease,
//!   `"generation:node"`.
//! - `P{meta}:generation` (string): the last generation handed out.
//!
//! Per client of a tier, its own tag (one key a script, spread over a
//! cluster's slots):
//! - `P{quota:TIER:HASH}` (string, expiring when the bucket is full): the
//!   client's theoretical arrival time in microseconds (GCRA), `HASH` the
//!   first 16 bytes of the SHA-256 of the client (IP, key name, token
//!   subject) in hex.
//! - `P{conns:TIER:HASH}` (sorted set, expiring): the client's open
//!   WebSockets and event streams on every node, member `NODE:N`, score the
//!   millisecond (Redis's clock) until which the node vouches for it.
//!
//! Before groups, keys had no tag (`P latest`, `P points:ID`, `P archive`,
//! `P sources`, `P epoch`); [`Keys::legacy_renames`] maps them onto group 0
//! of a standalone Redis.

use crate::domain::AssetId;

/// Groups on a Redis Cluster: enough that a tick's writes, the archive
/// buffer and the live feed spread over the masters of a cluster of a few
/// shards, few enough that a tick is a handful of round trips.
pub const CLUSTER_GROUPS: u16 = 16;

#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    groups: u16,
}

impl Keys {
    pub(crate) fn new(prefix: &str, groups: u16) -> Self {
        Self {
            prefix: prefix.to_owned(),
            groups: groups.max(1),
        }
    }

    pub(crate) fn groups(&self) -> u16 {
        self.groups
    }

    pub(crate) fn group_of(&self, id: AssetId) -> u16 {
        (id % u32::from(self.groups)) as u16
    }

    fn in_group(&self, group: u16, name: &str) -> String {
        format!("{}{{{group}}}:{name}", self.prefix)
    }

    pub(crate) fn latest(&self, group: u16) -> String {
        self.in_group(group, "latest")
    }
    pub(crate) fn points(&self, id: AssetId) -> String {
        self.in_group(self.group_of(id), &format!("points:{id}"))
    }
    pub(crate) fn archive(&self, group: u16) -> String {
        self.in_group(group, "archive")
    }
    pub(crate) fn live(&self, group: u16) -> String {
        self.in_group(group, "live")
    }
    pub(crate) fn epoch(&self, group: u16) -> String {
        self.in_group(group, "epoch")
    }
    pub(crate) fn fence(&self, group: u16) -> String {
        self.in_group(group, "fence")
    }
    fn meta(&self, name: &str) -> String {
        format!("{}{{meta}}:{name}", self.prefix)
    }
    pub(crate) fn sources(&self) -> String {
        self.meta("sources")
    }
    pub(crate) fn leader(&self) -> String {
        self.meta("leader")
    }
    pub(crate) fn generation(&self) -> String {
        self.meta("generation")
    }
    /// A client's request bucket in `tier` (`client` as the limiter names
    /// it: never a credential).
    pub(crate) fn quota(&self, tier: &str, client: &str) -> String {
        format!("{}{{quota:{tier}:{}}}", self.prefix, client_hash(client))
    }

    /// A client's open connections in `tier`, on every node.
    pub(crate) fn conns(&self, tier: &str, client: &str) -> String {
        format!("{}{{conns:{tier}:{}}}", self.prefix, client_hash(client))
    }

    /// The pattern that matches every key of the deployment.
    pub(crate) fn all(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// Pre-group key names (one group only) and their new names: the fixed
    /// keys, and the pattern of the points keys with how to rename one.
    pub(crate) fn legacy_renames(&self) -> (Vec<(String, String)>, String) {
        let p = &self.prefix;
        let fixed = vec![
            (format!("{p}latest"), self.latest(0)),
            (format!("{p}archive"), self.archive(0)),
            (format!("{p}sources"), self.sources()),
            (format!("{p}epoch"), self.epoch(0)),
        ];
        (fixed, format!("{p}points:*"))
    }

    /// The new name of a pre-group points key, if `old` is one.
    pub(crate) fn legacy_points_rename(&self, old: &str) -> Option<String> {
        let id: AssetId = old
            .strip_prefix(&self.prefix)?
            .strip_prefix("points:")?
            .parse()
            .ok()?;
        Some(self.points(id))
    }
}

/// A client's name in a key: the first 16 bytes of its SHA-256, in hex.
fn client_hash(client: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(client.as_bytes());
    crate::hash::to_hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot Redis Cluster gives a key (CRC16/XMODEM of the hash tag).
    fn slot(key: &str) -> u16 {
        let tag = match (key.find('{'), key.find('}')) {
            (Some(a), Some(b)) if b > a + 1 => &key[a + 1..b],
            _ => key,
        };
        let mut crc: u16 = 0;
        for &byte in tag.as_bytes() {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16_384
    }

    #[test]
    fn a_groups_keys_share_a_slot_and_groups_spread() {
        let keys = Keys::new("rates:", CLUSTER_GROUPS);
        for id in [1, 2, 17, 2_005] {
            let g = keys.group_of(id);
            let s = slot(&keys.points(id));
            for other in [
                keys.latest(g),
                keys.archive(g),
                keys.live(g),
                keys.epoch(g),
                keys.fence(g),
            ] {
                assert_eq!(slot(&other), s, "{other} with {}", keys.points(id));
            }
        }
        assert_eq!(slot(&keys.leader()), slot(&keys.generation()));
        // Three masters split the slots in thirds: the catalog's first five
        // assets (groups 1..=5) already reach more than one of them.
        let thirds: std::collections::BTreeSet<u16> =
            (1..=5).map(|id| slot(&keys.points(id)) / 5_462).collect();
        assert!(thirds.len() >= 2, "{thirds:?}");
    }

    #[test]
    fn standalone_is_one_group_and_legacy_names_map_onto_it() {
        let keys = Keys::new("rates:", 1);
        assert_eq!(keys.points(7), "rates:{0}:points:7");
        assert_eq!(keys.group_of(2_005), 0);
        assert_eq!(
            keys.legacy_points_rename("rates:points:7").as_deref(),
            Some("rates:{0}:points:7")
        );
        assert_eq!(keys.legacy_points_rename("rates:{0}:points:7"), None);
        assert_eq!(keys.legacy_points_rename("rates:points:x"), None);
    }
}

//! Operations on the whole prefix at once: renaming a pre-group
//! deployment's keys at the first start after an upgrade, and deleting
//! every key (tests and tooling).

use deadpool_redis::redis::{self, AsyncCommands, Script};

use super::conn::Conn;
use super::{RedisStore, Result};

/// Moves a pre-group key to its new name. The archiver may have created the
/// new (empty) archive stream already: an empty stream gives way; any other
/// existing key is kept, and the old one left where it is.
/// KEYS: old name, new name. Returns 1 when moved, 0 when there was nothing
/// to move, -1 when the new name holds data.
const RENAME_LEGACY_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('TYPE', KEYS[2])['ok'] == 'stream' and redis.call('XLEN', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[2])
  else
    return -1
  end
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"#;

impl RedisStore {
    /// Renames a standalone deployment's keys from before key groups (no
    /// hash tag) to their group-0 names, so an upgrade keeps its windows,
    /// latest quotes and unarchived buffer (with its consumer group). A key
    /// whose new name already exists is left as it is, and said. Safe to
    /// run by several processes at once: a key renamed by one is gone for
    /// the others. Returns how many keys were renamed.
    pub async fn rename_legacy_keys(&self) -> Result<u64> {
        if self.backend.is_cluster() {
            return Ok(0);
        }
        let (fixed, points_pattern) = self.keys.legacy_renames();
        let mut conn = self.conn().await?;
        let mut pairs = fixed;
        let points: Vec<String> = scan(&mut conn, &points_pattern).await?;
        pairs.extend(
            points
                .into_iter()
                .filter_map(|old| Some((self.keys.legacy_points_rename(&old)?, old)))
                .map(|(new, old)| (old, new)),
        );
        let script = Script::new(RENAME_LEGACY_SCRIPT);
        let mut renamed = 0;
        for (old, new) in pairs {
            let done: i64 = script.key(&old).key(&new).invoke_async(&mut conn).await?;
            match done {
                1 => renamed += 1,
                -1 => tracing::warn!(
                    key = %old,
                    new = %new,
                    "pre-group redis key left in place: its new name holds data already"
                ),
                _ => {}
            }
        }
        Ok(renamed)
    }

    /// Deletes every key under the prefix (for tests and tooling: on a
    /// cluster it lists keys with `KEYS` on every master, which blocks each
    /// for as long as the listing takes).
    pub async fn delete_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        if self.backend.is_cluster() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(self.keys.all())
                .query_async(&mut conn)
                .await?;
            let mut deleted = 0;
            // One key at a time: a cluster refuses a DEL across slots.
            for key in keys {
                let n: u64 = conn.del(&key).await?;
                deleted += n;
            }
            return Ok(deleted);
        }
        let keys = scan(&mut conn, &self.keys.all()).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        Ok(conn.del(keys).await?)
    }
}

/// Every key matching `pattern` (of a standalone Redis).
async fn scan(conn: &mut Conn, pattern: &str) -> Result<Vec<String>> {
    let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await?;
    let mut keys = Vec::new();
    while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
        keys.push(k?);
    }
    Ok(keys)
}

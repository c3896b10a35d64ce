//! Writing a tick (one script per key group, atomic, fenced by the
//! writer's generation) and a backfill of past seconds.

use deadpool_redis::redis;
use futures_util::future::try_join_all;

use super::{RedisError, RedisStore, Result, to_json};
use crate::domain::{AssetId, Point, UnixSeconds};
use crate::store::records::{TickEntry, TickOutcome};

/// Writes one group's share of a tick atomically in one round trip. A point
/// is written only when its second is newer than the asset's newest point,
/// so a second is never written twice and time never goes backwards.
///
/// It refuses a tick whose writer generation is older than the newest that
/// wrote (the fence): a paused old leader cannot write after its successor.
/// It also notices a Redis that lost its data (a restart without
/// persistence, a flush): the epoch marker, set by every tick, is gone.
///
/// KEYS: latest hash, archive stream, live channel, epoch marker, fence,
/// then one points key per asset (all of one group: one hash tag).
/// ARGV: time, trim cutoff (scores <= it are dropped), archive flag, stream
/// max length, generation, publish command, then per asset: id, point JSON,
/// quote JSON.
/// Returns {points written, 1 when the marker was missing}, or {-1, fence}
/// when fenced off.
pub(super) const TICK_SCRIPT: &str = r#"
local fence = tonumber(redis.call('GET', KEYS[5]) or '0')
local generation = tonumber(ARGV[5])
if generation < fence then
  return {-1, fence}
end
if generation > fence then
  redis.call('SET', KEYS[5], ARGV[5])
end
local t = tonumber(ARGV[1])
local lost = 0
if redis.call('EXISTS', KEYS[4]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[4], now[1] .. string.format('%06d', tonumber(now[2])))
  lost = 1
end
local written = {}
for k = 6, #KEYS do
  local a = 7 + (k - 6) * 3
  local newest = redis.call('ZRANGE', KEYS[k], -1, -1, 'WITHSCORES')
  if #newest == 0 or tonumber(newest[2]) < t then
    redis.call('ZADD', KEYS[k], t, ARGV[a + 1])
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', ARGV[2])
    redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 2])
    written[#written + 1] = ARGV[a + 1]
  end
end
if #written > 0 then
  local payload = '[' .. table.concat(written, ',') .. ']'
  if ARGV[3] == '1' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'points', payload)
  end
  redis.call(ARGV[6], KEYS[3], payload)
end
return {#written, lost}
"#;

impl RedisStore {
    /// Writes one tick (see [`TICK_SCRIPT`]), one script per group, the
    /// groups concurrently. `generation` is the writer's lease generation.
    pub async fn write_tick(
        &self,
        time: UnixSeconds,
        window_seconds: u32,
        entries: &[TickEntry],
        archive: Option<u64>,
        generation: u64,
    ) -> Result<TickOutcome> {
        if entries.is_empty() {
            return Ok(TickOutcome::default());
        }
        let publish = if self.backend.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let groups = self.by_group(entries.iter().map(|e| (e.point.asset_id, e)));
        let writes = groups.iter().map(|(group, entries)| {
            let mut inv = self.tick_script.prepare_invoke();
            inv.key(self.keys.latest(*group))
                .key(self.keys.archive(*group))
                .key(self.keys.live(*group))
                .key(self.keys.epoch(*group))
                .key(self.keys.fence(*group))
                .arg(time)
                .arg(time - i64::from(window_seconds))
                .arg(if archive.is_some() { "1" } else { "0" })
                .arg(archive.unwrap_or(0))
                .arg(generation)
                .arg(publish);
            for e in entries {
                inv.key(self.keys.points(e.point.asset_id))
                    .arg(e.point.asset_id)
                    .arg(to_json(&e.point))
                    .arg(to_json(&e.quote));
            }
            async move {
                let mut conn = self.conn().await?;
                let reply: (i64, u64) = inv.invoke_async(&mut conn).await?;
                Ok::<_, RedisError>(reply)
            }
        });
        let mut outcome = TickOutcome::default();
        for (written, other) in try_join_all(writes).await? {
            if written < 0 {
                // A group refused (others may have taken theirs).
                outcome.fenced_by = outcome.fenced_by.max(Some(other));
            } else {
                outcome.written += written as usize;
                outcome.data_lost |= other == 1;
            }
        }
        Ok(outcome)
    }

    /// Writes past points (oldest first, grouped by second) into the windows
    /// and, when `archive` is set, into the archive buffer. Live subscribers
    /// are not told: these seconds are history.
    pub async fn write_backfill(
        &self,
        seconds: &[Vec<Point>],
        now: UnixSeconds,
        window_seconds: u32,
        archive: Option<u64>,
    ) -> Result<()> {
        const CHUNK_SECONDS: usize = 300;
        let cutoff = now - i64::from(window_seconds);
        for chunk in seconds.chunks(CHUNK_SECONDS) {
            let groups = self.by_group(chunk.iter().flatten().map(|p| (p.asset_id, p)));
            let writes = groups.iter().map(|(group, points)| async move {
                let mut pipe = redis::pipe();
                let mut all = Vec::with_capacity(points.len());
                for point in points {
                    let json = to_json(point);
                    pipe.zadd(self.keys.points(point.asset_id), &json, point.time)
                        .ignore();
                    all.push(json);
                }
                if let Some(maxlen) = archive {
                    pipe.cmd("XADD")
                        .arg(self.keys.archive(*group))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(maxlen)
                        .arg("*")
                        .arg("points")
                        .arg(format!("[{}]", all.join(",")))
                        .ignore();
                }
                let mut ids: Vec<AssetId> = points.iter().map(|p| p.asset_id).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    pipe.zrembyscore(self.keys.points(id), "-inf", cutoff)
                        .ignore();
                }
                let mut conn = self.conn().await?;
                let _: () = pipe.query_async(&mut conn).await?;
                Ok::<_, RedisError>(())
            });
            try_join_all(writes).await?;
        }
        Ok(())
    }
}

//! HTTP caching: the latest-rates answers, built once per tick per process,
//! and `ETag` / `If-None-Match` / `Cache-Control` for every cacheable GET.
//!
//! Rates change once a second, so `/api/v1/rates` and `/api/v1/rates/{symbol}`
//! are served from a snapshot: the first request after a tick reached this
//! process (through the live feed) or after the second turned rebuilds it
//! with one Redis round trip; everyone else gets the prepared bytes. A
//! snapshot is never older than the newest second in Redis by more than one
//! tick.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::rest::{Rate, RateList};
use crate::domain::{AssetId, Catalog, UnixSeconds};
use crate::live::LiveHub;
use crate::store::{RedisError, RedisStore};
use crate::worker::unix_now;

/// A prepared JSON body and its entity tag.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Prepared {
    pub fn json<T: serde::Serialize>(value: &T) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let etag = etag_of(&body);
        Self { body, etag }
    }

    /// 200 with the body, or 304 when the client holds this version.
    pub fn respond(&self, request: &HeaderMap, max_age: u32) -> Response {
        let cache_control = match max_age {
            1 => HeaderValue::from_static("public, max-age=1"),
            60 => HeaderValue::from_static("public, max-age=60"),
            300 => HeaderValue::from_static("public, max-age=300"),
            n => HeaderValue::from_str(&format!("public, max-age={n}"))
                .unwrap_or(HeaderValue::from_static("no-cache")),
        };
        let headers = [
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, cache_control),
        ];
        if not_modified(request, &self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Body::from(self.body.clone()),
        )
            .into_response()
    }
}

/// A strong tag from a 64-bit FNV-1a hash of the body.
fn etag_of(body: &[u8]) -> HeaderValue {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    HeaderValue::from_str(&format!("\"{h:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-None-Match` names this tag (weakly compared, as RFC 9110 asks for GET).
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
        })
    })
}

/// The latest rates of every asset, prepared.
#[derive(Debug)]
pub struct Snapshot {
    /// The wall-clock second it was built in.
    pub built: UnixSeconds,
    /// The newest tick the live feed had announced when it was built.
    pub tick: UnixSeconds,
    pub rates: Result<Rates, String>,
}

#[derive(Debug)]
pub struct Rates {
    pub all: Prepared,
    pub by_asset: HashMap<AssetId, Prepared>,
}

pub struct RatesCache {
    catalog: Arc<Catalog>,
    redis: RedisStore,
    stale_after: u32,
    hub: LiveHub,
    current: RwLock<Arc<Snapshot>>,
    rebuild: tokio::sync::Mutex<()>,
}

impl RatesCache {
    pub fn new(catalog: Arc<Catalog>, redis: RedisStore, stale_after: u32, hub: LiveHub) -> Self {
        Self {
            catalog,
            redis,
            stale_after,
            hub,
            current: RwLock::new(Arc::new(Snapshot {
                built: UnixSeconds::MIN,
                tick: UnixSeconds::MIN,
                rates: Err("not built yet".into()),
            })),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: UnixSeconds) -> Option<Arc<Snapshot>> {
        let snap = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (snap.built >= now && snap.tick >= self.hub.latest_tick()).then_some(snap)
    }

    /// The current snapshot, rebuilt first when a tick arrived or the second
    /// turned since it was built. One request rebuilds; the others wait for
    /// it rather than all asking Redis.
    pub async fn get(&self) -> Arc<Snapshot> {
        let now = unix_now();
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        let _one = self.rebuild.lock().await;
        if let Some(snap) = self.fresh(now) {
            return snap;
        }
        // Read before Redis: a tick landing during the build marks it old.
        let tick = self.hub.latest_tick();
        let snap = Arc::new(Snapshot {
            built: now,
            tick,
            rates: self.build(now).await.map_err(|e| e.to_string()),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        snap
    }

    async fn build(&self, now: UnixSeconds) -> Result<Rates, RedisError> {
        let quotes = self.redis.latest_all().await?;
        let rates: Vec<Rate> = quotes
            .into_iter()
            .filter_map(|q| {
                let asset = self.catalog.by_id(q.asset_id)?;
                Some(Rate::new(asset, q, now, self.stale_after))
            })
            .collect();
        let by_asset = rates
            .iter()
            .map(|r| (r.asset_id, Prepared::json(r)))
            .collect();
        Ok(Rates {
            all: Prepared::json(&RateList { rates }),
            by_asset,
        })
    }
}

/// The WebSocket history of each asset, read from Redis at most once per
/// tick however many clients subscribe at once: after a restart or a
/// Redis outage every client reconnects in the same second, and 10,000
/// reads of a 130 KB window exhaust the Redis pool (measured: a third of
/// them got "history unavailable" before this cache).
///
/// Gapless handoff still holds. A subscriber attaches to the live feed,
/// then asks for a history covering `newest`, the newest second the feed
/// had announced by then; any later point is sent on the feed after it
/// attached. A cached history that ends before `newest` is read again.
pub struct HistoryCache {
    slots: HashMap<AssetId, tokio::sync::Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    history: Option<Arc<History>>,
    /// The second a read last failed in: others fail fast until it turns.
    failed_in: Option<UnixSeconds>,
}

/// An asset's window, ready to send.
#[derive(Debug)]
pub struct History {
    /// `{"action":"asset_history","message":{"points":[...]}}`
    pub frame: Bytes,
    /// The newest second in it.
    pub last: Option<UnixSeconds>,
    /// The second it was read in.
    read_in: UnixSeconds,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history is unavailable right now; subscribe again shortly")]
    Unavailable,
    #[error("history could not be read")]
    Corrupt,
}

impl HistoryCache {
    pub fn new(catalog: &Catalog) -> Self {
        let slots = catalog
            .assets()
            .iter()
            .map(|a| (a.id, tokio::sync::Mutex::default()))
            .collect();
        Self { slots }
    }

    /// The last `window_seconds` of `asset`, ending no earlier than `newest`.
    pub async fn get(
        &self,
        redis: &RedisStore,
        asset: AssetId,
        window_seconds: u32,
        newest: UnixSeconds,
    ) -> Result<Arc<History>, HistoryError> {
        let Some(slot) = self.slots.get(&asset) else {
            return Err(HistoryError::Unavailable);
        };
        // One reader per asset; the others wait here and take its result.
        let mut slot = slot.lock().await;
        let now = unix_now();
        if let Some(h) = &slot.history
            && h.read_in >= now - 1
            && h.last.unwrap_or(UnixSeconds::MIN) >= newest
        {
            return Ok(h.clone());
        }
        if slot.failed_in == Some(now) {
            return Err(HistoryError::Unavailable);
        }
        let since = now - i64::from(window_seconds);
        let members = match redis.window_after(asset, since).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read history for a subscribe");
                slot.failed_in = Some(now);
                return Err(HistoryError::Unavailable);
            }
        };
        let last = match members.last() {
            None => None,
            Some(m) => match redis.parse_points(asset, std::slice::from_ref(m)) {
                Ok(p) => p.first().map(|p| p.time),
                Err(e) => {
                    tracing::error!(error = %e, "corrupt history");
                    return Err(HistoryError::Corrupt);
                }
            },
        };
        let history = Arc::new(History {
            frame: Bytes::from(history_frame(&members)),
            last,
            read_in: now,
        });
        slot.history = Some(history.clone());
        slot.failed_in = None;
        Ok(history)
    }
}

/// `{"action":"asset_history","message":{"points":[...]}}` from the stored
/// point JSON, without parsing it.
fn history_frame(members: &[String]) -> String {
    let body: usize = members.iter().map(|m| m.len() + 1).sum();
    let mut out = String::with_capacity(body + 64);
    out.push_str(r#"{"action":"asset_history","message":{"points":["#);
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push_str("]}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn if_none_match_forms() {
        let p = Prepared::json(&serde_json::json!({"a": 1}));
        let tag = p.etag.to_str().unwrap().to_owned();
        let req = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(not_modified(&req(&tag), &p.etag));
        assert!(not_modified(&req(&format!("W/{tag}")), &p.etag));
        assert!(not_modified(&req(&format!("\"x\", {tag}")), &p.etag));
        assert!(not_modified(&req("*"), &p.etag));
        assert!(!not_modified(&req("\"other\""), &p.etag));
        assert!(!not_modified(&HeaderMap::new(), &p.etag));
        assert_eq!(p.respond(&req(&tag), 1).status(), StatusCode::NOT_MODIFIED);
        let ok = p.respond(&HeaderMap::new(), 1);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, max-age=1");
    }

    #[test]
    fn etags_differ_with_the_body() {
        assert_ne!(Prepared::json(&1).etag, Prepared::json(&2).etag);
    }

    #[test]
    fn history_frame_wraps_stored_points() {
        let members = vec![
            r#"{"assetName":"EURUSD","time":1,"assetId":1,"value":1.1}"#.to_owned(),
            r#"{"assetName":"EURUSD","time":2,"assetId":1,"value":1.2}"#.to_owned(),
        ];
        let v: Value = serde_json::from_str(&history_frame(&members)).unwrap();
        assert_eq!(v["action"], "asset_history");
        assert_eq!(v["message"]["points"][1]["time"], 2);
        let empty: Value = serde_json::from_str(&history_frame(&[])).unwrap();
        assert_eq!(empty["message"]["points"], serde_json::json!([]));
    }
}

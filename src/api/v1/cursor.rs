//! The opaque history cursor: where the next page starts, bound to the
//! asset and the range it was issued for, and signed (HMAC-SHA256 with the
//! deployment's key) so that a client can neither edit nor forge one.
//!
//! A cursor is `base64url("v2:ASSET:AFTER:FROM:TO:MAC")`, MAC the first 16
//! bytes of the HMAC of the text before it, in hex. What it decodes to is
//! checked as well: `0 <= from <= after < to`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::{AssetId, UnixSeconds};
use crate::hash::{from_hex, to_hex};

/// Bytes of the MAC a cursor carries (128 bits).
const MAC_BYTES: usize = 16;

/// The key cursors are signed with. Every API node of a deployment needs
/// the same one (`RATES_CURSOR_KEY`) to accept the others' cursors.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// A key of 32 random bytes, for a deployment that set none: its
    /// cursors are good on this process until it restarts.
    pub fn random() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// A key of its own for another kind of page (`"candles:1h"`), derived
    /// from this one: a cursor issued for one kind is refused by every
    /// other.
    pub fn scoped(&self, scope: &str) -> Self {
        Self(
            self.hmac(&format!("scope:{scope}"))
                .finalize()
                .into_bytes()
                .to_vec(),
        )
    }

    fn hmac(&self, text: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length; `new_from_slice` cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(text.as_bytes());
        mac
    }

    /// The tag a cursor carries: the MAC's first [`MAC_BYTES`] bytes.
    fn mac(&self, text: &str) -> [u8; MAC_BYTES] {
        let full = self.hmac(text).finalize().into_bytes();
        let mut out = [0; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// Whether `tag` is `text`'s, compared in constant time by the `hmac`
    /// crate, so that a tag cannot be guessed byte by byte.
    fn signed(&self, text: &str, tag: &[u8; MAC_BYTES]) -> bool {
        self.hmac(text).verify_truncated_left(tag).is_ok()
    }
}

/// Where the next page starts, bound to the asset and range it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub asset: AssetId,
    /// The last second the previous page returned.
    pub after: UnixSeconds,
    pub from: UnixSeconds,
    pub to: UnixSeconds,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cursor is malformed or was not issued for this query")]
pub struct BadCursor;

impl Cursor {
    const VERSION: &'static str = "v2";

    pub fn encode(&self, key: &CursorKey) -> String {
        let body = format!(
            "{}:{}:{}:{}:{}",
            Self::VERSION,
            self.asset,
            self.after,
            self.from,
            self.to
        );
        let mac = to_hex(&key.mac(&body));
        URL_SAFE_NO_PAD.encode(format!("{body}:{mac}"))
    }

    /// The cursor in `raw` if `key` signed it for `asset` and it is
    /// consistent; `BadCursor` for anything else.
    pub fn decode(raw: &str, key: &CursorKey, asset: AssetId) -> Result<Self, BadCursor> {
        if raw.len() > 200 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let (body, mac) = text.rsplit_once(':').ok_or(BadCursor)?;
        if !unhex(mac).is_some_and(|tag| key.signed(body, &tag)) {
            return Err(BadCursor);
        }
        let mut parts = body.split(':');
        if parts.next() != Some(Self::VERSION) {
            return Err(BadCursor);
        }
        let signed_asset: AssetId = parts.next().and_then(|p| p.parse().ok()).ok_or(BadCursor)?;
        let mut next = || -> Result<UnixSeconds, BadCursor> {
            parts.next().and_then(|p| p.parse().ok()).ok_or(BadCursor)
        };
        let cursor = Self {
            asset: signed_asset,
            after: next()?,
            from: next()?,
            to: next()?,
        };
        if parts.next().is_some()
            || cursor.asset != asset
            || cursor.from < 0
            || cursor.after < cursor.from
            || cursor.after >= cursor.to
        {
            return Err(BadCursor);
        }
        Ok(cursor)
    }
}

/// A tag as [`to_hex`] writes it: exactly [`MAC_BYTES`] bytes in
/// lowercase hex.
fn unhex(text: &str) -> Option<[u8; MAC_BYTES]> {
    if text.bytes().any(|d| d.is_ascii_uppercase()) {
        return None;
    }
    from_hex(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::new(b"test key")
    }

    #[test]
    fn a_scoped_cursor_is_good_in_its_scope_only() {
        let c = Cursor {
            asset: 1,
            after: 120,
            from: 60,
            to: 600,
        };
        let (m1, h1) = (key().scoped("candles:1m"), key().scoped("candles:1h"));
        let raw = c.encode(&m1);
        assert_eq!(Cursor::decode(&raw, &m1, 1), Ok(c));
        assert_eq!(Cursor::decode(&raw, &h1, 1), Err(BadCursor));
        assert_eq!(
            Cursor::decode(&raw, &key(), 1),
            Err(BadCursor),
            "not a history cursor"
        );
        assert_eq!(Cursor::decode(&c.encode(&key()), &m1, 1), Err(BadCursor));
    }

    /// A cursor body signed with `key`, whatever it says.
    fn signed(key: &CursorKey, body: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{body}:{}", to_hex(&key.mac(body))))
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            asset: 1,
            after: 1_700_000_100,
            from: 1_700_000_000,
            to: 1_700_001_000,
        };
        let encoded = c.encode(&key());
        assert!(
            encoded
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
        assert_eq!(Cursor::decode(&encoded, &key(), 1), Ok(c));
    }

    #[test]
    fn a_cursor_is_good_for_its_asset_and_key_only() {
        let c = Cursor {
            asset: 1,
            after: 100,
            from: 50,
            to: 200,
        };
        let encoded = c.encode(&key());
        assert_eq!(Cursor::decode(&encoded, &key(), 2), Err(BadCursor));
        assert_eq!(
            Cursor::decode(&encoded, &CursorKey::new(b"another key"), 1),
            Err(BadCursor)
        );
        let random = CursorKey::random();
        assert_eq!(Cursor::decode(&c.encode(&random), &random, 1), Ok(c));
        assert_eq!(Cursor::decode(&encoded, &random, 1), Err(BadCursor));
    }

    #[test]
    fn forged_cursors_are_refused() {
        let key = key();
        let good = Cursor {
            asset: 1,
            after: 100,
            from: 50,
            to: 200,
        }
        .encode(&key);
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&good).unwrap()).unwrap();
        let edited = URL_SAFE_NO_PAD.encode(text.replace(":100:", ":101:"));
        // The old unkeyed form, and its forged extreme from the report.
        let unkeyed = URL_SAFE_NO_PAD
            .encode("v1:-9223372036854775808:-9223372036854775808:9223372036854775807");
        for forged in [
            "",
            "abc",
            "!!!",
            &good[..good.len() - 2],
            &edited,
            &unkeyed,
            &URL_SAFE_NO_PAD.encode("v2:1:100:50:200"),
            &URL_SAFE_NO_PAD.encode("v2:1:100:50:200:00000000000000000000000000000000"),
            &"A".repeat(500),
        ] {
            assert_eq!(Cursor::decode(forged, &key, 1), Err(BadCursor), "{forged}");
        }
        // Signed, but inconsistent with itself: refused all the same.
        for body in [
            "v2:1:10:50:200",
            "v2:1:200:50:200",
            "v2:1:60:300:200",
            "v2:1:-9223372036854775808:-9223372036854775808:9223372036854775807",
            "v2:1:100:50:200:7",
            "v1:1:100:50:200",
        ] {
            assert_eq!(
                Cursor::decode(&signed(&key, body), &key, 1),
                Err(BadCursor),
                "{body}"
            );
        }
    }

    #[test]
    fn the_key_is_not_shown() {
        assert_eq!(format!("{:?}", key()), "CursorKey(..)");
    }
}

//! The opaque history cursor: where the next page starts, bound to the
//! range it was issued for, checksummed against edits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::UnixSeconds;
use crate::hash::fnv1a64;

/// Where the next page starts, bound to the query it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last second the previous page returned.
    pub after: UnixSeconds,
    pub from: UnixSeconds,
    pub to: UnixSeconds,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cursor is malformed or was not issued for this query")]
pub struct BadCursor;

impl Cursor {
    const VERSION: &'static str = "v1";

    pub fn encode(&self) -> String {
        let body = format!("{}:{}:{}:{}", Self::VERSION, self.after, self.from, self.to);
        let sum = checksum(&body);
        URL_SAFE_NO_PAD.encode(format!("{body}:{sum:08x}"))
    }

    pub fn decode(raw: &str) -> Result<Self, BadCursor> {
        if raw.len() > 200 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let (body, sum) = text.rsplit_once(':').ok_or(BadCursor)?;
        if u32::from_str_radix(sum, 16).ok() != Some(checksum(body)) || sum.len() != 8 {
            return Err(BadCursor);
        }
        let mut parts = body.split(':');
        if parts.next() != Some(Self::VERSION) {
            return Err(BadCursor);
        }
        let mut next = || -> Result<UnixSeconds, BadCursor> {
            parts.next().and_then(|p| p.parse().ok()).ok_or(BadCursor)
        };
        let cursor = Self {
            after: next()?,
            from: next()?,
            to: next()?,
        };
        if parts.next().is_some()
            || cursor.from > cursor.to
            || cursor.after < cursor.from
            || cursor.after >= cursor.to
        {
            return Err(BadCursor);
        }
        Ok(cursor)
    }
}

/// FNV-1a, folded to 32 bits: catches edited or truncated cursors. The
/// cursor grants nothing, so it needs no secret.
fn checksum(s: &str) -> u32 {
    let h = fnv1a64(s.as_bytes());
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            after: 1_700_000_100,
            from: 1_700_000_000,
            to: 1_700_001_000,
        };
        let encoded = c.encode();
        assert!(
            encoded
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
        assert_eq!(Cursor::decode(&encoded), Ok(c));
    }

    #[test]
    fn forged_cursors_are_refused() {
        let good = Cursor {
            after: 100,
            from: 50,
            to: 200,
        }
        .encode();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&good).unwrap()).unwrap();
        let edited = URL_SAFE_NO_PAD.encode(text.replace(":100:", ":101:"));
        for forged in [
            "",
            "abc",
            "!!!",
            &good[..good.len() - 2],
            &edited,
            &URL_SAFE_NO_PAD.encode("v1:100:50:200"),
            &URL_SAFE_NO_PAD.encode("v1:x:50:200:00000000"),
            &"A".repeat(500),
        ] {
            assert_eq!(Cursor::decode(forged), Err(BadCursor), "{forged}");
        }
        // Well-formed but inconsistent with itself.
        for (after, from, to) in [(10, 50, 200), (200, 50, 200), (60, 300, 200)] {
            let body = format!("v1:{after}:{from}:{to}");
            let raw = URL_SAFE_NO_PAD.encode(format!("{body}:{:08x}", checksum(&body)));
            assert_eq!(Cursor::decode(&raw), Err(BadCursor), "{body}");
        }
    }
}

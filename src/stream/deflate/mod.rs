//! WebSocket compression (RFC 7692, `permessage-deflate`), done over the
//! outbox's prepared frames, since tungstenite 0.29 has none:
//!
//! - **Negotiation** ([`negotiate`]): accepted when the client offers it
//!   (and `RATES_WS_DEFLATE` is on), always with `server_no_context_takeover`,
//!   so that every message the server compresses stands alone and the same
//!   compressed bytes can go to every subscriber: a history or a large
//!   frame is compressed once, not once per connection ([`compress`]).
//!   Small messages (live points, answers) go uncompressed, which the
//!   extension allows message by message.
//! - **Client frames** ([`Inflater`]): a client may compress what it sends;
//!   its frames are inflated below tungstenite and handed on as the plain
//!   frames tungstenite reads. The client's context (its window) is kept
//!   from message to message unless it agreed to `client_no_context_takeover`;
//!   the inflater is made on a connection's first compressed frame only.

mod inflater;

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

pub use self::inflater::Inflater;

/// Messages shorter than this go uncompressed: the frame header and the
/// deflate block would eat most of the gain, and live points are this small.
pub const MIN_COMPRESSED: usize = 512;

/// The tail a sync flush ends with, which RFC 7692 leaves off the wire.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The client compresses each message alone too.
    pub client_no_context_takeover: bool,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` of the 101 answer.
    pub fn header(self) -> HeaderValue {
        if self.client_no_context_takeover {
            HeaderValue::from_static(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            )
        } else {
            HeaderValue::from_static("permessage-deflate; server_no_context_takeover")
        }
    }
}

/// The first `permessage-deflate` offer of the request that the server can
/// take: one that does not ask the server for a smaller window than its
/// compressor's (32 KiB) and names no parameter the RFC does not define.
pub fn negotiate(headers: &HeaderMap) -> Option<Negotiated> {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
                return None;
            }
            let mut agreed = Negotiated {
                client_no_context_takeover: false,
            };
            // RFC 7692 7: an offer naming a parameter twice, or with a
            // value out of its range, is declined.
            let mut seen = Vec::new();
            for param in parts.filter(|p| !p.is_empty()) {
                let (name, value) = match param.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (param, None),
                };
                let name = name.to_ascii_lowercase();
                if seen.contains(&name) {
                    return None;
                }
                match (name.as_str(), value) {
                    ("server_no_context_takeover", None) => {}
                    ("client_no_context_takeover", None) => {
                        agreed.client_no_context_takeover = true;
                    }
                    // The client may use any window up to 32 KiB: inflating
                    // takes them all.
                    ("client_max_window_bits", None) => {}
                    ("client_max_window_bits", Some(bits))
                        if bits.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b))
                            && !bits.starts_with('0') => {}
                    // Compressing with a smaller window than 32 KiB is not
                    // offered: decline this offer.
                    ("server_max_window_bits", Some("15")) => {}
                    _ => return None,
                }
                seen.push(name);
            }
            Some(agreed)
        })
}

/// `payload` deflated alone (no context taken over), as a compressed
/// message's payload: the sync flush's tail left off.
pub fn compress(payload: &[u8]) -> Bytes {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() / 4 + 64);
    let mut input = payload;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = c.total_in();
        // Writing into a Vec with room left cannot fail for a raw stream.
        let _ = c.compress_vec(input, &mut out, FlushCompress::Sync);
        let taken = usize::try_from(c.total_in() - before).unwrap_or(input.len());
        input = &input[taken..];
        if input.is_empty() && out.ends_with(&TAIL) {
            break;
        }
    }
    out.truncate(out.len() - TAIL.len());
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(v: &'static str) -> Option<Negotiated> {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(v),
        );
        negotiate(&h)
    }

    #[test]
    fn offers_are_taken_as_the_rfc_says() {
        let agreed = Negotiated {
            client_no_context_takeover: false,
        };
        let plain = Some(agreed);
        // Chromium's and Python websockets' offers.
        assert_eq!(offered("permessage-deflate; client_max_window_bits"), plain);
        assert_eq!(
            offered("permessage-deflate; server_max_window_bits=15; client_max_window_bits"),
            plain
        );
        assert_eq!(
            offered("permessage-deflate; client_no_context_takeover")
                .map(|n| n.client_no_context_takeover),
            Some(true)
        );
        assert_eq!(offered("x-webkit-deflate-frame"), None);
        assert_eq!(
            offered("permessage-deflate; server_max_window_bits=10"),
            None
        );
        assert_eq!(offered("permessage-deflate; unheard_of"), None);
        // Values out of range and parameters named twice are declined.
        assert_eq!(
            offered("permessage-deflate; client_max_window_bits=12"),
            plain
        );
        for bad in [
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=015",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=15",
        ] {
            assert_eq!(offered(bad), None, "{bad}");
        }
        // A second offer is taken when the first cannot be.
        assert_eq!(
            offered("permessage-deflate; server_max_window_bits=9, permessage-deflate"),
            plain
        );
        assert_eq!(negotiate(&HeaderMap::new()), None);
        assert!(
            agreed
                .header()
                .to_str()
                .unwrap()
                .contains("server_no_context_takeover")
        );
    }
}

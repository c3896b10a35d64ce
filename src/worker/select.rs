//! Which source serves each asset this tick: the highest-priority one with
//! a fresh quote. Failover and recovery are this rule applied every second.

use std::collections::HashMap;

use crate::domain::{AssetId, BidAsk, Catalog, UnixSeconds, is_fresh};

/// What a source last told us about an asset.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub quote: BidAsk,
    /// The tick second of the fetch that returned it.
    pub at: UnixSeconds,
}

/// An asset's quote for one tick and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selected {
    pub asset_id: AssetId,
    pub source: usize,
    pub quote: BidAsk,
    pub quoted_at: UnixSeconds,
}

/// For every catalog asset, the quote of the highest-priority source whose
/// last quote is no older than `stale_after` seconds at `second`. Assets
/// with no fresh quote anywhere get nothing: no invented points.
pub fn select_quotes(
    catalog: &Catalog,
    books: &[HashMap<AssetId, Seen>],
    second: UnixSeconds,
    stale_after: u32,
) -> Vec<Selected> {
    catalog
        .assets()
        .iter()
        .filter_map(|asset| {
            books.iter().enumerate().find_map(|(source, book)| {
                let seen = book.get(&asset.id)?;
                is_fresh(seen.at, second, stale_after).then_some(Selected {
                    asset_id: asset.id,
                    source,
                    quote: seen.quote,
                    quoted_at: seen.at,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn seen(bid: f64, at: UnixSeconds) -> Seen {
        Seen {
            quote: BidAsk::new(bid, bid + 0.0002).unwrap(),
            at,
        }
    }

    #[test]
    fn selection_prefers_the_best_fresh_source() {
        let catalog = Catalog::with_extra("").unwrap();
        let primary: HashMap<_, _> = [(1, seen(1.1, 100)), (2, seen(150.0, 85))].into();
        let fallback: HashMap<_, _> = [(1, seen(1.2, 100)), (2, seen(151.0, 100))].into();
        let books = [primary, fallback];
        let s = select_quotes(&catalog, &books, 100, 10);
        assert_eq!(s.len(), 2, "assets 3-5 have no quote: nothing invented");
        assert_eq!((s[0].asset_id, s[0].source), (1, 0));
        // Primary's USDJPY is 15 s old: the fallback serves it.
        assert_eq!((s[1].asset_id, s[1].source, s[1].quoted_at), (2, 1, 100));
        // At the limit a quote is still fresh; one second beyond, it is not.
        assert_eq!(select_quotes(&catalog, &books, 110, 10).len(), 2);
        assert_eq!(select_quotes(&catalog, &books, 111, 10).len(), 0);
    }
}

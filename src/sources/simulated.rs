//! `simulated`: a seeded random walk around realistic prices, for demos and
//! tests. Every quote it makes is labelled `simulated`, and the service warns
//! at start while it is in use.

use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Source, SourceError, SourceQuote};
use crate::domain::{AssetId, BidAsk, Catalog, round6};

/// Standard deviation of one second's relative move (about half a pip on
/// EURUSD), and how strongly the walk is pulled back to its starting price.
const VOLATILITY: f64 = 0.000_04;
const REVERSION: f64 = 0.000_5;
/// Relative bid/ask spread.
const SPREAD: f64 = 0.000_02;

pub struct Simulated {
    state: Mutex<Walk>,
}

struct Walk {
    rng: SmallRng,
    /// (asset, starting price, current mid)
    assets: Vec<(AssetId, f64, f64)>,
}

impl Walk {
    fn step(&mut self, price: f64, base: f64) -> f64 {
        // Uniform on [-1, 1] has variance 1/3; scale to VOLATILITY.
        let shock: f64 = self.rng.random_range(-1.0..=1.0) * VOLATILITY * 3f64.sqrt();
        let pull = (base - price) / base * REVERSION;
        price * (1.0 + shock + pull)
    }
}

fn quote(mid: f64) -> BidAsk {
    let half = mid * SPREAD / 2.0;
    BidAsk::new(round6(mid - half), round6(mid + half)).unwrap_or(BidAsk { bid: mid, ask: mid })
}

impl Simulated {
    pub fn new(catalog: &Catalog) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        Self::with_seed(catalog, seed)
    }

    pub fn with_seed(catalog: &Catalog, seed: u64) -> Self {
        let assets = catalog
            .assets()
            .iter()
            .map(|a| (a.id, a.simulated_price, a.simulated_price))
            .collect();
        Self {
            state: Mutex::new(Walk {
                rng: SmallRng::seed_from_u64(seed),
                assets,
            }),
        }
    }

    /// Advances the walk one second and returns every asset's quote.
    pub fn next_quotes(&self) -> Vec<SourceQuote> {
        let mut walk = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(walk.assets.len());
        for i in 0..walk.assets.len() {
            let (asset_id, base, price) = walk.assets[i];
            let next = walk.step(price, base);
            walk.assets[i].2 = next;
            out.push(SourceQuote {
                asset_id,
                quote: quote(next),
            });
        }
        out
    }

    /// Quotes for the `seconds` seconds before now, oldest first, ending where
    /// the live walk stands so the chart joins up with the first live point.
    pub fn backfill(&self, seconds: usize) -> Vec<Vec<SourceQuote>> {
        let mut walk = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut current: Vec<f64> = walk.assets.iter().map(|a| a.2).collect();
        let mut history = Vec::with_capacity(seconds);
        for _ in 0..seconds {
            let mut second = Vec::with_capacity(current.len());
            for (i, price) in current.iter_mut().enumerate() {
                let (asset_id, base, _) = walk.assets[i];
                *price = walk.step(*price, base);
                second.push(SourceQuote {
                    asset_id,
                    quote: quote(*price),
                });
            }
            history.push(second);
        }
        history.reverse();
        history
    }
}

impl Source for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Vec<SourceQuote>, SourceError>> {
        let quotes = self.next_quotes();
        async move { Ok(quotes) }.boxed()
    }

    fn as_simulated(&self) -> Option<&Simulated> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stays_near_realistic_prices() {
        let catalog = Catalog::with_extra("6:BTCUSDT").unwrap();
        let sim = Simulated::with_seed(&catalog, 7);
        let mut last = Vec::new();
        for _ in 0..3600 {
            last = sim.next_quotes();
        }
        assert_eq!(last.len(), 6);
        for q in &last {
            let base = catalog.by_id(q.asset_id).unwrap().simulated_price;
            let mid = q.quote.mid();
            assert!(
                (mid / base - 1.0).abs() < 0.05,
                "asset {} drifted to {mid}",
                q.asset_id
            );
            assert!(q.quote.bid < q.quote.ask);
        }
    }

    #[test]
    fn backfill_is_oldest_first_and_joins_the_live_walk() {
        let catalog = Catalog::with_extra("").unwrap();
        let sim = Simulated::with_seed(&catalog, 1);
        let history = sim.backfill(1800);
        assert_eq!(history.len(), 1800);
        assert!(history.iter().all(|s| s.len() == 5));
        let newest = history.last().unwrap()[0].quote.mid();
        let live = sim.next_quotes()[0].quote.mid();
        // One second apart: the two values differ by a single step at most.
        assert!(
            (newest / live - 1.0).abs() < 10.0 * VOLATILITY,
            "{newest} vs {live}"
        );
    }
}

//! Conversion between currencies: each asset with a `pair` prices its base
//! in its quote; a rate is a direct pair, its inverse, or a chain of two
//! pairs through a common currency, the shortest first.

use std::collections::HashMap;

use super::{Asset, AssetId, Catalog};

/// One step of a conversion: an asset's value, or its inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub asset: AssetId,
    /// The step goes from the asset's quote to its base: `1 / value`.
    pub inverse: bool,
}

/// The currencies of a catalog and the assets between them, built once.
#[derive(Debug, Clone, Default)]
pub struct Converter {
    /// Per currency: the assets that price it, with the other currency and
    /// the step from this one to that one, in catalog order.
    edges: HashMap<String, Vec<(String, Leg)>>,
}

impl Converter {
    pub fn new(catalog: &Catalog) -> Self {
        let mut edges: HashMap<String, Vec<(String, Leg)>> = HashMap::new();
        for Asset { id, pair, .. } in catalog.assets() {
            let Some((base, quote)) = pair else { continue };
            edges.entry(base.clone()).or_default().push((
                quote.clone(),
                Leg {
                    asset: *id,
                    inverse: false,
                },
            ));
            edges.entry(quote.clone()).or_default().push((
                base.clone(),
                Leg {
                    asset: *id,
                    inverse: true,
                },
            ));
        }
        Self { edges }
    }

    /// Whether an asset names `currency` (upper case).
    pub fn knows(&self, currency: &str) -> bool {
        self.edges.contains_key(currency)
    }

    /// The shortest chain of steps from `from` to `to` (both known): empty
    /// when they are the same currency, one step for a pair or its
    /// inverse, two through a common currency; `None` when no chain of at
    /// most two steps joins them. Among chains of one length, the one with
    /// the earliest assets in catalog order.
    pub fn path(&self, from: &str, to: &str) -> Option<Vec<Leg>> {
        if from == to {
            return Some(Vec::new());
        }
        let steps = self.edges.get(from)?;
        if let Some((_, leg)) = steps.iter().find(|(other, _)| other == to) {
            return Some(vec![*leg]);
        }
        steps
            .iter()
            .filter_map(|(mid, first)| {
                let (_, second) = self.edges.get(mid)?.iter().find(|(x, _)| x == to)?;
                Some(vec![*first, *second])
            })
            .min_by_key(|legs| (legs[0].asset, legs[1].asset))
    }
}

/// The rate of a chain given each step's asset value: the product of the
/// values and inverses; `None` when a value is not a positive number.
pub fn rate(legs: &[Leg], value_of: impl Fn(AssetId) -> Option<f64>) -> Option<f64> {
    legs.iter().try_fold(1.0, |acc, leg| {
        let v = value_of(leg.asset).filter(|v| v.is_finite() && *v > 0.0)?;
        Some(if leg.inverse { acc / v } else { acc * v })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converter() -> Converter {
        Converter::new(&Catalog::with_extra("6:BTCUSDT:base=BTC;quote=USDT").unwrap())
    }

    fn ids(legs: &[Leg]) -> Vec<(AssetId, bool)> {
        legs.iter().map(|l| (l.asset, l.inverse)).collect()
    }

    #[test]
    fn shortest_chains() {
        let c = converter();
        assert_eq!(ids(&c.path("EUR", "USD").unwrap()), [(1, false)]);
        assert_eq!(ids(&c.path("JPY", "USD").unwrap()), [(2, true)]);
        assert_eq!(
            ids(&c.path("EUR", "JPY").unwrap()),
            [(1, false), (2, false)]
        );
        assert_eq!(
            ids(&c.path("GBP", "CAD").unwrap()),
            [(3, false), (5, false)]
        );
        assert_eq!(ids(&c.path("JPY", "AUD").unwrap()), [(2, true), (4, true)]);
        assert!(c.path("EUR", "EUR").unwrap().is_empty());
        assert_eq!(c.path("EUR", "BTC"), None, "no chain of two");
        assert_eq!(c.path("XXX", "USD"), None);
        assert!(c.knows("USDT") && !c.knows("XXX"));
    }

    #[test]
    fn rates_multiply_and_invert() {
        let values = |id| match id {
            1 => Some(1.1),
            2 => Some(150.0),
            3 => Some(0.0),
            _ => None,
        };
        let c = converter();
        let eur_jpy = rate(&c.path("EUR", "JPY").unwrap(), values).unwrap();
        assert!((eur_jpy - 165.0).abs() < 1e-9);
        assert_eq!(
            rate(&c.path("JPY", "USD").unwrap(), values),
            Some(1.0 / 150.0)
        );
        assert_eq!(rate(&[], values), Some(1.0));
        assert_eq!(
            rate(&c.path("GBP", "USD").unwrap(), values),
            None,
            "a zero value"
        );
        assert_eq!(
            rate(&c.path("AUD", "USD").unwrap(), values),
            None,
            "no value"
        );
    }
}

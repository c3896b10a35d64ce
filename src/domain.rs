//! The service's vocabulary: assets and their catalog, symbols as clients
//! write them, upstream quotes, and the per-second points we store and serve.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable numeric id of an asset. Ids never change once given: existing
/// clients hard-code the five seed ids.
pub type AssetId = u32;

/// Unix seconds, UTC.
pub type UnixSeconds = i64;

/// A tradable pair, with the symbol it has at each upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: AssetId,
    pub name: String,
    /// Symbol at each source kind (`fxcm`, `binance`); a source not listed
    /// uses the asset's name.
    pub source_symbols: HashMap<String, String>,
    /// Where the simulated random walk starts.
    pub simulated_price: f64,
}

impl Asset {
    /// The symbol this asset has at the given source kind.
    pub fn symbol_at(&self, source_kind: &str) -> &str {
        self.source_symbols
            .get(source_kind)
            .map(String::as_str)
            .unwrap_or(&self.name)
    }
}

/// The seed catalog: existing clients hard-code these ids and names.
const SEED_ASSETS: [(AssetId, &str, f64); 5] = [
    (1, "EURUSD", 1.08),
    (2, "USDJPY", 150.0),
    (3, "GBPUSD", 1.27),
    (4, "AUDUSD", 0.66),
    (5, "USDCAD", 1.36),
];

/// Realistic starting prices for well-known extra assets; anything else the
/// operator can give with `simulated=PRICE`.
fn default_simulated_price(name: &str) -> f64 {
    match name {
        "BTCUSDT" | "BTCUSD" => 65_000.0,
        "ETHUSDT" | "ETHUSD" => 3_200.0,
        "USDCHF" => 0.88,
        "NZDUSD" => 0.61,
        "EURGBP" => 0.85,
        "EURJPY" => 162.0,
        _ => 100.0,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("asset entry '{0}' is not of the form ID:NAME[:source=symbol;...]")]
    Malformed(String),
    #[error("asset entry '{entry}': {reason}")]
    Invalid { entry: String, reason: String },
    #[error("asset id {0} is used twice")]
    DuplicateId(AssetId),
    #[error("asset name {0} is used twice")]
    DuplicateName(String),
}

/// The assets this deployment serves, ordered by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    assets: Vec<Asset>,
}

impl Catalog {
    /// The five seed assets plus the extra entries of `RATES_EXTRA_ASSETS`:
    /// comma-separated `ID:NAME[:source=symbol;...]`, for example
    /// `6:BTCUSDT:binance=BTCUSDT;simulated=65000`.
    pub fn with_extra(extra: &str) -> Result<Self, CatalogError> {
        let mut assets: Vec<Asset> = SEED_ASSETS
            .iter()
            .map(|&(id, name, price)| Asset {
                id,
                name: name.to_owned(),
                source_symbols: HashMap::new(),
                simulated_price: price,
            })
            .collect();
        for entry in extra.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            assets.push(parse_asset_entry(entry)?);
        }
        Self::new(assets)
    }

    pub fn new(mut assets: Vec<Asset>) -> Result<Self, CatalogError> {
        assets.sort_by_key(|a| a.id);
        for pair in assets.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(CatalogError::DuplicateId(pair[0].id));
            }
        }
        let mut names: Vec<&str> = assets.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(CatalogError::DuplicateName(w[0].to_owned()));
        }
        Ok(Self { assets })
    }

    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    pub fn by_id(&self, id: AssetId) -> Option<&Asset> {
        self.assets
            .binary_search_by_key(&id, |a| a.id)
            .ok()
            .map(|i| &self.assets[i])
    }

    pub fn by_symbol(&self, symbol: &Symbol) -> Option<&Asset> {
        self.by_name(&symbol.0)
    }

    /// The asset with exactly this (canonical) name.
    pub fn by_name(&self, name: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.name == name)
    }
}

fn parse_asset_entry(entry: &str) -> Result<Asset, CatalogError> {
    let mut parts = entry.splitn(3, ':');
    let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
        return Err(CatalogError::Malformed(entry.to_owned()));
    };
    let invalid = |reason: String| CatalogError::Invalid {
        entry: entry.to_owned(),
        reason,
    };
    let id: AssetId = id
        .trim()
        .parse()
        .map_err(|_| invalid(format!("id '{id}' is not a positive integer")))?;
    if id == 0 {
        return Err(invalid("id 0 is reserved".to_owned()));
    }
    let name = Symbol::parse(name).map_err(|e| invalid(e.to_string()))?.0;
    let mut source_symbols = HashMap::new();
    let mut simulated_price = default_simulated_price(&name);
    for mapping in parts.next().unwrap_or("").split(';').map(str::trim) {
        if mapping.is_empty() {
            continue;
        }
        let (source, value) = mapping
            .split_once('=')
            .ok_or_else(|| invalid(format!("'{mapping}' is not source=symbol")))?;
        let (source, value) = (source.trim(), value.trim());
        if source == "simulated" {
            simulated_price = value
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p > 0.0)
                .ok_or_else(|| invalid(format!("simulated price '{value}' is not positive")))?;
        } else if value.is_empty() {
            return Err(invalid(format!("empty symbol for source '{source}'")));
        } else {
            source_symbols.insert(source.to_owned(), value.to_owned());
        }
    }
    Ok(Asset {
        id,
        name,
        source_symbols,
        simulated_price,
    })
}

/// An asset name as a client may write it (`EURUSD`, `eurusd`, `EUR-USD`,
/// `EUR_USD`, `EUR/USD`), normalised to the catalog's spelling. It can only
/// be built by parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Symbol(String);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SymbolError {
    #[error("symbol is empty")]
    Empty,
    #[error("symbol is longer than {max} characters")]
    TooLong { max: usize },
    #[error("symbol may hold only letters, digits and the separators - _ /; found {0:?}")]
    BadCharacter(char),
}

impl Symbol {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, SymbolError> {
        let raw = raw.trim();
        if raw.chars().count() > Self::MAX_LEN {
            return Err(SymbolError::TooLong { max: Self::MAX_LEN });
        }
        let mut out = String::with_capacity(raw.len());
        for c in raw.chars() {
            match c {
                '-' | '_' | '/' => {}
                c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_uppercase()),
                c => return Err(SymbolError::BadCharacter(c)),
            }
        }
        if out.is_empty() {
            return Err(SymbolError::Empty);
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bid/ask pair as an upstream gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BidAsk {
    pub bid: f64,
    pub ask: f64,
}

impl BidAsk {
    /// Accepts only finite, positive prices with `bid <= ask`.
    pub fn new(bid: f64, ask: f64) -> Option<Self> {
        let ok = bid.is_finite() && ask.is_finite() && bid > 0.0 && ask > 0.0 && bid <= ask;
        ok.then_some(Self { bid, ask })
    }

    /// The mid price, rounded to 6 decimals.
    pub fn mid(&self) -> f64 {
        round6((self.bid + self.ask) / 2.0)
    }
}

/// Rounds to 6 decimal places. Dividing the rounded integer by 1e6 gives the
/// double nearest to the 6-decimal number, which serde_json then prints in
/// its shortest form: `1.110481`, never `1.1104815000000001`.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// One asset's value at one whole second: the frame clients get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"assetName": "EURUSD", "time": 1455883484, "assetId": 1, "value": 1.110481}))]
pub struct Point {
    pub asset_name: String,
    /// Unix seconds (UTC) of the tick that produced the point.
    pub time: UnixSeconds,
    pub asset_id: AssetId,
    /// Mid price `(bid + ask) / 2`, rounded to 6 decimal places.
    pub value: f64,
}

/// The latest quote of an asset as the worker stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredQuote {
    pub asset_id: AssetId,
    pub bid: f64,
    pub ask: f64,
    pub value: f64,
    /// The tick second this quote was written for.
    pub time: UnixSeconds,
    /// The tick second of the upstream fetch that returned it: the quote is
    /// stale once this is older than the staleness limit.
    pub quoted_at: UnixSeconds,
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_spellings_normalise() {
        for raw in [
            "EURUSD",
            "eurusd",
            "EUR-USD",
            "EUR_USD",
            "EUR/USD",
            " eur/usd ",
        ] {
            assert_eq!(Symbol::parse(raw).unwrap().as_str(), "EURUSD", "{raw}");
        }
    }

    #[test]
    fn symbol_rejects_junk() {
        assert_eq!(Symbol::parse(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::parse("--"), Err(SymbolError::Empty));
        assert_eq!(
            Symbol::parse("EUR USD"),
            Err(SymbolError::BadCharacter(' '))
        );
        assert_eq!(Symbol::parse("ÉURUSD"), Err(SymbolError::BadCharacter('É')));
        assert!(matches!(
            Symbol::parse(&"A".repeat(33)),
            Err(SymbolError::TooLong { .. })
        ));
    }

    #[test]
    fn mid_is_rounded_without_float_noise() {
        let q = BidAsk::new(1.11047, 1.110493).unwrap();
        assert_eq!(q.mid(), 1.110482);
        assert_eq!(serde_json::to_string(&q.mid()).unwrap(), "1.110482");
        // (1.110481 + 1.110482) / 2 has 7 decimals: it prints with at most 6.
        let q = BidAsk::new(1.110481, 1.110482).unwrap();
        let printed = serde_json::to_string(&q.mid()).unwrap();
        assert!(printed == "1.110481" || printed == "1.110482", "{printed}");
        assert_eq!(
            serde_json::to_string(&round6(114.5100000001)).unwrap(),
            "114.51"
        );
    }

    #[test]
    fn bid_ask_rejects_nonsense() {
        assert!(BidAsk::new(f64::NAN, 1.0).is_none());
        assert!(BidAsk::new(0.0, 1.0).is_none());
        assert!(BidAsk::new(-1.0, 1.0).is_none());
        assert!(BidAsk::new(1.2, 1.1).is_none());
        assert!(BidAsk::new(1.1, f64::INFINITY).is_none());
    }

    #[test]
    fn catalog_has_seeds_and_extras() {
        let c =
            Catalog::with_extra("6:BTCUSDT:binance=BTCUSDT;simulated=60000, 7:eth-usdt").unwrap();
        let names: Vec<_> = c.assets().iter().map(|a| (a.id, a.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (1, "EURUSD"),
                (2, "USDJPY"),
                (3, "GBPUSD"),
                (4, "AUDUSD"),
                (5, "USDCAD"),
                (6, "BTCUSDT"),
                (7, "ETHUSDT")
            ]
        );
        let btc = c.by_id(6).unwrap();
        assert_eq!(btc.symbol_at("binance"), "BTCUSDT");
        assert_eq!(btc.symbol_at("fxcm"), "BTCUSDT");
        assert_eq!(btc.simulated_price, 60000.0);
        assert_eq!(c.by_id(7).unwrap().simulated_price, 3200.0);
        assert_eq!(
            c.by_symbol(&Symbol::parse("usd_jpy").unwrap()).unwrap().id,
            2
        );
    }

    #[test]
    fn catalog_rejects_bad_entries() {
        assert_eq!(
            Catalog::with_extra("1:FOO"),
            Err(CatalogError::DuplicateId(1))
        );
        assert_eq!(
            Catalog::with_extra("9:EURUSD"),
            Err(CatalogError::DuplicateName("EURUSD".into()))
        );
        assert!(matches!(
            Catalog::with_extra("BTC"),
            Err(CatalogError::Malformed(_))
        ));
        assert!(matches!(
            Catalog::with_extra("x:BTC"),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::with_extra("8:BTC:simulated=-3"),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::with_extra("8:BTC:binance"),
            Err(CatalogError::Invalid { .. })
        ));
    }
}

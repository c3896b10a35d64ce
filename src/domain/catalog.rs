//! The assets a deployment serves: the five seed assets and the extra
//! entries of `RATES_EXTRA_ASSETS`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AssetId, Symbol, SymbolError};

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
    /// The currencies it prices, base then quote (`EURUSD`: EUR in USD):
    /// a six-letter name's halves, or `base=`/`quote=` in the catalog
    /// entry; `None` when neither says (the asset takes no part in
    /// conversion).
    pub pair: Option<(String, String)>,
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

/// Why [`Catalog::find`] found no asset.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FindError {
    #[error(transparent)]
    Invalid(#[from] SymbolError),
    /// A well-formed symbol no asset has (normalised).
    #[error("unknown symbol {0}")]
    Unknown(Symbol),
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
                pair: halves(name),
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
        self.by_name(symbol.as_str())
    }

    /// The asset a client's spelling names: the catalog's own name, or
    /// any spelling [`Symbol`] accepts (`eurusd`, `EUR/USD`).
    pub fn find(&self, raw: &str) -> Result<&Asset, FindError> {
        // Most clients write the catalog's own spelling.
        if let Some(asset) = self.by_name(raw) {
            return Ok(asset);
        }
        let symbol = Symbol::parse(raw)?;
        self.by_symbol(&symbol).ok_or(FindError::Unknown(symbol))
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
    if i32::try_from(id).is_err() {
        return Err(invalid(format!("id {id} is larger than {}", i32::MAX)));
    }
    let name = Symbol::parse(name)
        .map_err(|e| invalid(e.to_string()))?
        .as_str()
        .to_owned();
    let mut source_symbols = HashMap::new();
    let mut simulated_price = default_simulated_price(&name);
    let (mut base, mut quote) = (None, None);
    for mapping in parts.next().unwrap_or("").split(';').map(str::trim) {
        if mapping.is_empty() {
            continue;
        }
        let (source, value) = mapping
            .split_once('=')
            .ok_or_else(|| invalid(format!("'{mapping}' is not source=symbol")))?;
        let (source, value) = (source.trim(), value.trim());
        if source == "base" || source == "quote" {
            let currency = currency_code(value)
                .ok_or_else(|| invalid(format!("{source} '{value}' is not a currency code")))?;
            *(if source == "base" {
                &mut base
            } else {
                &mut quote
            }) = Some(currency);
        } else if source == "simulated" {
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
    let pair = match (base, quote) {
        (Some(b), Some(q)) if b == q => {
            return Err(invalid(format!("base and quote are both {b}")));
        }
        (Some(b), Some(q)) => Some((b, q)),
        (None, None) => halves(&name),
        _ => return Err(invalid("give both base= and quote=, or neither".to_owned())),
    };
    Ok(Asset {
        id,
        name,
        source_symbols,
        simulated_price,
        pair,
    })
}

/// A six-letter name's halves, as for currency pairs (`EURUSD`).
fn halves(name: &str) -> Option<(String, String)> {
    (name.len() == 6 && name.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| {
            (
                name[..3].to_ascii_uppercase(),
                name[3..].to_ascii_uppercase(),
            )
        })
        .filter(|(b, q)| b != q)
}

/// A currency code as the catalog and conversion take it: 2 to 10 ASCII
/// letters or digits, upper-cased.
pub fn currency_code(raw: &str) -> Option<String> {
    let code = raw.trim();
    ((2..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| code.to_ascii_uppercase())
}

/// An asset of the catalog, as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "EURUSD"}))]
pub struct AssetInfo {
    pub id: AssetId,
    pub name: String,
}

/// The catalog as clients see it: REST's `/api/v1/assets` and the
/// WebSocket's `assets` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetList {
    pub assets: Vec<AssetInfo>,
}

impl AssetList {
    pub fn from_catalog(catalog: &Catalog) -> Self {
        Self {
            assets: catalog
                .assets()
                .iter()
                .map(|a| AssetInfo {
                    id: a.id,
                    name: a.name.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_takes_any_spelling_and_says_why_not() {
        let c = Catalog::with_extra("").unwrap();
        assert_eq!(c.find("EURUSD").unwrap().id, 1);
        assert_eq!(c.find("usd/jpy").unwrap().id, 2);
        assert_eq!(
            c.find("xxx-yyy"),
            Err(FindError::Unknown(Symbol::parse("XXXYYY").unwrap()))
        );
        assert!(matches!(c.find("EUR USD"), Err(FindError::Invalid(_))));
    }

    #[test]
    fn assets_name_the_currencies_they_price() {
        let c = Catalog::with_extra(
            "6:BTCUSDT:binance=BTCUSDT;base=btc;quote=USDT, 7:XAUUSD, 8:SPX500",
        )
        .unwrap();
        let pair = |id| c.by_id(id).unwrap().pair.clone();
        assert_eq!(pair(1), Some(("EUR".into(), "USD".into())));
        assert_eq!(pair(6), Some(("BTC".into(), "USDT".into())));
        assert_eq!(pair(7), Some(("XAU".into(), "USD".into())));
        assert_eq!(pair(8), None, "not six letters, no base= and quote=");
        for bad in [
            "9:ABC:base=BTC",
            "9:ABC:base=BTC;quote=BTC",
            "9:ABC:base=B;quote=USD",
            "9:ABC:base=BT C;quote=USD",
        ] {
            assert!(Catalog::with_extra(bad).is_err(), "{bad}");
        }
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
            Catalog::with_extra("2147483648:BTC"),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::with_extra("8:BTC:binance"),
            Err(CatalogError::Invalid { .. })
        ));
    }
}

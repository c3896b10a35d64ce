//! goose load test of the ratesd REST API: all rates, one rate, history
//! pages (a first page, then the page its cursor points to), candles and
//! conversion.
//!
//!   cargo run --release -p rates-goose -- --host http://127.0.0.1:8080 \
//!       --users 50 --increase-rate 25 --run-time 30s --report-file target/goose.html
//!
//! Defaults (overridable on the command line): host http://127.0.0.1:8080,
//! 20 users started at 10 a second, a 30-second run. Start the server with
//! RATES_RATE_LIMIT_PER_SECOND=0 (or a limit above the load), or every
//! request past the per-IP burst is answered 429.

use goose::prelude::*;

const SYMBOLS: [&str; 5] = ["EURUSD", "usdjpy", "GBP-USD", "AUD_USD", "USDCAD"];

async fn all_rates(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/api/v1/rates").await?;
    Ok(())
}

async fn one_rate(user: &mut GooseUser) -> TransactionResult {
    let symbol = SYMBOLS[user.weighted_users_index % SYMBOLS.len()];
    let _ = user
        .get_named(&format!("/api/v1/rates/{symbol}"), "/api/v1/rates/{symbol}")
        .await?;
    Ok(())
}

async fn history_pages(user: &mut GooseUser) -> TransactionResult {
    let symbol = SYMBOLS[user.weighted_users_index % SYMBOLS.len()];
    let mut goose = user
        .get_named(
            &format!("/api/v1/rates/{symbol}/history?limit=100"),
            "/api/v1/rates/{symbol}/history",
        )
        .await?;
    let cursor = match goose.response {
        Ok(resp) => resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|page| page["next_cursor"].as_str().map(str::to_owned)),
        Err(_) => None,
    };
    if let Some(cursor) = cursor {
        goose = user
            .get_named(
                &format!("/api/v1/rates/{symbol}/history?limit=100&cursor={cursor}"),
                "/api/v1/rates/{symbol}/history?cursor",
            )
            .await?;
        let _ = goose;
    }
    Ok(())
}

const INTERVALS: [&str; 4] = ["1m", "5m", "1h", "1d"];
const CONVERSIONS: [(&str, &str); 4] = [
    ("EUR", "JPY"),
    ("JPY", "USD"),
    ("GBP", "CAD"),
    ("USD", "EUR"),
];

async fn candles(user: &mut GooseUser) -> TransactionResult {
    let symbol = SYMBOLS[user.weighted_users_index % SYMBOLS.len()];
    let interval = INTERVALS[user.weighted_users_index % INTERVALS.len()];
    let _ = user
        .get_named(
            &format!("/api/v1/rates/{symbol}/candles?interval={interval}&limit=60"),
            "/api/v1/rates/{symbol}/candles",
        )
        .await?;
    Ok(())
}

async fn convert(user: &mut GooseUser) -> TransactionResult {
    let (from, to) = CONVERSIONS[user.weighted_users_index % CONVERSIONS.len()];
    let _ = user
        .get_named(
            &format!("/api/v1/convert?from={from}&to={to}&amount=100"),
            "/api/v1/convert",
        )
        .await?;
    Ok(())
}

/// A watchlist: every asset's 24-hour ticker, then one asset's.
async fn tickers(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/api/v1/tickers").await?;
    let symbol = SYMBOLS[user.weighted_users_index % SYMBOLS.len()];
    let _ = user
        .get_named(
            &format!("/api/v1/rates/{symbol}/ticker"),
            "/api/v1/rates/{symbol}/ticker",
        )
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(
            scenario!("RatesUser")
                .register_transaction(transaction!(all_rates).set_weight(3)?)
                .register_transaction(transaction!(one_rate).set_weight(5)?)
                .register_transaction(transaction!(history_pages).set_weight(2)?)
                .register_transaction(transaction!(candles).set_weight(2)?)
                .register_transaction(transaction!(convert).set_weight(2)?)
                .register_transaction(transaction!(tickers).set_weight(2)?),
        )
        .set_default(GooseDefault::Host, "http://127.0.0.1:8080")?
        .set_default(GooseDefault::Users, 20)?
        .set_default(GooseDefault::IncreaseRate, "10")?
        .set_default(GooseDefault::RunTime, 30)?
        .execute()
        .await?;
    Ok(())
}

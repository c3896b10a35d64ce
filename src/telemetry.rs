//! Logging: a `tracing` subscriber filtered by `RATES_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` uses `EnvFilter` syntax
/// (`info`, `ratesd=debug,tower_http=warn`); a bad filter falls back to
/// `info` with a warning rather than leaving the service silent.
pub fn init(filter: &str) {
    let (filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .try_init();
    if let Some(e) = bad {
        tracing::warn!(error = %e, "RATES_LOG is not a valid filter; logging at info");
    }
}

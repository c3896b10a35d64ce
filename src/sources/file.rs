//! `file:PATH`: a payload in the FXCM format read from disk at every tick,
//! for debugging and for replaying a recorded feed.

use std::path::PathBuf;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{MAX_PAYLOAD_BYTES, Source, SourceError, SourceQuote, SymbolMap, fxcm};
use crate::domain::Catalog;

pub struct File {
    path: PathBuf,
    symbols: SymbolMap,
}

impl File {
    pub fn new(path: PathBuf, catalog: &Catalog) -> Self {
        Self {
            path,
            // A recorded file holds FXCM symbols.
            symbols: SymbolMap::new(catalog, "fxcm"),
        }
    }
}

impl Source for File {
    fn name(&self) -> &'static str {
        "file"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Vec<SourceQuote>, SourceError>> {
        async move {
            let io = |source| SourceError::Io {
                path: self.path.clone(),
                source,
            };
            let len = tokio::fs::metadata(&self.path).await.map_err(io)?.len();
            if len > MAX_PAYLOAD_BYTES as u64 {
                return Err(SourceError::TooLarge);
            }
            let bytes = tokio::fs::read(&self.path).await.map_err(io)?;
            let body = String::from_utf8_lossy(&bytes);
            Ok(self.symbols.select(fxcm::parse(&body)?))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixture_path;

    #[tokio::test]
    async fn reads_catalog_assets_from_a_recorded_file() {
        let catalog = Catalog::with_extra("").unwrap();
        let source = File::new(
            fixture_path("fxcm-datadisplayer-2021-strings.txt"),
            &catalog,
        );
        let quotes = source.fetch().await.unwrap();
        let ids: Vec<_> = quotes.iter().map(|q| q.asset_id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert_eq!(quotes[0].quote.mid(), 1.129575);
    }

    #[tokio::test]
    async fn missing_file_is_a_clear_error() {
        let catalog = Catalog::with_extra("").unwrap();
        let source = File::new("/nonexistent/feed.txt".into(), &catalog);
        let err = source.fetch().await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/feed.txt"), "{err}");
    }
}

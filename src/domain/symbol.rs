//! Symbols as clients write them.

use std::fmt;

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
}

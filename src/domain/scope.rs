//! The assets a client may read: every one, or only those a token names
//! (its `symbols`).

use std::sync::Arc;

use super::AssetId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    All,
    /// Only these (sorted, each once).
    Only(Arc<[AssetId]>),
}

impl Scope {
    pub fn only(ids: impl IntoIterator<Item = AssetId>) -> Self {
        let mut ids: Vec<AssetId> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Self::Only(ids.into())
    }

    pub fn allows(&self, id: AssetId) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.binary_search(&id).is_ok(),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    /// The assets, when only some.
    pub fn ids(&self) -> Option<&[AssetId]> {
        match self {
            Self::All => None,
            Self::Only(ids) => Some(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_some_or_all() {
        assert!(Scope::All.allows(7) && Scope::All.is_all());
        let some = Scope::only([4, 1, 4]);
        assert_eq!(some.ids(), Some(&[1, 4][..]));
        assert!(some.allows(1) && some.allows(4) && !some.allows(2) && !some.is_all());
    }
}

//! What moves through an engine, whichever it is: a tick's entries and
//! what writing them found, and a batch of the archive buffer.

use crate::domain::{ArchivedPoint, Point, StoredQuote};

/// What a tick's write found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// Points new to their windows.
    pub written: usize,
    /// The engine had lost its data since the previous tick (or this is
    /// the first): the windows want rebuilding.
    pub data_lost: bool,
    /// The engine refused (part of) the tick: a writer of this newer
    /// generation has written since; this one no longer leads.
    pub fenced_by: Option<u64>,
}

/// One asset's share of a tick.
#[derive(Debug, Clone)]
pub struct TickEntry {
    pub point: Point,
    pub quote: StoredQuote,
}

/// A batch of the archive buffer: its entries' ids (opaque, as the engine
/// gave them, to acknowledge) and their points.
#[derive(Debug, Default)]
pub struct ArchiveBatch {
    pub ids: Vec<String>,
    pub points: Vec<ArchivedPoint>,
}

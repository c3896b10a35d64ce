//! Storage: the engine for the latest quotes, the live window, the live
//! feed and the archive buffer; PostgreSQL for the archive; and what moves
//! and reads across the two. Each store module is the sole owner of its key
//! names or SQL, and returns domain types.
//!
//! - [`engine`]: the one boundary the rest of the service uses, over
//!   [`embedded`] (in the process) or [`redis`] (every Redis key, script
//!   and channel).
//! - [`records`]: what moves through an engine.
//! - [`archive`]: every SQL statement.
//! - [`archiver`]: drains the engine's archive buffer into PostgreSQL.
//! - [`history`]: a range read across the window and the archive.

pub mod archive;
pub mod archiver;
pub mod embedded;
pub mod engine;
pub mod history;
pub mod records;
pub mod redis;

pub use self::archive::{Archive, ArchiveError};
pub use self::archiver::Archiver;
pub use self::embedded::Embedded;
pub use self::engine::{Engine, EngineError};
pub use self::redis::{RedisError, RedisStore};

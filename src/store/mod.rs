//! Storage: Redis for the live window, PostgreSQL for the archive, and what
//! moves and reads across the two. Each store module is the sole owner of
//! its key names or SQL, and returns domain types.
//!
//! - [`redis`]: every Redis key, script and channel.
//! - [`archive`]: every SQL statement.
//! - [`archiver`]: drains the Redis archive buffer into PostgreSQL.
//! - [`history`]: a range read across the window and the archive.

pub mod archive;
pub mod archiver;
pub mod history;
pub mod redis;

pub use self::archive::{Archive, ArchiveError};
pub use self::archiver::Archiver;
pub use self::redis::{RedisError, RedisStore};

//! Storage: Redis for the live window, PostgreSQL for the archive. Each
//! module is the sole owner of its key names or SQL.

pub mod archive;
pub mod redis;

pub use self::archive::{Archive, ArchiveError};
pub use self::redis::{RedisError, RedisStore};

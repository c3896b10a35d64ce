//! API keys: `rk_` and 43 characters of base64url (32 bytes from the OS's
//! secure random source). The keys file holds, one line per key, the key's
//! SHA-256 (hex), its tier and its name, never the key; the server keeps a
//! map from digest to key, re-read when the file changes (checked every
//! second) and on SIGHUP. A lookup hashes what the client sent and looks
//! the digest up: keys are never compared, and no file is read per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::hash::{from_hex, to_hex};

use super::tiers::{Tier, Tiers};

/// Every key starts so, which also tells a key from a token.
pub const PREFIX: &str = "rk_";

/// How often the file's modification time and size are checked.
const POLL: Duration = Duration::from_secs(1);

/// A key's entry in the file.
#[derive(Debug)]
pub struct KeyEntry {
    pub name: Arc<str>,
    pub tier: Arc<Tier>,
    /// Cancelled when the key leaves the file: what it opened is closed.
    pub revoked: CancellationToken,
}

type Ring = HashMap<[u8; 32], Arc<KeyEntry>>;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("RATES_KEYS_FILE {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the OS's random source failed: {0}")]
    Random(String),
}

/// The keys of the keys file, by digest.
pub struct KeyRing {
    path: PathBuf,
    tiers: Tiers,
    ring: RwLock<Arc<Ring>>,
    /// The file's modification time, length and inode when last read.
    seen: RwLock<Option<Stamp>>,
}

impl KeyRing {
    /// Reads the keys file; a file that cannot be read is an error here
    /// (at start), and a warning on a later reload (the keys read before
    /// stay).
    pub fn open(path: &Path, tiers: Tiers) -> Result<Arc<Self>, KeysError> {
        let ring = Arc::new(Self {
            path: path.to_owned(),
            tiers,
            ring: RwLock::new(Arc::new(Ring::new())),
            seen: RwLock::new(None),
        });
        ring.reload().map_err(|source| KeysError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ring)
    }

    /// The key's entry, if the file lists it.
    pub fn lookup(&self, key: &str) -> Option<Arc<KeyEntry>> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner()).clone();
        ring.get(&digest).cloned()
    }

    /// Reads the file again and swaps the keys in.
    pub fn reload(&self) -> std::io::Result<()> {
        let stamp = stamp(&self.path)?;
        let text = std::fs::read_to_string(&self.path)?;
        let mut ring = parse(&text, &self.tiers);
        let n = ring.len();
        let old = self.ring.read().unwrap_or_else(|e| e.into_inner()).clone();
        // A key still listed keeps its token (its connections go on); a key
        // gone has its token cancelled (they are closed).
        for (digest, entry) in old.iter() {
            match ring.get_mut(digest).and_then(Arc::get_mut) {
                Some(new) => new.revoked = entry.revoked.clone(),
                None => {
                    tracing::info!(name = %entry.name, "API key revoked: closing what it opened");
                    entry.revoked.cancel();
                }
            }
        }
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(stamp);
        tracing::info!(keys = n, path = %self.path.display(), "API keys loaded");
        Ok(())
    }

    /// Reloads when the file's modification time or size changed.
    fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        let seen = *self.seen.read().unwrap_or_else(|e| e.into_inner());
        match now {
            Ok(now) if Some(now) == seen => {}
            Ok(now) => {
                self.reload_or_warn();
                // Read or not, this version is seen: a file that cannot be
                // read warns once, not every second.
                *self.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(now);
            }
            Err(e) => {
                if seen.is_some() {
                    tracing::warn!(error = %e, path = %self.path.display(),
                        "cannot read the keys file; the keys read before stay");
                    *self.seen.write().unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
        }
    }

    fn reload_or_warn(&self) {
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, path = %self.path.display(),
                "cannot read the keys file; the keys read before stay");
        }
    }
}

/// What tells a changed file: modification time, length, inode (a file
/// renamed over the old one keeps neither).
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok((meta.modified()?, meta.len(), inode))
}

/// The keys file's lines: `DIGEST TIER NAME`, `#` comments and blank lines
/// skipped. A malformed line, an unknown tier or a name used twice is
/// skipped with a warning naming the line.
fn parse(text: &str, tiers: &Tiers) -> Ring {
    let mut ring = Ring::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, tier, name] = fields[..] else {
            tracing::warn!(
                line = n,
                "keys file: expected `SHA256 TIER NAME`; line skipped"
            );
            continue;
        };
        let Some(digest) = from_hex(hex) else {
            tracing::warn!(line = n, "keys file: not a SHA-256 in hex; line skipped");
            continue;
        };
        let Some(tier) = tiers.get(tier) else {
            tracing::warn!(
                line = n,
                tier,
                "keys file: no such tier in RATES_TIERS; line skipped"
            );
            continue;
        };
        if let Some(first) = names.insert(name, n) {
            tracing::warn!(
                line = n,
                first,
                name,
                "keys file: a key name used twice; line skipped"
            );
            continue;
        }
        ring.insert(
            digest,
            Arc::new(KeyEntry {
                name: name.into(),
                tier: tier.clone(),
                revoked: CancellationToken::new(),
            }),
        );
    }
    ring
}

/// The SHA-256 of a key, in lower-case hex: what the keys file holds.
pub fn digest_hex(key: &str) -> String {
    to_hex(&Sha256::digest(key.as_bytes()))
}

/// A new key: `rk_` and 43 characters (32 bytes from the OS).
pub fn new_key() -> Result<String, KeysError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| KeysError::Random(e.to_string()))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The keys file's line for `key`.
pub fn file_line(key: &str, tier: &str, name: &str) -> String {
    format!("{} {tier} {name}", digest_hex(key))
}

/// Re-reads the keys file when it changes and on SIGHUP, until `shutdown`.
pub async fn watch(ring: Arc<KeyRing>, shutdown: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hangup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = sighup => {
                tracing::info!("SIGHUP: reading the keys file again");
                ring.reload_or_warn();
            }
            _ = every.tick() => ring.reload_if_changed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::tiers::ANONYMOUS;

    fn tiers() -> Tiers {
        let anonymous = Tier {
            name: ANONYMOUS.into(),
            per_second: 1,
            burst: 1,
            connections: 1,
            streams: 1,
        };
        Tiers::parse("pro:10/20/3/4", anonymous).unwrap()
    }

    #[test]
    fn new_keys_are_long_random_and_prefixed() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() >= PREFIX.len() + 32, "{a}");
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn the_file_lists_digests_and_lookups_hash_the_key() {
        let key = new_key().unwrap();
        let text = format!(
            "# keys\n\n{}\nnot a line\n{} nosuchtier x\n{}\n",
            file_line(&key, "pro", "acme"),
            digest_hex("rk_other"),
            file_line("rk_again", "pro", "acme"),
        );
        assert!(!text.contains(&key));
        let ring = parse(&text, &tiers());
        assert_eq!(
            ring.len(),
            1,
            "bad tier, malformed line and twice-used name skipped"
        );
        let entry = ring
            .get(&<[u8; 32]>::from(Sha256::digest(key.as_bytes())))
            .unwrap();
        assert_eq!((&*entry.name, entry.tier.name.as_str()), ("acme", "pro"));
    }

    #[test]
    fn a_file_change_is_seen() {
        let dir = std::env::temp_dir().join(format!("ratesd-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, file_line("rk_one", "pro", "one")).unwrap();
        let ring = KeyRing::open(&path, tiers()).unwrap();
        assert!(ring.lookup("rk_one").is_some());
        assert!(ring.lookup("rk_two").is_none());
        let one = ring.lookup("rk_one").unwrap().revoked.clone();
        std::fs::write(
            &path,
            format!("{}\n# longer now\n", file_line("rk_two", "pro", "two")),
        )
        .unwrap();
        ring.reload_if_changed();
        assert!(one.is_cancelled(), "a key gone has its connections closed");
        let two = ring.lookup("rk_two").unwrap().revoked.clone();
        std::fs::write(
            &path,
            format!(
                "{}\n# and longer still\n",
                file_line("rk_two", "pro", "two")
            ),
        )
        .unwrap();
        ring.reload_if_changed();
        assert!(
            !two.is_cancelled(),
            "a key still listed keeps its connections"
        );
        assert!(ring.lookup("rk_one").is_none());
        assert!(ring.lookup("rk_two").is_some());
        std::fs::remove_file(&path).unwrap();
        ring.reload_if_changed();
        assert!(
            ring.lookup("rk_two").is_some(),
            "an unreadable file keeps the keys"
        );
        assert!(KeyRing::open(&path, tiers()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

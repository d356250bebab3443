//! Keyed checkpoints of the history's head: the HMAC, the one-line JSON form and the append-only checkpoint file.

use std::fmt;
use std::io::{BufRead, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::time::format_ts;

/// Marks the MAC'd encoding so that it can change in a later version without ambiguity.
const MAC_DOMAIN: &[u8] = b"lapse-checkpoint-v1";

/// The version written in every checkpoint line; also what picks checkpoint lines out of a log.
const LINE_VERSION: u32 = 1;

/// The secret that makes checkpoints unforgeable by anyone who can only write the database.
///
/// It comes from a credential file (systemd `LoadCredential=`, or a file only lapse's user can
/// read) and never from the database or the configuration: whoever holds it can make
/// checkpoints, so it must live where an attacker with the database file does not reach.
#[derive(Clone)]
pub struct CheckpointKey(Vec<u8>);

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckpointKey(redacted)")
    }
}

impl CheckpointKey {
    /// The shortest key accepted, in bytes: HMAC-SHA256's full strength needs 32.
    pub const MIN_LEN: usize = 32;

    /// A key from raw bytes; refuses keys shorter than [`Self::MIN_LEN`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, CheckpointError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(CheckpointError::KeyTooShort {
                len: bytes.len(),
                min: Self::MIN_LEN,
            });
        }
        Ok(Self(bytes))
    }

    /// Reads a key file: its bytes, without leading and trailing ASCII whitespace (so that a
    /// trailing newline does not matter), at least [`Self::MIN_LEN`] of them. Refuses a file
    /// that its group or others may read or write.
    pub fn from_file(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(CheckpointError::KeyFileOpen {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::new(bytes.trim_ascii().to_vec())
    }

    /// A new random key as 64 hex characters, to be written to a key file.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

/// A keyed record of the chain's head: row `seq` had hash `hash` when the checkpoint was made
/// at `at`. Written out of band (a log line, a file), it lets verification see rows removed
/// after `seq` and any rewrite of rows up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    /// The row's hash, 64 hex digits ([`crate::GENESIS_HASH`] for an empty history).
    pub hash: String,
    pub at: DateTime<Utc>,
    /// HMAC-SHA256 under the key, 64 hex digits; see [`checkpoint_mac`].
    pub mac: String,
}

/// The line form; field order is the order written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    lapse_checkpoint: u32,
    seq: i64,
    hash: String,
    at: String,
    mac: String,
}

/// The MAC of a checkpoint, as hex HMAC-SHA256 under `key`.
///
/// The MAC'd bytes are `lapse-checkpoint-v1` followed by `seq` (decimal ASCII), `hash` and `at`
/// (the stored timestamp form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`), each as an 8-byte big-endian
/// length and then its bytes: the same field encoding as the history's own hash.
pub fn checkpoint_mac(key: &CheckpointKey, seq: i64, hash: &str, at: &str) -> String {
    hex::encode(mac_of(key, seq, hash, at).finalize().into_bytes())
}

fn mac_of(key: &CheckpointKey, seq: i64, hash: &str, at: &str) -> Hmac<Sha256> {
    let mut m = key.mac();
    m.update(MAC_DOMAIN);
    for field in [seq.to_string().as_bytes(), hash.as_bytes(), at.as_bytes()] {
        // usize always fits in u64 on the platforms lapse builds for.
        m.update(&(field.len() as u64).to_be_bytes());
        m.update(field);
    }
    m
}

impl Checkpoint {
    /// A checkpoint of row `seq` with `hash`, at `at` (kept to the microsecond, as stored).
    pub fn new(seq: i64, hash: String, at: DateTime<Utc>, key: &CheckpointKey) -> Self {
        let at_text = format_ts(at);
        let mac = checkpoint_mac(key, seq, &hash, &at_text);
        // Parsing our own format back cannot fail; it drops sub-microsecond digits.
        let at = DateTime::parse_from_rfc3339(&at_text).map_or(at, |t| t.with_timezone(&Utc));
        Self { seq, hash, at, mac }
    }

    /// Whether the MAC is right for these fields under `key` (compared in constant time).
    pub fn verify_mac(&self, key: &CheckpointKey) -> bool {
        let Ok(mac) = hex::decode(&self.mac) else {
            return false;
        };
        mac_of(key, self.seq, &self.hash, &format_ts(self.at))
            .verify_slice(&mac)
            .is_ok()
    }

    /// One line of JSON without a newline, e.g.
    /// One JSON line: the `lapse_checkpoint` line version (1), then seq, hash, at and mac.
    pub fn to_json_line(&self) -> String {
        let line = Line {
            lapse_checkpoint: LINE_VERSION,
            seq: self.seq,
            hash: self.hash.clone(),
            at: format_ts(self.at),
            mac: self.mac.clone(),
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Parses [`Checkpoint::to_json_line`]'s form. Checks the shape only: the MAC is checked
    /// against a key by [`Checkpoint::verify_mac`].
    pub fn parse_line(line: &str) -> Result<Self, String> {
        let l: Line = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
        if l.lapse_checkpoint != LINE_VERSION {
            return Err(format!(
                "lapse_checkpoint is {}, this build reads version {LINE_VERSION}",
                l.lapse_checkpoint
            ));
        }
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&l.hash) {
            return Err("hash is not 64 hex digits".into());
        }
        if !hex64(&l.mac) {
            return Err("mac is not 64 hex digits".into());
        }
        if l.seq < 0 {
            return Err("seq is negative".into());
        }
        let at = DateTime::parse_from_rfc3339(&l.at)
            .map_err(|e| format!("at `{}`: {e}", l.at))?
            .with_timezone(&Utc);
        Ok(Self {
            seq: l.seq,
            hash: l.hash,
            at,
            mac: l.mac,
        })
    }
}

/// Appends `checkpoint` as one line to the file at `path`, creating it with mode 0600, and
/// syncs it to disk before returning.
pub fn append_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mut line = checkpoint.to_json_line();
    line.push('\n');
    // One write of the whole line: appends of whole lines do not interleave.
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a file of checkpoint lines; blank lines are skipped, any other line that is not a
/// checkpoint is an error naming its line number.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            Checkpoint::parse_line(&line).map_err(|reason| CheckpointError::BadLine {
                path: path.to_owned(),
                line: i + 1,
                reason,
            })?,
        );
    }
    Ok(out)
}

/// Why a checkpoint key or file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the checkpoint key is {len} bytes, fewer than the {min} required; generate one with \
         64 random hex characters"
    )]
    KeyTooShort { len: usize, min: usize },

    #[error(
        "{path}: the checkpoint key file has mode {mode:o}, readable or writable by others; \
         run `chmod 600` on it"
    )]
    KeyFileOpen { path: PathBuf, mode: u32 },

    #[error("{path}:{line}: not a checkpoint: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(b: u8) -> CheckpointKey {
        CheckpointKey::new(vec![b; 32]).unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::microseconds(7)
    }

    #[test]
    fn a_checkpoint_round_trips_through_its_line_and_verifies_only_under_its_key() {
        let c = Checkpoint::new(42, "ab".repeat(32), at(), &key(1));
        let line = c.to_json_line();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("{\"lapse_checkpoint\":1,\"seq\":42,"),
            "{line}"
        );
        let back = Checkpoint::parse_line(&line).unwrap();
        assert_eq!(back, c);
        assert!(back.verify_mac(&key(1)));
        assert!(!back.verify_mac(&key(2)));
        let mut moved = back.clone();
        moved.seq = 41;
        assert!(!moved.verify_mac(&key(1)));
    }

    #[test]
    fn the_mac_encoding_is_stable_and_independent_of_this_code() {
        // Pinned to a value computed outside Rust (Python's hmac over the documented
        // encoding): checkpoints written by one release verify in the next.
        assert_eq!(
            checkpoint_mac(
                &key(7),
                1,
                crate::GENESIS_HASH,
                "2030-01-01T00:00:00.000000Z"
            ),
            "cc576abbc244b63290241d8ec613431eb967ea5fe4719943c541583b3cb575fc"
        );
        // Length prefixes keep field boundaries apart.
        assert_ne!(
            checkpoint_mac(&key(7), 12, "3", "x"),
            checkpoint_mac(&key(7), 1, "23", "x")
        );
    }

    #[test]
    fn malformed_lines_and_short_keys_are_refused() {
        assert!(Checkpoint::parse_line("not json").is_err());
        let c = Checkpoint::new(1, "00".repeat(32), at(), &key(1));
        let bad = c.to_json_line().replace("\"seq\":1", "\"seq\":-1");
        assert_eq!(Checkpoint::parse_line(&bad).unwrap_err(), "seq is negative");
        let err = CheckpointKey::new(vec![0; 31]).unwrap_err();
        assert!(err.to_string().contains("31 bytes"), "{err}");
        assert_eq!(format!("{:?}", key(1)), "CheckpointKey(redacted)");
    }

    #[test]
    fn the_checkpoint_file_is_private_and_reads_back_naming_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let a = Checkpoint::new(1, "11".repeat(32), at(), &key(1));
        let b = Checkpoint::new(2, "22".repeat(32), at(), &key(1));
        append_checkpoint(&path, &a).unwrap();
        append_checkpoint(&path, &b).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        assert_eq!(read_checkpoints(&path).unwrap(), vec![a, b]);

        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\ngarbage\n")
            .unwrap();
        let err = read_checkpoints(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::BadLine { line: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_is_trimmed_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", CheckpointKey::generate_hex())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CheckpointKey::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = CheckpointKey::from_file(&path).unwrap();
        let c = Checkpoint::new(3, "33".repeat(32), at(), &k);
        let text = std::fs::read_to_string(&path).unwrap();
        let again = CheckpointKey::new(text.trim().as_bytes().to_vec()).unwrap();
        assert!(c.verify_mac(&again));
    }
}

//! Checking the chain from the first record to the last.

use super::canonical::canonical_bytes;
use super::reader::{chain_fields, Reader};
use super::{AuditError, GENESIS_HASH};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// What an intact log contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// seq of the last record (0 for an empty log).
    pub last_seq: u64,
    /// hash of the last record (the genesis hash for an empty log).
    pub last_hash: String,
}

/// Verifies every record's hash, its link to the previous record and the sequence
/// numbers. Returns [`AuditError::Corrupt`] naming the first broken line (1-based): an
/// edited record fails its own hash; a removed, inserted or reordered record breaks the
/// sequence or the link at the first line out of place; a truncated last line has no
/// newline. Records cut off whole from the end leave a shorter valid chain: compare
/// `last_seq`/`last_hash` with a copy kept elsewhere to detect that.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let shown = path.display().to_string();
    let mut report = VerifyReport {
        records: 0,
        last_seq: 0,
        last_hash: GENESIS_HASH.to_string(),
    };
    for item in Reader::open(path)? {
        let (line, mut record) = item?;
        let corrupt = |reason: String| AuditError::Corrupt {
            path: shown.clone(),
            line,
            reason,
        };
        let Some((seq, hash)) = chain_fields(&record) else {
            return Err(corrupt(
                "not a kmsfs audit record (kmsfs.seq or kmsfs.hash missing)".into(),
            ));
        };
        let expected_seq = report.last_seq + 1;
        if seq != expected_seq {
            return Err(corrupt(format!(
                "sequence number {seq}, expected {expected_seq}: a record was removed, inserted or reordered here"
            )));
        }
        let prev = record
            .get("kmsfs")
            .and_then(|k| k.get("prevHash"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if prev != report.last_hash {
            return Err(corrupt(format!(
                "prevHash {prev} does not match the previous record's hash {}: the chain is broken here",
                report.last_hash
            )));
        }
        if !hash_matches(&mut record, &hash) {
            return Err(corrupt(format!(
                "hash mismatch: the record (seq {seq}) was edited after it was written"
            )));
        }
        report.records += 1;
        report.last_seq = seq;
        report.last_hash = hash;
    }
    Ok(report)
}

/// Whether `record`'s own `kmsfs.hash` is the hash of the rest of it (removes the
/// member while checking).
fn hash_matches(record: &mut Value, hash: &str) -> bool {
    if let Some(Value::Object(k)) = record.get_mut("kmsfs") {
        k.remove("hash");
    }
    hex::encode(Sha256::digest(canonical_bytes(record))) == hash
}

/// If `line` is a whole record that continues the chain after `prev` (seq and hash of
/// the record before it, None at the start), its seq and hash.
pub(crate) fn next_record(line: &[u8], prev: Option<&(u64, String)>) -> Option<(u64, String)> {
    let mut record: Value = serde_json::from_slice(line).ok()?;
    let (seq, hash) = chain_fields(&record)?;
    let (want_seq, want_prev) = match prev {
        Some((s, h)) => (s.checked_add(1)?, h.as_str()),
        None => (1, GENESIS_HASH),
    };
    let links = record
        .get("kmsfs")
        .and_then(|k| k.get("prevHash"))
        .and_then(Value::as_str)
        == Some(want_prev);
    (seq == want_seq && links && hash_matches(&mut record, &hash)).then_some((seq, hash))
}

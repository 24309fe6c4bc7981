//! Reading the log: the chain's tail (for appenders), records with filters, and a
//! follower for `kmsfs audit --follow`. Readers never take the append lock, so a line
//! being written by another process may be seen half-written: only lines ending in a
//! newline are ever returned.

use super::AuditError;
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The chain position at the end of the file.
pub(crate) struct Tail {
    /// seq and hash of the last parsable record.
    pub last: Option<(u64, String)>,
    /// The file does not end with a newline.
    pub torn: bool,
    /// Where the last complete line ends (the file's length unless `torn`).
    pub complete_len: u64,
}

/// seq and hash of one record line, if it is a record.
pub(crate) fn chain_fields(record: &Value) -> Option<(u64, String)> {
    let k = record.get("kmsfs")?;
    let seq = k.get("seq")?.as_u64()?;
    let hash = k.get("hash")?.as_str()?;
    Some((seq, hash.to_string()))
}

/// Finds the last complete, parsable record by reading backwards from the end in growing
/// chunks (records are usually small, but a PutKeyPolicy can carry a 32 KiB policy).
pub(crate) fn read_tail(file: &File) -> std::io::Result<Tail> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Tail {
            last: None,
            torn: false,
            complete_len: 0,
        });
    }
    let mut last_byte = [0u8; 1];
    file.read_exact_at(&mut last_byte, len - 1)?;
    let torn = last_byte[0] != b'\n';
    let complete_len = if torn {
        complete_lines_end(file, len)?
    } else {
        len
    };
    let mut chunk: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        let mut segments: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        // The segment after the last newline is either empty or a torn line.
        segments.pop();
        // The first segment may begin mid-line unless we read from offset 0.
        let first_complete = if start == 0 { 0 } else { 1 };
        for seg in segments.iter().skip(first_complete).rev() {
            if let Ok(v) = serde_json::from_slice::<Value>(seg) {
                if let Some(fields) = chain_fields(&v) {
                    return Ok(Tail {
                        last: Some(fields),
                        torn,
                        complete_len,
                    });
                }
            }
        }
        if start == 0 {
            return Ok(Tail {
                last: None,
                torn,
                complete_len,
            });
        }
        chunk = chunk.saturating_mul(4);
    }
}

/// The offset just past the last newline before `len` (0 if there is none).
fn complete_lines_end(file: &File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Which side of the decision a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionFilter {
    Allowed,
    /// Explicit or implicit deny, or an AccessDeniedException.
    Denied,
}

/// Record selection for `kmsfs audit`; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A key id, key ARN or alias name: matches the record's resources and its
    /// requestParameters.keyId.
    pub key_id: Option<String>,
    /// A principal ARN, principal id, the ARN's last path part ("alice"), or a uid
    /// ("1001").
    pub principal: Option<String>,
    pub decision: Option<DecisionFilter>,
    /// The operation ("Decrypt"), case-insensitive.
    pub event_name: Option<String>,
}

impl Filter {
    pub fn matches(&self, record: &Value) -> bool {
        if let Some(name) = &self.event_name {
            let ev = record
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !ev.eq_ignore_ascii_case(name) {
                return false;
            }
        }
        if let Some(key) = &self.key_id {
            if !record_names_key(record, key) {
                return false;
            }
        }
        if let Some(p) = &self.principal {
            if !record_has_principal(record, p) {
                return false;
            }
        }
        if let Some(d) = self.decision {
            if (d == DecisionFilter::Denied) != record_is_denied(record) {
                return false;
            }
        }
        true
    }
}

fn record_names_key(record: &Value, key: &str) -> bool {
    let key_suffix = format!(":key/{key}");
    let arn_matches = |arn: &str| arn == key || arn.ends_with(&key_suffix);
    let in_resources = record
        .get("resources")
        .and_then(Value::as_array)
        .is_some_and(|rs| {
            rs.iter()
                .filter_map(|r| r.get("ARN").and_then(Value::as_str))
                .any(arn_matches)
        });
    let in_request = record
        .get("requestParameters")
        .and_then(Value::as_object)
        .is_some_and(|req| {
            ["keyId", "KeyId"]
                .iter()
                .filter_map(|n| req.get(*n).and_then(Value::as_str))
                .any(|k| k == key || arn_matches(k))
        });
    in_resources || in_request
}

fn record_has_principal(record: &Value, p: &str) -> bool {
    let Some(user) = record.get("userIdentity") else {
        return false;
    };
    let field = |n: &str| user.get(n).and_then(Value::as_str);
    if field("principalId") == Some(p) {
        return true;
    }
    // A bare number is the caller's uid (anonymous callers have no ARN to match).
    if let Ok(uid) = p.parse::<u64>() {
        return record
            .get("kmsfs")
            .and_then(|k| k.get("uid"))
            .and_then(Value::as_u64)
            == Some(uid);
    }
    match field("arn") {
        Some(arn) => arn == p || arn.rsplit(['/', ':']).next() == Some(p),
        None => false,
    }
}

/// Denied: the evaluation said explicitDeny/implicitDeny, or the call failed with
/// AccessDeniedException. Everything else counts as allowed.
pub(crate) fn record_is_denied(record: &Value) -> bool {
    let decision = record.get("kmsfs").and_then(|k| k.get("decision"));
    let word = match decision {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("decision").and_then(Value::as_str),
        _ => None,
    };
    if matches!(word, Some("explicitDeny" | "implicitDeny")) {
        return true;
    }
    record.get("errorCode").and_then(Value::as_str) == Some("AccessDeniedException")
}

/// Iterates the log's records from the start, with their 1-based line numbers.
pub struct Reader {
    path: PathBuf,
    lines: BufReader<File>,
    line: u64,
    buf: Vec<u8>,
    /// Bytes of complete lines read so far.
    offset: u64,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        Ok(Reader {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(256 * 1024, file),
            line: 0,
            buf: Vec::new(),
            offset: 0,
        })
    }
}

impl Reader {
    /// Where the complete lines read so far end: hand it to [`Follower::open_at`] to
    /// continue without missing or repeating a record.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for Reader {
    type Item = Result<(u64, Value), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buf.clear();
        match self.lines.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                let line = self.line;
                let corrupt = |reason: String| AuditError::Corrupt {
                    path: self.path.display().to_string(),
                    line,
                    reason,
                };
                if self.buf.last() != Some(&b'\n') {
                    // Not counted in `offset`: a follower resumes at the start of this
                    // line, which may still be being written.
                    return Some(Err(corrupt(
                        "truncated line (no newline at end of file)".into(),
                    )));
                }
                self.offset += self.buf.len() as u64;
                Some(
                    serde_json::from_slice::<Value>(&self.buf)
                        .map(|v| (line, v))
                        .map_err(|e| corrupt(format!("not a JSON record: {e}"))),
                )
            }
            Err(e) => Some(Err(AuditError::io(&self.path, e))),
        }
    }
}

/// Returns new complete records as they are appended (`tail -f` for the log).
pub struct Follower {
    path: PathBuf,
    file: File,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the beginning (`from_end == false`) or at the current end of the log.
    pub fn open(path: &Path, from_end: bool) -> Result<Follower, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        let offset = if from_end {
            file.metadata().map_err(|e| AuditError::io(path, e))?.len()
        } else {
            0
        };
        Ok(Follower {
            path: path.to_path_buf(),
            file,
            offset,
            partial: Vec::new(),
        })
    }

    /// Starts at byte `offset` (the start of a line, e.g. [`Reader::offset`]).
    pub fn open_at(path: &Path, offset: u64) -> Result<Follower, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        Ok(Follower {
            path: path.to_path_buf(),
            file,
            offset,
            partial: Vec::new(),
        })
    }

    /// Reads whatever was appended since the last call and returns the complete records
    /// (an unparsable line is skipped: following must not stop on a damaged line; use
    /// `verify` to find it). Returns an empty vector when nothing new arrived.
    pub fn poll(&mut self) -> Result<Vec<Value>, AuditError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| AuditError::io(&self.path, e))?
            .len();
        if len < self.offset {
            // Replaced or truncated underneath us: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        self.file
            .seek(SeekFrom::Start(self.offset))
            .map_err(|e| AuditError::io(&self.path, e))?;
        let mut fresh = Vec::with_capacity((len - self.offset) as usize);
        (&self.file)
            .take(len - self.offset)
            .read_to_end(&mut fresh)
            .map_err(|e| AuditError::io(&self.path, e))?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let mut out = Vec::new();
        if let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(last_nl + 1);
            for line in self
                .partial
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                if let Ok(v) = serde_json::from_slice::<Value>(line) {
                    out.push(v);
                }
            }
            self.partial = rest;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(name: &str, arn: &str, key: &str, decision: &str, error: Option<&str>) -> Value {
        let mut v = json!({
            "eventName": name,
            "userIdentity": {"type": "IAMUser", "arn": arn, "principalId": "AIDA1"},
            "requestParameters": {"keyId": "alias/data"},
            "resources": [{"ARN": format!("arn:aws:kms:local:111122223333:key/{key}"), "type": "AWS::KMS::Key"}],
            "kmsfs": {"uid": 1001, "decision": {"decision": decision, "matched": []}}
        });
        if let Some(e) = error {
            v["errorCode"] = json!(e);
        }
        v
    }

    #[test]
    fn filters_select_by_key_principal_decision_and_event() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let r = record(
            "Decrypt",
            alice,
            "k-1",
            "implicitDeny",
            Some("AccessDeniedException"),
        );
        let cases: &[(Filter, bool)] = &[
            (Filter::default(), true),
            (
                Filter {
                    key_id: Some("k-1".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    key_id: Some("arn:aws:kms:local:111122223333:key/k-1".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    key_id: Some("alias/data".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    key_id: Some("k-2".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    principal: Some(alice.into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    principal: Some("alice".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    principal: Some("AIDA1".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    principal: Some("bob".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    principal: Some("1001".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    principal: Some("1002".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    decision: Some(DecisionFilter::Denied),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    decision: Some(DecisionFilter::Allowed),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    event_name: Some("decrypt".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    event_name: Some("Encrypt".into()),
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            assert_eq!(f.matches(&r), *want, "case {i}: {f:?}");
        }
        let ok = record("Encrypt", alice, "k-1", "allowed", None);
        assert!(Filter {
            decision: Some(DecisionFilter::Allowed),
            ..Filter::default()
        }
        .matches(&ok));
        assert!(!Filter {
            decision: Some(DecisionFilter::Denied),
            ..Filter::default()
        }
        .matches(&ok));
    }
}

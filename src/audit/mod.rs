//! The append-only, hash-chained audit log: one JSON line per call and per authorization
//! decision, in CloudTrail's record shape plus kmsfs fields. Each record carries the hash
//! of the previous one, so an edited, removed or reordered record is detected by
//! [`verify`].
//!
//! OWNER: control/audit helper. The types and signatures below are the contract the key
//! service codes against; the bodies are to be written.
//!
//! Never receives plaintext, key material or data keys: callers pass only identifiers.

use std::path::Path;

/// Who made the call (CloudTrail `userIdentity`), plus the local process ids.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// "IAMUser", "AssumedRole", "Root", "AWSAccount", "AWSService" or "Anonymous".
    pub kind: String,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub principal_id: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// One event to record. The log adds eventVersion, eventTime, eventSource, eventID and
/// the chain fields.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The AWS operation name: "Decrypt", "CreateGrant", ...
    pub event_name: String,
    pub identity: Identity,
    /// Request fields, without plaintext or key bytes.
    pub request_parameters: serde_json::Value,
    /// Response fields, without plaintext or key bytes.
    pub response_elements: serde_json::Value,
    /// AWS exception name on failure ("AccessDeniedException").
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Key ARNs the call touched.
    pub resources: Vec<String>,
    pub read_only: bool,
    /// The authorization decision with its reasons (a serialized policy::Evaluation), if
    /// one was made.
    pub decision: Option<serde_json::Value>,
    /// Set when the call came through the filesystem: "kmsfs".
    pub via_service: Option<String>,
    /// Path-free filesystem identifiers (volume id, file id, inode), if any.
    pub fs: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log {path}, record {line}: {reason}")]
    Corrupt {
        path: String,
        line: u64,
        reason: String,
    },
}

/// The open log; `append` is safe from many threads.
pub struct AuditLog {
    _private: (),
}

impl AuditLog {
    /// Opens (creating with mode 0600) the log at `path`, continuing its chain.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let _ = path;
        unimplemented!("audit helper")
    }

    /// Appends one record (adds time, id and chain fields); `now` is seconds since epoch.
    pub fn append(&self, event: &Event, now: i64) -> Result<(), AuditError> {
        let _ = (event, now);
        unimplemented!("audit helper")
    }
}

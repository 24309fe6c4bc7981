//! The append-only, hash-chained audit log: one JSON line per call and per authorization
//! decision, in CloudTrail's record shape plus kmsfs fields. Each record carries the hash
//! of the previous one, so an edited, removed or reordered record is detected by
//! [`verify`].
//!
//! Never receives plaintext, key material or data keys: callers pass only identifiers.
//! As a second line of defence, request/response members whose names are known to carry
//! secrets (`Plaintext`, `KeyMaterial`, ...) are replaced before anything is written.
//!
//! # Record shape
//! One line of compact JSON per record, members sorted by name at every level (the line
//! is its own canonical form):
//! ```text
//! {"awsRegion":"local",["errorCode":..,"errorMessage":..,]"eventCategory":"Management",
//!  "eventID":"<uuid v4>","eventName":"Decrypt","eventSource":"kms.amazonaws.com",
//!  "eventTime":"2026-11-23T09:30:00Z","eventType":"AwsApiCall","eventVersion":"1.08",
//!  "kmsfs":{"decision":..,"fs":..,"gid":..,"hash":"<64 hex>","pid":..,
//!           "prevHash":"<64 hex>","seq":1,"uid":..,"viaService":..},
//!  "managementEvent":true,"readOnly":true,"recipientAccountId":..,
//!  "requestParameters":{...},"resources":[{"ARN":..,"accountId":..,"type":"AWS::KMS::Key"}],
//!  "responseElements":{...},"sourceIPAddress":"local","userAgent":"kmsfs",
//!  "userIdentity":{"accountId":..,"arn":..,"principalId":..,"type":"IAMUser"}}
//! ```
//! `hash` is SHA-256 over the record's canonical bytes (see [`canonical_bytes`]: sorted
//! members, compact) with the `kmsfs.hash` member removed; `prevHash` is the previous
//! record's `hash`, 64 zeros for the first record; `seq` counts from 1 without gaps.
//! Sorting (rather than trusting the line's bytes) means a tool that rewrites a line
//! with the same values keeps it valid, while any change of a name or value breaks it.
//!
//! # Durability
//! Every append is one `write(2)` of the whole line to an `O_APPEND` descriptor before
//! `append` returns: nothing is batched in memory, so a process killed with SIGKILL after
//! answering a request has its record in the kernel. Records that change state
//! (`readOnly: false`: CreateKey, PutKeyPolicy, CreateGrant, ...) are `fdatasync`ed
//! before `append` returns. Read-only records (the data path: Decrypt, GenerateDataKey,
//! DescribeKey, ...) are `fdatasync`ed later, so that an open does not wait for the disk:
//! - in a long-running service (`kmsfs serve`, `kmsfs mount`: [`AuditLog::start_syncer`])
//!   by a background thread, once the oldest unsynced record is [`DATA_SYNC_INTERVAL`]
//!   old, whether or not more calls come: a power loss loses at most that window (plus
//!   the sync's own time) of read-only records, never a state change. The thread holds
//!   neither the mutex nor the `flock` while it syncs. If its `fdatasync` fails, the
//!   error is logged (error level, with the path) and the next append fails closed with
//!   it (no record; the call fails), once: later appends are written again, as after a
//!   failed inline sync.
//! - in a one-shot command (no syncer), by the next append after the interval and on
//!   drop, before the command exits.
//!
//! [`AuditLog::sync`] syncs at once (the daemons call it at shutdown), as does drop.
//!
//! A failed append (a full disk: [`AuditError::NoSpace`], or a failed `fdatasync`) is
//! cut back to where the file ended before it, so the log never keeps a torn line; the
//! caller fails the call closed. A torn line left by a crash is removed (with a warning)
//! by the next writer that takes the lock, or by the next open.
//!
//! # Size
//! Every record is bounded (see [`MAX_RECORD_BYTES`]): a request or response field
//! larger than 12 KiB is cut (a long string ends with a marker carrying its length and
//! SHA-256, a large object or list keeps its first members), so a request of any size
//! costs the log a few KiB at most.
//!
//! # Concurrency
//! A `Mutex` serializes threads; an exclusive `flock` on the log serializes processes
//! (a `kmsfs mount` and a `kmsfs serve` may share a store). Under the lock, if the file
//! grew since this process last wrote, the tail is reread so the chain continues from the
//! other process's last record.

mod bound;
mod canonical;
mod event_id;
mod reader;
mod record;
mod syncer;
mod template;
mod verify;

pub use canonical::canonical_bytes;
pub use reader::{DecisionFilter, Filter, Follower, Reader};
pub use record::{uuid_v4, MAX_RECORD_BYTES};
pub use verify::{verify, VerifyReport};

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `prevHash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Upper bound on how long a read-only record may stay unsynced (see # Durability).
pub const DATA_SYNC_INTERVAL: Duration = Duration::from_millis(100);

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
    /// Request fields, without plaintext or key bytes. Shared: the data path hands the
    /// same value to every open of a file (see `kms::ops_crypto`'s open values).
    #[serde(with = "shared_value::required")]
    pub request_parameters: Arc<serde_json::Value>,
    /// Response fields, without plaintext or key bytes.
    pub response_elements: serde_json::Value,
    /// AWS exception name on failure ("AccessDeniedException").
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Key ARNs the call touched.
    pub resources: Vec<String>,
    pub read_only: bool,
    /// The authorization decision with its reasons (a serialized policy::Evaluation), if
    /// one was made. Shared: the data path's decision cache hands the same value to every
    /// open it answers, and a record only reads it.
    #[serde(with = "shared_value")]
    pub decision: Option<Arc<serde_json::Value>>,
    /// Set when the call came through the filesystem: "kmsfs".
    pub via_service: Option<String>,
    /// Path-free filesystem identifiers (volume id, file id, inode), if any. Shared as
    /// `request_parameters` is.
    #[serde(with = "shared_value")]
    pub fs: Option<Arc<serde_json::Value>>,
    /// Set when the call came over the network, signed with an access key.
    #[serde(default)]
    pub remote: Option<RemoteOrigin>,
}

/// (De)serializes an `Option<Arc<Value>>` as the `Option<Value>` it holds (serde's own
/// `Arc` support is behind a feature this crate does not enable).
mod shared_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Option<Arc<Value>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Value>>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.map(Arc::new))
    }

    /// The same for an `Arc<Value>` that is always present.
    pub mod required {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
            v.as_ref().serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
            Ok(Arc::new(Value::deserialize(d)?))
        }
    }
}

/// Where a signed network call came from: CloudTrail's `sourceIPAddress`, `userAgent`,
/// `requestID` and `userIdentity.accessKeyId`. Local calls have none (their records say
/// `"sourceIPAddress":"local"` and carry the kernel's uid, gid and pid instead).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteOrigin {
    pub access_key_id: String,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
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
    /// The disk (or quota) holding the log is full. Nothing of the failed record was
    /// left behind; appends work again once space is freed.
    #[error("no space left on device: {path}")]
    NoSpace { path: String },
    /// The log ends in a partial record that could not be removed.
    #[error("audit log {path} ends in a torn record ({torn} bytes after offset {at}) that cannot be removed ({source}); remove it with `truncate -s {at} {path}`, then `kmsfs audit verify`")]
    TornTail {
        path: String,
        at: u64,
        torn: u64,
        source: std::io::Error,
    },
}

impl AuditError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.display().to_string();
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => AuditError::NoSpace { path },
            _ => AuditError::Io { path, source },
        }
    }
}

/// The open log; `append` is safe from many threads and many processes.
pub struct AuditLog {
    path: PathBuf,
    /// Used when no resource ARN names a region (calls like ListKeys, GenerateRandom).
    region: String,
    inner: Mutex<Chain>,
    /// What is written and what is synced, shared with the background syncer.
    sync: Arc<syncer::SyncShared>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The chain state as this process last saw it, and the descriptor it appends through.
struct Chain {
    file: File,
    /// Where the file ended after our last read or write: a different size under the
    /// lock means another process appended.
    end: u64,
    seq: u64,
    prev_hash: String,
    /// The lines of the append in progress; kept between appends (see
    /// [`KEPT_BUFFER_BYTES`]) so that a record costs no allocation for its bytes.
    buf: Vec<u8>,
    /// The constant bytes of records appended again and again ([`AuditLog::append_repeated`]).
    templates: template::Templates,
}

/// The largest append buffer kept for the next append.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

impl AuditLog {
    /// Opens (creating with mode 0600) the log at `path`, continuing its chain.
    ///
    /// A torn last line (a crash in the middle of a write) is removed with a warning and
    /// the chain continues from the last intact record (see `repair_torn_tail`); if the
    /// file cannot be cut, opening fails with [`AuditError::TornTail`], naming the fix.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io(path, e))?;
        let mut chain = Chain {
            file,
            end: 0,
            seq: 0,
            prev_hash: GENESIS_HASH.to_string(),
            buf: Vec::new(),
            templates: template::Templates::default(),
        };
        {
            let _lock = FileLock::exclusive(&chain.file).map_err(|e| AuditError::io(path, e))?;
            chain.reload_tail(path)?;
        }
        let dup = chain
            .file
            .try_clone()
            .map_err(|e| AuditError::io(path, e))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            region: "local".to_string(),
            inner: Mutex::new(chain),
            sync: Arc::new(syncer::SyncShared::new(path.to_path_buf(), dup)),
            syncer: Mutex::new(None),
        })
    }

    /// Sets the region written as `awsRegion` when no resource ARN names one.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the background thread that syncs read-only records (see # Durability);
    /// for processes that serve requests. Without it, appends sync them inline. A second
    /// call does nothing.
    pub fn start_syncer(&self) -> Result<(), AuditError> {
        let mut slot = self.syncer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = self
            .sync
            .start()
            .map_err(|e| AuditError::io(&self.path, e))?
        {
            *slot = Some(handle);
        }
        Ok(())
    }

    /// Appends one record (adds time, id and chain fields); `now` is seconds since epoch.
    pub fn append(&self, event: &Event, now: i64) -> Result<(), AuditError> {
        self.append_all(std::slice::from_ref(event), now)
    }

    /// Appends several records as adjacent lines in one write (e.g. every authorization
    /// decision of one call, then its outcome): no other writer's record lands between
    /// them, and they reach the file together or, on a failed write, not at all intact.
    pub fn append_all(&self, events: &[Event], now: i64) -> Result<(), AuditError> {
        self.append_events(events, now, false)
    }

    /// [`AuditLog::append_all`] for records the caller appends again and again with
    /// only the event id, time, caller pid and chain members differing (the filesystem's
    /// opens, whose shared values come from caches): the constant bytes of such a record
    /// are kept and copied instead of formatted anew. The lines and hashes are the
    /// same as `append_all` writes.
    pub fn append_repeated(&self, events: &[Event], now: i64) -> Result<(), AuditError> {
        self.append_events(events, now, true)
    }

    fn append_events(&self, events: &[Event], now: i64, repeated: bool) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Borrowed once, so that the templates and the chain's hash are separate borrows.
        let chain = &mut *guard;
        let lock = FileLock::exclusive(&chain.file).map_err(|e| AuditError::io(path, e))?;
        // Where the file ends now, by `lseek(SEEK_END)`: the size is all this needs, and
        // the seek costs a fraction of an `fstat` (no attribute copy-out). With
        // `O_APPEND` the descriptor's offset plays no part in where writes land, and
        // reads of the log here are positioned (`pread`).
        let mut size = (&chain.file)
            .seek(SeekFrom::End(0))
            .map_err(|e| AuditError::io(path, e))?;
        if size != chain.end {
            // Another process appended (or a failed write left a torn line): continue
            // from what the file says now.
            chain.reload_tail(path)?;
            size = chain.end;
        }
        let state_change = events.iter().any(|e| !e.read_only);
        let must_sync = {
            let mut st = self.sync.state();
            // A background fdatasync failed since the last append: records already
            // answered may be lost, so this call fails closed (once; it was logged).
            if let Some(e) = st.failed.take() {
                return Err(AuditError::io(path, e));
            }
            // Without a syncer thread, the append after the interval syncs.
            state_change
                || (!st.running
                    && st
                        .pending_since
                        .is_some_and(|t| t.elapsed() >= DATA_SYNC_INTERVAL))
        };
        // The lines go into the chain's reused buffer, each built in place.
        let mut bytes = std::mem::take(&mut chain.buf);
        bytes.clear();
        let mut seq = chain.seq;
        let mut last: Option<[u8; record::HASH_HEX_LEN]> = None;
        for event in events {
            seq += 1;
            let id = record::event_id_bytes().map_err(|e| AuditError::io(path, e))?;
            let prev = match &last {
                Some(h) => std::str::from_utf8(h).unwrap_or_default(),
                None => chain.prev_hash.as_str(),
            };
            let id = std::str::from_utf8(&id).unwrap_or_default();
            let hash = if repeated {
                chain
                    .templates
                    .build_into(event, now, &self.region, seq, prev, id, &mut bytes)
            } else {
                record::build_into(event, now, &self.region, seq, prev, id, &mut bytes)
            };
            bytes.push(b'\n');
            last = Some(hash);
        }
        let written = chain.file.write_all(&bytes).and_then(|()| {
            if must_sync {
                chain.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A short write (ENOSPC mid-line) or a failed sync: take the records back, so
            // the log never holds a torn line and the call, which fails, has no record.
            chain.roll_back(path, size);
            return Err(AuditError::io(path, e));
        }
        chain.end = size + bytes.len() as u64;
        chain.seq = seq;
        if let Some(h) = &last {
            chain.prev_hash.clear();
            chain
                .prev_hash
                .push_str(std::str::from_utf8(h).unwrap_or_default());
        }
        // Keep the buffer for the next append, unless an outsized record grew it.
        if bytes.capacity() <= KEPT_BUFFER_BYTES {
            chain.buf = bytes;
        }
        self.sync.note_written(must_sync);
        drop(lock);
        Ok(())
    }

    /// Forces every record appended so far to disk.
    /// Reports a failed background sync not yet reported to an append.
    pub fn sync(&self) -> Result<(), AuditError> {
        if let Some(e) = self.sync.state().failed.take() {
            return Err(AuditError::io(&self.path, e));
        }
        self.sync
            .sync_now()
            .map_err(|e| AuditError::io(&self.path, e))
    }

    /// The sequence number and hash of the last record this process knows of.
    pub fn head(&self) -> (u64, String) {
        let chain = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (chain.seq, chain.prev_hash.clone())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.sync.stop();
        if let Some(handle) = self.syncer.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
        // Nobody is left to fail a call for a failing sync at shutdown: log it.
        if let Err(e) = self.sync.sync_now() {
            log::error!(
                "audit log {}: fdatasync at close failed: {e}",
                self.path.display()
            );
        }
    }
}

impl Chain {
    /// Cuts the file back to `size` after a failed append (under the file lock).
    fn roll_back(&mut self, path: &Path, size: u64) {
        if let Err(e) = self.file.set_len(size) {
            // The next append (or open) finds the torn line and repairs it then.
            log::error!(
                "audit log {}: cannot remove a partly written record: {e}",
                path.display()
            );
        }
    }

    /// Reads the last intact record's seq and hash. Must hold the file lock: then no
    /// writer is mid-line, so a torn last line is damage (a crash in the middle of a
    /// write, or a failed append whose roll-back also failed) and is repaired first.
    fn reload_tail(&mut self, path: &Path) -> Result<(), AuditError> {
        let mut tail = reader::read_tail(&self.file).map_err(|e| AuditError::io(path, e))?;
        if tail.torn {
            tail.last = self.repair_torn_tail(path, &tail)?;
        }
        match tail.last {
            Some((seq, hash)) => {
                self.seq = seq;
                self.prev_hash = hash;
            }
            None => {
                self.seq = 0;
                self.prev_hash = GENESIS_HASH.to_string();
            }
        }
        self.end = self
            .file
            .metadata()
            .map_err(|e| AuditError::io(path, e))?
            .len();
        Ok(())
    }
}

/// A torn fragment longer than this is never a whole record (records are bounded).
const MAX_RECORD_CHECK: u64 = 4 * record::MAX_RECORD_BYTES as u64;

impl Chain {
    /// Repairs a log whose last line has no newline, returning the chain's new tail.
    ///
    /// A fragment that is a whole, correctly chained record which lost only its newline
    /// is kept and closed. Anything else is a partial record of a call that never got
    /// its answer (the append failed or the process died first): it is removed, with a
    /// warning, so `audit verify` sees an intact chain again. Refuses, naming the fix,
    /// if the file cannot be cut.
    fn repair_torn_tail(
        &mut self,
        path: &Path,
        tail: &reader::Tail,
    ) -> Result<Option<(u64, String)>, AuditError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| AuditError::io(path, e))?
            .len();
        let at = tail.complete_len;
        let torn = len.saturating_sub(at);
        if torn <= MAX_RECORD_CHECK {
            let mut fragment = vec![0u8; torn as usize];
            std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut fragment, at)
                .map_err(|e| AuditError::io(path, e))?;
            if let Some(fields) = verify::next_record(&fragment, tail.last.as_ref()) {
                self.file
                    .write_all(b"\n")
                    .and_then(|()| self.file.sync_data())
                    .map_err(|e| AuditError::io(path, e))?;
                return Ok(Some(fields));
            }
        }
        log::warn!(
            "audit log {}: removing a torn record at its end ({torn} bytes after offset {at}), left by a write that was cut short (a crash or a full disk); the chain continues from record {}",
            path.display(),
            tail.last.as_ref().map_or(0, |(seq, _)| *seq)
        );
        self.file
            .set_len(at)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| AuditError::TornTail {
                path: path.display().to_string(),
                at,
                torn,
                source,
            })?;
        Ok(tail.last.clone())
    }
}

/// An exclusive `flock(2)` held for the guard's lifetime. It keeps the descriptor number,
/// not a borrow, so the chain can be updated while it is held; every guard lives inside
/// a scope that owns (or holds the mutex over) the `File`, which keeps the number valid.
struct FileLock {
    fd: RawFd,
}

impl FileLock {
    fn exclusive(file: &File) -> std::io::Result<Self> {
        let fd = file.as_raw_fd();
        loop {
            // SAFETY: flock only reads the descriptor number; the file is open (see above).
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { fd });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above. Closing the descriptor releases the lock anyway, so a failed
        // unlock cannot keep the log locked longer than this process keeps it open.
        unsafe { libc::flock(self.fd, libc::LOCK_UN) };
    }
}

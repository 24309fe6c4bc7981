//! `state.json`: reading and writing the state with its HMAC and generation, and
//! noticing a state changed or put back outside kmsfs. The state is the store's single
//! commit point (see the module above).

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use super::files::write_atomic;
use super::{internal, io_err, Store, StoreLock, STATE_FILE};
use crate::crypto::{self, SealingKey};
use crate::kms::model::{StoreState, STATE_VERSION};
use crate::kms::KmsError;

/// Domain separator at the start of the state MAC input.
const STATE_MAC_LABEL: &[u8] = b"kmsfs state v1\0";
/// `"format"` of a MAC'd `state.json`.
const STATE_FORMAT_NAME: &str = "kmsfs-state";

/// Identity of the state file as last read, to notice writes by other processes with
/// one `stat`: every write renames a new inode into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateIdent {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

impl StateIdent {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
        }
    }
}

/// A MAC'd `state.json`: the state's exact bytes stay as written (a raw JSON value), so
/// the MAC covers what is on disk, not a re-serialization.
#[derive(Deserialize)]
struct StateEnvelope<'a> {
    format: String,
    generation: u64,
    mac: String,
    #[serde(borrow)]
    state: &'a serde_json::value::RawValue,
}

/// Enough of `state.json` to tell the MAC'd format from the version-1 one.
#[derive(Deserialize)]
struct StateProbe {
    format: Option<String>,
}

impl Store {
    /// The state file's identity now (one stat).
    pub fn state_ident(&self) -> Result<StateIdent, KmsError> {
        let p = self.dir.join(STATE_FILE);
        fs::metadata(&p)
            .map(|m| StateIdent::of(&m))
            .map_err(|e| io_err(&p, "inspect", e))
    }

    /// Reads and authenticates the state, with the identity of the file it came from.
    pub fn read_state(&self) -> Result<(StoreState, StateIdent), KmsError> {
        let p = self.dir.join(STATE_FILE);
        let mut f = File::open(&p).map_err(|e| io_err(&p, "open", e))?;
        let ident = StateIdent::of(&f.metadata().map_err(|e| io_err(&p, "inspect", e))?);
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| io_err(&p, "read", e))?;
        let state = self.decode_state(&p, &v)?;
        self.generation_seen
            .fetch_max(state.generation, Ordering::AcqRel);
        Ok((state, ident))
    }

    /// Reads the state for a reader without the lock. A generation older than one this
    /// process saw can be an honest race (the file was opened just before a rename), so
    /// it is read once more: that read starts after the newer file was in place (it was
    /// renamed before its generation was noted), so an older generation again is a
    /// rollback. No lock is taken: a caller may already hold it.
    pub fn read_state_current(&self) -> Result<(StoreState, StateIdent), KmsError> {
        let seen = self.generation_seen.load(Ordering::Acquire);
        let (state, ident) = self.read_state()?;
        if state.generation >= seen {
            return Ok((state, ident));
        }
        let (state, ident) = self.read_state()?;
        if state.generation < seen {
            return Err(self.rolled_back(state.generation, seen));
        }
        Ok((state, ident))
    }

    fn rolled_back(&self, generation: u64, seen: u64) -> KmsError {
        auth_failure(
            &self.dir.join(STATE_FILE),
            &format!(
                "its generation {generation} is older than generation {seen}, which this process already read: an older copy was put back"
            ),
        )
    }

    /// Reads the state for a write (caller holds the lock, so the file is the latest
    /// commit): also refuses a generation older than one this process already saw.
    pub fn read_state_locked(
        &self,
        _lock: &StoreLock,
    ) -> Result<(StoreState, StateIdent), KmsError> {
        let seen = self.generation_seen.load(Ordering::Acquire);
        let (state, ident) = self.read_state()?;
        if state.generation < seen {
            return Err(self.rolled_back(state.generation, seen));
        }
        Ok((state, ident))
    }

    fn decode_state(&self, p: &Path, bytes: &[u8]) -> Result<StoreState, KmsError> {
        let damaged =
            |e: serde_json::Error| internal(format!("store: {} is damaged: {e}", p.display()));
        let probe: StateProbe = serde_json::from_slice(bytes).map_err(damaged)?;
        let state: StoreState = match probe.format.as_deref() {
            Some(STATE_FORMAT_NAME) => {
                let env: StateEnvelope<'_> = serde_json::from_slice(bytes).map_err(damaged)?;
                let tag = hex::decode(&env.mac).unwrap_or_default();
                let input = state_mac_input(&self.store_id, env.generation, env.state.get());
                if env.format != STATE_FORMAT_NAME
                    || !crypto::hmac_sha256_verify(&self.state_mac_key, &input, &tag)
                {
                    return Err(auth_failure(p, "its MAC does not match"));
                }
                let state: StoreState = serde_json::from_str(env.state.get()).map_err(damaged)?;
                if state.generation != env.generation {
                    return Err(auth_failure(p, "its generation does not match its MAC"));
                }
                self.mac_required.store(true, Ordering::Release);
                state
            }
            Some(other) => {
                return Err(internal(format!(
                    "store: {} has the unknown format {other:?}",
                    p.display()
                )))
            }
            None => {
                if self.mac_required.load(Ordering::Acquire) {
                    return Err(auth_failure(
                        p,
                        "it has no MAC, and this store's state is authenticated",
                    ));
                }
                // Store format version 1, not yet migrated: trusted on first use
                // (docs/THREAT_MODEL); the next write MACs it.
                serde_json::from_slice(bytes).map_err(damaged)?
            }
        };
        if state.version > STATE_VERSION {
            return Err(internal(format!(
                "store: {} has state version {}, newer than this kmsfs understands ({STATE_VERSION})",
                p.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Commits `state` (caller holds the lock) with its MAC. Returns the new file's
    /// identity. The first write of a version-1 store also migrates its header, after
    /// the MAC'd state is durable (a crash in between leaves a version-1 header with a
    /// MAC'd state, which opens, and the next write finishes the migration).
    pub fn write_state(
        &self,
        state: &StoreState,
        _lock: &StoreLock,
    ) -> Result<StateIdent, KmsError> {
        let bytes = encode_state(&self.state_mac_key, &self.store_id, state)?;
        write_atomic(&self.dir.join(STATE_FILE), &bytes)?;
        self.generation_seen
            .fetch_max(state.generation, Ordering::AcqRel);
        let mut migration = self.migration.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = migration.as_ref() {
            self.migrate_header(m)?;
            self.mac_required.store(true, Ordering::Release);
            *migration = None;
        }
        drop(migration);
        self.state_ident()
    }
}

/// The error of a `state.json` that fails authentication. Every call fails with it
/// (closed), naming the file.
fn auth_failure(path: &Path, why: &str) -> KmsError {
    internal(format!(
        "store: {} failed authentication: changed outside kmsfs ({why}); restore it from a backup of this store",
        path.display()
    ))
}

/// MAC input of a state: label, store id, generation, then the state's exact bytes.
fn state_mac_input(store_id: &str, generation: u64, state: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(STATE_MAC_LABEL.len() + 64 + state.len());
    input.extend_from_slice(STATE_MAC_LABEL);
    input.extend_from_slice(&(store_id.len() as u64).to_be_bytes());
    input.extend_from_slice(store_id.as_bytes());
    input.extend_from_slice(&generation.to_be_bytes());
    input.extend_from_slice(state.as_bytes());
    input
}

/// The bytes of a MAC'd `state.json` (see [`StateEnvelope`]).
pub(super) fn encode_state(
    mac_key: &SealingKey,
    store_id: &str,
    state: &StoreState,
) -> Result<Vec<u8>, KmsError> {
    let body = serde_json::to_string_pretty(state).map_err(|e| internal(e.to_string()))?;
    let tag = crypto::hmac_sha256(mac_key, &state_mac_input(store_id, state.generation, &body));
    // Written by hand so that the state's bytes sit in the file exactly as MAC'd.
    let out = format!(
        "{{\n\"format\": \"{STATE_FORMAT_NAME}\",\n\"generation\": {},\n\"mac\": \"{}\",\n\"state\": {body}\n}}\n",
        state.generation,
        hex::encode(tag)
    );
    Ok(out.into_bytes())
}

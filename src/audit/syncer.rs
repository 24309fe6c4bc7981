//! Keeps read-only records' `fdatasync` off the append path (see the module docs,
//! # Durability): appends only count what they wrote, and a background thread (started by
//! [`super::AuditLog::start_syncer`] in processes that serve requests) syncs whatever is
//! unsynced once the oldest of it is [`DATA_SYNC_INTERVAL`] old. The thread holds neither
//! the chain's mutex nor the `flock` while it syncs (through its own duplicate of the
//! descriptor; Linux lets `write` and `fdatasync` of one file run concurrently), so an
//! open never waits for the disk unless its own record changes state.

use super::DATA_SYNC_INTERVAL;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// What the appenders and the syncer share: the descriptor to sync and the counters.
pub(super) struct SyncShared {
    pub(super) path: PathBuf,
    /// A duplicate of the chain's descriptor (same open file).
    file: File,
    state: Mutex<SyncState>,
    wake: Condvar,
    /// Test hook: the next N background syncs fail with EIO instead of syncing.
    #[cfg(test)]
    pub(super) fail_background_syncs: std::sync::atomic::AtomicU32,
    /// Test hook: background syncs that succeeded.
    #[cfg(test)]
    pub(super) background_syncs: std::sync::atomic::AtomicU64,
}

/// Appends are counted in `written` (under the chain mutex, after their `write(2)`);
/// every append up to `synced` is on disk.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    pub(super) written: u64,
    pub(super) synced: u64,
    /// No later than the oldest unsynced append: when it must be synced by, less the
    /// interval. `None` when everything written is synced.
    pub(super) pending_since: Option<Instant>,
    /// A background sync failed and no append has failed for it yet.
    pub(super) failed: Option<std::io::Error>,
    /// A syncer thread serves this log (otherwise appends sync inline, as a fallback).
    pub(super) running: bool,
    stop: bool,
}

impl SyncShared {
    pub(super) fn new(path: PathBuf, file: File) -> SyncShared {
        SyncShared {
            path,
            file,
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
            #[cfg(test)]
            fail_background_syncs: Default::default(),
            #[cfg(test)]
            background_syncs: Default::default(),
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one append (call under the chain mutex, after its write): `synced` says
    /// whether it was fdatasynced inline, which covers every earlier write too.
    pub(super) fn note_written(&self, synced: bool) {
        let mut st = self.state();
        st.written += 1;
        if synced {
            st.synced = st.written;
            st.pending_since = None;
        } else if st.pending_since.is_none() {
            st.pending_since = Some(Instant::now());
            // Only the first unsynced append after a sync wakes the thread: one wake-up
            // per interval at most, not one per open.
            if st.running {
                self.wake.notify_one();
            }
        }
    }

    /// Syncs everything written so far, from any thread (no chain lock needed).
    pub(super) fn sync_now(&self) -> std::io::Result<()> {
        let (upto, read_at) = {
            let st = self.state();
            if st.synced >= st.written {
                return Ok(());
            }
            (st.written, Instant::now())
        };
        let result = self.file.sync_data();
        let mut st = self.state();
        if result.is_ok() {
            st.mark_synced(upto, read_at);
        }
        result
    }

    fn background_sync(&self) -> std::io::Result<()> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::SeqCst;
            let fail = self
                .fail_background_syncs
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            self.background_syncs.fetch_add(1, SeqCst);
        }
        self.file.sync_data()
    }

    /// Starts the thread, returning its handle (`None` if one runs already); an error if
    /// it cannot be started (appends then keep syncing inline).
    pub(super) fn start(self: &Arc<Self>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        if self.state().running {
            return Ok(None);
        }
        let shared = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("kmsfs-auditsync".into())
            .spawn(move || shared.run())?;
        let mut st = self.state();
        st.running = true;
        // Records written before the thread ran may be waiting already.
        if st.pending_since.is_some() {
            self.wake.notify_one();
        }
        Ok(Some(handle))
    }

    /// Tells the thread to end (it does not sync on the way out: the caller does).
    pub(super) fn stop(&self) {
        let mut st = self.state();
        st.stop = true;
        st.running = false;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut st = self.state();
        loop {
            if st.stop {
                return;
            }
            let Some(since) = st.pending_since else {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let now = Instant::now();
            let due = since + DATA_SYNC_INTERVAL;
            if now < due {
                st = self
                    .wake
                    .wait_timeout(st, due - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            // Everything written before this point is covered by the sync below.
            let upto = st.written;
            drop(st);
            let result = self.background_sync();
            st = self.state();
            if let Err(e) = result {
                log::error!(
                    "audit log {}: background fdatasync failed ({e}); the records written in the last {} ms may not be on disk, and the next audited call fails",
                    self.path.display(),
                    DATA_SYNC_INTERVAL.as_millis()
                );
                // Reported once, by failing the next append; later syncs start afresh.
                st.failed = Some(e);
            }
            st.mark_synced(upto, now);
        }
    }
}

impl SyncState {
    /// Every append up to `upto` is synced (or its failure recorded); appends after it
    /// were written after `read_at`.
    fn mark_synced(&mut self, upto: u64, read_at: Instant) {
        self.synced = self.synced.max(upto);
        if self.synced >= self.written {
            self.pending_since = None;
        } else if let Some(since) = self.pending_since {
            self.pending_since = Some(since.max(read_at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{verify, AuditError, AuditLog, Event};
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};

    fn event(read_only: bool) -> Event {
        Event {
            event_name: if read_only { "Decrypt" } else { "CreateGrant" }.into(),
            read_only,
            ..Event::default()
        }
    }

    /// Waits for the syncer to reach a state (not a timing assertion: the bound only
    /// keeps a broken syncer from hanging the test run).
    fn wait_for(log: &AuditLog, what: &str, done: impl Fn(&AuditLog) -> bool) {
        let give_up = Instant::now() + Duration::from_secs(60);
        while !done(log) {
            assert!(Instant::now() < give_up, "the syncer never {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lines(log: &AuditLog) -> usize {
        std::fs::read_to_string(log.path()).unwrap().lines().count()
    }

    #[test]
    fn the_syncer_syncs_read_only_records_without_a_further_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.log")).unwrap();
        log.start_syncer().unwrap();
        log.start_syncer().unwrap();
        assert!(log.sync.state().running);
        log.append(&event(true), 0).unwrap();
        // No other append comes: the thread syncs on its own (appends never sync a
        // read-only record inline while it runs).
        wait_for(&log, "synced", |l| {
            let st = l.sync.state();
            st.synced == 1 && st.pending_since.is_none()
        });
        assert_eq!(log.sync.background_syncs.load(SeqCst), 1);
        // A state change is synced before append returns, whoever else syncs.
        log.append(&event(false), 0).unwrap();
        let st = log.sync.state();
        assert_eq!((st.written, st.synced), (2, 2));
        assert!(st.pending_since.is_none());
    }

    #[test]
    fn without_a_syncer_the_append_after_the_interval_syncs_and_drop_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.log")).unwrap();
        log.append(&event(true), 0).unwrap();
        assert_eq!(log.sync.state().synced, 0);
        // Make the pending record look older than the interval.
        log.sync.state().pending_since = Instant::now().checked_sub(super::DATA_SYNC_INTERVAL);
        log.append(&event(true), 0).unwrap();
        let st = log.sync.state();
        assert_eq!((st.written, st.synced), (2, 2));
        drop(st);
        log.append(&event(true), 0).unwrap();
        log.sync().unwrap();
        assert_eq!(log.sync.state().synced, 3);
        assert_eq!(log.sync.background_syncs.load(SeqCst), 0);
    }

    #[test]
    fn a_failed_background_sync_fails_the_next_append_closed_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.log")).unwrap();
        log.sync.fail_background_syncs.store(1, SeqCst);
        log.start_syncer().unwrap();
        log.append(&event(true), 0).unwrap();
        wait_for(&log, "failed", |l| l.sync.state().failed.is_some());
        assert_eq!(lines(&log), 1);
        // The next call is refused, and leaves no record.
        match log.append(&event(true), 0) {
            Err(AuditError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EIO))
            }
            other => panic!("expected the sync's error, got {other:?}"),
        }
        assert_eq!(lines(&log), 1);
        // Reported once: the call after it is audited again, and the chain is intact.
        log.append(&event(true), 0).unwrap();
        assert_eq!(lines(&log), 2);
        assert_eq!(log.head().0, 2);
        wait_for(&log, "synced", |l| l.sync.state().pending_since.is_none());
        // The same holds for an explicit sync.
        log.sync.fail_background_syncs.store(1, SeqCst);
        log.append(&event(true), 0).unwrap();
        wait_for(&log, "failed", |l| l.sync.state().failed.is_some());
        assert!(log.sync().is_err());
        log.sync().unwrap();
        let report = verify(log.path()).unwrap();
        assert_eq!(report.records, 3, "{report:?}");
    }

    #[test]
    fn drop_stops_the_syncer_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.start_syncer().unwrap();
        let shared = std::sync::Arc::clone(&log.sync);
        log.append(&event(true), 0).unwrap();
        drop(log);
        let st = shared.state();
        assert!(!st.running);
        assert_eq!((st.written, st.synced), (1, 1));
        // The thread has ended: it held the only other reference.
        drop(st);
        assert_eq!(std::sync::Arc::strong_count(&shared), 1);
    }
}

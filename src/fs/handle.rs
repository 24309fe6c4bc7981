//! Open file and directory handles: what an `open` authorized, kept until `release`.
//!
//! A file handle owns the backing file descriptor and the content cipher that the key
//! service's answer unlocked for this one open; it is never shared with another open, so
//! a permission is never reused across opens. The one exception is a re-key of the file
//! through another handle (see [`super::inode::ContentKey`]): the file then has a new
//! key, generated for it under the directory's key rule by an authorized caller, and
//! open handles follow it, as POSIX handles survive another opener's truncation. A directory handle holds the decrypted
//! listing taken at its first read (and again at each read from offset 0), so offsets
//! stay stable while the directory changes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::format::ContentCipher;
use crate::kms::provider::Caller;

use super::authz::Access;
use super::error::FsError;
use super::inode::{CipherPin, ContentKey, Node, NodeKind};

/// One open regular file.
#[derive(Debug)]
pub struct OpenFile {
    pub node: Arc<Node>,
    pub file: File,
    /// The cipher this open unlocked (or, for a create, generated).
    pub cipher: Arc<ContentCipher>,
    /// The node's [`ContentKey::epoch`] when `cipher` was obtained.
    pub epoch: u64,
    pub access: Access,
    /// `O_APPEND`: every write goes to the current end of file. Always false with the
    /// writeback cache, where the kernel positions appends itself and its WRITEs carry
    /// the offsets to use (its size is ahead of the backing file's while pages are dirty).
    pub append: bool,
    /// Who opened (or created) the file. With the writeback cache, WRITEs come from the
    /// kernel's flusher, not from the writer; a re-key a write needs is then asked as
    /// the opener of the handle the kernel writes through.
    pub opener: Caller,
    /// Keeps the node's newer cipher (if the file is re-keyed) for as long as this open
    /// lives; taken before `epoch` was read.
    pub _pin: CipherPin<Arc<Node>>,
    /// Where this handle's READs go: a sequential reader gets the backing file read
    /// ahead of it (a hint only, see [`ReadPattern`]).
    pub pattern: ReadPattern,
}

impl OpenFile {
    /// The cipher to use now, given the node's key state (read under the node's content
    /// lock): this open's own, unless the file was re-keyed since.
    pub fn cipher<'a>(&'a self, key: &'a ContentKey) -> &'a Arc<ContentCipher> {
        match &key.cipher {
            Some(newer) if key.epoch != self.epoch => newer,
            _ => &self.cipher,
        }
    }
}

/// How far ahead of a sequential reader the backing file is prefetched, in plaintext
/// bytes: four of the kernel's largest READs, so the backing disk works on the next
/// requests while this one is opened and answered (docs/PERFORMANCE.md, round 8).
pub const PREFETCH_WINDOW: u64 = 4 << 20;
/// A READ starting this far before the end of the previous ones still belongs to them:
/// the kernel keeps several read-ahead READs of one file in flight, and the daemon's
/// threads may take them out of order.
const BEHIND_SLACK: u64 = 4 << 20;
/// A READ starting at most this far past the end of the previous ones continues them
/// (one READ taken before the one in front of it); further is a jump.
const AHEAD_SLACK: u64 = super::fuse::MAX_WRITE as u64;
/// READs in a row that must move the run forward before the backing file is
/// prefetched: a random reader's READs land next to each other now and then, twice in
/// a row far more rarely.
const MIN_RUN: u32 = 3;

/// The read pattern of one handle: detects a sequential reader and says which
/// plaintext range to prefetch next. Only a hint: it never decides what a READ
/// returns, so a wrong guess costs some backing reads, never bytes.
#[derive(Debug, Default)]
pub struct ReadPattern {
    state: Mutex<PatternState>,
}

#[derive(Debug, Default)]
struct PatternState {
    /// End of the furthest READ of the current run.
    next: u64,
    /// READs in the current run.
    run: u32,
    /// End of what was prefetched for this run.
    ahead: u64,
}

impl ReadPattern {
    /// Records a READ of `len` bytes at `offset`. Returns the plaintext range to
    /// prefetch now, if the READs are sequential and the prefetched part ahead of them
    /// has shrunk by half a window; past the end of the file is the caller's to clip.
    pub fn record(&self, offset: u64, len: u64) -> Option<std::ops::Range<u64>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let end = offset.saturating_add(len);
        let continues = if offset >= st.next {
            offset - st.next <= AHEAD_SLACK
        } else {
            st.next - offset <= BEHIND_SLACK
        };
        if continues {
            // Only a READ that moves the run forward counts: one taken out of order
            // neither counts nor breaks it, and a backwards reader never counts.
            if end > st.next {
                st.run = st.run.saturating_add(1);
                st.next = end;
            }
        } else {
            *st = PatternState {
                next: end,
                run: 1,
                ahead: 0,
            };
        }
        if st.run < MIN_RUN {
            return None;
        }
        let target = st.next.saturating_add(PREFETCH_WINDOW);
        let from = st.ahead.max(end);
        if target.saturating_sub(from) < PREFETCH_WINDOW / 2 {
            return None;
        }
        st.ahead = target;
        Some(from..target)
    }
}

/// One listing entry of a directory handle.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: NodeKind,
    /// The entry's name in the backing directory (for readdirplus's lookups).
    pub backing_name: String,
    /// The backing inode number (readdir's `d_ino`; lookups assign FUSE inodes).
    pub backing_ino: u64,
}

/// One open directory. The listing is taken on the handle's first `READDIR` (and again
/// on every read from offset 0, i.e. after `rewinddir`), not at `opendir`: an `opendir`
/// whose entries the kernel serves from its own cache then costs no listing at all.
#[derive(Debug, Default)]
pub struct OpenDir {
    pub listing: Mutex<Option<Arc<Vec<DirEntry>>>>,
}

/// Handle numbers → open files and directories.
pub struct HandleTable<T> {
    map: RwLock<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> HandleTable<T> {
    pub fn insert(&self, value: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(value));
        fh
    }

    /// The handle `fh`; `EBADF` if it is not open.
    pub fn get(&self, fh: u64) -> Result<Arc<T>, FsError> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::refused(libc::EBADF, "unknown file handle"))
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    /// Feeds READs of `len` at `offsets` and returns what each asked to prefetch.
    fn feed(p: &ReadPattern, offsets: &[u64], len: u64) -> Vec<Option<std::ops::Range<u64>>> {
        offsets.iter().map(|&o| p.record(o, len)).collect()
    }

    #[test]
    fn a_sequential_reader_is_prefetched_ahead_in_half_windows() {
        let p = ReadPattern::default();
        let offsets: Vec<u64> = (0..12).map(|i| i * M).collect();
        let got = feed(&p, &offsets, M);
        // The first two READs say nothing; the third starts a window past itself,
        // then every second READ extends it by half a window, contiguously.
        assert_eq!(got[..2], [None, None]);
        assert_eq!(got[2], Some(3 * M..3 * M + PREFETCH_WINDOW));
        let mut ahead = 3 * M + PREFETCH_WINDOW;
        for (i, r) in got.iter().enumerate().skip(3) {
            let end = (i as u64 + 1) * M;
            match r {
                Some(r) => {
                    assert_eq!(r.start, ahead, "READ {i}: gapless");
                    assert_eq!(r.end, end + PREFETCH_WINDOW, "READ {i}");
                    ahead = r.end;
                }
                None => assert!(ahead - end > PREFETCH_WINDOW / 2, "READ {i}"),
            }
            assert!(
                ahead > end,
                "READ {i}: the prefetch stays ahead of the reader"
            );
        }
        assert_eq!(got.iter().filter(|r| r.is_some()).count(), 5);
    }

    #[test]
    fn reads_taken_out_of_order_still_count_as_sequential() {
        // The kernel's read-ahead READs, served by different threads: pairs swapped.
        let p = ReadPattern::default();
        let offsets = [M, 0, 3 * M, 2 * M, 5 * M, 4 * M, 7 * M, 6 * M];
        let got = feed(&p, &offsets, M);
        assert!(got.iter().filter(|r| r.is_some()).count() >= 2, "{got:?}");
        for r in got.into_iter().flatten() {
            assert!(r.start >= 6 * M && r.end <= 12 * M, "{r:?}");
        }
    }

    #[test]
    fn backwards_and_random_readers_are_never_prefetched() {
        let p = ReadPattern::default();
        let back: Vec<u64> = (0..40).rev().map(|i| i * M).collect();
        assert!(feed(&p, &back, M).iter().all(Option::is_none));
        let p = ReadPattern::default();
        let mut x: u64 = 0x9e37_79b9;
        let random: Vec<u64> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // 4 KiB reads scattered over 512 MiB, as fio's randread over the
                // benchmark's file.
                (x % (512 * M / 4096)) * 4096
            })
            .collect();
        let hits = feed(&p, &random, 4096)
            .iter()
            .filter(|r| r.is_some())
            .count();
        assert_eq!(hits, 0, "prefetches for random reads");
    }

    #[test]
    fn a_jump_starts_a_new_run_ahead_of_the_new_position() {
        let p = ReadPattern::default();
        feed(&p, &[0, M, 2 * M, 3 * M], M);
        let far = 100 * M;
        assert_eq!(p.record(far, M), None, "a jump is one READ of a new run");
        assert_eq!(p.record(far + M, M), None);
        assert_eq!(
            p.record(far + 2 * M, M),
            Some(far + 3 * M..far + 3 * M + PREFETCH_WINDOW)
        );
        // A gap of more than one READ is a jump too.
        assert_eq!(p.record(far + 5 * M, M), None);
    }
}

//! Cold large reads straight from the disk (`O_DIRECT`), past the backing page cache.
//!
//! A sequential reader makes the kernel's read-ahead send READs of up to 1 MiB. Read
//! through the backing file system's page cache, a cold range costs the allocation and
//! fill of fresh cache pages and then a copy of every byte into the daemon's buffer:
//! that copy was 57 % of the daemon's CPU in a cold sequential read, and the ciphertext
//! then stays cached beside the plaintext the kernel keeps for the mount
//! (docs/PERFORMANCE.md, "Round 12: cold sequential read"). Read with `O_DIRECT`, the
//! disk's data arrives in the buffer where it is opened, with no copy and no second
//! cached copy of the file.
//!
//! Only where that is the better path: a READ of at least [`DIRECT_MIN`] bytes whose
//! backing range is cold ([`sys::range_is_cold`]: fewer than half its pages cached, none
//! dirty or being written back; never without `cachestat(2)`). A cached range is a
//! memory copy away, and the kernel would write a dirty one out before reading it
//! directly (correct, but a stall). Coherence needs nothing more: the kernel writes back
//! any dirty page of the range before a direct read, and the caller holds the node's
//! content lock shared, so no write through this mount changes the range meanwhile.
//! Any failure of the direct read (a file system without `O_DIRECT`, an alignment it
//! refuses, a short read) falls back to the buffered read, which reports its own error
//! if the failure was real. Authentication is the same either way: the bytes read are
//! opened block by block and a block that fails is EIO.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::fs::sys;

/// READs smaller than this stay buffered (the kernel's first READs of a file, random
/// reads, small files): there a disk request of their own would cost more than the copy
/// it saves, and the backing read-ahead serves what follows.
pub const DIRECT_MIN: u32 = 256 * 1024;

/// Alignment of a direct read's offset, length and buffer: a multiple of the common
/// logical block sizes (512, 4096) and of the page size on x86_64. A device that needs
/// more refuses the read (`EINVAL`) and the buffered read is used.
const ALIGN: u64 = 4096;

/// Direct descriptors kept at most at once, over all handles of this process: 1 024, or
/// an eighth of the descriptor limit where that is lower. Past it a handle reads through
/// the page cache, so that descriptors stay for the opens and nodes that need them.
const MAX_DIRECT_READERS: usize = 1024;

/// Direct descriptors alive.
static DIRECT_READERS: AtomicUsize = AtomicUsize::new(0);

fn direct_readers_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| MAX_DIRECT_READERS.min(sys::descriptor_limit() / 8))
}

/// A handle's backing file opened read-only with `O_DIRECT`, counted against
/// [`MAX_DIRECT_READERS`] while it lives.
#[derive(Debug)]
pub struct DirectReader {
    file: File,
}

impl DirectReader {
    /// The descriptor `open` gives (`O_DIRECT`), unless the cap is reached or `open`
    /// fails (a file system without `O_DIRECT` refuses it): then `None`.
    pub fn open<E>(open: impl FnOnce() -> Result<File, E>) -> Option<DirectReader> {
        if DIRECT_READERS.fetch_add(1, Ordering::AcqRel) >= direct_readers_cap() {
            DIRECT_READERS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        match open() {
            Ok(file) => Some(DirectReader { file }),
            Err(_) => {
                DIRECT_READERS.fetch_sub(1, Ordering::AcqRel);
                None
            }
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for DirectReader {
    fn drop(&mut self) {
        DIRECT_READERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads backing bytes `start..stop` with `direct` (the same file opened `O_DIRECT`)
/// into `buf` when that range of `buffered` is cold, and returns where in `buf` they
/// begin. `None`: the range is not cold or the direct read failed; nothing was read
/// that the caller must use, and it reads buffered instead.
pub fn read_cold(
    buffered: &File,
    direct: &File,
    start: u64,
    stop: u64,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    if stop <= start || !sys::range_is_cold(buffered.as_fd(), start, stop - start) {
        return None;
    }
    let from = start - start % ALIGN;
    let to = stop.checked_next_multiple_of(ALIGN)?;
    let area_len = usize::try_from(to - from).ok()?;
    let need = usize::try_from(stop - from).ok()?;
    let align = usize::try_from(ALIGN).ok()?;
    buf.resize(area_len + align, 0);
    let pad = (align - buf.as_ptr() as usize % align) % align;
    let area = buf.get_mut(pad..pad + area_len)?;
    let mut got = 0;
    while got < need {
        match direct.read_at(area.get_mut(got..)?, from + got as u64) {
            // The end of the file came early: it is shorter than the length the caller
            // read a moment ago (changed outside the mount); the buffered read decides.
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(pad + usize::try_from(start - from).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// A file of `data` in /var/tmp (a disk-backed file system: tmpfs may refuse
    /// `O_DIRECT`, and its pages are always cached), opened buffered and `O_DIRECT`, its
    /// pages dropped (clean after a sync). `None`, said why, where that cannot be had.
    fn cold_file(data: &[u8]) -> Option<(tempfile::TempDir, File, File)> {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let buffered = File::open(&path).unwrap();
        buffered.sync_all().unwrap();
        let Ok(direct) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
        else {
            eprintln!("skipped: /var/tmp refuses O_DIRECT");
            return None;
        };
        // An overlay's own inode has no pages of its own: its ranges always look cold.
        let fs = nix::sys::statfs::statfs(dir.path()).unwrap();
        if fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC {
            eprintln!("skipped: /var/tmp is an overlay");
            return None;
        }
        nix::fcntl::posix_fadvise(
            &buffered,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        if !sys::range_is_cold(buffered.as_fd(), 0, data.len() as u64) {
            eprintln!("skipped: no cachestat(2) here, or the pages stayed cached");
            return None;
        }
        Some((dir, buffered, direct))
    }

    #[test]
    fn a_cold_range_is_read_direct_at_any_offset_and_a_cached_one_is_not() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let Some((_dir, buffered, direct)) = cold_file(&data) else {
            return;
        };
        let (start, stop) = (1024 + 4136 * 3, 1024 + 4136 * 200);
        let mut buf = Vec::new();
        let at = read_cold(&buffered, &direct, start, stop, &mut buf).expect("read direct");
        let want = &data[start as usize..stop as usize];
        assert_eq!(&buf[at..at + want.len()], want);
        // Up to the end of the file, whose length is no multiple of the alignment.
        let end = data.len() as u64;
        let at = read_cold(&buffered, &direct, end - 300_000, end, &mut buf).expect("tail");
        assert_eq!(&buf[at..at + 300_000], &data[data.len() - 300_000..]);
        // Read through the page cache, the same range is no longer cold.
        let mut sink = vec![0u8; (stop - start) as usize];
        buffered.read_exact_at(&mut sink, start).unwrap();
        assert_eq!(read_cold(&buffered, &direct, start, stop, &mut buf), None);
    }

    #[test]
    fn a_range_past_the_end_is_left_to_the_buffered_read() {
        let Some((_dir, buffered, direct)) = cold_file(&[5u8; 100_000]) else {
            return;
        };
        let mut buf = Vec::new();
        assert_eq!(
            read_cold(&buffered, &direct, 50_000, 400_000, &mut buf),
            None
        );
    }
}

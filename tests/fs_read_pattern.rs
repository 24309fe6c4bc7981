//! Reads of a large file through a real mount in the orders the daemon's read path
//! treats differently: sequential (the kernel's read-ahead keeps several READs in
//! flight, and a READ opened while others are opened is not split across threads),
//! backwards, at random, two readers at once; and a damaged block ahead of a
//! sequential reader, which must still fail with EIO when the reader reaches it while
//! the blocks before it read exactly. Needs root and /dev/fuse.

mod support;

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use support::fs::*;
use support::Rng;

const M: usize = 1 << 20;
const B: usize = 4096;
const HEADER: usize = 1024;
/// New files are written in the current envelope version.
const SEALED: usize = kmsfs::format::EnvelopeVersion::CURRENT.sealed_block_size();

/// Drops the kernel's cached pages of `f` (its FUSE pages), so the next reads are
/// READs again.
fn drop_cached(f: &File) {
    // SAFETY: a valid descriptor; fadvise only drops this file's cached pages.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// Flips the bits `mask` of the byte at `at` of the backing file `path`.
fn flip_bits(path: &std::path::Path, at: u64, mask: u8) {
    let raw = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    raw.read_exact_at(&mut byte, at).unwrap();
    raw.write_all_at(&[byte[0] ^ mask], at).unwrap();
}

/// Reads `f` from the start in 1 MiB `read(2)`s: the first `good` MiB must be `data`'s,
/// the next read must fail with EIO. Returns the read buffer.
fn read_to_eio(mut f: &File, data: &[u8], good: usize) -> Vec<u8> {
    let mut buf = vec![0u8; M];
    for n in 0..good {
        f.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("MiB {n} before the damaged block: {e}"));
        assert!(buf[..] == data[n * M..(n + 1) * M], "MiB {n}");
    }
    let err = f.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    buf
}

/// Reads `f` from the start in `chunk`-sized `read(2)`s to the end.
fn read_sequentially(mut f: &File, chunk: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_large_file_reads_the_same_sequentially_backwards_at_random_and_twice_at_once() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let data = Rng(0x5eed_0a11).bytes(6 * M + 4321);
    fs::write(m.path("big"), &data).unwrap();
    // A fresh mount: nothing of the file is in the kernel's cache for it.
    m.remount(&[]);
    m.assert_live();
    let f = File::open(m.path("big")).unwrap();
    assert!(
        read_sequentially(&f, M) == data,
        "sequential read differs from what was written"
    );

    drop_cached(&f);
    let mut buf = vec![0u8; M];
    let mut end = data.len();
    while end > 0 {
        let from = end.saturating_sub(M);
        f.read_exact_at(&mut buf[..end - from], from as u64)
            .unwrap();
        assert!(buf[..end - from] == data[from..end], "backwards at {from}");
        end = from;
    }

    drop_cached(&f);
    let mut rng = Rng(0x5eed_0a12);
    let mut buf = vec![0u8; M];
    for _ in 0..48 {
        let at = rng.below(data.len() as u64 + B as u64) as usize;
        let len = 1 + rng.below(M as u64) as usize;
        let n = f.read_at(&mut buf[..len], at as u64).unwrap();
        let want = &data[at.min(data.len())..(at + len).min(data.len())];
        assert!(&buf[..n] == want, "random read of {len} at {at}");
    }

    // Two sequential readers on their own handles at once, after dropping the cache.
    drop_cached(&f);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let f = File::open(m.path("big")).unwrap();
                    read_sequentially(&f, 128 * 1024) == data
                })
            })
            .collect();
        for r in readers {
            assert!(r.join().unwrap(), "a concurrent sequential read differs");
        }
    });
    m.assert_live();
}

#[test]
fn a_damaged_block_ahead_of_a_sequential_reader_is_eio_when_reached() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let data = Rng(0x5eed_0a13).bytes(12 * M);
    fs::write(m.path("big"), &data).unwrap();
    let backing = m.backing_files();
    assert_eq!(backing.len(), 1);
    // One byte of the ciphertext of the first block at 8 MiB, inside a read-ahead
    // READ that the kernel sends while the reader still waits for an earlier one.
    flip_bits(
        &backing[0],
        (HEADER + 8 * M / B * SEALED + 100) as u64,
        0x10,
    );
    m.remount(&[]);
    m.assert_live();

    let f = File::open(m.path("big")).unwrap();
    let mut buf = read_to_eio(&f, &data, 8);
    // Still EIO on a retry, and the blocks after it still read.
    let err = f.read_exact_at(&mut buf, (8 * M) as u64).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    f.read_exact_at(&mut buf, (10 * M) as u64).unwrap();
    assert!(buf[..] == data[10 * M..11 * M]);
    m.assert_live();
}

/// Pages of `path` in the page cache (`cachestat(2)`, Linux 6.5), `None` without it.
fn cached_pages(path: &std::path::Path) -> Option<u64> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let f = File::open(path).unwrap();
    let range = Range { off: 0, len: 0 };
    let mut stat = Stat::default();
    // SAFETY: cachestat(fd, range, stat, 0) with live #[repr(C)] values of the kernel's
    // layouts (linux/mman.h); a length of 0 means to the end of the file.
    let rc = unsafe {
        libc::syscall(
            451,
            f.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    (rc == 0).then_some(stat.nr_cache)
}

/// Writes `path`'s dirty pages and drops its cached ones.
fn drop_backing_pages(path: &std::path::Path) {
    let f = File::open(path).unwrap();
    f.sync_all().unwrap();
    drop_cached(&f);
}

#[test]
fn a_cold_file_reads_past_the_backing_page_cache_and_a_damaged_block_is_still_eio() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let data = Rng(0x5eed_0a14).bytes(8 * M + 777);
    fs::write(m.path("big"), &data).unwrap();
    let backing = m.backing_files();
    assert_eq!(backing.len(), 1);
    let pages = (fs::metadata(&backing[0]).unwrap().len() as usize).div_ceil(B) as u64;
    m.remount(&[]);
    m.assert_live();
    drop_backing_pages(&backing[0]);
    match cached_pages(&backing[0]) {
        Some(0) => {}
        Some(n) => {
            // A file system whose pages cannot be dropped (tmpfs) is never cold.
            eprintln!("skipped: {n} of {pages} backing pages stayed cached");
            return;
        }
        None => {
            eprintln!("skipped: no cachestat(2) on this kernel");
            return;
        }
    }
    // READs of the direct path's size need the mount's read-ahead window raised, which
    // only root with a writable sysfs can do.
    let dev = fs::metadata(&m.mnt).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let window: u64 = fs::read_to_string(&knob)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let f = File::open(m.path("big")).unwrap();
    assert!(
        read_sequentially(&f, M) == data,
        "cold sequential read differs"
    );
    if window < 256 {
        eprintln!("skipped: the mount's read-ahead window is {window} KiB");
        return;
    }
    // The header and the first small READs go through the backing page cache; the large
    // READs of the rest went past it.
    let cached = cached_pages(&backing[0]).unwrap();
    assert!(
        cached < pages / 4,
        "{cached} of {pages} backing pages cached after a cold sequential read"
    );
    drop(f);

    // One byte of the block at 5 MiB, the file cold again: the direct read of its
    // range opens every block as the cached one does, so the reader gets EIO there.
    flip_bits(&backing[0], (HEADER + 5 * M / B * SEALED + 9) as u64, 0x01);
    m.remount(&[]);
    m.assert_live();
    drop_backing_pages(&backing[0]);
    let f = File::open(m.path("big")).unwrap();
    read_to_eio(&f, &data, 5);
    m.assert_live();
}

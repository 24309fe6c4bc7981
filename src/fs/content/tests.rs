use super::*;
use crate::crypto::DataKey;
use crate::format::{EnvelopeVersion, FileHeader, HEADER_LEN};
use std::sync::Arc;

fn new_file() -> (File, ContentCipher) {
    new_file_of(EnvelopeVersion::CURRENT)
}

fn new_file_of(version: EnvelopeVersion) -> (File, ContentCipher) {
    let key = DataKey::generate().unwrap();
    let header = FileHeader::with_version(
        version,
        FileHeader::generate_file_id().unwrap(),
        "arn:aws:kms:local:1:key/k".into(),
        vec![1, 2, 3],
        &key,
    )
    .unwrap();
    let cipher = ContentCipher::new(&key, &header).unwrap();
    let file = tempfile::tempfile().unwrap();
    file.write_all_at(&header.encode(), 0).unwrap();
    (file, cipher)
}

fn read_all(file: &File, cipher: &ContentCipher) -> Vec<u8> {
    let size = size(file, cipher).unwrap();
    read(file, None, cipher, 0, size as u32 + 10, |b| b.to_vec()).unwrap()
}

/// Writes `data` at `off` into the file and into its byte-vector `model`.
fn write_both(file: &File, cipher: &ContentCipher, model: &mut Vec<u8>, off: usize, data: &[u8]) {
    write(file, cipher, off as u64, data).unwrap();
    if model.len() < off + data.len() {
        model.resize(off + data.len(), 0);
    }
    model[off..off + data.len()].copy_from_slice(data);
}

#[test]
fn writes_truncates_and_reads_match_a_byte_vector_model() {
    for version in [EnvelopeVersion::V1, EnvelopeVersion::V2] {
        model_check(version);
    }
}

fn model_check(version: EnvelopeVersion) {
    let (file, cipher) = new_file_of(version);
    let mut model: Vec<u8> = Vec::new();
    let mut x: u64 = 0x1234_5678;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..1500 {
        match next(4) {
            0 | 1 => {
                // A third of the writes are block-aligned (the streaming path).
                let aligned = next(3) == 0;
                let off = if aligned { next(6) * B } else { next(6 * B) } as usize;
                let len = if aligned {
                    (next(3) + 1) * B
                } else {
                    next(2 * B + 100) + 1
                } as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 + step) as u8).collect();
                write_both(&file, &cipher, &mut model, off, &data);
            }
            2 => {
                let len = next(7 * B) as usize;
                truncate(&file, &cipher, len as u64).unwrap();
                model.resize(len, 0);
            }
            _ => {
                let off = next(7 * B);
                let len = next(3 * B) as u32;
                let got = read(&file, None, &cipher, off, len, |b| b.to_vec()).unwrap();
                let from = (off as usize).min(model.len());
                let to = (off as usize + len as usize).min(model.len());
                assert_eq!(got, &model[from..to], "step {step}");
            }
        }
        assert_eq!(
            size(&file, &cipher).unwrap(),
            model.len() as u64,
            "step {step}"
        );
        assert_eq!(
            file.metadata().unwrap().len(),
            version.backing_len(model.len() as u64),
            "step {step}"
        );
    }
    assert_eq!(read_all(&file, &cipher), model);
}

#[test]
fn large_aligned_and_unaligned_writes_read_back_exactly() {
    let (file, cipher) = new_file();
    let mut model = vec![0u8; 0];
    // Aligned (sealed straight from the request) and unaligned (staged), with odd
    // block counts and a partial last block.
    let writes: [(usize, usize); 4] = [
        (0, 67 * BLOCK_SIZE),
        (BLOCK_SIZE * 7, 129 * BLOCK_SIZE + 123),
        (5000, 70 * BLOCK_SIZE + 77),
        (0, 256 * BLOCK_SIZE),
    ];
    for (n, (off, len)) in writes.into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + n) as u8).collect();
        write(&file, &cipher, off as u64, &data).unwrap();
        if model.len() < off + len {
            model.resize(off + len, 0);
        }
        model[off..off + len].copy_from_slice(&data);
        assert_eq!(read_all(&file, &cipher), model, "write {n}");
    }
}

#[test]
fn a_split_read_across_holes_and_a_partial_last_block_is_exact() {
    // 300 blocks, opened in place on several threads: a hole (never written, all
    // zeros on disk) in the middle of every run and a partial last block.
    for version in [EnvelopeVersion::V1, EnvelopeVersion::V2] {
        let (file, cipher) = new_file_of(version);
        let mut model = vec![0u8; 299 * BLOCK_SIZE + 77];
        for (at, len) in [(0, 3 * BLOCK_SIZE + 5), (150 * BLOCK_SIZE - 9, 20)] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8 + 1).collect();
            write(&file, &cipher, at as u64, &data).unwrap();
            model[at..at + len].copy_from_slice(&data);
        }
        write(&file, &cipher, model.len() as u64 - 1, &[9]).unwrap();
        *model.last_mut().unwrap() = 9;
        assert_eq!(read_all(&file, &cipher), model, "{version:?}");
        let got = read(&file, None, &cipher, 100, (200 * B) as u32, |b| b.to_vec()).unwrap();
        assert_eq!(got, &model[100..100 + 200 * BLOCK_SIZE], "{version:?}");
    }
}

#[test]
fn a_read_among_other_reads_takes_its_share_of_the_cores_and_still_authenticates() {
    let alone = threads_for(256);
    assert_eq!(read_threads(256, 0), alone);
    assert_eq!(read_threads(256, 1), (alone / 2).max(1));
    assert_eq!(read_threads(256, usize::MAX), 1);
    assert_eq!(read_threads(1, 0), 1);
    // With another READ counted in flight, a 1 MiB read is opened on fewer threads
    // (one on two cores): the bytes are the same, and a damaged block still fails it.
    let (file, cipher) = new_file();
    let data: Vec<u8> = (0..256 * B).map(|i| (i % 249) as u8).collect();
    write(&file, &cipher, 0, &data).unwrap();
    let other = InFlight::enter();
    assert_eq!(read_all(&file, &cipher), data);
    let at = HEADER_LEN as u64 + 200 * cipher.version().sealed_block_size() as u64 + 30;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 4], at).unwrap();
    let err = read(&file, None, &cipher, 0, (256 * B) as u32, |b| b.len()).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    drop(other);
    let err = read(&file, None, &cipher, 0, (256 * B) as u32, |b| b.len()).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
}

#[test]
fn sizes_beyond_the_largest_file_are_efbig() {
    let (file, cipher) = new_file();
    let err = write(&file, &cipher, MAX_FILE_SIZE, b"x").unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    let err = write(&file, &cipher, u64::MAX - 1, b"xy").unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    let err = truncate(&file, &cipher, MAX_FILE_SIZE + 1).unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG);
    assert_eq!(size(&file, &cipher).unwrap(), 0);
}

#[test]
fn a_damaged_block_in_a_split_request_fails_the_whole_read() {
    // 256 blocks: split across threads wherever there are two cores or more; the
    // damaged block lies in the last run, which a helper thread opens.
    let blocks = 256u64;
    let (file, cipher) = new_file();
    let data: Vec<u8> = (0..blocks * B).map(|i| (i % 251) as u8).collect();
    write(&file, &cipher, 0, &data).unwrap();
    assert_eq!(read_all(&file, &cipher), data);
    let sealed = cipher.version().sealed_block_size() as u64;
    let at = HEADER_LEN as u64 + (blocks - 3) * sealed + 40;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x80], at).unwrap();
    let err = read(&file, None, &cipher, 0, (blocks * B) as u32, |b| b.len()).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    // The runs before it still read.
    let n = read(&file, None, &cipher, 0, (128 * B) as u32, |b| b.to_vec()).unwrap();
    assert_eq!(n, &data[..128 * B as usize]);
}

#[test]
fn a_damaged_block_fails_the_read_instead_of_returning_bytes() {
    let (file, cipher) = new_file();
    write(&file, &cipher, 0, &[7u8; 3 * BLOCK_SIZE]).unwrap();
    let at = HEADER_LEN as u64 + cipher.version().sealed_block_size() as u64 + 50;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 1], at).unwrap();
    // Block 0 alone still reads; any range touching block 1 fails.
    assert_eq!(
        read(&file, None, &cipher, 0, 100, |b| b.len()).unwrap(),
        100
    );
    let err = read(&file, None, &cipher, 0, 3 * B as u32, |b| b.len()).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    // A write that must read the damaged block back refuses too.
    let err = write(&file, &cipher, B + 1, b"x").unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
}

#[test]
fn more_concurrent_requests_than_kept_buffers_each_get_their_own() {
    // Six threads at once, more than SPARE_SCRATCH: sets beyond the pool are
    // allocated for the request and freed after it; no two requests ever share one.
    // Large unaligned writes (edge blocks read back) and whole reads, many rounds.
    std::thread::scope(|scope| {
        for t in 0..6u8 {
            scope.spawn(move || {
                let (file, cipher) = new_file();
                let mut model = vec![0u8; 0];
                for round in 0..5usize {
                    let offset = round * 70_001 % 200_000;
                    let data: Vec<u8> = (0..150_000 + round * 13)
                        .map(|i| (i as u8) ^ t ^ round as u8)
                        .collect();
                    write(&file, &cipher, offset as u64, &data).unwrap();
                    if model.len() < offset + data.len() {
                        model.resize(offset + data.len(), 0);
                    }
                    model[offset..offset + data.len()].copy_from_slice(&data);
                    assert_eq!(read_all(&file, &cipher), model, "thread {t} round {round}");
                }
            });
        }
    });
    let kept = SPARE.lock().map(|p| p.len()).unwrap_or(0);
    assert!(kept <= SPARE_SCRATCH, "{kept} sets kept");
}

#[test]
fn many_concurrent_large_writes_through_the_shared_workers_read_back_exactly() {
    // Large requests (split into runs sealed and written by the shared helpers) from
    // more threads than there are helpers, so parts queue behind other requests':
    // 1 MiB aligned writes (sealed straight from the request), unaligned ones with
    // partial edge blocks, and one file written by several threads in turn.
    let shared = std::sync::Mutex::new((new_file(), Vec::<u8>::new()));
    std::thread::scope(|scope| {
        for t in 0..5u8 {
            let shared = &shared;
            scope.spawn(move || {
                let (file, cipher) = new_file();
                let mut model = Vec::new();
                for round in 0..4usize {
                    let (offset, len) = if round % 2 == 0 {
                        (round * 1024 * 1024, 1024 * 1024)
                    } else {
                        (round * 300_001, 700_000 + t as usize)
                    };
                    let data: Vec<u8> = (0..len)
                        .map(|i| (i as u8).wrapping_mul(31) ^ t ^ round as u8)
                        .collect();
                    write(&file, &cipher, offset as u64, &data).unwrap();
                    if model.len() < offset + len {
                        model.resize(offset + len, 0);
                    }
                    model[offset..offset + len].copy_from_slice(&data);
                    assert_eq!(read_all(&file, &cipher), model, "thread {t} round {round}");

                    // The shared file: the caller's lock, as the node's content lock.
                    let mut guard = shared.lock().unwrap();
                    let ((file, cipher), model) = &mut *guard;
                    let at = (t as usize * 5 + round) * 100_000;
                    write(file, cipher, at as u64, &data).unwrap();
                    if model.len() < at + len {
                        model.resize(at + len, 0);
                    }
                    model[at..at + len].copy_from_slice(&data);
                }
            });
        }
    });
    let ((file, cipher), model) = shared.into_inner().unwrap();
    assert_eq!(read_all(&file, &cipher), model);
}

/// Runs `write_runs` over `runs` fake runs with one helper buffer per worker, where
/// `fail_seal` / `fail_write` make that run's step fail with ENOSPC; returns the
/// result and the runs written, in the order they were written.
fn fake_runs(
    runs: usize,
    fail_seal: Option<usize>,
    fail_write: Option<usize>,
) -> (Result<(), FsError>, Vec<usize>) {
    let written = std::sync::Mutex::new(Vec::new());
    let mut mine = Vec::new();
    let mut helpers = vec![Vec::new(); workers::MAX_HELPERS];
    let enospc = || FsError::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
    let res = write_runs(
        runs,
        &mut mine,
        &mut helpers,
        |n, out| {
            if fail_seal == Some(n) {
                return Err(enospc());
            }
            // Uneven sealing times, so that runs finish sealing out of order.
            if n % 3 == 0 {
                std::thread::yield_now();
            }
            out.extend_from_slice(&n.to_be_bytes());
            Ok(())
        },
        |n, sealed| {
            assert_eq!(sealed, n.to_be_bytes(), "run {n} got another run's bytes");
            if fail_write == Some(n) {
                return Err(enospc());
            }
            written.lock().unwrap().push(n);
            Ok(())
        },
    );
    (res, written.into_inner().unwrap())
}

#[test]
fn split_write_runs_reach_the_file_in_order_each_exactly_once() {
    for _ in 0..50 {
        let (res, written) = fake_runs(16, None, None);
        res.unwrap();
        assert_eq!(written, (0..16).collect::<Vec<_>>());
    }
}

#[test]
fn a_failed_run_fails_the_write_with_its_error_and_nothing_after_it_is_written() {
    for _ in 0..20 {
        for bad in [0, 1, 7, 15] {
            // A failed pwrite: every run before it was written, none after it.
            let (res, written) = fake_runs(16, None, Some(bad));
            assert_eq!(res.unwrap_err().errno(), libc::ENOSPC, "run {bad}");
            assert_eq!(written, (0..bad).collect::<Vec<_>>(), "run {bad}");
            // A run that could not be sealed: a prefix of the runs before it at most.
            let (res, written) = fake_runs(16, Some(bad), None);
            assert_eq!(res.unwrap_err().errno(), libc::ENOSPC, "seal {bad}");
            assert!(
                written.len() <= bad && written.iter().enumerate().all(|(i, &n)| i == n),
                "seal {bad}: {written:?}"
            );
        }
    }
}

#[test]
fn a_run_failing_to_seal_while_an_earlier_run_is_written_stops_the_write() {
    // Run 1 fails to seal while run 0 is being written: run 0's turn must not pass
    // on (run 1 will never be written), or a worker taking run 2 would wait for it
    // forever. Run 0's write waits for run 1's failure (bounded, for a machine
    // with no helper where they run one after the other).
    let sealing_failed = std::sync::atomic::AtomicBool::new(false);
    let written = std::sync::Mutex::new(Vec::new());
    let mut mine = Vec::new();
    let mut helpers = vec![Vec::new(); workers::MAX_HELPERS];
    let res = write_runs(
        8,
        &mut mine,
        &mut helpers,
        |n, out| {
            if n == 1 {
                sealing_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(FsError::from(std::io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )));
            }
            out.push(n as u8);
            Ok(())
        },
        |n, _| {
            if n == 0 {
                for _ in 0..200 {
                    if sealing_failed.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                // Past the failing worker's `fail()`.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            written.lock().unwrap().push(n);
            Ok(())
        },
    );
    assert_eq!(res.unwrap_err().errno(), libc::ENOSPC);
    assert_eq!(*written.lock().unwrap(), [0]);
}

#[test]
fn a_panicking_part_is_eio_and_no_worker_waits_for_its_turn() {
    // A panic while writing a run (a turn held) and while sealing one (none held).
    for panic_in_seal in [false, true] {
        let mut mine = Vec::new();
        let mut helpers = vec![Vec::new(); workers::MAX_HELPERS];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_runs(
                8,
                &mut mine,
                &mut helpers,
                |n, out| {
                    if panic_in_seal && n == 3 {
                        panic!("injected");
                    }
                    out.push(n as u8);
                    Ok(())
                },
                |n, _| {
                    if !panic_in_seal && n == 3 {
                        panic!("injected");
                    }
                    Ok(())
                },
            )
        }));
        // The run panicked on this thread (propagated) or on a helper (EIO);
        // either way the call returned.
        if let Ok(res) = result {
            assert_eq!(res.unwrap_err().errno(), libc::EIO);
        }
    }
    // The helpers still serve later requests.
    let (res, written) = fake_runs(16, None, None);
    res.unwrap();
    assert_eq!(written.len(), 16);
}

#[test]
fn growth_inside_the_block_holding_the_last_byte_reserves_nothing() {
    // Unit 4096: the file ends at 5000, so bytes 4096..8192 are its block already.
    assert_eq!(growth_to_reserve(5000, 6000, Some(4096)), None);
    assert_eq!(growth_to_reserve(5000, 8192, Some(4096)), None);
    // Past that block: only the blocks the file does not have yet.
    assert_eq!(
        growth_to_reserve(5000, 9000, Some(4096)),
        Some((8192, 9000))
    );
    // A file ending on a unit boundary has no partly used block: all of it.
    assert_eq!(
        growth_to_reserve(8192, 9000, Some(4096)),
        Some((8192, 9000))
    );
    // Small units (ext4 with 1 KiB blocks).
    assert_eq!(
        growth_to_reserve(5000, 6000, Some(1024)),
        Some((5120, 6000))
    );
    // Unknown unit (tmpfs, btrfs, ...): the whole growth, as before.
    assert_eq!(growth_to_reserve(5000, 6000, None), Some((5000, 6000)));
    assert_eq!(growth_to_reserve(5000, 5000, None), None);
}

#[test]
fn a_write_out_covers_the_whole_pages_written() {
    // From the page holding the first byte to the page holding the end, that last
    // (partial) page left out.
    assert_eq!(
        WriteOut::of(3 * 4096 + 100, 64 * 4096 + 10),
        Some(WriteOut {
            from: 3 * 4096,
            to: 67 * 4096
        })
    );
    assert_eq!(
        WriteOut::of(4096, 2 * 4096),
        Some(WriteOut {
            from: 4096,
            to: 3 * 4096
        })
    );
    // Inside one page: nothing whole to write out.
    assert_eq!(WriteOut::of(100, 50), None);
    assert_eq!(WriteOut::of(u64::MAX - 10, 100), None);
}

#[test]
fn a_write_out_left_to_the_thread_can_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(File::create(dir.path().join("f")).unwrap());
    file.write_all_at(&[7u8; 3 * 4096], 0).unwrap();
    for _ in 0..3 {
        let started = WriteOut::of(0, 3 * 4096).unwrap().start_later(file.clone());
        // None when the thread could not take it: then it started here.
        if let Some(started) = started {
            started.wait();
        }
        // Started, and the thread let go of the file before saying so.
        assert_eq!(Arc::strong_count(&file), 1);
    }
}

/// `file` opened again, read-only with `O_DIRECT`; `None` where its file system refuses.
fn direct_of(file: &File) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file)
        ))
        .ok()
}

/// The file's pages dropped from the page cache (clean after `sync_all`).
fn drop_pages(file: &File) {
    file.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}

#[test]
fn a_cold_range_read_past_the_page_cache_is_opened_and_checked_the_same() {
    use std::os::fd::AsFd;
    let (file, cipher) = new_file();
    let data: Vec<u8> = (0..300 * B).map(|i| (i % 253) as u8).collect();
    write(&file, &cipher, 0, &data).unwrap();
    let Some(direct) = direct_of(&file) else {
        eprintln!("skipped: the temp directory refuses O_DIRECT");
        return;
    };
    drop_pages(&file);
    let whole = HEADER_LEN as u64 + 300 * cipher.version().sealed_block_size() as u64;
    if !crate::fs::sys::range_is_cold(file.as_fd(), 0, whole) {
        eprintln!("skipped: no cachestat(2) here, or the pages stayed cached");
        return;
    }
    // 1 MiB from an offset inside a block: the bytes of the model.
    let (off, len) = (3 * B + 100, 256 * B as u32);
    let got = read(&file, Some(&direct), &cipher, off, len, |b| b.to_vec()).unwrap();
    assert_eq!(got, &data[off as usize..(off + u64::from(len)) as usize]);
    // Read past the page cache: the range is still cold, so the direct read served it.
    assert!(crate::fs::sys::range_is_cold(file.as_fd(), 0, whole));
    // A damaged block in a cold range is EIO, as through the page cache.
    let at = HEADER_LEN as u64 + 100 * cipher.version().sealed_block_size() as u64 + 7;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 1], at).unwrap();
    drop_pages(&file);
    let err = read(&file, Some(&direct), &cipher, 0, len, |b| b.len()).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
}

#[test]
fn large_reads_of_cold_and_partly_cached_ranges_match_a_byte_vector_model() {
    use std::os::fd::AsFd;
    let (file, cipher) = new_file();
    let Some(direct) = direct_of(&file) else {
        eprintln!("skipped: the temp directory refuses O_DIRECT");
        return;
    };
    let mut model: Vec<u8> = Vec::new();
    let mut cold_reads = 0;
    let mut x: u64 = 0x0d1e_c7ed;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..240u64 {
        match next(6) {
            0 | 1 => {
                let off = next(700 * B) as usize;
                let len = 1 + next(150 * B) as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + step) as u8).collect();
                write_both(&file, &cipher, &mut model, off, &data);
            }
            2 => {
                let len = next(800 * B) as usize;
                truncate(&file, &cipher, len as u64).unwrap();
                model.resize(len, 0);
            }
            3 => drop_pages(&file),
            _ => {
                // Sometimes a small buffered read first caches part of what follows.
                if next(3) == 0 {
                    let _ = read(&file, None, &cipher, next(800 * B), 8192, |b| b.len());
                }
                let off = next(800 * B);
                let len = (64 * B + next(200 * B)) as u32;
                let layout = cipher.version();
                let backing = file.metadata().unwrap().len();
                let start = layout.block_offset(off / B).min(backing);
                let stop = layout
                    .block_offset((off + u64::from(len) - 1) / B + 1)
                    .min(backing);
                if crate::fs::sys::range_is_cold(file.as_fd(), start, stop - start) {
                    cold_reads += 1;
                }
                let got = read(&file, Some(&direct), &cipher, off, len, |b| b.to_vec()).unwrap();
                let from = (off as usize).min(model.len());
                let to = (off as usize + len as usize).min(model.len());
                assert!(got == model[from..to], "step {step}: {len} at {off}");
            }
        }
    }
    drop_pages(&file);
    let size = size(&file, &cipher).unwrap();
    let got = read(&file, Some(&direct), &cipher, 0, size as u32 + 10, |b| {
        b.to_vec()
    })
    .unwrap();
    assert!(got == model, "whole file");
    // Both paths were taken (where cachestat(2) answers at all).
    if crate::fs::sys::range_is_cold(file.as_fd(), 0, 1) || cold_reads > 0 {
        assert!(cold_reads >= 5, "only {cold_reads} cold reads");
    }
}

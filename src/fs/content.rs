//! File contents: plaintext offsets to sealed block ranges, and the read, write,
//! truncate paths over one backing file.
//!
//! A request touches blocks `first..=last`; their sealed bytes are contiguous in the
//! backing file, so a read is one `pread` of the whole range (past the page cache when
//! the range is large and cold, [`direct`]) followed by `open_block` of each block, and
//! a write is at most two edge-block reads (read-modify-write of partial
//! blocks), sealing every block of the range, and one `pwrite`. Buffers are reused from
//! a small pool shared by all threads (not one set per thread: that kept a megabyte per
//! FUSE worker resident for the whole mount), so the hot path neither allocates nor
//! derives keys (the cipher holds the ready key schedule).
//!
//! Callers hold the node's content lock (shared for reads, exclusive for everything
//! else): this module assumes nobody else changes the file meanwhile. It never asks for
//! keys and never returns bytes that failed authentication.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::{ContentCipher, BLOCK_SIZE};

use super::error::FsError;

mod direct;
mod workers;
mod writeout;

pub use direct::{DirectReader, DIRECT_MIN};
pub use writeout::{Started, WriteOut};

const B: u64 = BLOCK_SIZE as u64;
/// Largest plaintext size kmsfs writes: its backing length must stay a valid `off_t`.
pub const MAX_FILE_SIZE: u64 = 1 << 62;

/// Fewest blocks one thread seals or opens when a request is split across cores:
/// below this (128 KiB), starting a thread costs more than the crypto it takes over.
const BLOCKS_PER_THREAD: usize = 32;
/// Most threads one request is split across.
const MAX_THREADS: usize = 4;

/// Scratch sets kept between requests. One request at a time (a sequential reader or
/// writer) always finds one; concurrent requests beyond this many allocate their own,
/// freed when they end, so a burst does not stay resident for the life of the mount.
const SPARE_SCRATCH: usize = 2;

/// Reusable request buffers.
#[derive(Default)]
struct Scratch {
    /// Sealed bytes of a whole request range.
    range_sealed: Vec<u8>,
    /// Plaintext of a whole request range.
    range_plain: Vec<u8>,
    /// One block's plaintext or sealed bytes.
    block: Vec<u8>,
    /// Output of the helper threads of a split request, one buffer each, kept here so
    /// that helpers (new threads every time) do not allocate.
    parts: Vec<Vec<u8>>,
}

/// How many threads should seal or open a request of `blocks` blocks: one per
/// [`BLOCKS_PER_THREAD`] blocks, at most one per core and [`MAX_THREADS`].
fn threads_for(blocks: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    (blocks / BLOCKS_PER_THREAD).clamp(1, cores.clamp(1, MAX_THREADS))
}

/// Runs `work(part, buffer)` for parts `0..=parts.len()` at once: part 0 on this thread
/// with `mine`, part `n` with `parts[n - 1]` on a persistent helper ([`workers`]), or
/// here when there is none. The first error (in part order) wins; a part that panicked
/// is EIO. `work` must not itself split work (a helper would wait for itself).
fn split_work(
    mine: &mut Vec<u8>,
    parts: &mut [Vec<u8>],
    work: impl Fn(usize, &mut Vec<u8>) -> Result<(), FsError> + Sync,
) -> Result<(), FsError> {
    // Each part's buffer and result behind its own lock (uncontended: one user each),
    // so that the shared closure can hand part n its own.
    type Cell<'a> = std::sync::Mutex<(&'a mut Vec<u8>, Result<(), FsError>)>;
    let cells: Vec<Cell<'_>> = std::iter::once(mine)
        .chain(parts.iter_mut())
        .map(|buf| std::sync::Mutex::new((buf, Ok(()))))
        .collect();
    let all_finished = workers::run_parts(cells.len(), &|part| {
        if let Some(cell) = cells.get(part) {
            let mut guard = cell.lock().unwrap_or_else(|p| p.into_inner());
            let (buf, result) = &mut *guard;
            *result = work(part, buf);
        }
    });
    if !all_finished {
        return Err(FsError::refused(libc::EIO, "sealing thread failed"));
    }
    for cell in cells {
        cell.into_inner().unwrap_or_else(|p| p.into_inner()).1?;
    }
    Ok(())
}

/// Blocks per run of a split write: one run is sealed into one buffer and written with
/// one `pwrite`. A 1 MiB request has 4 runs, so on two cores sealing one run overlaps
/// writing another (the backing `pwrite` is about a fifth of a request's daemon time).
/// Measured against 16, 32, 48 and 128 (docs/PERFORMANCE.md, round 8): smaller runs
/// pass the turn more often (a futex wake each) for little less idle time at the ends.
const BLOCKS_PER_RUN: usize = 64;

/// The order in which the runs of one split write reach the backing file: in file
/// order, each only after all runs before it, so the file grows as a prefix (as one
/// `pwrite` would make it) and a failure leaves no run after the failed one written.
/// Sealing is not ordered: a worker seals its next run while another writes.
struct WriteTurns {
    /// The next run to be claimed for sealing.
    next_claim: std::sync::atomic::AtomicUsize,
    runs: usize,
    state: std::sync::Mutex<TurnState>,
    turn_passed: std::sync::Condvar,
}

#[derive(Clone, Copy)]
enum TurnState {
    /// Runs before this one are written.
    Next(usize),
    /// A run failed (or its worker panicked): no later run is written.
    Failed,
}

impl WriteTurns {
    fn new(runs: usize) -> Self {
        WriteTurns {
            next_claim: std::sync::atomic::AtomicUsize::new(0),
            runs,
            state: std::sync::Mutex::new(TurnState::Next(0)),
            turn_passed: std::sync::Condvar::new(),
        }
    }

    /// The next run to seal, in increasing order; `None` when all are taken or one
    /// failed. Increasing claims are what rule out a deadlock: the lowest unwritten run
    /// is always held by a worker that is sealing it or waiting only for runs before it.
    fn claim(&self) -> Option<usize> {
        if matches!(*self.state(), TurnState::Failed) {
            return None;
        }
        let n = self
            .next_claim
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (n < self.runs).then_some(n)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        // The state is a plain value, whole even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` for run `n` once every run before it is written, and passes the
    /// turn on: to run `n + 1` if it succeeded, to nobody if it failed. If an earlier
    /// run failed, returns `Ok` without calling `write`: that run's worker reports the
    /// error (ENOSPC stays ENOSPC), and [`Self::claim`] ends this worker's loop. A
    /// panic inside `write` fails the turn too (the guard below), so no worker waits
    /// for a turn that never comes.
    fn write_in_turn(
        &self,
        n: usize,
        write: impl FnOnce() -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        {
            let mut state = self.state();
            loop {
                match *state {
                    TurnState::Failed => return Ok(()),
                    TurnState::Next(next) if next == n => break,
                    TurnState::Next(_) => {
                        state = self
                            .turn_passed
                            .wait(state)
                            .unwrap_or_else(|p| p.into_inner());
                    }
                }
            }
        }
        struct Pass<'a> {
            turns: &'a WriteTurns,
            to: TurnState,
        }
        impl Drop for Pass<'_> {
            fn drop(&mut self) {
                let mut state = self.turns.state();
                // A failure elsewhere meanwhile (a run after this one that could not be
                // sealed) stands: that run will never be written, so no turn may pass
                // to it.
                if let TurnState::Next(_) = *state {
                    *state = self.to;
                }
                drop(state);
                self.turns.turn_passed.notify_all();
            }
        }
        let mut pass = Pass {
            turns: self,
            to: TurnState::Failed,
        };
        write()?;
        pass.to = TurnState::Next(n + 1);
        Ok(())
    }

    /// Marks the write failed (a run that could not be sealed), waking every waiter.
    fn fail(&self) {
        *self.state() = TurnState::Failed;
        self.turn_passed.notify_all();
    }
}

/// Seals and writes `runs` runs on this thread and `helpers` more: each worker takes the
/// next unsealed run, `seal(n, buffer)`s it into its own buffer and `write(n, sealed)`s
/// it in file order ([`WriteTurns`]). Any failure fails the whole call, and no run after
/// a failed one is written.
fn write_runs(
    runs: usize,
    mine: &mut Vec<u8>,
    helpers: &mut [Vec<u8>],
    seal: impl Fn(usize, &mut Vec<u8>) -> Result<(), FsError> + Sync,
    write: impl Fn(usize, &[u8]) -> Result<(), FsError> + Sync,
) -> Result<(), FsError> {
    let turns = WriteTurns::new(runs);
    split_work(mine, helpers, |_, out| {
        // A worker that panics (while sealing too, where no turn guard is held) fails
        // the write, so that no other worker waits for a run it will never write.
        struct FailOnPanic<'a>(&'a WriteTurns);
        impl Drop for FailOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail();
                }
            }
        }
        let _fail_on_panic = FailOnPanic(&turns);
        while let Some(n) = turns.claim() {
            out.clear();
            if let Err(e) = seal(n, out) {
                turns.fail();
                return Err(e);
            }
            turns.write_in_turn(n, || write(n, out))?;
        }
        Ok(())
    })
}

/// Seals consecutive blocks `first, ...` from `plain` and writes them where they lie in
/// the file. A request of many blocks is split into runs of [`BLOCKS_PER_RUN`] whole
/// blocks, sealed (each block's bytes are the same as sealed alone: fresh nonce, its
/// own index in the associated data) and written by this thread and the helpers
/// together ([`write_runs`]), so one worker's `pwrite` overlaps the others' sealing.
/// Any failure fails the whole request: the caller replies with the error, never with
/// a count of bytes written. A request of [`BLOCKS_PER_RUN`] blocks or more returns the
/// write-out of what it wrote ([`WriteOut`]), for the caller to start once it replied;
/// smaller ones leave it to the kernel.
fn seal_and_write(
    file: &File,
    cipher: &ContentCipher,
    first: u64,
    plain: &[u8],
    s: &mut Scratch,
) -> Result<Option<WriteOut>, FsError> {
    let layout = cipher.version();
    let blocks = plain.len().div_ceil(BLOCK_SIZE);
    let threads = threads_for(blocks);
    if threads <= 1 {
        s.range_sealed.clear();
        cipher.seal_blocks(first, plain, &mut s.range_sealed)?;
        file.write_all_at(&s.range_sealed, layout.block_offset(first))?;
    } else {
        let runs: Vec<&[u8]> = plain.chunks(BLOCKS_PER_RUN * BLOCK_SIZE).collect();
        let start = |n: usize| first + (n * BLOCKS_PER_RUN) as u64;
        s.parts.resize_with(threads - 1, Vec::new);
        write_runs(
            runs.len(),
            &mut s.range_sealed,
            &mut s.parts,
            |n, out| match runs.get(n) {
                Some(run) => Ok(cipher.seal_blocks(start(n), run, out)?),
                None => Err(FsError::refused(libc::EIO, "run index")),
            },
            |n, sealed| Ok(file.write_all_at(sealed, layout.block_offset(start(n)))?),
        )?;
    }
    if blocks < BLOCKS_PER_RUN {
        return Ok(None);
    }
    // Every block sealed adds the same overhead to its plaintext.
    let sealed_len = plain.len() as u64 + (blocks * layout.block_overhead()) as u64;
    Ok(WriteOut::of(layout.block_offset(first), sealed_len))
}

/// Opens blocks `first..=last`, whose sealed bytes are `sealed` (back to back, as in
/// the file), in place: each block is decrypted where it lies, then the plaintexts are
/// moved together to the front. Returns the plaintext length (`sealed[..len]`). No
/// second buffer: a read holds one request's bytes, not two (peak RSS). Split across
/// cores like [`seal_and_write`], each thread on its own run of whole blocks; any block
/// failing authentication fails the whole range. `threads`: at most this many (the
/// caller's share of the cores, from [`threads_for`]).
fn open_range_in_place(
    cipher: &ContentCipher,
    first: u64,
    last: u64,
    sealed: &mut [u8],
    threads: usize,
) -> Result<usize, FsError> {
    let layout = cipher.version();
    let step = layout.sealed_block_size();
    let open_run = |from: u64, run: &mut [u8]| -> Result<(), FsError> {
        for (n, block) in run.chunks_mut(step).enumerate() {
            cipher.open_block_in_place(from + n as u64, block)?;
        }
        Ok(())
    };
    let blocks = usize_of(last - first + 1)?;
    if sealed.len() > blocks * step || sealed.len() + step <= blocks * step {
        return Err(FsError::refused(libc::EIO, "block range"));
    }
    if threads <= 1 {
        open_run(first, sealed)?;
    } else {
        let per = blocks.div_ceil(threads);
        // Each run behind its own lock, so that a run whose helper could not be
        // started is still reachable here (uncontended: one user each).
        let runs: Vec<std::sync::Mutex<(u64, &mut [u8])>> = sealed
            .chunks_mut(per * step)
            .enumerate()
            .map(|(n, run)| std::sync::Mutex::new((first + (n * per) as u64, run)))
            .collect();
        let work = |n: usize| -> Result<(), FsError> {
            let cell = runs
                .get(n)
                .ok_or_else(|| FsError::refused(libc::EIO, "run index"))?;
            let mut guard = cell
                .lock()
                .map_err(|_| FsError::refused(libc::EIO, "opening thread failed"))?;
            let (from, run) = &mut *guard;
            open_run(*from, run)
        };
        // On the persistent helpers, as sealing is: no thread start per READ.
        let results: Vec<std::sync::Mutex<Result<(), FsError>>> =
            runs.iter().map(|_| std::sync::Mutex::new(Ok(()))).collect();
        let all_finished = workers::run_parts(runs.len(), &|n| {
            let result = work(n);
            if let Some(slot) = results.get(n) {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = result;
            }
        });
        if !all_finished {
            return Err(FsError::refused(libc::EIO, "opening thread failed"));
        }
        for slot in results {
            slot.into_inner().unwrap_or_else(|p| p.into_inner())?;
        }
    }
    // Block i's plaintext lies after its nonce at i * step; it moves to i * BLOCK_SIZE.
    // Each move goes towards the front and never overtakes the next block's bytes.
    let nonce_len = layout.block_overhead() - crate::crypto::TAG_LEN;
    let mut len = 0;
    for i in 0..blocks {
        let at = i * step;
        let end = (at + step).min(sealed.len());
        let plain = at + nonce_len..end - crate::crypto::TAG_LEN;
        let n = plain.len();
        sealed.copy_within(plain, len);
        len += n;
    }
    Ok(len)
}

static SPARE: std::sync::Mutex<Vec<Scratch>> = std::sync::Mutex::new(Vec::new());

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> Result<R, FsError>) -> Result<R, FsError> {
    // A poisoned pool only means a request panicked while taking or giving back a set;
    // the list itself is always whole.
    let spare = || SPARE.lock().unwrap_or_else(|p| p.into_inner());
    let mut scratch = spare().pop().unwrap_or_default();
    let result = f(&mut scratch);
    let extra = {
        let mut pool = spare();
        if pool.len() < SPARE_SCRATCH {
            pool.push(scratch);
            None
        } else {
            Some(scratch)
        }
    };
    // Freed outside the lock.
    drop(extra);
    result
}

fn io_eio(e: std::io::Error) -> FsError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        // The backing file is shorter than its own length said a moment ago: damaged.
        FsError::refused(libc::EIO, "backing file shorter than expected")
    } else {
        e.into()
    }
}

fn len_of(file: &File) -> Result<u64, FsError> {
    Ok(file.metadata()?.len())
}

/// Plaintext size of an open backing file sealed by `cipher` (whose envelope version
/// fixes the arithmetic); `EIO` for impossible backing lengths.
pub fn size(file: &File, cipher: &ContentCipher) -> Result<u64, FsError> {
    Ok(cipher.version().plaintext_size(len_of(file)?)?)
}

fn usize_of(v: u64) -> Result<usize, FsError> {
    usize::try_from(v).map_err(|_| FsError::refused(libc::EFBIG, "offset too large"))
}

/// Reads the plaintext of existing block `index` of a file of plaintext size `size`
/// into `out`.
fn load_block(
    file: &File,
    cipher: &ContentCipher,
    index: u64,
    size: u64,
    sealed: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), FsError> {
    let layout = cipher.version();
    let plain_len = usize_of((size - index * B).min(B))?;
    sealed.resize(layout.sealed_len(plain_len), 0);
    file.read_exact_at(sealed, layout.block_offset(index))
        .map_err(io_eio)?;
    cipher.open_block(index, sealed, out)?;
    Ok(())
}

/// READs being opened right now, across all handles.
static READS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one READ in [`READS_IN_FLIGHT`] while it lives.
struct InFlight;

impl InFlight {
    /// Enters, returning the guard and how many other READs are being opened.
    fn enter() -> (InFlight, usize) {
        let others = READS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (InFlight, others)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        READS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Threads to open a READ of `blocks` blocks on while `others` READs are being opened:
/// its share of what [`threads_for`] gives one request alone, at least one.
fn read_threads(blocks: usize, others: usize) -> usize {
    (threads_for(blocks) / others.saturating_add(1)).max(1)
}

/// Reads up to `len` plaintext bytes at `offset` and hands them to `done` (fewer at the
/// end of the file, none past it). `direct`, the same file opened `O_DIRECT`, reads a
/// cold range past the page cache ([`direct`]).
pub fn read<R>(
    file: &File,
    direct: Option<&File>,
    cipher: &ContentCipher,
    offset: u64,
    len: u32,
    done: impl FnOnce(&[u8]) -> R,
) -> Result<R, FsError> {
    let layout = cipher.version();
    let backing = len_of(file)?;
    let size = layout.plaintext_size(backing)?;
    if offset >= size || len == 0 {
        return Ok(done(&[]));
    }
    let end = offset.saturating_add(u64::from(len)).min(size);
    let first = offset / B;
    let last = (end - 1) / B;
    let start = layout.block_offset(first);
    let stop = layout.block_offset(last + 1).min(backing);
    with_scratch(|s| {
        let cold =
            direct.and_then(|d| direct::read_cold(file, d, start, stop, &mut s.range_sealed));
        let at = match cold {
            Some(at) => at,
            None => {
                s.range_sealed.resize(usize_of(stop - start)?, 0);
                file.read_exact_at(&mut s.range_sealed, start)
                    .map_err(io_eio)?;
                0
            }
        };
        let sealed = s
            .range_sealed
            .get_mut(at..at + usize_of(stop - start)?)
            .ok_or_else(|| FsError::refused(libc::EIO, "block range"))?;
        // The kernel's read-ahead keeps several READs of a sequential reader in flight,
        // each on its own FUSE thread: those already share the cores, and splitting each
        // again only adds thread starts and joins that wait for a core.
        let (_guard, others) = InFlight::enter();
        let threads = read_threads(usize_of(last - first + 1)?, others);
        let plain_len = open_range_in_place(cipher, first, last, sealed, threads)?;
        let skip = usize_of(offset - first * B)?;
        let take = usize_of(end - offset)?;
        let bytes = sealed
            .get(skip..skip + take)
            .filter(|_| skip + take <= plain_len)
            .ok_or_else(|| FsError::refused(libc::EIO, "short block"))?;
        Ok(done(bytes))
    })
}

/// Writes `data` at plaintext `offset`, extending the file (with holes) as needed.
/// Returns the new plaintext size. A large write's write-out is started before this
/// returns; [`write_then_write_out`] leaves it to the caller.
pub fn write(
    file: &File,
    cipher: &ContentCipher,
    offset: u64,
    data: &[u8],
) -> Result<u64, FsError> {
    let (size, write_out) = write_then_write_out(file, cipher, offset, data)?;
    if let Some(w) = write_out {
        w.start(file);
    }
    Ok(size)
}

/// [`write`], but returns the write-out of a large write for the caller to start
/// ([`WriteOut::start`]) once it answered the request.
pub fn write_then_write_out(
    file: &File,
    cipher: &ContentCipher,
    offset: u64,
    data: &[u8],
) -> Result<(u64, Option<WriteOut>), FsError> {
    let layout = cipher.version();
    let old = size(file, cipher)?;
    if data.is_empty() {
        return Ok((old, None));
    }
    let end = offset
        .checked_add(data.len() as u64)
        .filter(|&end| end <= MAX_FILE_SIZE)
        .ok_or_else(|| FsError::refused(libc::EFBIG, "write past the largest file size"))?;
    let first = offset / B;
    let last = (end - 1) / B;
    let new_size = old.max(end);
    reserve_last_block_growth(file, cipher, old, new_size)?;
    with_scratch(|s| {
        // The old last block is partial and the write starts in a later block: it must
        // become a full block (zero-padded) before the file grows past it.
        if old % B != 0 && first > old / B {
            let k = old / B;
            load_block(
                file,
                cipher,
                k,
                old,
                &mut s.range_sealed,
                &mut s.range_plain,
            )?;
            s.range_plain.resize(BLOCK_SIZE, 0);
            cipher.seal_block(k, &s.range_plain, &mut s.block)?;
            file.write_all_at(&s.block, layout.block_offset(k))?;
        }

        // The common streaming case: the write starts on a block boundary and ends on
        // one or at the (new) end of file, so every block it touches is wholly replaced
        // by `data`: seal straight from `data`, no staging copy, no edge reads.
        if offset.is_multiple_of(B) && (end.is_multiple_of(B) || end == new_size) {
            let res = seal_and_write(file, cipher, first, data, s);
            return finish_write(file, cipher, old, new_size, res);
        }

        let blocks = usize_of(last - first + 1)?;
        s.range_plain.clear();
        s.range_plain.resize(blocks * BLOCK_SIZE, 0);
        // Edge blocks that exist and are only partly overwritten keep their other bytes.
        let edges = if first == last {
            [first, first]
        } else {
            [first, last]
        };
        for (n, index) in edges.into_iter().enumerate() {
            if n == 1 && first == last {
                break;
            }
            let block_start = index * B;
            let old_end = (block_start + B).min(old);
            let exists = block_start < old;
            let covered = offset <= block_start && end >= old_end;
            if exists && !covered {
                load_block(file, cipher, index, old, &mut s.range_sealed, &mut s.block)?;
                let at = usize_of(index - first)? * BLOCK_SIZE;
                let dst = s
                    .range_plain
                    .get_mut(at..at + s.block.len())
                    .ok_or_else(|| FsError::refused(libc::EIO, "block range"))?;
                dst.copy_from_slice(&s.block);
            }
        }
        let at = usize_of(offset - first * B)?;
        let dst = s
            .range_plain
            .get_mut(at..at + data.len())
            .ok_or_else(|| FsError::refused(libc::EIO, "write range"))?;
        dst.copy_from_slice(data);

        let plain_len = usize_of((new_size - first * B).min((last - first + 1) * B))?;
        let mut plain = std::mem::take(&mut s.range_plain);
        let res = match plain.get(..plain_len) {
            Some(p) => seal_and_write(file, cipher, first, p, s),
            None => Err(FsError::refused(libc::EIO, "block range")),
        };
        // The staging buffer goes back for the next request.
        plain.clear();
        s.range_plain = plain;
        finish_write(file, cipher, old, new_size, res)
    })
}

/// A write that grows the file's partial last block rewrites that block in place,
/// longer. Were the disk to fill up part-way through that `pwrite`, the old block would
/// be gone and the new one torn (EIO from then on, and no way back to the old size).
/// So the space the block grows into is reserved first: a full disk is then ENOSPC
/// before anything changed. At most one block's growth; nothing for block-aligned
/// sizes (a sequential writer of whole blocks never comes here).
///
/// Only the backing file system's blocks the file does not have yet are reserved
/// ([`growth_to_reserve`]): bytes that land in the block already holding the file's
/// last byte take no new space there. On ext4 that block is usually still a delayed
/// allocation, and `fallocate` over it would allocate it at once (a journaled extent
/// change, 20–35 µs here) for no gain: its space was reserved when it was first
/// written. Measured in docs/PERFORMANCE.md, "Round 9: CREATE and untar".
fn reserve_last_block_growth(
    file: &File,
    cipher: &ContentCipher,
    old: u64,
    new_size: u64,
) -> Result<(), FsError> {
    if old.is_multiple_of(B) || new_size <= old {
        return Ok(());
    }
    let layout = cipher.version();
    let from = layout.backing_len(old);
    let to = layout
        .backing_len(new_size)
        .min(layout.block_offset(old / B + 1));
    let Some((from, to)) = growth_to_reserve(from, to, allocation_unit(file)) else {
        return Ok(());
    };
    let (Ok(at), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return Err(FsError::refused(libc::EFBIG, "offset too large"));
    };
    use nix::fcntl::{fallocate, FallocateFlags};
    match fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, at, len) {
        // A backing filesystem without fallocate: written as before, unreserved.
        Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The part of backing bytes `from..to` (a growth past the file's end `from`) that needs
/// space reserved, given the file system's allocation unit `unit`: what lies past the
/// unit that holds byte `from - 1`, since that unit is the file's already. `None` when
/// nothing is left. With no known unit (`None`), all of it.
fn growth_to_reserve(from: u64, to: u64, unit: Option<u64>) -> Option<(u64, u64)> {
    let start = match unit {
        Some(unit) if unit > 0 && from > 0 => from.max((from - 1) / unit * unit + unit),
        _ => from,
    };
    (start < to).then_some((start, to))
}

/// The backing file system's allocation unit, where it is known to be the block size
/// `statfs` reports and a rewrite inside an allocated block takes no new space: ext4
/// (and ext2/3) and XFS. `None` elsewhere (tmpfs, btrfs, network file systems, ...),
/// which keeps reserving the whole growth as before.
fn allocation_unit(file: &File) -> Option<u64> {
    let st = nix::sys::statfs::fstatfs(file).ok()?;
    let kind = st.filesystem_type();
    if kind != nix::sys::statfs::EXT4_SUPER_MAGIC && kind != nix::sys::statfs::XFS_SUPER_MAGIC {
        return None;
    }
    u64::try_from(st.block_size()).ok().filter(|&b| b > 0)
}

/// The end of a write. One that failed part-way while growing the file gives the file
/// its old size back: the runs written past the old end (and a torn one) would
/// otherwise show as data nobody was told was written, or leave a backing length that
/// is no valid file. A failed overwrite inside the file is not undone (nor is a failed
/// single `pwrite`). Best effort: the caller gets the write's own error either way.
fn finish_write(
    file: &File,
    cipher: &ContentCipher,
    old: u64,
    new_size: u64,
    res: Result<Option<WriteOut>, FsError>,
) -> Result<(u64, Option<WriteOut>), FsError> {
    match res {
        Ok(write_out) => Ok((new_size, write_out)),
        Err(e) => {
            if new_size > old {
                if let Err(undo) = shrink_to(file, cipher, old) {
                    log::warn!("a failed write could not give the file its old size back: {undo}");
                }
            }
            Err(e)
        }
    }
}

/// Cuts a file that a failed write was growing back to plaintext size `old`: first to
/// the old file's whole blocks (a valid length, whatever was torn past it), then, if
/// its last block was partial (and so padded or rewritten by the write), to `old`
/// exactly, re-sealing that block.
fn shrink_to(file: &File, cipher: &ContentCipher, old: u64) -> Result<(), FsError> {
    file.set_len(cipher.version().block_offset(old.div_ceil(B)))?;
    if !old.is_multiple_of(B) {
        truncate(file, cipher, old)?;
    }
    Ok(())
}

/// Sets the plaintext size to `new_size`: shrinking re-seals the new last block,
/// growing pads the old last block and leaves holes up to a sealed final block.
pub fn truncate(file: &File, cipher: &ContentCipher, new_size: u64) -> Result<(), FsError> {
    if new_size > MAX_FILE_SIZE {
        return Err(FsError::refused(
            libc::EFBIG,
            "truncate past the largest file size",
        ));
    }
    let layout = cipher.version();
    let old = size(file, cipher)?;
    if new_size > old {
        write(file, cipher, new_size - 1, &[0])?;
        return Ok(());
    }
    if new_size < old && !new_size.is_multiple_of(B) {
        let k = new_size / B;
        with_scratch(|s| {
            load_block(
                file,
                cipher,
                k,
                old,
                &mut s.range_sealed,
                &mut s.range_plain,
            )?;
            s.range_plain.truncate(usize_of(new_size % B)?);
            cipher.seal_block(k, &s.range_plain, &mut s.block)?;
            file.write_all_at(&s.block, layout.block_offset(k))?;
            Ok(())
        })?;
    }
    file.set_len(layout.backing_len(new_size))?;
    Ok(())
}

#[cfg(test)]
mod tests;

//! A large write's backing write-out ([`WriteOut`]) and the thread that starts it
//! after the request was answered, so that neither the `sync_file_range` nor the
//! kworker it wakes sits on a writer's round trip.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

/// The backing file system's write-out of a large write's whole pages, to start
/// ([`WriteOut::start`]) after the write is answered: one `sync_file_range` for the
/// request instead of one per run inside it, off the request's round trip (it was
/// about a tenth of the daemon's time per 1 MiB write, on both workers, and woke a
/// kworker that took the core from the next run; docs/PERFORMANCE.md, round 11).
/// `Core::write` leaves it to the write-out thread ([`WriteOut::start_later`]), and the
/// next write to the file waits until it started.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub struct WriteOut {
    /// Page-aligned byte range of the backing file.
    pub(super) from: u64,
    pub(super) to: u64,
}

impl WriteOut {
    /// The whole pages of `len` bytes written at `offset`. The last partial page is
    /// left out: the next write completes it and writes it out, so a sequential writer
    /// never writes into a page under write-out.
    pub(super) fn of(offset: u64, len: u64) -> Option<Self> {
        let page = 4096;
        let from = offset / page * page;
        let to = offset.checked_add(len)? / page * page;
        (to > from).then_some(WriteOut { from, to })
    }

    /// Starts the write-out (`sync_file_range(SYNC_FILE_RANGE_WRITE)`: queued, not
    /// waited for), so that a large write reaches the disk while the next requests are
    /// sealed instead of all at the writer's `fsync` (with 24 GiB of memory, ext4 starts
    /// no write-out on its own for the first 2 GiB dirty, or for 30 s). Nothing about
    /// durability changes: only `fsync` waits for the data, and the kernel may write out
    /// dirty pages at any time anyway. A failure is not the write's: a write-out error
    /// is kept by the kernel for the next `fsync`, which reports it.
    pub fn start(self, file: &File) {
        let (Ok(at), Ok(bytes)) = (i64::try_from(self.from), i64::try_from(self.to - self.from))
        else {
            return;
        };
        // SAFETY: sync_file_range only reads the descriptor number of an open file.
        unsafe { libc::sync_file_range(file.as_raw_fd(), at, bytes, libc::SYNC_FILE_RANGE_WRITE) };
    }

    /// [`Self::start`] on the write-out thread (this module's), which keeps `file` open
    /// until then; `None` if it started here (that thread missing or behind).
    pub fn start_later(self, file: Arc<File>) -> Option<Started> {
        match queue(file, self) {
            Ok(started) => Some(started),
            Err((file, w)) => {
                w.start(&file);
                None
            }
        }
    }
}

/// Jobs waiting at most: a write-out that blocks (the device's queue full, a journal
/// commit) lets this many requests by before their write-out starts on the request's
/// own thread again (back-pressure, as before the thread existed).
const BACKLOG: usize = 64;

/// A file, the range to start, and who waits for the start (the sender is dropped once
/// it started, or if the job is dropped unstarted).
type Job = (Arc<File>, WriteOut, Sender<()>);

/// One queued write-out, to wait for ([`Self::wait`]).
pub struct Started(Mutex<Receiver<()>>);

impl Started {
    /// Returns once the write-out was started (or its job was dropped: the thread is
    /// gone; the write-out is only a hint).
    pub fn wait(&self) {
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).recv();
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started")
    }
}

struct Thread {
    queue: Mutex<SyncSender<Job>>,
    /// A child forked after the thread started has the queue but not the thread.
    pid: u32,
}

fn thread() -> Option<&'static Thread> {
    static THREAD: OnceLock<Option<Thread>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(BACKLOG);
            std::thread::Builder::new()
                .name("kmsfs-writeout".into())
                .spawn(move || serve(rx))
                .ok()?;
            Some(Thread {
                queue: Mutex::new(tx),
                pid: std::process::id(),
            })
        })
        .as_ref()
        .filter(|t| t.pid == std::process::id())
}

/// Queues `write_out` of `file`; gives both back if there is no thread or it is full.
pub(super) fn queue(
    file: Arc<File>,
    write_out: WriteOut,
) -> Result<Started, (Arc<File>, WriteOut)> {
    let Some(t) = thread() else {
        return Err((file, write_out));
    };
    let (started, waiter) = channel();
    let sent = t
        .queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .try_send((file, write_out, started));
    match sent {
        Ok(()) => Ok(Started(Mutex::new(waiter))),
        Err(TrySendError::Full((file, w, _)) | TrySendError::Disconnected((file, w, _))) => {
            Err((file, w))
        }
    }
}

fn serve(rx: Receiver<Job>) {
    for (file, write_out, started) in rx {
        write_out.start(&file);
        // The file first: a waiter told of the start finds it let go of.
        drop(file);
        drop(started);
    }
}

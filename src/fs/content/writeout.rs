//! The write-out thread: starts the backing write-out of large writes
//! ([`super::WriteOut`]) after their requests were answered, so that neither the
//! `sync_file_range` nor the kworker it wakes sits on a writer's round trip.

use std::fs::File;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use super::WriteOut;

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

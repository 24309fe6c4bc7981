//! Per-connection deadlines below HTTP: how long a connection may sit idle between
//! requests, how long a request's head may take from its first byte (slowloris), and how
//! long a write may stall (a client that never reads its answers).
//!
//! hyper's own header timeout starts when it begins waiting for a head, which includes
//! the idle wait, so one number would have to serve as both. Instead the connection's
//! [`Phase`] is shared with the request handler: the handler marks the connection busy
//! while it serves a request (the body then has its own deadline, in the handler) and
//! idle again when it answers; the first byte read while idle starts the head deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;

/// Where a connection is between requests. One word: the low two bits are the phase,
/// the rest counts transitions, so the reader notices an idle → busy → idle round trip
/// that happened between two of its polls.
#[derive(Debug, Default)]
pub struct Phase {
    word: AtomicU64,
    /// The reader waiting on the connection: a phase change re-arms its deadline, and
    /// nothing else would wake it to do so (it may be parked on an older, longer timer).
    reader: Mutex<Option<Waker>>,
}

impl Phase {
    fn set(&self, phase: u64) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(((w >> 2).wrapping_add(1) << 2) | phase)
            });
        let parked = self.reader.lock().map(|mut r| r.take()).unwrap_or(None);
        if let Some(w) = parked {
            w.wake();
        }
    }

    fn park(&self, waker: &Waker) {
        if let Ok(mut r) = self.reader.lock() {
            match r.as_ref() {
                Some(w) if w.will_wake(waker) => {}
                _ => *r = Some(waker.clone()),
            }
        }
    }

    /// The handler has a request head: no head or idle deadline until it answers.
    pub fn busy(&self) {
        self.set(BUSY);
    }

    /// The handler has answered: the idle deadline runs until the next request.
    pub fn idle(&self) {
        self.set(IDLE);
    }

    fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// Idle → head, unless the handler moved the phase meanwhile.
    fn start_head(&self, seen: u64) -> bool {
        let next = (((seen >> 2).wrapping_add(1)) << 2) | HEAD;
        self.word
            .compare_exchange(seen, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub idle: Duration,
    pub head: Duration,
    pub write: Duration,
}

/// A stream that fails with `TimedOut` when its current deadline passes.
pub struct DeadlineIo<S> {
    inner: S,
    phase: Arc<Phase>,
    limits: Deadlines,
    /// The phase word the read deadline was computed for.
    seen: Option<u64>,
    read_timer: Pin<Box<Sleep>>,
    read_armed: bool,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> DeadlineIo<S> {
    pub fn new(inner: S, phase: Arc<Phase>, limits: Deadlines) -> Self {
        DeadlineIo {
            inner,
            phase,
            limits,
            seen: None,
            read_timer: Box::pin(tokio::time::sleep(limits.idle)),
            read_armed: false,
            write_timer: None,
        }
    }

    /// Re-arms the read deadline if the phase changed since the last poll.
    fn refresh(&mut self, word: u64) {
        if self.seen == Some(word) {
            return;
        }
        self.seen = Some(word);
        let after = match word & 3 {
            IDLE => Some(self.limits.idle),
            HEAD => Some(self.limits.head),
            _ => None,
        };
        self.read_armed = after.is_some();
        if let Some(after) = after {
            self.read_timer.as_mut().reset(Instant::now() + after);
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} deadline passed"))
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let word = this.phase.load();
        this.refresh(word);
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if word & 3 == IDLE && buf.filled().len() > before && this.phase.start_head(word) {
                    this.refresh(this.phase.load());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.phase.park(cx.waker());
                if this.read_armed && this.read_timer.as_mut().poll(cx).is_ready() {
                    let what = if word & 3 == HEAD {
                        "request head"
                    } else {
                        "idle"
                    };
                    return Poll::Ready(Err(timed_out(what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> DeadlineIo<S> {
    /// Maps a write's outcome through the write-stall deadline.
    fn stall<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(x) => {
                self.write_timer = None;
                Poll::Ready(x)
            }
            Poll::Pending => {
                let limit = self.limits.write;
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(timed_out("write")));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.stall(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stall(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.stall(cx, r)
    }
}

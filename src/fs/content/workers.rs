//! Persistent helper threads for the parts of one large request (sealing and writing
//! runs of blocks), so that a request does not pay a thread start and exit (clone,
//! stack set-up, exit) each time: at 1 MiB per request that was about 3 % of the
//! daemon's CPU, on the request's critical path (docs/PERFORMANCE.md, round 8).
//!
//! [`run_parts`] is a scoped fork-join, like `std::thread::scope`, but on threads that
//! outlive the request: part 0 runs on the calling thread, each other part on a
//! helper, and the call returns only after every part has finished. Helpers are started
//! on first use, one per core beyond the first (at most [`MAX_HELPERS`]), and live for
//! the process. A part whose helper is missing (could not be started) or busy with
//! another request's part waits for it or runs on the caller, so results never depend
//! on how many helpers exist. Never holds request data beyond a call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Most helper threads (the request's own thread is one more worker).
pub const MAX_HELPERS: usize = 3;

/// How many parts finished and whether any panicked; the caller waits on it.
struct Latch {
    /// Parts not yet finished, and whether one panicked.
    state: Mutex<(usize, bool)>,
    finished: Condvar,
}

impl Latch {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        // Plain counters: whole even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, panicked: bool) {
        let mut state = self.lock();
        state.0 = state.0.saturating_sub(1);
        state.1 |= panicked;
        if state.0 == 0 {
            self.finished.notify_all();
        }
    }
}

/// One part handed to a helper: the caller's closure with its lifetime erased.
struct Task {
    /// Points into the stack frame of a [`run_parts`] call that does not return before
    /// this task's `latch.finish` (see [`WaitForParts`]).
    work: *const (dyn Fn(usize) + Sync + 'static),
    part: usize,
    latch: Arc<Latch>,
}

// SAFETY: `work` is a `Sync` closure (shared use from several threads is sound), and
// the frame it points into outlives the task (WaitForParts); the rest is Send.
unsafe impl Send for Task {}

impl Task {
    fn run(self) {
        let work = self.work;
        // SAFETY: the closure behind `work` is alive until `latch.finish` below: the
        // `run_parts` call that owns it waits for that (its WaitForParts guard, which
        // also runs when that thread unwinds), and nothing here keeps the pointer after.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*work)(self.part) }));
        self.latch.finish(result.is_err());
    }
}

/// Waits, also while unwinding, until every handed-out part has finished: only then
/// may the frame holding the closure go away.
struct WaitForParts(Arc<Latch>);

impl Drop for WaitForParts {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        while state.0 > 0 {
            state = self
                .0
                .finished
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The helpers' queues (one each: a part given to a busy helper waits there), and the
/// process they were started in.
struct Helpers {
    queues: Vec<Mutex<Sender<Task>>>,
    /// A child forked after the helpers started has the queues but not the threads
    /// (only the forking thread survives a fork; the crash tests fork a daemon from a
    /// test process): there every part runs on the caller.
    pid: u32,
}

fn helpers() -> &'static Helpers {
    static HELPERS: OnceLock<Helpers> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut queues = Vec::new();
        for n in 0..cores.saturating_sub(1).min(MAX_HELPERS) {
            let (tx, rx) = channel::<Task>();
            let started = std::thread::Builder::new()
                .name(format!("kmsfs-seal-{n}"))
                .spawn(move || {
                    for task in rx {
                        task.run();
                    }
                });
            // A helper that cannot be started is simply absent: its parts run on the
            // caller.
            if started.is_ok() {
                queues.push(Mutex::new(tx));
            }
        }
        Helpers {
            queues,
            pid: std::process::id(),
        }
    })
}

/// Runs `work(part)` for every part in `0..parts`: part 0 here, the others on the
/// helpers (part `n` on helper `n - 1`, or here when there is none). Returns after all
/// have finished; `false` if any part panicked on a helper (a panic here propagates as
/// usual, after the helpers' parts finished).
pub fn run_parts(parts: usize, work: &(dyn Fn(usize) + Sync)) -> bool {
    if parts <= 1 {
        if parts == 1 {
            work(0);
        }
        return true;
    }
    // SAFETY: only the lifetime changes (same fat pointer). The pointer is used by
    // helpers only until each part's `latch.finish`, and `_wait` below keeps this frame
    // (and so `work`'s borrow) alive until then, also if this thread unwinds.
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        std::mem::transmute::<
            *const (dyn Fn(usize) + Sync + '_),
            *const (dyn Fn(usize) + Sync + 'static),
        >(work)
    };
    let latch = Arc::new(Latch {
        state: Mutex::new((0, false)),
        finished: Condvar::new(),
    });
    let _wait = WaitForParts(latch.clone());
    let helpers = helpers();
    let queues: &[Mutex<Sender<Task>>] = if helpers.pid == std::process::id() {
        &helpers.queues
    } else {
        &[]
    };
    let mut inline = Vec::new();
    for part in 1..parts {
        let Some(queue) = queues.get(part - 1) else {
            inline.push(part);
            continue;
        };
        latch.lock().0 += 1;
        let task = Task {
            work: erased,
            part,
            latch: latch.clone(),
        };
        let sent = queue.lock().unwrap_or_else(|p| p.into_inner()).send(task);
        if let Err(returned) = sent {
            // The helper is gone: not counted, run here.
            drop(returned);
            latch.finish(false);
            inline.push(part);
        }
    }
    work(0);
    for part in inline {
        work(part);
    }
    drop(_wait);
    let panicked = latch.lock().1;
    !panicked
}

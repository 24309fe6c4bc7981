//! Audit event ids (`eventID`): version-4 UUIDs, never repeated within a process and as
//! unlikely to collide between processes as random ones, with no system call per record.
//!
//! Why not `getrandom` per id, or the earlier pool of 256 ids refilled by one
//! `getrandom` of 4 KiB: the refill made one decision in 256 cost 12–13 µs more on this
//! project's 2-core VM (the slowest call class of `benches/open_authz`, 0.4 % of opens,
//! alone more than a third of the p99 budget), and the pool's fork check was a `getpid`
//! per record.
//!
//! Construction: AES-256 of a 128-bit counter under a key drawn from `getrandom` once per
//! process. AES under one key is a permutation, so distinct counters give distinct ids:
//! ids never repeat within a process (the counter cannot wrap). Keys of different
//! processes are independent and random, so their ids collide no more often than random
//! 122-bit UUIDs. The version and variant bits are set as for any v4 UUID. The ids need
//! uniqueness, not secrecy; the key never leaves this module and is zeroized on drop.
//!
//! A forked child shares the parent's key and counter, so it draws a new key before its
//! first id: a `pthread_atfork` child handler (run by glibc's `fork`, hence by
//! `nix::unistd::fork`) counts forks, and the source rekeys when the count moved. As a
//! second line, for a child made by a raw `clone` that skips the handlers, the pid is
//! compared every [`PID_CHECK_EVERY`] ids (one `getpid` per 256 records instead of one
//! per record), and on every id if the handler could not be registered.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use zeroize::Zeroizing;

/// How many ids pass between two pid checks (see the module docs).
const PID_CHECK_EVERY: u128 = 256;

/// Forks seen by the child handler; a source keyed at another count is stale.
static FORKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();
/// `pthread_atfork` succeeded: without it, the pid is checked on every id.
static HANDLER_SET: AtomicBool = AtomicBool::new(false);

extern "C" fn count_fork_in_child() {
    // Only an atomic add: async-signal-safe, as code between fork and exec must be.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

struct IdSource {
    cipher: Option<Aes256>,
    /// [`FORKS`] when the key was drawn.
    forks: u64,
    /// The process the key was drawn in.
    pid: u32,
    /// The next block to encrypt; starts at 0 for each key.
    counter: u128,
}

static SOURCE: Mutex<IdSource> = Mutex::new(IdSource {
    cipher: None,
    forks: 0,
    pid: 0,
    counter: 0,
});

fn register_fork_handler() {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add; no pointers passed.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        HANDLER_SET.store(rc == 0, Ordering::SeqCst);
    });
}

/// The next id's 16 bytes (before the version and variant bits are set).
pub(super) fn next_id_bytes() -> std::io::Result<[u8; 16]> {
    register_fork_handler();
    // A panic while holding the lock cannot hand out an id twice: the counter moves
    // before the id is returned, and a poisoned source is rekeyed below only if stale.
    let mut src = SOURCE.lock().unwrap_or_else(|e| e.into_inner());
    let forks = FORKS.load(Ordering::SeqCst);
    let check_pid =
        !HANDLER_SET.load(Ordering::SeqCst) || src.counter.is_multiple_of(PID_CHECK_EVERY);
    let stale =
        src.cipher.is_none() || src.forks != forks || (check_pid && src.pid != std::process::id());
    if stale {
        rekey(&mut src, forks)?;
    }
    let counter = src.counter;
    src.counter = counter.wrapping_add(1);
    let mut block = GenericArray::from(counter.to_le_bytes());
    match &src.cipher {
        Some(c) => c.encrypt_block(&mut block),
        None => return Err(std::io::Error::other("event id source has no key")),
    }
    Ok(block.into())
}

fn rekey(src: &mut IdSource, forks: u64) -> std::io::Result<()> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).map_err(|e| std::io::Error::other(e.to_string()))?;
    src.cipher = Some(Aes256::new(GenericArray::from_slice(key.as_ref())));
    src.forks = forks;
    src.pid = std::process::id();
    src.counter = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The current key (other tests in this process may draw ids meanwhile, so the tests
    /// below compare keys, not counters).
    fn current_key() -> Aes256 {
        SOURCE.lock().unwrap().cipher.clone().unwrap()
    }

    fn block(c: &Aes256, counter: u128) -> [u8; 16] {
        let mut block = GenericArray::from(counter.to_le_bytes());
        c.encrypt_block(&mut block);
        block.into()
    }

    #[test]
    fn ids_do_not_repeat_across_pid_checks() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(PID_CHECK_EVERY * 3 + 5) {
            assert!(seen.insert(next_id_bytes().unwrap()));
        }
    }

    // One test for both ways a child is noticed: they share the process-wide source.
    #[test]
    fn a_forked_child_draws_a_new_key_by_handler_or_by_pid() {
        next_id_bytes().unwrap();
        assert!(
            HANDLER_SET.load(Ordering::SeqCst),
            "pthread_atfork registered"
        );
        // What glibc runs in a child after fork: the child's ids do not come from the
        // parent's key.
        let parents = current_key();
        count_fork_in_child();
        next_id_bytes().unwrap();
        let childs = current_key();
        assert_ne!(block(&childs, 0), block(&parents, 0));
        assert_eq!(SOURCE.lock().unwrap().forks, FORKS.load(Ordering::SeqCst));

        // A child whose handler did not run (raw clone): noticed at the next pid check.
        let parents = childs;
        {
            let mut src = SOURCE.lock().unwrap();
            src.pid = std::process::id().wrapping_add(1);
            src.counter = PID_CHECK_EVERY * 7;
        }
        next_id_bytes().unwrap();
        assert_ne!(block(&current_key(), 0), block(&parents, 0));
        assert_eq!(SOURCE.lock().unwrap().pid, std::process::id());
    }
}

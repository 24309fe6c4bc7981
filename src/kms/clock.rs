//! Time for the key service. Every date the service records or compares (creation,
//! rotation, deletion windows, import expiry, audit time) comes through [`Clock`], so
//! tests move time instead of sleeping. Never reads the system time anywhere else.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, from some source.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // A clock set before 1970 is a broken machine; epoch 0 keeps dates ordered.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug)]
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn new(start: i64) -> Self {
        Self(AtomicI64::new(start))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn advance_days(&self, days: i64) {
        self.advance(days * 86_400);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Seconds in a day, for windows and periods given in days.
pub const DAY: i64 = 86_400;

//! `kmsfs serve` syncs read-only audit records in the background (src/audit, #
//! Durability): its process runs the syncer thread, and the records it writes while
//! serving form a valid chain.

mod support;

use std::time::{Duration, Instant};
use support::cli::*;

/// The names of a process's threads (`comm`: at most 15 bytes).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

#[test]
fn serve_runs_the_audit_syncer_and_its_records_verify() {
    let mut s = Served::start("audit-sync");
    let pid = s.pid().expect("kmsfs serve runs");
    // The thread starts just after the socket answers: wait for it (the bound only
    // keeps a missing thread from hanging the run).
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let names = thread_names(pid);
        if names.iter().any(|n| n == "kmsfs-auditsync") {
            break;
        }
        assert!(s.is_serving(), "kmsfs serve exited");
        assert!(
            Instant::now() < give_up,
            "no audit syncer thread in kmsfs serve: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Read-only calls (synced by the thread) and a state change (synced inline).
    ok(&s.root(&["kms", "list-keys"]));
    s.create_key();
    ok(&s.root(&["kms", "list-keys"]));
    s.kill9();
    let out = ok(&s.root(&["audit", "verify"]));
    assert!(!out.is_empty(), "audit verify printed nothing");
}

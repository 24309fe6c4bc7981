//! `scripts/bench`'s pure logic, which decides what its tables say: the filesystems' order
//! rotated per round, medians of the rounds, ratios computed within each round (median and
//! min-max), the JSON's fields (old ones kept, the rounds' added), the markdown table and
//! `scripts/bench-plot`'s whiskers, and `--backing`'s decisions (the device's name and
//! read-ahead, whether an ext4 has a journal, on a made-up `/sys`; `auto`'s choice; the
//! image's size). The script checks these itself (`--self-test`, made-up samples: no root,
//! no mount, nothing timed); this runs it so that the default suite fails when the logic
//! breaks. The benchmark itself is never run here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bench_script_self_test_passes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench");
    let out = Command::new(script)
        .arg("--self-test")
        // Assertions are the checks: an inherited PYTHONOPTIMIZE would strip them.
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .expect("scripts/bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/bench --self-test failed: {stderr}"
    );
    assert!(
        stderr.contains("self-test: ok"),
        "the self-test did not report success: {stderr}"
    );
    assert!(
        stderr.contains("self-test: backing ok"),
        "the self-test did not check --backing: {stderr}"
    );
}

//! Latency of the key service's decision on a file open, in process: one
//! `DataKeys::open_data_key` call (what the filesystem makes on every open: authorize
//! kms:Decrypt with the file's encryption context, audit the decision, unwrap the data
//! key), with 1 grant and then 1000 grants on the key. Criterion reports means; the
//! open() target in issue 11 is a p99, so this harness times each call and prints
//! p50/p99 (and writes them as JSON with `--json FILE`, for scripts/bench).
//!
//! The store lives on /dev/shm when it exists, so that the occasional fdatasync of the
//! audit log measures the service, not the disk (set KMSFS_BENCH_STORE_DIR to choose).
//!
//! Run: `cargo bench --bench open_authz [-- --iters N --json FILE --dump FILE]`.
//! `--dump` appends every timed call (grants, index, ns, and the minor page faults and
//! voluntary/involuntary context switches of the calling thread during it, read with
//! `getrusage` outside the timed region) for finding what the slow calls have in common.
//! Each phase also prints the calling thread's CPU time per timed call (user, system).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kmsfs::kms::provider::{Caller, DataAction, DataKeys};
use kmsfs::kms::{init_store, RootKeySource, Service, ServiceConfig, SystemClock};
use kmsfs::policy::EncryptionContext;
use serde_json::{json, Value};

struct Args {
    iters: usize,
    json: Option<PathBuf>,
    /// Per-call samples (index, ns, faults, context switches), for finding the tail.
    dump: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        iters: 20_000,
        json: None,
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--iters" => {
                if let Some(n) = it.next().and_then(|v| v.parse().ok()) {
                    a.iters = n;
                }
            }
            "--json" => a.json = it.next().map(PathBuf::from),
            "--dump" => a.dump = it.next().map(PathBuf::from),
            // cargo bench passes --bench (and criterion-style filters): not ours.
            _ => {}
        }
    }
    a.iters = a.iters.max(100);
    a
}

fn store_parent() -> PathBuf {
    if let Some(d) = std::env::var_os("KMSFS_BENCH_STORE_DIR") {
        return PathBuf::from(d);
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// This thread's minor faults, voluntary and involuntary context switches so far.
fn thread_usage() -> [i64; 3] {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    [ru.ru_minflt, ru.ru_nvcsw, ru.ru_nivcsw]
}

/// This thread's user and system CPU time so far, in nanoseconds.
fn thread_cpu() -> (u64, u64) {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

/// Nanoseconds of `iters` timed calls of `f` (after a warm-up), in call order; with
/// `dump`, also each call's page faults and context switches (read outside the timing).
/// Also the calling thread's user and system CPU time over the timed calls (ns).
fn timed(iters: usize, dump: bool, mut f: impl FnMut()) -> (Vec<u64>, Vec<[i64; 3]>, (u64, u64)) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut ns: Vec<u64> = Vec::with_capacity(iters);
    let mut usage: Vec<[i64; 3]> = Vec::with_capacity(if dump { iters } else { 0 });
    let cpu_before = thread_cpu();
    for _ in 0..iters {
        let before = if dump { thread_usage() } else { [0; 3] };
        let t = Instant::now();
        f();
        ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if dump {
            let after = thread_usage();
            usage.push([
                after[0] - before[0],
                after[1] - before[1],
                after[2] - before[2],
            ]);
        }
    }
    let cpu_after = thread_cpu();
    let cpu = (
        cpu_after.0.saturating_sub(cpu_before.0),
        cpu_after.1.saturating_sub(cpu_before.1),
    );
    (ns, usage, cpu)
}

/// p50, p99 and p99.9 in nanoseconds.
fn percentiles(ns: &[u64]) -> (u64, u64, u64) {
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), at(0.999))
}

fn main() {
    let args = args();
    let parent = store_parent();
    let dir = tempfile::tempdir_in(&parent).expect("store directory for the bench");
    let store = dir.path().join("store");
    let cfg = ServiceConfig {
        store_dir: store.clone(),
        principals_path: None,
        root_key: RootKeySource::KeyFile(store.join("root.key")),
        clock: Arc::new(SystemClock),
    };
    init_store(&cfg).expect("init store");
    let svc = Service::open(cfg).expect("open store");
    // As `kmsfs mount` and `kmsfs serve` run it: read-only records synced in the background.
    svc.start_audit_syncer().expect("audit syncer");
    // The store's owner: the account root, allowed by the key's default policy. Grants
    // to other principals do not change the decision, but every open still walks them
    // (the evaluation lists every grant that applies).
    let me = Caller {
        uid: nix::unistd::geteuid().as_raw(),
        gid: 0,
        pid: std::process::id(),
    };
    let created = svc.call(&me, "CreateKey", json!({})).expect("create key");
    let key_arn = created["KeyMetadata"]["Arn"]
        .as_str()
        .expect("key ARN")
        .to_string();
    let account = key_arn
        .split(':')
        .nth(4)
        .unwrap_or("111122223333")
        .to_string();
    let ctx: EncryptionContext = [
        ("kmsfs:volume".to_string(), "bench-volume".to_string()),
        ("kmsfs:file".to_string(), "bench-file".to_string()),
    ]
    .into_iter()
    .collect();
    let wrapped = svc
        .generate_data_key(&me, &key_arn, &ctx)
        .expect("data key")
        .wrapped;

    let mut grants = 0usize;
    let mut results = Vec::new();
    println!(
        "open_data_key (authorize kms:Decrypt + audit + unwrap), {} calls, store under {}",
        args.iters,
        parent.display()
    );
    for target in [1usize, 1000] {
        while grants < target {
            svc.call(
                &me,
                "CreateGrant",
                json!({
                    "KeyId": key_arn,
                    "GranteePrincipal": format!("arn:aws:iam::{account}:user/bench-{grants}"),
                    "Operations": ["Decrypt", "Encrypt"],
                }),
            )
            .expect("create grant");
            grants += 1;
        }
        let checks_before = svc.change_checks();
        let (ns, usage, (user, sys)) = timed(args.iters, args.dump.is_some(), || {
            svc.open_data_key(&me, &key_arn, &wrapped, &ctx, &[DataAction::Decrypt])
                .expect("open data key");
        });
        let (p50, p99, p999) = percentiles(&ns);
        println!(
            "  {grants:>4} grant(s): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            p999 as f64 / 1000.0
        );
        // The thread's CPU time per call: unlike the wall-clock percentiles, not
        // lengthened by other processes' work. The total is the scheduler's runtime;
        // the user/system split is apportioned from tick samples.
        println!(
            "             CPU per call {:.2} µs (user {:.2}, system {:.2})",
            (user + sys) as f64 / args.iters as f64 / 1000.0,
            user as f64 / args.iters as f64 / 1000.0,
            sys as f64 / args.iters as f64 / 1000.0
        );
        if let Some(path) = &args.dump {
            use std::fmt::Write as _;
            let mut out = String::from("grants call ns minflt nvcsw nivcsw\n");
            for (i, (t, u)) in ns.iter().zip(&usage).enumerate() {
                let _ = writeln!(out, "{grants} {i} {t} {} {} {}", u[0], u[1], u[2]);
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open --dump file");
            std::io::Write::write_all(&mut f, out.as_bytes()).expect("write --dump file");
        }
        // Whether decisions skipped the stat of state.json and the principals file (a
        // mount or unmount anywhere on the machine also counts as a possible change).
        let checks = svc.change_checks();
        println!(
            "             change checks by {}: {} full checks in {} calls",
            if checks.by_inotify { "inotify" } else { "stat" },
            checks.full_checks - checks_before.full_checks,
            args.iters + args.iters / 10
        );
        results.push(json!({
            "grants": grants, "p50_ns": p50, "p99_ns": p99, "p999_ns": p999,
            "cpu_user_ns_per_call": user / args.iters as u64,
            "cpu_sys_ns_per_call": sys / args.iters as u64,
        }));
    }
    if let Some(path) = args.json {
        let doc: Value = json!({
            "what": "DataKeys::open_data_key, kms:Decrypt, in process",
            "iters": args.iters,
            "store_under": parent.display().to_string(),
            "results": results,
        });
        std::fs::write(&path, format!("{doc:#}\n")).expect("write --json file");
    }
}

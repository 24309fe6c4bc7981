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
//! Run: `cargo bench --bench open_authz [-- --iters N --json FILE]`.

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
}

fn args() -> Args {
    let mut a = Args {
        iters: 20_000,
        json: None,
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

/// p50 and p99 in nanoseconds of `iters` timed calls of `f` (after a warm-up).
fn percentiles(iters: usize, mut f: impl FnMut()) -> (u64, u64) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut ns: Vec<u64> = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
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
        let (p50, p99) = percentiles(args.iters, || {
            svc.open_data_key(&me, &key_arn, &wrapped, &ctx, &[DataAction::Decrypt])
                .expect("open data key");
        });
        println!(
            "  {grants:>4} grant(s): p50 {:.1} µs, p99 {:.1} µs",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
        // Whether decisions skipped the stat of state.json and the principals file (a
        // mount or unmount anywhere on the machine also counts as a possible change).
        let checks = svc.change_checks();
        println!(
            "             change checks by {}: {} full checks in {} calls",
            if checks.by_inotify { "inotify" } else { "stat" },
            checks.full_checks - checks_before.full_checks,
            args.iters + args.iters / 10
        );
        results.push(json!({ "grants": grants, "p50_ns": p50, "p99_ns": p99 }));
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

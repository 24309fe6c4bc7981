//! In-process key service throughput: GenerateDataKey and Decrypt through
//! `Service::call` (the socket server's path) and through `DataKeys` (the filesystem's
//! path), each with policy evaluation and an audit append. Run: `cargo bench --bench kms_ops`.

use std::sync::Arc;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kmsfs::kms::provider::{Caller, DataAction, DataKeys};
use kmsfs::kms::{init_store, RootKeySource, Service, ServiceConfig, SystemClock};
use kmsfs::policy::EncryptionContext;
use serde_json::json;

fn setup() -> (tempfile::TempDir, Arc<Service>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let cfg = ServiceConfig {
        store_dir: store.clone(),
        principals_path: None,
        root_key: RootKeySource::KeyFile(store.join("root.key")),
        clock: Arc::new(SystemClock),
    };
    init_store(&cfg).expect("init");
    let svc = Service::open(cfg).expect("open");
    let owner = Caller {
        uid: nix::unistd::geteuid().as_raw(),
        gid: 0,
        pid: 1,
    };
    let v = svc
        .call(&owner, "CreateKey", json!({}))
        .expect("create key");
    let id = v["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("key id")
        .to_string();
    (dir, svc, id)
}

fn bench(c: &mut Criterion) {
    let (_dir, svc, id) = setup();
    let me = Caller {
        uid: nix::unistd::geteuid().as_raw(),
        gid: 0,
        pid: 1,
    };
    let mut g = c.benchmark_group("kms");
    g.throughput(Throughput::Elements(1));
    g.bench_function("GenerateDataKey (Service::call)", |b| {
        b.iter(|| {
            svc.call(
                &me,
                "GenerateDataKey",
                json!({ "KeyId": id, "KeySpec": "AES_256" }),
            )
            .expect("gdk")
        })
    });
    let blob = svc
        .call(&me, "Encrypt", json!({ "KeyId": id, "Plaintext": base64::engine::general_purpose::STANDARD.encode([7u8; 32]) }))
        .expect("encrypt")["CiphertextBlob"]
        .clone();
    g.bench_function("Decrypt (Service::call)", |b| {
        b.iter(|| {
            svc.call(&me, "Decrypt", json!({ "CiphertextBlob": blob }))
                .expect("decrypt")
        })
    });
    let ctx: EncryptionContext = [
        ("kmsfs:volume".to_string(), "v".to_string()),
        ("kmsfs:file".to_string(), "f".to_string()),
    ]
    .into_iter()
    .collect();
    g.bench_function("generate_data_key (DataKeys)", |b| {
        b.iter(|| svc.generate_data_key(&me, &id, &ctx).expect("fs gdk"))
    });
    let nk = svc.generate_data_key(&me, &id, &ctx).expect("fs gdk");
    g.bench_function("open_data_key Decrypt (DataKeys)", |b| {
        b.iter(|| {
            svc.open_data_key(&me, &nk.key_arn, &nk.wrapped, &ctx, &[DataAction::Decrypt])
                .expect("fs open")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

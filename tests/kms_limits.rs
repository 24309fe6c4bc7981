//! What one caller can make the key service do with oversized requests and a full
//! disk: request fields are bounded as AWS bounds them (ValidationException), the audit
//! log grows by a bounded amount per call whatever the request holds, and a full store
//! disk fails calls closed, leaves no torn record, and heals once space is freed.

mod support;

use kmsfs::audit::{verify, MAX_RECORD_BYTES};
use kmsfs::control::protocol::{read_frame, write_frame, MAX_FRAME};
use kmsfs::control::{Handler, Server};
use kmsfs::kms::provider::Caller;
use kmsfs::kms::{init_store, ErrorKind, KmsError, Service, TestClock};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::kms::*;
use support::Tmpfs;

/// The key service behind a real control socket, as `kmsfs serve` runs it.
struct ServiceHandler(Arc<Service>);

impl Handler for ServiceHandler {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError> {
        self.0.call(caller, operation, request)
    }
}

fn audit_len(store: &Path) -> u64 {
    std::fs::metadata(store.join("audit.log")).unwrap().len()
}

fn context_of(bytes: usize) -> Value {
    // One pair whose key and value together are `bytes` long.
    json!({ "k": "v".repeat(bytes - 1) })
}

#[test]
fn a_megabyte_encryption_context_is_refused_and_costs_the_audit_log_a_bounded_amount() {
    let e = env();
    let key = e.split_key();
    let blob = e.encrypt(ALICE, &key, b"payroll").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kms.sock");
    let _server = Server::bind(&sock, Arc::new(ServiceHandler(e.svc.clone())))
        .unwrap()
        .spawn()
        .unwrap();
    // One request body, sent 100 times as raw frames (serializing a megabyte in the
    // unoptimized test build would dominate the test's time).
    let huge = context_of(1_000_000);
    let body = serde_json::to_vec(&json!({
        "Version": 1,
        "Operation": "Decrypt",
        "Request": { "CiphertextBlob": blob, "KeyId": key, "EncryptionContext": huge },
    }))
    .unwrap();
    let mut stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let before = audit_len(&e.store());
    for _ in 0..100 {
        write_frame(&mut stream, &body).unwrap();
        let reply: Value =
            serde_json::from_slice(&read_frame(&mut stream, MAX_FRAME).unwrap().unwrap()).unwrap();
        assert_eq!(reply["Error"]["__type"], "ValidationException", "{reply}");
        let msg = reply["Error"]["message"].as_str().unwrap();
        assert!(msg.contains("at most 8192 bytes"), "{msg}");
    }
    let grown = audit_len(&e.store()) - before;
    // Each refusal is still audited, but as a few KiB, not as the megabyte it carried.
    assert!(grown > 0, "the refusals are audited");
    assert!(
        grown < 100 * 4096,
        "100 refused calls grew the log by {grown} bytes"
    );
    let last = e.audit_text().lines().last().unwrap().to_string();
    let rec: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(rec["errorCode"], "ValidationException");
    let cut = rec["requestParameters"]["EncryptionContext"]["k"]
        .as_str()
        .unwrap();
    assert!(
        cut.contains("truncated by kmsfs: 999999 bytes, sha256:"),
        "{cut}"
    );
    assert!(verify(&e.store().join("audit.log")).unwrap().records > 100);

    // Denied calls just inside the limit: each record stays within the record bound.
    let at_limit = context_of(8192);
    let before = audit_len(&e.store());
    for _ in 0..20 {
        let err = e.fails(
            STRANGER,
            "Decrypt",
            json!({ "CiphertextBlob": blob, "EncryptionContext": at_limit }),
        );
        assert_kind(&err, ErrorKind::AccessDenied);
    }
    let grown = audit_len(&e.store()) - before;
    assert!(
        grown < 20 * MAX_RECORD_BYTES as u64,
        "20 denied calls grew the log by {grown} bytes"
    );
}

#[test]
fn request_fields_are_bounded_as_aws_bounds_them() {
    let e = env();
    let key = e.split_key();
    let plain = b64(b"x");
    // The encryption context: 8192 bytes in all is fine, one more is not.
    e.ok(
        ALICE,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": plain, "EncryptionContext": context_of(8192) }),
    );
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let grantee = arn("bob");
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": plain, "EncryptionContext": context_of(8193) }),
            "at most 8192 bytes",
        ),
        (
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": plain, "EncryptionContext": many }),
            "at most 64",
        ),
        (
            "GenerateDataKey",
            json!({ "KeyId": key, "KeySpec": "AES_256", "EncryptionContext": context_of(9000) }),
            "at most 8192 bytes",
        ),
        (
            "Encrypt",
            json!({ "KeyId": "k".repeat(2049), "Plaintext": plain }),
            "less than or equal to 2048",
        ),
        (
            "CreateGrant",
            json!({ "KeyId": key, "GranteePrincipal": grantee, "Operations": ["Decrypt"],
                    "Constraints": { "EncryptionContextSubset": nine } }),
            "at most 8",
        ),
        (
            "CreateGrant",
            json!({ "KeyId": key, "GranteePrincipal": grantee, "Operations": ["Decrypt"],
                    "Constraints": { "EncryptionContextEquals": { "k": "v".repeat(385) } } }),
            "at most 384 characters",
        ),
        (
            "CreateGrant",
            json!({ "KeyId": key, "GranteePrincipal": grantee, "Operations": ["Decrypt"],
                    "RetiringPrincipal": format!("arn:aws:iam::{ACCOUNT}:user/{}", "r".repeat(300)) }),
            "length between 1 and 256",
        ),
        (
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": plain, "GrantTokens": vec!["t"; 11] }),
            "at most 10 GrantTokens",
        ),
        (
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": plain, "GrantTokens": ["t".repeat(8193)] }),
            "length between 1 and 8192",
        ),
        (
            "UpdateKeyDescription",
            json!({ "KeyId": key, "Description": "d".repeat(8193) }),
            "length between 0 and 8192",
        ),
    ];
    for (op, req, words) in cases {
        let err = e.fails(ROOT, op, req);
        assert_kind(&err, ErrorKind::Validation);
        assert!(err.message.contains(words), "{op}: {err}");
    }
}

/// Fills the file system holding `dir` with one file, until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // A last byte-sized pass leaves no slack in the filler's own last page.
    while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
    path
}

#[test]
fn a_full_store_disk_fails_calls_closed_without_a_torn_record_and_heals_when_freed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&mnt, "4m");
    let store = mnt.join("store");
    let clock = Arc::new(TestClock::new(START));
    let cfg = config_for(&store, clock.clone());
    assert!(init_store(&cfg).unwrap());
    std::fs::write(store.join("principals.toml"), PRINCIPALS).unwrap();
    std::fs::write(store.join("admin.json"), ADMIN_IAM).unwrap();
    let svc = Service::open(cfg).unwrap();
    let call = |who: Caller, op: &str, req: Value| svc.call(&who, op, req);
    let key = call(ROOT, "CreateKey", json!({ "Policy": split_policy() })).unwrap()["KeyMetadata"]
        ["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let log = store.join("audit.log");
    let filler = fill(&mnt);

    // Calls whose records no longer fit fail closed, naming the disk and the log; a big
    // (bounded) record makes a partial write into the log's last page likely.
    let request =
        json!({ "KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": context_of(8000) });
    let mut failure = None;
    for _ in 0..64 {
        match call(ALICE, "Encrypt", request.clone()) {
            Ok(_) => continue,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("a call fails once the disk is full");
    assert_kind(&err, ErrorKind::KmsInternal);
    let want = format!("no space left on device: {}", log.display());
    assert!(err.message.contains(&want), "{err}");
    // More calls fail the same way, and none leaves a partial line behind.
    for _ in 0..5 {
        assert_kind(
            &call(ALICE, "Encrypt", request.clone()).unwrap_err(),
            ErrorKind::KmsInternal,
        );
    }
    let text = std::fs::read(&log).unwrap();
    assert_eq!(text.last(), Some(&b'\n'), "no torn record at the end");
    let intact = verify(&log).unwrap();

    // Space freed: calls succeed again and the chain continues intact.
    std::fs::remove_file(&filler).unwrap();
    let blob = call(ALICE, "Encrypt", request.clone()).unwrap()["CiphertextBlob"].clone();
    let mut dec = request.clone();
    dec["CiphertextBlob"] = blob;
    call(ALICE, "Decrypt", dec).unwrap();
    let after = verify(&log).unwrap();
    assert_eq!(after.last_seq, intact.last_seq + 2);
    drop(svc);
    // The next open continues the same chain.
    let svc = Service::open(config_for(&store, clock)).unwrap();
    svc.call(&ALICE, "DescribeKey", json!({ "KeyId": key }))
        .unwrap();
    drop(svc);
    assert_eq!(verify(&log).unwrap().last_seq, after.last_seq + 1);
}

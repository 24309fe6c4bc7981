//! The audit log's chain: what it writes, that verify accepts exactly the intact logs and
//! names the first broken line, and that concurrent writers (threads and processes) keep
//! the chain valid.

use kmsfs::audit::{
    verify, AuditError, AuditLog, DecisionFilter, Event, Filter, Follower, Identity, Reader,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const NOW: i64 = 1_795_000_000;
const KEY_ARN: &str = "arn:aws:kms:eu-west-3:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn event(n: usize, denied: bool) -> Event {
    Event {
        event_name: if n.is_multiple_of(2) {
            "Decrypt".into()
        } else {
            "GenerateDataKey".into()
        },
        identity: Identity {
            kind: "IAMUser".into(),
            arn: Some("arn:aws:iam::111122223333:user/alice".into()),
            account_id: Some("111122223333".into()),
            principal_id: Some("AIDAALICE".into()),
            uid: 1001,
            gid: 1001,
            pid: 4242,
        },
        request_parameters: json!({"keyId": KEY_ARN, "encryptionContext": {"kmsfs:volume": "v1", "n": n.to_string()}}).into(),
        response_elements: Value::Null,
        error_code: denied.then(|| "AccessDeniedException".to_string()),
        error_message: denied.then(|| "not allowed".to_string()),
        resources: vec![KEY_ARN.into()],
        read_only: true,
        decision: Some(std::sync::Arc::new(json!({
            "decision": if denied { "implicitDeny" } else { "allowed" },
            "matched": [{"Source": "KeyPolicy", "sid": "Allow use", "index": 1, "effect": "Allow"}],
            "notes": []
        }))),
        via_service: Some("kmsfs".into()),
        fs: Some(json!({"volumeId": "v1", "fileId": format!("f{n}")}).into()),
        remote: None,
    }
}

fn write_log(path: &Path, n: usize) {
    let log = AuditLog::open(path).unwrap();
    for i in 0..n {
        log.append(&event(i, i % 3 == 0), NOW + i as i64).unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn broken_line(path: &Path) -> u64 {
    match verify(path) {
        Err(AuditError::Corrupt { line, .. }) => line,
        other => panic!("expected a corrupt log, got {other:?}"),
    }
}

#[test]
fn records_have_cloudtrail_shape_and_kmsfs_chain_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 2);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let recs: Vec<Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let r = &recs[0];
    assert_eq!(r["eventVersion"], "1.08");
    assert_eq!(r["eventTime"], "2026-11-18T11:06:40Z");
    assert_eq!(r["eventSource"], "kms.amazonaws.com");
    assert_eq!(r["eventName"], "Decrypt");
    assert_eq!(r["awsRegion"], "eu-west-3");
    assert_eq!(r["userIdentity"]["type"], "IAMUser");
    assert_eq!(
        r["userIdentity"]["arn"],
        "arn:aws:iam::111122223333:user/alice"
    );
    assert_eq!(r["userIdentity"]["accountId"], "111122223333");
    assert_eq!(r["userIdentity"]["principalId"], "AIDAALICE");
    assert_eq!(r["errorCode"], "AccessDeniedException");
    assert_eq!(
        r["resources"],
        json!([{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": KEY_ARN}])
    );
    assert_eq!(r["eventType"], "AwsApiCall");
    assert_eq!(r["readOnly"], true);
    assert_eq!(r["managementEvent"], true);
    assert_eq!(r["eventID"].as_str().unwrap().len(), 36);
    assert_ne!(r["eventID"], recs[1]["eventID"]);
    assert!(
        recs[1].get("errorCode").is_none(),
        "no errorCode on success"
    );
    let k = &r["kmsfs"];
    assert_eq!(k["seq"], 1);
    assert_eq!(k["decision"]["decision"], "implicitDeny");
    assert_eq!(
        (k["uid"].as_u64(), k["gid"].as_u64(), k["pid"].as_u64()),
        (Some(1001), Some(1001), Some(4242))
    );
    assert_eq!(k["viaService"], "kmsfs");
    assert_eq!(k["fs"]["fileId"], "f0");
    assert_eq!(k["prevHash"], "0".repeat(64));
    assert_eq!(recs[1]["kmsfs"]["prevHash"], k["hash"]);
    assert_eq!(recs[1]["kmsfs"]["seq"], 2);
}

#[test]
fn intact_chain_verifies_and_reopening_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 5);
    write_log(&path, 3);
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_seq), (8, 8));
    let last: Value = serde_json::from_str(lines(&path).last().unwrap()).unwrap();
    assert_eq!(last["kmsfs"]["hash"], report.last_hash.as_str());
}

#[test]
fn empty_log_verifies_with_genesis_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    drop(AuditLog::open(&path).unwrap());
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_hash), (0, "0".repeat(64)));
}

/// Every leaf path of a JSON value, as a list of object keys / array indices.
fn leaf_paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                leaf_paths(c, p, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, c) in a.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                leaf_paths(c, p, out);
            }
        }
        _ => out.push(prefix),
    }
}

fn leaf_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

#[test]
fn editing_any_field_of_a_record_is_caught_at_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 5);
    let original = lines(&path);
    let record: Value = serde_json::from_str(&original[2]).unwrap();
    let mut paths = Vec::new();
    leaf_paths(&record, Vec::new(), &mut paths);
    assert!(
        paths.len() > 30,
        "the record has its fields: {}",
        paths.len()
    );
    for p in paths {
        let mut edited = record.clone();
        let leaf = leaf_mut(&mut edited, &p);
        *leaf = match leaf.clone() {
            Value::Bool(b) => Value::Bool(!b),
            Value::Number(n) => json!(n.as_u64().unwrap_or(0) + 1),
            Value::String(s) => Value::String(format!("{s}x")),
            Value::Null => json!("x"),
            _ => json!(null),
        };
        let mut tampered = original.clone();
        tampered[2] = edited.to_string();
        write_lines(&path, &tampered);
        assert_eq!(broken_line(&path), 3, "editing {p:?} must break line 3");
    }
    // Removing a field is an edit too.
    let mut edited = record.clone();
    assert!(edited
        .as_object_mut()
        .unwrap()
        .remove("eventName")
        .is_some());
    let mut tampered = original.clone();
    tampered[2] = edited.to_string();
    write_lines(&path, &tampered);
    assert_eq!(broken_line(&path), 3);
}

#[test]
fn reformatting_a_line_without_changing_values_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 3);
    let mut l = lines(&path);
    let v: Value = serde_json::from_str(&l[1]).unwrap();
    // Reverse the member order of the top-level object: same record, different bytes.
    let reversed: serde_json::Map<String, Value> =
        v.as_object().unwrap().clone().into_iter().rev().collect();
    l[1] = Value::Object(reversed).to_string();
    write_lines(&path, &l);
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[test]
fn removed_reordered_truncated_or_foreign_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 6);
    let original = lines(&path);
    let text = std::fs::read_to_string(&path).unwrap();

    let mut removed = original.clone();
    removed.remove(3);
    let mut swapped = original.clone();
    swapped.swap(1, 2);
    let mut first_removed = original.clone();
    first_removed.remove(0);
    let mut duplicated = original.clone();
    duplicated.insert(4, original[3].clone());
    let mut foreign = original.clone();
    foreign.insert(2, r#"{"eventName":"Decrypt"}"#.to_string());
    let mut garbage = original.clone();
    garbage[5] = "not json at all".to_string();

    let cases: Vec<(&str, Vec<String>, u64)> = vec![
        ("record 4 removed", removed, 4),
        ("records 2 and 3 swapped", swapped, 2),
        ("first record removed", first_removed, 1),
        ("record 4 duplicated", duplicated, 5),
        ("foreign line inserted", foreign, 3),
        ("garbage last line", garbage, 6),
    ];
    for (name, l, want) in cases {
        write_lines(&path, &l);
        assert_eq!(broken_line(&path), want, "{name}");
    }

    // Truncated in the middle of the last line, and in the middle of line 3.
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    assert_eq!(broken_line(&path), 6);
    let third_line_mid = original[..2].iter().map(|l| l.len() + 1).sum::<usize>() + 20;
    std::fs::write(&path, &text[..third_line_mid]).unwrap();
    assert_eq!(broken_line(&path), 3);
}

#[test]
fn a_torn_tail_is_removed_on_open_and_the_chain_verifies_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 3);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 15]).unwrap();
    assert_eq!(broken_line(&path), 3, "verify reports the torn line");
    // The next writer removes the partial record and continues from record 2.
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().0, 2);
    log.append(&event(9, false), NOW).unwrap();
    drop(log);
    assert_eq!(lines(&path).len(), 3);
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_seq), (3, 3));
}

#[test]
fn a_whole_record_that_lost_only_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 3);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 1]).unwrap();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.head().0, 3, "record 3 is whole and chained: kept");
    drop(log);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[test]
fn a_torn_tail_that_cannot_be_cut_is_refused_with_the_fix_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.len() - 10;
    std::fs::write(&path, &text[..cut]).unwrap();
    // The append-only attribute allows O_APPEND opens but no truncation.
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+a") {
        eprintln!("skipped: chattr +a is not available here");
        return;
    }
    let opened = AuditLog::open(&path);
    assert!(chattr("-a"));
    let Err(err) = opened else {
        panic!("a log with a torn tail that cannot be cut was opened")
    };
    assert!(matches!(err, AuditError::TornTail { .. }), "{err:?}");
    let intact = text.lines().next().unwrap().len() + 1;
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("truncate -s {intact} {}", path.display())),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap().len(), cut, "nothing changed");
}

#[test]
fn concurrent_threads_keep_the_chain_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.append(&event(t * 1000 + i, false), NOW).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(verify(&path).unwrap().records, 2000);
}

#[test]
fn two_processes_appending_keep_the_chain_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 1);
    // The parent opens its log before the child exists, so each side must notice the
    // other's records under the lock rather than at open.
    let parent_log = AuditLog::open(&path).unwrap();
    // SAFETY: the child only opens a file, appends and calls _exit; it never returns into
    // the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match AuditLog::open(&path) {
                Ok(log) => {
                    let ok = (0..1000).all(|i| log.append(&event(i, false), NOW).is_ok());
                    drop(log);
                    if ok {
                        0
                    } else {
                        1
                    }
                }
                Err(_) => 2,
            };
            // SAFETY: _exit skips the parent's atexit handlers and test harness state.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            for i in 0..1000 {
                parent_log.append(&event(i, i % 2 == 0), NOW).unwrap();
            }
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
    drop(parent_log);
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_seq), (2001, 2001));
    // The child inherited the parent's event id source (drawn for the first record):
    // it must not continue it, or both sides would write the same ids.
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: std::collections::HashSet<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["eventID"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 2001, "event ids repeat across a fork");
}

#[test]
fn secret_fields_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let mut e = event(1, false);
    e.request_parameters =
        json!({"keyId": KEY_ARN, "Plaintext": "c2VjcmV0LXBsYWludGV4dA=="}).into();
    e.response_elements =
        json!({"keyId": KEY_ARN, "plaintext": "ZGF0YWtleWJ5dGVz", "KeyMaterial": "bWF0ZXJpYWw="});
    log.append(&e, NOW).unwrap();
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        "c2VjcmV0LXBsYWludGV4dA==",
        "ZGF0YWtleWJ5dGVz",
        "bWF0ZXJpYWw=",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the log");
    }
    assert!(text.contains("HIDDEN_DUE_TO_SECURITY_REASONS"));
    assert_eq!(verify(&path).unwrap().records, 1);
}

#[test]
fn reader_filters_and_follower_sees_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 9); // records 0, 3, 6 denied
    let denied = Filter {
        decision: Some(DecisionFilter::Denied),
        ..Filter::default()
    };
    let seqs: Vec<u64> = Reader::open(&path)
        .unwrap()
        .map(|r| r.unwrap().1)
        .filter(|r| denied.matches(r))
        .map(|r| r["kmsfs"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 4, 7]);

    let mut follower = Follower::open(&path, true).unwrap();
    assert!(follower.poll().unwrap().is_empty());
    let other_writer = AuditLog::open(&path).unwrap();
    other_writer.append(&event(2, false), NOW).unwrap();
    let fresh = follower.poll().unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["kmsfs"]["seq"], 10);
}

/// Data-path records from several threads at once (a multithreaded FUSE session) form one
/// valid chain with none lost or interleaved. The append rate is a benchmark
/// (`cargo bench --bench open_authz`), never a timed assertion here.
#[test]
fn concurrent_data_path_appends_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let e = event(1, false);
    let n = 4_000;
    for _ in 0..n {
        log.append(&e, NOW).unwrap();
    }
    let log = std::sync::Arc::new(log);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (log, e) = (log.clone(), e.clone());
            std::thread::spawn(move || {
                for _ in 0..n / 4 {
                    log.append(&e, NOW).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(log);
    let report = verify(&path).unwrap();
    assert_eq!(
        (report.records, report.last_seq),
        (2 * n as u64, 2 * n as u64)
    );
}

#[test]
fn a_batch_lands_as_adjacent_records_of_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path, 2);
    let log = AuditLog::open(&path).unwrap();
    let batch: Vec<Event> = (0..3).map(|i| event(i, i == 0)).collect();
    log.append_all(&batch, NOW).unwrap();
    log.append_all(&[], NOW).unwrap();
    drop(log);
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_seq), (5, 5));
    let names: Vec<String> = lines(&path)[2..]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kmsfs"]["fs"]["fileId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["f0", "f1", "f2"]);
}

#[test]
fn a_torn_line_left_by_another_writer_is_removed_before_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    log.append(&event(1, false), NOW).unwrap();
    // Another process died in the middle of its write, after this log was opened.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"eventVersion\":\"1.0").unwrap();
    log.append(&event(2, false), NOW).unwrap();
    drop(log);
    let l = lines(&path);
    assert_eq!(l.len(), 2, "the torn fragment is gone");
    let last: Value = serde_json::from_str(&l[1]).unwrap();
    assert_eq!(
        last["kmsfs"]["seq"], 2,
        "the chain continues from the last intact record"
    );
    assert_eq!(verify(&path).unwrap().records, 2);
}

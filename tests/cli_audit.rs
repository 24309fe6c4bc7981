//! `kmsfs audit` and `kmsfs audit verify` on real log files.

use clap::Parser;
use kmsfs::audit::{AuditLog, Event, Identity};
use kmsfs::cli::audit::{run_with, AuditArgs};
use kmsfs::cli::OutputFormat;
use serde_json::{json, Value};
use std::path::Path;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    audit: AuditArgs,
}

fn audit(path: &Path, output: OutputFormat, argv: &[&str]) -> (i32, String) {
    let args = Cli::try_parse_from(std::iter::once("audit").chain(argv.iter().copied()))
        .unwrap()
        .audit;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&args, path, output, &mut out, &mut err).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn write_log(path: &Path) {
    let log = AuditLog::open(path).unwrap();
    let who = |name: &str, uid| Identity {
        kind: "IAMUser".into(),
        arn: Some(format!("arn:aws:iam::111122223333:user/{name}")),
        account_id: Some("111122223333".into()),
        uid,
        gid: uid,
        pid: 1,
        ..Identity::default()
    };
    let events = [
        ("Decrypt", who("alice", 1001), "k1", "allowed", None),
        (
            "Decrypt",
            who("bob", 1002),
            "k1",
            "implicitDeny",
            Some("AccessDeniedException"),
        ),
        ("PutKeyPolicy", who("admin", 1003), "k2", "allowed", None),
        (
            "GenerateDataKey",
            who("alice", 1001),
            "k2",
            "explicitDeny",
            Some("AccessDeniedException"),
        ),
    ];
    for (i, (name, identity, key, decision, error)) in events.into_iter().enumerate() {
        let arn = format!("arn:aws:kms:local:111122223333:key/{key}");
        let e = Event {
            event_name: name.into(),
            identity,
            request_parameters: json!({"keyId": arn}).into(),
            response_elements: Value::Null,
            error_code: error.map(str::to_string),
            error_message: error.map(|_| "denied".to_string()),
            resources: vec![arn],
            read_only: name != "PutKeyPolicy",
            decision: Some(std::sync::Arc::new(
                json!({"decision": decision, "matched": [], "notes": []}),
            )),
            via_service: None,
            fs: None,
            remote: None,
        };
        log.append(&e, 1_795_000_000 + i as i64).unwrap();
    }
}

fn seqs(jsonl: &str) -> Vec<u64> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kmsfs"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn listing_filters_by_key_principal_decision_and_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path);
    let cases: &[(&[&str], &[u64])] = &[
        (&[], &[1, 2, 3, 4]),
        (&["--key-id", "k1"], &[1, 2]),
        (&["--principal", "alice"], &[1, 4]),
        (&["--decision", "denied"], &[2, 4]),
        (&["--decision", "allowed", "--key-id", "k2"], &[3]),
        (&["--event-name", "decrypt"], &[1, 2]),
        (
            &[
                "--principal",
                "arn:aws:iam::111122223333:user/bob",
                "--decision",
                "allowed",
            ],
            &[],
        ),
    ];
    for (argv, want) in cases {
        let (code, out) = audit(&path, OutputFormat::Json, argv);
        assert_eq!(code, 0, "{argv:?}");
        assert_eq!(seqs(&out), *want, "{argv:?}");
    }
    let (_, text) = audit(&path, OutputFormat::Text, &["--decision", "denied"]);
    let first: Vec<&str> = text.lines().next().unwrap().split('\t').collect();
    assert_eq!(
        first,
        [
            "2026-11-18T11:06:41Z",
            "2",
            "Decrypt",
            "implicitDeny",
            "arn:aws:iam::111122223333:user/bob",
            "uid=1002",
            "arn:aws:kms:local:111122223333:key/k1",
            "AccessDeniedException"
        ]
    );
}

#[test]
fn verify_exits_zero_only_for_an_intact_log_and_shows_the_broken_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path);
    let (code, out) = audit(&path, OutputFormat::Json, &["verify"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["Intact"].as_bool(), report["Records"].as_u64()),
        (Some(true), Some(4))
    );

    // Bob's denial rewritten as allowed: the record no longer matches its hash.
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"implicitDeny\"", "\"allowed\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&path, tampered).unwrap();
    let (code, out) = audit(&path, OutputFormat::Text, &["verify"]);
    assert_eq!(code, 1);
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    assert!(
        head.contains("BROKEN at line 2") && head.contains("edited"),
        "{head}"
    );
    assert!(
        lines.next().unwrap().contains("user/bob"),
        "the broken record is shown"
    );
}

#[test]
fn missing_log_is_reported_not_treated_as_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = audit(
        &dir.path().join("nope.log"),
        OutputFormat::Json,
        &["verify"],
    );
    assert_eq!((code, out.as_str()), (1, ""));
}

/// A stdout that records lines and then closes (like `| head -n 3`).
struct ClosingAfter(std::sync::Arc<std::sync::Mutex<Vec<String>>>, usize);

impl std::io::Write for ClosingAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.0.lock().unwrap();
        if lines.len() >= self.1 {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        }
        lines.push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn follow_prints_matching_records_as_they_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_log(&path);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let args = Cli::try_parse_from(["audit", "--follow", "--decision", "denied"])
        .unwrap()
        .audit;
    let follower = {
        let (path, seen) = (path.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut out = ClosingAfter(seen, 3);
            run_with(&args, &path, OutputFormat::Json, &mut out, &mut Vec::new()).unwrap()
        })
    };
    // Two denied records exist; one more denied and one allowed arrive while following.
    write_log(&path); // seqs 5..8: 6 and 8 are denied
    write_log(&path); // keeps the follower busy until stdout closes
    assert_eq!(follower.join().unwrap(), 0);
    let got: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l.trim()).unwrap()["kmsfs"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, vec![2, 4, 6]);
}

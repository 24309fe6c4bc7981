//! The served store under abuse: malformed frames on the real socket, `kill -9` of
//! `kmsfs serve` in the middle of a burst of writes, a tampered audit log, and damaged
//! store files. Each must end in a clear error, never in a wedged service or a store that
//! no longer opens.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use support::cli::*;

/// Sends raw bytes and reads one response frame; None if the server closed instead.
fn raw(stream: &mut UnixStream, bytes: &[u8]) -> Option<serde_json::Value> {
    stream.write_all(bytes).ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(serde_json::from_slice(&body).expect("the server answers JSON"))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn connect(s: &Served) -> UnixStream {
    let c = UnixStream::connect(s.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn error_kind(v: &serde_json::Value) -> &str {
    v["Error"]["__type"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error frame: {v}"))
}

#[test]
fn malformed_frames_get_error_frames_or_a_closed_connection_and_others_are_still_served() {
    let mut s = Served::start("frames");
    let list_keys = frame(br#"{"Version":1,"Operation":"ListKeys","Request":{}}"#);

    // Bad bodies inside a well-formed frame: an error frame, and the connection goes on.
    let mut c = connect(&s);
    for body in [
        &b"this is not json"[..],
        b"{\"Version\":1,\"Operation\":",
        b"[1,2,3]",
        b"{\"Version\":1}",
        b"{\"Version\":99,\"Operation\":\"ListKeys\",\"Request\":{}}",
        b"{\"Version\":1,\"Operation\":\"NoSuchOperation\",\"Request\":{}}",
        b"{\"Version\":1,\"Operation\":\"Decrypt\",\"Request\":{\"CiphertextBlob\":17}}",
        b"\xff\xfe\x00invalid utf-8",
        b"",
    ] {
        let answer = raw(&mut c, &frame(body));
        let answer =
            answer.unwrap_or_else(|| panic!("closed on {:?}", String::from_utf8_lossy(body)));
        assert!(!error_kind(&answer).is_empty());
    }
    let answer = raw(&mut c, &list_keys).expect("the connection still serves");
    assert!(answer["Ok"]["Keys"].is_array(), "{answer}");

    // An oversized length: an error frame or a close, but never a 4 GiB allocation.
    for len in [(1u32 << 20) + 1, u32::MAX] {
        let mut c = connect(&s);
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        if let Some(v) = raw(&mut c, &bytes) {
            assert!(!error_kind(&v).is_empty());
        }
    }
    // Text from another protocol and a frame cut short by the client hanging up.
    let mut c = connect(&s);
    if let Some(v) = raw(&mut c, b"GET / HTTP/1.1\r\nHost: kms\r\n\r\n") {
        assert!(!error_kind(&v).is_empty());
    }
    let mut c = connect(&s);
    c.write_all(&100u32.to_be_bytes()).unwrap();
    c.write_all(b"{\"Vers").unwrap();
    drop(c);
    // A client that connects, sends half a frame and stalls does not block the others.
    let mut stalled = connect(&s);
    stalled.write_all(&50u32.to_be_bytes()).unwrap();

    assert!(s.is_serving(), "kmsfs serve died");
    let mut fresh = connect(&s);
    let answer = raw(&mut fresh, &list_keys).unwrap();
    assert!(answer["Ok"]["Keys"].is_array(), "{answer}");
    let key = s.create_key();
    assert!(!key.is_empty());
    drop(stalled);
}

#[test]
fn kill_9_during_a_burst_keeps_every_acknowledged_write_and_a_verifiable_log() {
    let mut s = Served::start("crash");
    let key = s.create_key();
    let policy = s.public_file("burst-policy.json", key_policy().as_bytes());
    let kms = format!("{KMSFS} {}", s.globals().join(" "));
    let acked = s.dir.join("acked");
    std::fs::create_dir(&acked).unwrap();
    std::os::unix::fs::chown(&acked, Some(BOB), Some(BOB)).unwrap();
    // Rounds kill the service at different depths into the burst.
    for (round, threshold) in [3usize, 12, 30].into_iter().enumerate() {
        // Three clients as bob: each records the GrantId of every create-grant that was
        // acknowledged, so the store must hold at least those afterwards.
        let mut clients: Vec<std::process::Child> = (0..3)
            .map(|i| {
                let script = format!(
                    "for n in $(seq 1 60); do \
                       {kms} kms put-key-policy --key-id {key} --policy-name default \
                          --policy file://{policy} >/dev/null 2>&1; \
                       {kms} kms create-grant --key-id {key} --grantee-principal {carol} \
                          --operations Decrypt --name r{round}c{i}n$n --query GrantId --output text \
                          >> {acked}/r{round}c{i} 2>/dev/null; \
                     done",
                    policy = policy.display(),
                    carol = arn("carol"),
                    acked = acked.display(),
                );
                as_user(BOB, BOB, "sh")
                    .args(["-c", &script])
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Kill once some writes were acknowledged (bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n: usize = (0..3)
                .map(|i| {
                    std::fs::read_to_string(acked.join(format!("r{round}c{i}")))
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum();
            if n >= threshold || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill9();
        for c in &mut clients {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Every write acknowledged in this round or an earlier one must be kept.
        let acknowledged: Vec<String> = std::fs::read_dir(&acked)
            .unwrap()
            .flat_map(|entry| {
                std::fs::read_to_string(entry.unwrap().path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 32)
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            !acknowledged.is_empty(),
            "no write was acknowledged before the kill"
        );

        s.serve();
        let described = json(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]));
        assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
        let policy_doc = json(&s.as_uid(
            BOB,
            &[
                "kms",
                "get-key-policy",
                "--key-id",
                &key,
                "--policy-name",
                "default",
            ],
        ));
        let _: serde_json::Value =
            serde_json::from_str(policy_doc["Policy"].as_str().unwrap()).unwrap();
        let grants = json(&s.as_uid(BOB, &["kms", "list-grants", "--key-id", &key]));
        let listed: Vec<&str> = grants["Grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["GrantId"].as_str().unwrap())
            .collect();
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "duplicate grants: {listed:?}");
        for id in &acknowledged {
            assert!(
                listed.contains(&id.as_str()),
                "acknowledged grant {id} was lost"
            );
        }
        for g in grants["Grants"].as_array().unwrap() {
            assert_eq!(g["GranteePrincipal"], arn("carol"), "{g}");
        }
    }
    // The store still takes writes, and the audit chain is intact.
    ok(&s.as_uid(
        BOB,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &arn("carol"),
            "--operations",
            "Decrypt",
        ],
    ));
    let verify = s.root(&["audit", "verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn verify_copy(s: &Served, lines: &[String]) -> (Option<i32>, serde_json::Value) {
    std::fs::write(s.store().join("audit.log"), lines.join("\n") + "\n").unwrap();
    let o = s.root(&["audit", "verify"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code(), v)
}

#[test]
fn audit_verify_names_an_edited_a_removed_and_a_reordered_record() {
    let mut s = Served::start("audit");
    let key = s.create_key();
    for _ in 0..3 {
        ok(&s.as_uid(BOB, &["kms", "describe-key", "--key-id", &key]));
        let _ = s.as_uid(CAROL, &["kms", "describe-key", "--key-id", &key]);
    }
    s.kill9();
    let intact = s.root(&["audit", "verify"]);
    assert_eq!(intact.status.code(), Some(0));
    let original: Vec<String> = std::fs::read_to_string(s.store().join("audit.log"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(original.len() >= 7, "{} records", original.len());
    // Denials are recorded too, naming carol.
    assert!(original
        .iter()
        .any(|l| l.contains(&arn("carol")) && l.contains("AccessDenied")));

    // Edited: carol's denial rewritten as bob's.
    let mut edited = original.clone();
    let victim = edited
        .iter()
        .position(|l| l.contains(&arn("carol")))
        .unwrap();
    edited[victim] = edited[victim].replace(&arn("carol"), &arn("bob"));
    let (code, v) = verify_copy(&s, &edited);
    assert_ne!(code, Some(0));
    assert_eq!(v["Intact"], false);
    assert_eq!(v["BrokenLine"], victim + 1, "{v}");
    assert!(v["Reason"].as_str().unwrap().contains("edited"), "{v}");

    // Removed: a record from the middle.
    let mut removed = original.clone();
    removed.remove(3);
    let (code, v) = verify_copy(&s, &removed);
    assert_ne!(code, Some(0));
    assert_eq!(v["BrokenLine"], 4, "{v}");
    assert!(v["Reason"].as_str().unwrap().contains("removed"), "{v}");

    // Reordered: two neighbours swapped.
    let mut reordered = original.clone();
    reordered.swap(4, 5);
    let (code, v) = verify_copy(&s, &reordered);
    assert_ne!(code, Some(0));
    assert_eq!(v["BrokenLine"], 5, "{v}");
    assert!(
        v["Record"].as_str().unwrap().contains("\"seq\":6"),
        "names the record: {v}"
    );

    // Text output names the line too.
    std::fs::write(s.store().join("audit.log"), edited.join("\n") + "\n").unwrap();
    let text = s.root(&["--output", "text", "audit", "verify"]);
    assert_ne!(text.status.code(), Some(0));
    let shown =
        String::from_utf8_lossy(&text.stdout).to_string() + &String::from_utf8_lossy(&text.stderr);
    assert!(shown.contains(&(victim + 1).to_string()), "{shown}");

    // Restored, it verifies again.
    let (code, v) = verify_copy(&s, &original);
    assert_eq!(code, Some(0), "{v}");
}

#[test]
fn damaged_store_files_give_errors_that_name_the_file() {
    let s = Served::init("damaged");
    ok(&s.root(&["kms", "create-key"]));
    let store = s.store();
    let run = |args: &[&str]| {
        let o = s.root(args);
        assert!(!o.status.success(), "{args:?} succeeded on a damaged store");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let damage = |name: &str, bytes: &[u8], check: &dyn Fn(String)| {
        let path = store.join(name);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
        check(run(&["kms", "list-keys"]));
        check(run(&["serve"]));
        std::fs::write(&path, good).unwrap();
        ok(&s.root(&["kms", "list-keys"]));
    };
    let principals = s.principals().display().to_string();
    let good_principals = std::fs::read(s.principals()).unwrap();
    std::fs::write(
        s.principals(),
        b"account = \"1111\n[[principal]]\nuid = 5\n",
    )
    .unwrap();
    for args in [&["kms", "list-keys"][..], &["serve"], &["whoami"]] {
        let err = run(args);
        assert!(
            err.contains(&principals) && err.contains("line 1"),
            "{args:?}: {err}"
        );
    }
    std::fs::write(
        s.principals(),
        b"account = \"111122223333\"\n[[principal]]\narn = \"not an arn\"\nuid = 5\n",
    )
    .unwrap();
    let err = run(&["kms", "list-keys"]);
    assert!(err.contains(&principals), "{err}");
    std::fs::write(s.principals(), good_principals).unwrap();

    let state = std::fs::read(store.join("state.json")).unwrap();
    damage("state.json", &state[..state.len() / 2], &|err| {
        assert!(
            err.contains("state.json") && err.contains("damaged"),
            "{err}"
        )
    });
    damage("state.json", b"", &|err| {
        assert!(err.contains("state.json"), "{err}")
    });
    damage("store.json", b"{\"Version\":", &|err| {
        assert!(err.contains("store.json"), "{err}")
    });
    damage("root.key", b"abc", &|err| {
        assert!(err.contains("root.key"), "{err}")
    });
}

#[test]
fn two_services_and_a_direct_client_share_one_store_without_losing_writes() {
    let s = Served::start("shared");
    let key = s.create_key();
    // A second `kmsfs serve` on the same store, on its own socket (as a mount process
    // serving the socket would be), and root writing through the store directly.
    let second_socket = s.dir.join("second.sock");
    let mut second_globals = s.globals();
    second_globals[5] = second_socket.display().to_string();
    let _second = KillOnDrop(
        std::process::Command::new(KMSFS)
            .args(&second_globals)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&second_socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "second serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked = s.dir.join("acked");
    std::fs::create_dir(&acked).unwrap();
    std::fs::set_permissions(&acked, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = |globals: &[String], name: &str| {
        format!(
            "for n in $(seq 1 15); do {KMSFS} {} kms create-grant --key-id {key} \
               --grantee-principal {} --operations Decrypt --name {name}n$n \
               --query GrantId --output text >> {}/{name} || exit 1; done",
            globals.join(" "),
            arn("carol"),
            acked.display()
        )
    };
    let first_globals = s.globals();
    let direct_globals = [
        "--store".to_string(),
        s.store().display().to_string(),
        "--principals".to_string(),
        s.principals().display().to_string(),
        "--socket".to_string(),
        "/nonexistent/kms.sock".to_string(),
    ];
    let mut jobs = vec![
        (BOB, script(&first_globals, "a1")),
        (BOB, script(&first_globals, "a2")),
        (BOB, script(&second_globals, "b1")),
        (BOB, script(&second_globals, "b2")),
        (
            0,
            format!(
                "for n in $(seq 1 15); do {KMSFS} {} kms create-key --query KeyMetadata.KeyId \
                   --output text >> {}/root-keys || exit 1; done",
                direct_globals.join(" "),
                s.dir.display()
            ),
        ),
    ]
    .into_iter()
    .map(|(uid, script)| {
        std::thread::spawn(move || {
            let o = as_user(uid, uid, "sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            (uid, o)
        })
    })
    .collect::<Vec<_>>();
    for job in jobs.drain(..) {
        let (uid, o) = job.join().unwrap();
        assert!(
            o.status.success(),
            "uid {uid}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let acknowledged = grant_ids_in(&acked);
    assert_eq!(acknowledged.len(), 60);
    let created = std::fs::read_to_string(s.dir.join("root-keys")).unwrap();
    let keys = json(&s.root(&["kms", "list-keys"]));
    let keys = keys["Keys"].to_string();
    assert_eq!(created.lines().count(), 15);
    for id in created.lines() {
        assert!(keys.contains(id.trim()), "key {id} was lost");
    }
    for socket_globals in [&first_globals, &second_globals] {
        let grants = json(&as_uid(
            BOB,
            socket_globals,
            &["kms", "list-grants", "--key-id", &key],
        ));
        let mut listed: Vec<&str> = grants["Grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["GrantId"].as_str().unwrap())
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }
    let verify = s.root(&["audit", "verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_principals_file_broken_while_serving_fails_closed_and_recovers_when_fixed() {
    let s = Served::start("live-principals");
    let key = s.create_key();
    assert!(ok(&s.as_uid(ALICE, &["whoami", "--output", "text"])).contains(&arn("alice")));
    let good = std::fs::read(s.principals()).unwrap();
    // Atomic replacement, as an editor or config management would do it.
    let tmp = s.dir.join("principals.tmp");
    std::fs::write(&tmp, b"account = \"111122223333\"\n[[principal]\n").unwrap();
    std::fs::rename(&tmp, s.principals()).unwrap();
    // No call is decided on stale identities: every one fails, naming the file.
    for (uid, argv, operation) in [
        (
            ALICE,
            vec!["kms", "describe-key", "--key-id", &key],
            "DescribeKey",
        ),
        (
            BOB,
            vec!["kms", "disable-key", "--key-id", &key],
            "DisableKey",
        ),
    ] {
        let o = s.as_uid(uid, &argv);
        service_error(&o, "KMSInternalException", operation);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("principals.toml"), "{err}");
    }
    std::fs::write(&tmp, good).unwrap();
    std::fs::rename(&tmp, s.principals()).unwrap();
    let described = json(&s.as_uid(ALICE, &["kms", "describe-key", "--key-id", &key]));
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
}

//! Access keys in the key service (issue 13): created, listed and deleted through the
//! IAM-style operations of the control socket, authorized like IAM (root, or an
//! identity policy allowing iam:*AccessKey on the principal's ARN), sealed in the store
//! (never in the clear in state.json, Debug output or the audit log), whole after a
//! kill -9 in the middle of writes; and `call_remote`, which acts as the key's principal
//! exactly as a uid mapped to it would, with the network fields in the audit record.

mod support;

use std::time::Duration;

use kmsfs::kms::{ErrorKind, RemoteCaller, Service};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use serde_json::{json, Value};
use support::kms::*;

const CREATE: &str = "iam:CreateAccessKey";
const LIST: &str = "iam:ListAccessKeys";
const DELETE: &str = "iam:DeleteAccessKey";

/// The test principals plus `user/ci` (no uid: reachable only by access key) and an
/// identity policy for bob that lets him manage his own keys only.
fn principals_with_ci() -> String {
    format!(
        "{PRINCIPALS}\n[[principal]]\narn = \"arn:aws:iam::111122223333:user/ci\"\n\
         policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"kms:Encrypt\",\"Resource\":\"*\"}}]}}'''\n"
    )
    .replace(
        "arn = \"arn:aws:iam::111122223333:user/bob\"\nuid = 2003\n",
        "arn = \"arn:aws:iam::111122223333:user/bob\"\nuid = 2003\n\
         policy = '''{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iam:CreateAccessKey\",\"iam:ListAccessKeys\",\"iam:DeleteAccessKey\"],\"Resource\":\"arn:aws:iam::111122223333:user/bob\"}]}'''\n",
    )
}

fn env_with_ci() -> (Env, std::sync::Arc<Service>) {
    let e = env();
    std::fs::write(e.store().join("principals.toml"), principals_with_ci()).unwrap();
    let svc = e.reopen();
    (e, svc)
}

fn remote(id: &str, n: u32) -> RemoteCaller {
    RemoteCaller {
        access_key_id: id.to_string(),
        source_ip: "192.0.2.7".into(),
        user_agent: Some("aws-cli/1.46 test".into()),
        request_id: format!("req-{n}"),
    }
}

fn audit_records(e: &Env) -> Vec<Value> {
    e.audit_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn root_and_policy_holders_manage_access_keys_and_secrets_never_leak() {
    let (e, svc) = env_with_ci();
    let ci = arn("ci");
    // The root creates a key for a principal that has no uid.
    let made = svc
        .call(&ROOT, CREATE, json!({ "PrincipalArn": ci }))
        .unwrap();
    let id = made["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = made["AccessKey"]["SecretAccessKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 20, "{id}");
    assert!(id.starts_with("AKIA"), "{id}");
    assert!(
        id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "{id}"
    );
    assert_eq!(secret.len(), 40);
    assert_eq!(made["AccessKey"]["UserName"], "ci");
    // The lookup the HTTP endpoint uses finds it, secret and all; Debug hides it.
    let key = svc.access_key(&id).unwrap().expect("an active key");
    assert_eq!(key.principal_arn, ci);
    assert_eq!(key.secret.as_str(), secret);
    let shown = format!("{key:?}");
    assert!(!shown.contains(&secret) && shown.contains(&id), "{shown}");
    assert!(svc.access_key("AKIAAAAAAAAAAAAAAAAA").unwrap().is_none());
    // Another process (a running `kmsfs serve`) sees it at once.
    assert!(e.reopen().access_key(&id).unwrap().is_some());

    // Never in the clear on disk or in the audit log.
    let state = std::fs::read_to_string(e.store().join("state.json")).unwrap();
    assert!(state.contains(&id), "the record is in state.json");
    assert!(!state.contains(&secret), "the secret is sealed");
    assert!(
        !e.audit_text().contains(&secret),
        "the secret is not audited"
    );
    let audited = audit_records(&e);
    let created = audited
        .iter()
        .rev()
        .find(|r| r["eventName"] == "CreateAccessKey")
        .expect("CreateAccessKey audited");
    assert_eq!(created["readOnly"], false);

    // Listing shows metadata only; the root without PrincipalArn sees every key.
    let listed = svc.call(&ROOT, LIST, json!({})).unwrap();
    let meta = listed["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0]["AccessKeyId"], id.as_str());
    assert_eq!(meta[0]["PrincipalArn"], ci.as_str());
    assert_eq!(meta[0]["Status"], "Active");
    assert!(meta[0]["CreateDate"].as_str().unwrap().ends_with('Z'));
    assert!(!listed.to_string().contains(&secret));

    // alice has no iam:CreateAccessKey: denied, audited with the reason.
    let denied = svc
        .call(&ALICE, CREATE, json!({ "PrincipalArn": arn("alice") }))
        .unwrap_err();
    assert_kind(&denied, ErrorKind::AccessDenied);
    assert!(
        denied.message.contains("iam:CreateAccessKey") && denied.message.contains(&arn("alice")),
        "{denied}"
    );
    let last = audit_records(&e).pop().unwrap();
    assert_eq!(last["eventName"], "CreateAccessKey");
    assert_eq!(last["errorCode"], "AccessDeniedException");
    assert_eq!(last["kmsfs"]["decision"]["decision"], "implicitDeny");

    // bob's identity policy allows his own ARN only.
    let bobs = svc.call(&BOB, CREATE, json!({})).unwrap();
    assert_eq!(bobs["AccessKey"]["PrincipalArn"], arn("bob").as_str());
    let bob_id = bobs["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let other = svc
        .call(&BOB, CREATE, json!({ "PrincipalArn": arn("alice") }))
        .unwrap_err();
    assert_kind(&other, ErrorKind::AccessDenied);
    let own = svc.call(&BOB, LIST, json!({})).unwrap();
    assert_eq!(own["AccessKeyMetadata"].as_array().unwrap().len(), 1);
    let not_his = svc
        .call(&BOB, DELETE, json!({ "AccessKeyId": id }))
        .unwrap_err();
    assert_kind(&not_his, ErrorKind::AccessDenied);

    // An ARN the principals file does not list: IAM's NoSuchEntity, naming it.
    let ghost = "arn:aws:iam::111122223333:user/ghost";
    let missing = svc
        .call(&ROOT, CREATE, json!({ "PrincipalArn": ghost }))
        .unwrap_err();
    assert_kind(&missing, ErrorKind::NoSuchEntity);
    assert!(missing.message.contains(ghost), "{missing}");

    // IAM's quota: two keys per principal.
    svc.call(&BOB, CREATE, json!({})).unwrap();
    let third = svc.call(&BOB, CREATE, json!({})).unwrap_err();
    assert_kind(&third, ErrorKind::LimitExceeded);

    // Deleting: the key authenticates nothing any more.
    svc.call(&BOB, DELETE, json!({ "AccessKeyId": bob_id }))
        .unwrap();
    assert!(svc.access_key(&bob_id).unwrap().is_none());
    let gone = svc
        .call(&ROOT, DELETE, json!({ "AccessKeyId": bob_id }))
        .unwrap_err();
    assert_kind(&gone, ErrorKind::NoSuchEntity);
    let refused = svc
        .call_remote(&remote(&bob_id, 1), "ListKeys", json!({}))
        .unwrap_err();
    assert_kind(&refused, ErrorKind::UnrecognizedClient);
}

#[test]
fn a_remote_call_acts_as_the_keys_principal_and_is_audited_with_its_origin() {
    let (e, svc) = env_with_ci();
    let key = e.split_key();
    let alice_key = svc
        .call(&ROOT, CREATE, json!({ "PrincipalArn": arn("alice") }))
        .unwrap()["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_key = svc
        .call(&ROOT, CREATE, json!({ "PrincipalArn": arn("bob") }))
        .unwrap()["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();

    // alice is a key user by the key policy: allowed, as her uid would be.
    let enc = svc
        .call_remote(
            &remote(&alice_key, 1),
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": b64(b"over the wire") }),
        )
        .unwrap();
    let blob = enc["CiphertextBlob"].as_str().unwrap().to_string();
    let dec = svc
        .call_remote(
            &remote(&alice_key, 2),
            "Decrypt",
            json!({ "CiphertextBlob": blob }),
        )
        .unwrap();
    assert_eq!(unb64(dec["Plaintext"].as_str().unwrap()), b"over the wire");
    let rec = audit_records(&e).pop().unwrap();
    assert_eq!(rec["eventName"], "Decrypt");
    assert_eq!(rec["sourceIPAddress"], "192.0.2.7");
    assert_eq!(rec["userAgent"], "aws-cli/1.46 test");
    assert_eq!(rec["requestID"], "req-2");
    assert_eq!(rec["userIdentity"]["accessKeyId"], alice_key.as_str());
    assert_eq!(rec["userIdentity"]["arn"], arn("alice").as_str());
    assert_eq!(rec["userIdentity"]["type"], "IAMUser");
    assert_eq!(rec["kmsfs"]["uid"], Value::Null);
    assert_eq!(rec["kmsfs"]["viaService"], Value::Null);
    assert_eq!(rec["kmsfs"]["decision"]["decision"], "allowed");
    // A local call's record keeps the local shape.
    e.decrypt(ALICE, &blob).unwrap();
    let local = audit_records(&e).pop().unwrap();
    assert_eq!(local["sourceIPAddress"], "local");
    assert_eq!(local["kmsfs"]["uid"], 2002);
    assert!(local.get("requestID").is_none());
    assert!(local["userIdentity"].get("accessKeyId").is_none());

    // bob is not a key user: the same AccessDenied his uid gets, audited as his.
    let denied = svc
        .call_remote(
            &remote(&bob_key, 3),
            "Decrypt",
            json!({ "CiphertextBlob": blob }),
        )
        .unwrap_err();
    assert_kind(&denied, ErrorKind::AccessDenied);
    assert_kind(&e.decrypt(BOB, &blob).unwrap_err(), ErrorKind::AccessDenied);
    let rec = audit_records(&e)
        .into_iter()
        .rev()
        .find(|r| r["requestID"] == "req-3")
        .expect("the denial is audited");
    assert_eq!(rec["errorCode"], "AccessDeniedException");
    assert_eq!(rec["userIdentity"]["accessKeyId"], bob_key.as_str());

    // A principal with no uid, reachable only by its key: its identity policy counts.
    let ci_key = svc
        .call(&ROOT, CREATE, json!({ "PrincipalArn": arn("ci") }))
        .unwrap()["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    svc.call_remote(
        &remote(&ci_key, 4),
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": b64(b"ci") }),
    )
    .unwrap();
    let who = svc
        .call_remote(&remote(&ci_key, 5), "WhoAmI", json!({}))
        .unwrap();
    assert_eq!(who["Arn"], arn("ci").as_str());
    assert_eq!(who["Uid"], Value::Null);
    assert_eq!(who["AccessKeyId"], ci_key.as_str());

    // kms:ViaService is the filesystem's: a remote call never satisfies it.
    let via_only = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "ViaKmsfsOnly", "Effect": "Allow", "Principal": {"AWS": arn("alice")},
             "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": "kmsfs"}}}
        ]
    })
    .to_string();
    let via_key = e.ok(ROOT, "CreateKey", json!({ "Policy": via_only }))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let via = svc
        .call_remote(
            &remote(&alice_key, 6),
            "Encrypt",
            json!({ "KeyId": via_key, "Plaintext": b64(b"x") }),
        )
        .unwrap_err();
    assert_kind(&via, ErrorKind::AccessDenied);

    // The principal's own attributes come along: a Deny on alice's uid denies her
    // access key too, exactly as it denies her uid.
    let uid_deny = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": arn("alice")},
             "Action": "kms:Encrypt", "Resource": "*"},
            {"Sid": "NotUid2002", "Effect": "Deny", "Principal": "*",
             "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kmsfs:uid": "2002"}}}
        ]
    })
    .to_string();
    let uid_key = e.ok(ROOT, "CreateKey", json!({ "Policy": uid_deny }))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_kind(
        &e.encrypt(ALICE, &uid_key, b"x").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    let denied = svc
        .call_remote(
            &remote(&alice_key, 9),
            "Encrypt",
            json!({ "KeyId": uid_key, "Plaintext": b64(b"x") }),
        )
        .unwrap_err();
    assert_kind(&denied, ErrorKind::AccessDenied);
    assert!(denied.message.contains("explicit deny"), "{denied}");

    // Management operations are not KMS operations: not reachable remotely.
    let iam = svc
        .call_remote(&remote(&alice_key, 7), CREATE, json!({}))
        .unwrap_err();
    assert_kind(&iam, ErrorKind::UnsupportedOperation);

    // A key whose principal left the principals file authenticates no one.
    std::fs::write(e.store().join("principals.toml"), PRINCIPALS).unwrap();
    let svc = e.reopen();
    assert!(svc.access_key(&ci_key).unwrap().is_none());
    let orphan = svc
        .call_remote(&remote(&ci_key, 8), "ListKeys", json!({}))
        .unwrap_err();
    assert_kind(&orphan, ErrorKind::UnrecognizedClient);
    let rec = audit_records(&e).pop().unwrap();
    assert_eq!(rec["errorCode"], "UnrecognizedClientException");
    assert_eq!(rec["userIdentity"]["accessKeyId"], ci_key.as_str());
    assert_eq!(rec["sourceIPAddress"], "192.0.2.7");
}

fn jitter_ms(min: u64, max: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    min + u64::from_le_bytes(b) % (max - min)
}

#[test]
fn kill_9_while_creating_and_deleting_access_keys_leaves_every_listed_key_usable() {
    let (e, _svc) = env_with_ci();
    for _round in 0..4 {
        // SAFETY: the child only runs this crate's code and never returns to the test
        // harness; it ends by SIGKILL (or _exit if it cannot start).
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let svc = match Service::open(e.config()) {
                    Ok(s) => s,
                    Err(_) => unsafe { libc::_exit(3) },
                };
                loop {
                    let made = svc.call(&ROOT, CREATE, json!({ "PrincipalArn": arn("ci") }));
                    if made.is_err() {
                        // At the quota: delete the oldest and go on.
                        if let Ok(l) = svc.call(&ROOT, LIST, json!({})) {
                            if let Some(id) = l["AccessKeyMetadata"][0]["AccessKeyId"].as_str() {
                                let _ = svc.call(&ROOT, DELETE, json!({ "AccessKeyId": id }));
                            }
                        }
                    }
                }
            }
            ForkResult::Parent { child } => {
                std::thread::sleep(Duration::from_millis(jitter_ms(30, 200)));
                kill(child, Signal::SIGKILL).unwrap();
                waitpid(child, None).unwrap();
            }
        }
        let svc = e.reopen();
        let listed = svc.call(&ROOT, LIST, json!({})).unwrap();
        let ids: Vec<String> = listed["AccessKeyMetadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["AccessKeyId"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.len() <= 2, "{ids:?}");
        for id in &ids {
            let k = svc.access_key(id).unwrap().expect("every listed key opens");
            assert_eq!(k.secret.len(), 40);
        }
        // The next writer proceeds.
        if ids.len() == 2 {
            svc.call(&ROOT, DELETE, json!({ "AccessKeyId": ids[0] }))
                .unwrap();
        }
        svc.call(&ROOT, CREATE, json!({ "PrincipalArn": arn("ci") }))
            .unwrap();
    }
}

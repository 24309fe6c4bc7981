//! Atomicity under kill -9: a child process hammers one store with PutKeyPolicy and
//! CreateGrant (each a state commit, CreateGrant sometimes a material write too via
//! rotation), the parent kills it at a random moment, then opens the store and checks
//! that it is whole: the state parses, the key still decrypts, policy and grants are a
//! consistent old-or-new version, and the next writer proceeds.

mod support;

use std::time::Duration;

use kmsfs::kms::Service;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use serde_json::json;
use support::kms::*;

fn jitter_ms(min: u64, max: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    min + u64::from_le_bytes(b) % (max - min)
}

#[test]
fn kill_9_during_a_burst_of_policy_and_grant_writes_leaves_a_whole_store() {
    let e = env();
    let id = e.split_key();
    let blob = e.encrypt(ALICE, &id, b"survives every crash").unwrap();
    let generation = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.store().join("state.json")).unwrap())
                .unwrap();
        v["generation"].as_u64().unwrap()
    };
    let before = generation();
    for round in 0..6 {
        // SAFETY: the child only runs this crate's code and never returns to the test
        // harness; it ends by SIGKILL (or _exit if it cannot start).
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let svc = match Service::open(e.config()) {
                    Ok(s) => s,
                    Err(_) => unsafe { libc::_exit(3) },
                };
                let mut i = 0u64;
                loop {
                    let _ = svc.call(
                        &ADMIN,
                        "CreateGrant",
                        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Decrypt"], "Name": format!("r{round}-g{i}") }),
                    );
                    let policy =
                        split_policy().replace("KeyUsers", &format!("KeyUsers{round}x{i}"));
                    let _ = svc.call(
                        &ADMIN,
                        "PutKeyPolicy",
                        json!({ "KeyId": id, "Policy": policy }),
                    );
                    if i.is_multiple_of(7) {
                        let _ = svc.call(&ADMIN, "RotateKeyOnDemand", json!({ "KeyId": id }));
                    }
                    i += 1;
                }
            }
            ForkResult::Parent { child } => {
                std::thread::sleep(Duration::from_millis(jitter_ms(40, 250)));
                kill(child, Signal::SIGKILL).unwrap();
                waitpid(child, None).unwrap();
                let svc = Service::open(e.config()).expect("the store must open after a crash");
                let d = svc
                    .call(&ALICE, "Decrypt", json!({ "CiphertextBlob": blob }))
                    .unwrap();
                assert_eq!(
                    unb64(d["Plaintext"].as_str().unwrap()),
                    b"survives every crash"
                );
                let p = svc
                    .call(&ADMIN, "GetKeyPolicy", json!({ "KeyId": id }))
                    .unwrap();
                assert!(
                    kmsfs::policy::PolicyDocument::parse(p["Policy"].as_str().unwrap()).is_ok()
                );
                let grants = svc
                    .call(&ADMIN, "ListGrants", json!({ "KeyId": id, "Limit": 100 }))
                    .unwrap();
                for g in grants["Grants"].as_array().unwrap() {
                    assert_eq!(g["GranteePrincipal"], arn("bob"));
                }
                // Every material version the state lists is readable: encrypt under the
                // newest and decrypt.
                let c = e.encrypt(ALICE, &id, b"after").unwrap();
                assert_eq!(e.decrypt(ALICE, &c).unwrap(), b"after");
                // Leftovers of the interrupted write are cleaned up by the next tick.
                svc.tick().unwrap();
                let temps: Vec<_> = walk(&e.store())
                    .into_iter()
                    .filter(|p| p.contains(".tmp."))
                    .collect();
                assert!(temps.is_empty(), "temp files left after tick: {temps:?}");
                // And writers proceed.
                svc.call(&ADMIN, "TagResource", json!({ "KeyId": id, "Tags": [{ "TagKey": "round", "TagValue": round.to_string() }] }))
                    .unwrap();
            }
        }
    }
    // The children really were writing when they died (several commits per round).
    assert!(
        generation() > before + 12,
        "the children made too few writes to test anything"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

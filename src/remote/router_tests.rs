//! The router's rules with a fake local service and a fake remote KMS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use super::*;
use crate::remote::{Context, RemoteDataKey};

const LOCAL_ARN: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const REMOTE_ARN: &str =
    "arn:aws:kms:eu-west-1:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321";

fn caller(uid: u32) -> Caller {
    Caller {
        uid,
        gid: uid,
        pid: 1,
    }
}

fn ctx(file: &str) -> EncryptionContext {
    BTreeMap::from([
        ("kmsfs:volume".to_string(), "v".to_string()),
        ("kmsfs:file".to_string(), file.to_string()),
    ])
}

#[derive(Debug, Clone)]
struct Audited {
    operation: &'static str,
    profile: Option<String>,
    request_id: Option<String>,
    cached: bool,
    error: Option<ErrorKind>,
}

#[derive(Default)]
struct FakeLocal {
    held: HashSet<String>,
    profiles: Mutex<HashMap<u32, Profile>>,
    audit: Mutex<Vec<Audited>>,
    opens: AtomicUsize,
}

impl FakeLocal {
    fn audit(&self) -> Vec<Audited> {
        self.audit.lock().unwrap().clone()
    }
}

impl DataKeys for FakeLocal {
    fn generate_data_key(
        &self,
        _: &Caller,
        key_id: &str,
        _: &EncryptionContext,
    ) -> Result<NewDataKey, KmsError> {
        Ok(NewDataKey {
            key: DataKey::from_bytes([1; 32]),
            wrapped: b"local".to_vec(),
            key_arn: key_id.to_string(),
        })
    }
    fn open_data_key(
        &self,
        _: &Caller,
        _: &str,
        _: &[u8],
        _: &EncryptionContext,
        _: &[DataAction],
    ) -> Result<DataKey, KmsError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(DataKey::from_bytes([1; 32]))
    }
    fn wrap_data_key(
        &self,
        _: &Caller,
        key_id: &str,
        _: &DataKey,
        _: &EncryptionContext,
    ) -> Result<WrappedDataKey, KmsError> {
        Ok(WrappedDataKey {
            wrapped: b"local".to_vec(),
            key_arn: key_id.to_string(),
        })
    }
    fn volume_secret(&self, _: &str) -> Result<SealingKey, KmsError> {
        Ok(SealingKey::from_bytes([2; 32]))
    }
    fn dir_rule(&self, _: &str, _: &[u8; 16]) -> Result<Option<DirRule>, KmsError> {
        Ok(None)
    }
    fn record_dir_rule(
        &self,
        _: &Caller,
        _: &str,
        _: &[u8; 16],
        _: &DirRule,
    ) -> Result<(), KmsError> {
        Ok(())
    }
    fn dir_rules_imported(&self, _: &str) -> Result<bool, KmsError> {
        Ok(true)
    }
    fn import_dir_rules(&self, _: &str, _: &[([u8; 16], String)]) -> Result<(), KmsError> {
        Ok(())
    }
}

impl LocalKeys for FakeLocal {
    fn holds_key(&self, key_ref: &str) -> Result<bool, KmsError> {
        Ok(self.held.contains(key_ref))
    }
    fn remote_identity(&self, caller: &Caller) -> Result<RemoteIdentity, KmsError> {
        Ok(RemoteIdentity {
            identity: Identity {
                uid: caller.uid,
                ..Identity::default()
            },
            profile: self.profiles.lock().unwrap().get(&caller.uid).cloned(),
        })
    }
    fn audit_remote(&self, d: &RemoteDecision<'_>) -> Result<(), KmsError> {
        self.audit.lock().unwrap().push(Audited {
            operation: d.operation,
            profile: d.profile.map(str::to_string),
            request_id: d.request_id.map(str::to_string),
            cached: d.cached,
            error: d.error.map(|e| e.kind),
        });
        Ok(())
    }
}

/// A remote KMS that answers from a table: which profiles may decrypt / encrypt, and an
/// error that every call fails with while set. `wrapped == b"slow"` blocks a Decrypt
/// until `release` is sent.
#[derive(Default)]
struct FakeRemote {
    decrypters: HashSet<String>,
    encrypters: HashSet<String>,
    failing: Mutex<Option<ErrorKind>>,
    calls: AtomicUsize,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl FakeRemote {
    fn answer(&self, allowed: bool) -> Result<RemoteReceipt, RemoteError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let receipt = RemoteReceipt {
            request_id: Some(format!("req-{n}")),
        };
        let kind = match *self.failing.lock().unwrap() {
            Some(k) => Some(k),
            None if !allowed => Some(ErrorKind::AccessDenied),
            None => None,
        };
        match kind {
            Some(kind) => Err(RemoteError {
                error: KmsError::new(kind, "remote says no"),
                receipt,
            }),
            None => Ok(receipt),
        }
    }
}

impl RemoteKeys for FakeRemote {
    fn generate_data_key(
        &self,
        profile: &Profile,
        target: &Target,
        _: &Context,
    ) -> Result<RemoteDataKey, RemoteError> {
        let receipt = self.answer(self.encrypters.contains(&profile.name))?;
        Ok(RemoteDataKey {
            key: DataKey::from_bytes([7; 32]),
            wrapped: b"remote".to_vec(),
            key_arn: target.key_arn.clone(),
            receipt,
        })
    }
    fn decrypt(
        &self,
        profile: &Profile,
        _: &Target,
        wrapped: &[u8],
        _: &Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        if wrapped == b"slow" {
            let rx = self.release.lock().unwrap().take();
            if let Some(rx) = rx {
                let _ = rx.recv();
            }
        }
        let receipt = self.answer(self.decrypters.contains(&profile.name))?;
        Ok((DataKey::from_bytes([7; 32]), receipt))
    }
    fn encrypt(
        &self,
        profile: &Profile,
        _: &Target,
        _: &DataKey,
        _: &Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        let receipt = self.answer(self.encrypters.contains(&profile.name))?;
        Ok((b"rewrapped".to_vec(), receipt))
    }
    fn encrypt_allowed(
        &self,
        profile: &Profile,
        _: &Target,
        _: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.answer(self.encrypters.contains(&profile.name))
    }
    fn describe_key(
        &self,
        _: &Profile,
        _: &Target,
    ) -> Result<(serde_json::Value, RemoteReceipt), RemoteError> {
        Ok((serde_json::Value::Null, self.answer(true)?))
    }
}

fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        config_file: None,
        credentials_file: None,
    }
}

/// uid 1001 "user" may decrypt and encrypt; uid 1002 "reader" only decrypt; uid 1003
/// "admin" nothing; uid 1004 has no profile.
fn setup(ttl: u64) -> (Arc<FakeLocal>, Arc<FakeRemote>, KeyRouter) {
    let local = Arc::new(FakeLocal {
        held: HashSet::from([LOCAL_ARN.to_string()]),
        profiles: Mutex::new(HashMap::from([
            (1001, profile("user")),
            (1002, profile("reader")),
            (1003, profile("admin")),
        ])),
        ..FakeLocal::default()
    });
    let remote = Arc::new(FakeRemote {
        decrypters: HashSet::from(["user".to_string(), "reader".to_string()]),
        encrypters: HashSet::from(["user".to_string()]),
        ..FakeRemote::default()
    });
    let router = KeyRouter::new(
        local.clone(),
        remote.clone(),
        &RouterOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(ttl),
        },
    );
    (local, remote, router)
}

fn open(
    router: &KeyRouter,
    uid: u32,
    file: &str,
    actions: &[DataAction],
) -> Result<DataKey, KmsError> {
    router.open_data_key(&caller(uid), REMOTE_ARN, b"remote", &ctx(file), actions)
}

#[test]
fn only_full_key_arns_can_be_remote() {
    assert!(is_key_arn(REMOTE_ARN));
    assert!(is_key_arn("arn:aws-cn:kms:cn-north-1:111122223333:key/abc"));
    for not in [
        "alias/kmsfs/default",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:alias/x",
        "arn:aws:kms::111122223333:key/abc",
        "arn:aws:kms:us-east-1::key/abc",
        "arn:aws:kms:us-east-1:111122223333:key/",
        "arn:aws:s3:us-east-1:111122223333:key/abc",
        "arn:aws:kms:us-east-1:111122223333:key/a b",
    ] {
        assert!(!is_key_arn(not), "{not}");
    }
}

#[test]
fn held_keys_and_non_arns_stay_local_and_uncached() {
    let (local, remote, router) = setup(60);
    for key in [LOCAL_ARN, "alias/kmsfs/default"] {
        for _ in 0..2 {
            router
                .open_data_key(
                    &caller(1004),
                    key,
                    b"local",
                    &ctx("f"),
                    &[DataAction::Decrypt],
                )
                .unwrap();
        }
        let nk = router
            .generate_data_key(&caller(1004), key, &ctx("g"))
            .unwrap();
        assert_eq!(nk.wrapped, b"local");
    }
    assert_eq!(
        local.opens.load(Ordering::SeqCst),
        4,
        "every local open asks the store"
    );
    assert_eq!(remote.calls.load(Ordering::SeqCst), 0);
    assert_eq!(router.cached_entries(), 0);
    assert!(local.audit().is_empty());
}

#[test]
fn a_uid_without_a_profile_is_refused_without_a_remote_call_and_audited() {
    let (local, remote, router) = setup(60);
    let e = open(&router, 1004, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert!(e.message.contains("aws_profile"), "{}", e.message);
    let e = router
        .generate_data_key(&caller(1004), REMOTE_ARN, &ctx("f"))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert_eq!(remote.calls.load(Ordering::SeqCst), 0);
    let audit = local.audit();
    assert_eq!(audit.len(), 2);
    assert!(audit
        .iter()
        .all(|a| a.profile.is_none() && a.error == Some(ErrorKind::AccessDenied)));
}

#[test]
fn each_uid_acts_as_its_own_profile_and_write_needs_encrypt() {
    let (local, _remote, router) = setup(0);
    let key = open(
        &router,
        1001,
        "f",
        &[DataAction::Decrypt, DataAction::Encrypt],
    )
    .unwrap();
    assert_eq!(key.expose(), &[7; 32]);
    open(&router, 1002, "f", &[DataAction::Decrypt]).unwrap();
    let e = open(&router, 1002, "f", &[DataAction::Encrypt]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied, "a reader cannot write");
    let e = open(&router, 1003, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied,
        "the administrator cannot read"
    );
    let nk = router
        .generate_data_key(&caller(1001), REMOTE_ARN, &ctx("new"))
        .unwrap();
    assert_eq!(
        (nk.wrapped.as_slice(), nk.key_arn.as_str()),
        (&b"remote"[..], REMOTE_ARN)
    );
    let audit = local.audit();
    // Every remote call is in the audit log with its profile and request id.
    assert!(audit
        .iter()
        .all(|a| a.request_id.is_some() && a.profile.is_some() && !a.cached));
    let ops: Vec<_> = audit
        .iter()
        .map(|a| (a.operation, a.profile.clone().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("Decrypt", "user".to_string()),
            ("Encrypt", "user".into()),
            ("Decrypt", "reader".into()),
            ("Decrypt", "reader".into()),
            ("Encrypt", "reader".into()),
            ("Decrypt", "admin".into()),
            ("GenerateDataKey", "user".into()),
        ]
    );
}

#[test]
fn a_second_open_within_the_ttl_is_served_from_the_cache() {
    let (local, remote, router) = setup(600);
    open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap();
    open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap();
    assert_eq!(remote.calls.load(Ordering::SeqCst), 1);
    // A write after a read-only open still asks Encrypt once, then both are cached.
    open(
        &router,
        1001,
        "f",
        &[DataAction::Decrypt, DataAction::Encrypt],
    )
    .unwrap();
    assert_eq!(remote.calls.load(Ordering::SeqCst), 2);
    open(&router, 1001, "f", &[DataAction::Encrypt]).unwrap();
    assert_eq!(remote.calls.load(Ordering::SeqCst), 2);
    // Another uid, or another file, is not served by this entry.
    open(&router, 1002, "f", &[DataAction::Decrypt]).unwrap();
    open(&router, 1001, "g", &[DataAction::Decrypt]).unwrap();
    assert_eq!(remote.calls.load(Ordering::SeqCst), 4);
    let cached: Vec<_> = local.audit().iter().map(|a| a.cached).collect();
    assert_eq!(cached, [false, true, false, true, false, false]);
}

#[test]
fn denials_and_failures_are_asked_again_and_the_ttl_zero_caches_nothing() {
    let (_local, remote, router) = setup(600);
    for _ in 0..2 {
        let e = open(&router, 1002, "f", &[DataAction::Encrypt]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
    }
    // Decrypt + Encrypt each time: the refusal was not cached.
    assert_eq!(remote.calls.load(Ordering::SeqCst), 4);
    *remote.failing.lock().unwrap() = Some(ErrorKind::Disabled);
    let e = open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(crate::fs::error::kms_errno(e.kind), libc::EKEYREVOKED);
    *remote.failing.lock().unwrap() = Some(ErrorKind::DependencyTimeout);
    let e = open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(crate::fs::error::kms_errno(e.kind), libc::EIO);
    *remote.failing.lock().unwrap() = None;
    open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap();

    let (_local, remote, router) = setup(0);
    for _ in 0..3 {
        open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap();
    }
    assert_eq!(remote.calls.load(Ordering::SeqCst), 3);
    assert_eq!(router.cached_entries(), 0);
}

#[test]
fn the_cache_is_bounded() {
    let (_local, _remote, router) = setup(600);
    for i in 0..CACHE_CAPACITY + 20 {
        open(&router, 1001, &format!("f{i}"), &[DataAction::Decrypt]).unwrap();
    }
    assert_eq!(router.cached_entries(), CACHE_CAPACITY);
}

#[test]
fn a_slow_remote_call_does_not_hold_up_another_file() {
    let (_local, remote, router) = setup(600);
    let (release, wait) = mpsc::channel();
    *remote.release.lock().unwrap() = Some(wait);
    let router = Arc::new(router);
    let slow = {
        let router = router.clone();
        std::thread::spawn(move || {
            router.open_data_key(
                &caller(1001),
                REMOTE_ARN,
                b"slow",
                &ctx("slow"),
                &[DataAction::Decrypt],
            )
        })
    };
    // Wait until the slow call holds its place in the remote (it took the receiver).
    while remote.release.lock().unwrap().is_some() {
        std::thread::yield_now();
    }
    let (done_tx, done_rx) = mpsc::channel();
    {
        let router = router.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(open(&router, 1001, "fast", &[DataAction::Decrypt]).is_ok());
        });
    }
    // A watchdog, not a timing assertion: serialized opens would never finish.
    let fast = done_rx.recv_timeout(Duration::from_secs(60));
    release.send(()).unwrap();
    assert_eq!(
        fast,
        Ok(true),
        "the open of another file waited for the slow call"
    );
    assert!(slow.join().unwrap().is_ok());
}

#[test]
fn remote_wrap_asks_encrypt_as_the_caller() {
    let (_local, _remote, router) = setup(0);
    let key = DataKey::from_bytes([9; 32]);
    let w = router
        .wrap_data_key(&caller(1001), REMOTE_ARN, &key, &ctx("f"))
        .unwrap();
    assert_eq!(
        (w.wrapped.as_slice(), w.key_arn.as_str()),
        (&b"rewrapped"[..], REMOTE_ARN)
    );
    let e = router
        .wrap_data_key(&caller(1002), REMOTE_ARN, &key, &ctx("f"))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    let w = router
        .wrap_data_key(&caller(1004), LOCAL_ARN, &key, &ctx("f"))
        .unwrap();
    assert_eq!(w.wrapped, b"local");
}

#[test]
fn a_uid_whose_profile_changes_is_not_served_the_old_profiles_answer() {
    let (local, remote, router) = setup(600);
    open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap();
    local
        .profiles
        .lock()
        .unwrap()
        .insert(1001, profile("admin"));
    let e = open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    local.profiles.lock().unwrap().remove(&1001);
    let e = open(&router, 1001, "f", &[DataAction::Decrypt]).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied,
        "no profile: refused at once"
    );
    assert_eq!(remote.calls.load(Ordering::SeqCst), 2);
}

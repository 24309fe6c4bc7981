//! Tests of the decision cache: every kind of change is seen on the next call (also a
//! change made through a second `Service` on the same store, as the CLI makes it),
//! time-conditioned decisions are never reused, and a reused decision is audited
//! exactly as an evaluated one.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::kms::provider::{Caller, DataAction, DataKeys};
use crate::kms::{init_store, ErrorKind, RootKeySource, Service, ServiceConfig, TestClock};
use crate::policy::EncryptionContext;

const NOW: i64 = 1_800_000_000;
const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};
const ALICE: Caller = Caller {
    uid: 4002,
    gid: 4002,
    pid: 2,
};
const BOB: Caller = Caller {
    uid: 4003,
    gid: 4003,
    pid: 3,
};
const ALICE_ARN: &str = "arn:aws:iam::111122223333:user/alice";
const BOB_ARN: &str = "arn:aws:iam::111122223333:user/bob";

struct Fixture {
    _dir: tempfile::TempDir,
    cfg: ServiceConfig,
    clock: Arc<TestClock>,
    svc: Arc<Service>,
    /// A second service on the same store: what the CLI is to a mount.
    cli: Arc<Service>,
    key_arn: String,
    wrapped: Vec<u8>,
    ctx: EncryptionContext,
}

fn principals(alice_arn: &str) -> String {
    format!(
        "account = \"111122223333\"\n[[principal]]\narn = \"{alice_arn}\"\nuid = 4002\n[[principal]]\narn = \"{BOB_ARN}\"\nuid = 4003\n"
    )
}

/// Replaces a file the way an editor or the CLI does (new inode, renamed into place).
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A key with the default policy (the account root may do anything, IAM delegation)
/// and a data key wrapped under it for one file.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let clock = Arc::new(TestClock::new(NOW));
    let cfg = ServiceConfig {
        store_dir: store.clone(),
        principals_path: None,
        root_key: RootKeySource::KeyFile(store.join("root.key")),
        clock: clock.clone(),
    };
    assert!(init_store(&cfg).unwrap());
    replace(&store.join("principals.toml"), &principals(ALICE_ARN));
    let svc = Service::open(cfg.clone()).unwrap();
    let cli = Service::open(cfg.clone()).unwrap();
    let created = svc.call(&ROOT, "CreateKey", json!({})).unwrap();
    let key_arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let ctx: EncryptionContext = [("kmsfs:file".to_string(), "f1".to_string())]
        .into_iter()
        .collect();
    let wrapped = svc
        .generate_data_key(&ROOT, &key_arn, &ctx)
        .unwrap()
        .wrapped;
    Fixture {
        _dir: dir,
        cfg,
        clock,
        svc,
        cli,
        key_arn,
        wrapped,
        ctx,
    }
}

impl Fixture {
    fn open(&self, who: &Caller) -> Result<(), crate::kms::KmsError> {
        self.svc
            .open_data_key(
                who,
                &self.key_arn,
                &self.wrapped,
                &self.ctx,
                &[DataAction::Decrypt],
            )
            .map(|_| ())
    }
    fn grant(&self, via: &Service, grantee: &str) -> (String, String) {
        let v = via
            .call(
                &ROOT,
                "CreateGrant",
                json!({"KeyId": self.key_arn, "GranteePrincipal": grantee,
                       "RetiringPrincipal": grantee, "Operations": ["Decrypt"]}),
            )
            .unwrap();
        (
            v["GrantId"].as_str().unwrap().to_string(),
            v["GrantToken"].as_str().unwrap().to_string(),
        )
    }
    fn denied(&self, who: &Caller) -> bool {
        match self.open(who) {
            Ok(()) => false,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
                true
            }
        }
    }
    /// The audit records so far, parsed.
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.svc.store.audit_path()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn policy(&self, via: &Service, extra_statement: Value) {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "root", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                 "Action": "kms:*", "Resource": "*"},
                extra_statement
            ]
        });
        via.call(
            &ROOT,
            "PutKeyPolicy",
            json!({"KeyId": self.key_arn, "PolicyName": "default", "Policy": policy.to_string()}),
        )
        .unwrap();
    }
}

/// A record without what differs between two records of the same decision: its id,
/// time, place in the chain and the caller's pid.
fn stable(mut r: Value) -> Value {
    let o = r.as_object_mut().unwrap();
    o.remove("eventID");
    o.remove("eventTime");
    let k = o.get_mut("kmsfs").unwrap().as_object_mut().unwrap();
    for f in ["hash", "prevHash", "seq"] {
        k.remove(f);
    }
    r
}

#[test]
fn a_reused_decision_is_audited_exactly_as_an_evaluated_one() {
    let f = fixture();
    f.grant(&f.svc, ALICE_ARN);
    for who in [&ALICE, &BOB] {
        // A question asked once is only remembered; the second time it is stored.
        let sighting = f.open(who);
        assert_eq!(f.svc.decisions.entries(), if who == &ALICE { 0 } else { 1 });
        let before = f.records().len();
        let first = f.open(who);
        assert_eq!(sighting, first);
        assert_eq!(f.svc.decisions.entries(), if who == &ALICE { 1 } else { 2 });
        let second = f.open(who);
        // The second call was answered from the cache (nothing new was stored) ...
        assert_eq!(f.svc.decisions.entries(), if who == &ALICE { 1 } else { 2 });
        // ... with the same answer and the same records, reasons included.
        assert_eq!(first.is_ok(), who == &ALICE);
        assert_eq!(first, second);
        let recs = f.records();
        assert_eq!(recs.len(), before + 2, "one record per decision");
        let (a, b) = (
            stable(recs[before].clone()),
            stable(recs[before + 1].clone()),
        );
        assert_eq!(a, b);
        assert!(a["kmsfs"]["decision"]["decision"].is_string(), "{a}");
    }
    // The grant is named as the reason of Alice's allow (her last open, before Bob's
    // three); Bob's denial has its notes.
    let recs = f.records();
    let alice = &recs[recs.len() - 4]["kmsfs"]["decision"];
    assert!(alice.to_string().contains("grant"), "{alice}");
    assert_eq!(
        recs[recs.len() - 1]["errorCode"],
        json!("AccessDeniedException")
    );
    crate::audit::verify(&f.svc.store.audit_path()).unwrap();
}

#[test]
fn grant_changes_through_another_service_are_seen_on_the_next_open() {
    let f = fixture();
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE), "a cached denial");
    // Create (by the CLI): allowed at once.
    let (id, _) = f.grant(&f.cli, ALICE_ARN);
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    // Revoke (by the CLI): denied at once.
    f.cli
        .call(
            &ROOT,
            "RevokeGrant",
            json!({"KeyId": f.key_arn, "GrantId": id}),
        )
        .unwrap();
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    // Retire (by the grantee itself, through the CLI).
    let (_, token) = f.grant(&f.cli, ALICE_ARN);
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.cli
        .call(&ALICE, "RetireGrant", json!({"GrantToken": token}))
        .unwrap();
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    // The same changes through this service.
    let (id, _) = f.grant(&f.svc, BOB_ARN);
    f.open(&BOB).unwrap();
    f.open(&BOB).unwrap();
    f.svc
        .call(
            &ROOT,
            "RevokeGrant",
            json!({"KeyId": f.key_arn, "GrantId": id}),
        )
        .unwrap();
    assert!(f.denied(&BOB));
}

#[test]
fn policy_state_alias_and_principals_changes_are_seen_on_the_next_open() {
    let f = fixture();
    f.grant(&f.svc, ALICE_ARN);
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();

    // Key policy (by the CLI): an explicit deny overrides the grant.
    f.policy(
        &f.cli,
        json!({"Sid": "no-alice", "Effect": "Deny", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:Decrypt", "Resource": "*"}),
    );
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    // An alias the policy reads (kms:ResourceAliases): created, then deleted.
    f.policy(
        &f.cli,
        json!({"Sid": "no-alice-unless-alias", "Effect": "Deny",
               "Principal": {"AWS": ALICE_ARN}, "Action": "kms:Decrypt", "Resource": "*",
               "Condition": {"ForAllValues:StringNotEquals":
                   {"kms:ResourceAliases": "alias/open"}}}),
    );
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    f.cli
        .call(
            &ROOT,
            "CreateAlias",
            json!({"AliasName": "alias/open", "TargetKeyId": f.key_arn}),
        )
        .unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.cli
        .call(&ROOT, "DeleteAlias", json!({"AliasName": "alias/open"}))
        .unwrap();
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    f.policy(
        &f.cli,
        json!({"Sid": "nothing", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:DescribeKey", "Resource": "*"}),
    );
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();

    // Key state (by the CLI): disabled, enabled, scheduled for deletion.
    f.cli
        .call(&ROOT, "DisableKey", json!({"KeyId": f.key_arn}))
        .unwrap();
    assert_eq!(f.open(&ALICE).unwrap_err().kind, ErrorKind::Disabled);
    f.cli
        .call(&ROOT, "EnableKey", json!({"KeyId": f.key_arn}))
        .unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.cli
        .call(
            &ROOT,
            "ScheduleKeyDeletion",
            json!({"KeyId": f.key_arn, "PendingWindowInDays": 7}),
        )
        .unwrap();
    assert_eq!(f.open(&ALICE).unwrap_err().kind, ErrorKind::KmsInvalidState);
    f.cli
        .call(&ROOT, "CancelKeyDeletion", json!({"KeyId": f.key_arn}))
        .unwrap();
    f.cli
        .call(&ROOT, "EnableKey", json!({"KeyId": f.key_arn}))
        .unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();

    // Principals file: uid 4002 is now someone else, whom the grant does not name.
    replace(
        &f.cfg.store_dir.join("principals.toml"),
        &principals("arn:aws:iam::111122223333:user/carol"),
    );
    assert!(f.denied(&ALICE));
    assert!(f.denied(&ALICE));
    replace(
        &f.cfg.store_dir.join("principals.toml"),
        &principals(ALICE_ARN),
    );
    f.open(&ALICE).unwrap();
}

#[test]
fn a_decision_that_reads_the_time_is_never_reused() {
    let f = fixture();
    let until = NOW + 60;
    let until_text = time::OffsetDateTime::from_unix_timestamp(until)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    f.policy(
        &f.svc,
        json!({"Sid": "alice-until", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:Decrypt", "Resource": "*",
               "Condition": {"DateLessThan": {"aws:CurrentTime": until_text}}}),
    );
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    assert_eq!(
        f.svc.decisions.entries(),
        0,
        "a time-conditioned allow was stored"
    );
    f.clock.set(until + 1);
    assert!(f.denied(&ALICE));
    // Same with aws:EpochTime.
    f.clock.set(NOW);
    f.policy(
        &f.svc,
        json!({"Sid": "alice-until", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:Decrypt", "Resource": "*",
               "Condition": {"NumericLessThan": {"aws:EpochTime": until.to_string()}}}),
    );
    f.open(&ALICE).unwrap();
    f.clock.set(until + 1);
    assert!(f.denied(&ALICE));
    assert_eq!(f.svc.decisions.entries(), 0);
}

#[test]
fn interleaved_appends_from_two_services_keep_the_chain() {
    let f = fixture();
    f.grant(&f.svc, ALICE_ARN);
    let cli_open = |who: &Caller| {
        f.cli
            .open_data_key(who, &f.key_arn, &f.wrapped, &f.ctx, &[DataAction::Decrypt])
            .map(|_| ())
    };
    for _ in 0..20 {
        f.open(&ALICE).unwrap();
        cli_open(&ALICE).unwrap();
        assert!(f.denied(&BOB));
        assert!(cli_open(&BOB).is_err());
    }
    let report = crate::audit::verify(&f.svc.store.audit_path()).unwrap();
    assert_eq!(report.records as usize, f.records().len());
    // Every event id is distinct.
    let ids: std::collections::HashSet<String> = f
        .records()
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), f.records().len());
}

/// Opens of many files, each with its own context, are cached as entries that share
/// the rest of the question and the decision (round 7: the daemon's peak memory), and
/// each still answers only its own file's context. A new file's data key is decided
/// without the cache: its context is never asked again.
#[test]
fn entries_for_many_files_share_the_question_and_the_decision() {
    let f = fixture();
    assert_eq!(
        f.svc.decisions.entries(),
        0,
        "the fixture's new data key was stored"
    );
    let files: Vec<(EncryptionContext, Vec<u8>)> = (0..20)
        .map(|i| {
            let ctx: EncryptionContext = [
                ("kmsfs:file".to_string(), format!("file-{i}")),
                ("kmsfs:volume".to_string(), "v1".to_string()),
            ]
            .into();
            let w = f.svc.generate_data_key(&ROOT, &f.key_arn, &ctx).unwrap();
            (ctx, w.wrapped)
        })
        .collect();
    // The 20 creates asked one question for any context (their decision read no part
    // of it): one entry, stored on the second create.
    assert_eq!(
        f.svc.decisions.entries(),
        1,
        "the creates' decision was not stored once for any context"
    );
    let open = |ctx: &EncryptionContext, w: &[u8]| {
        f.svc
            .open_data_key(&ROOT, &f.key_arn, w, ctx, &[DataAction::Decrypt])
            .map(|_| ())
    };
    // Opened once: nothing stored; the second time: stored.
    for (ctx, w) in &files {
        open(ctx, w).unwrap();
    }
    assert_eq!(f.svc.decisions.entries(), 1, "a first open was stored");
    for (ctx, w) in &files {
        open(ctx, w).unwrap();
    }
    assert_eq!(f.svc.decisions.entries(), files.len() + 1);
    // The creates' question and decision, and the opens'.
    assert_eq!(f.svc.decisions.shared(), (2, 2));
    // Answered from the entries: nothing new stored.
    for (ctx, w) in &files {
        open(ctx, w).unwrap();
    }
    assert_eq!(f.svc.decisions.entries(), files.len() + 1);
    // A context that packs to a neighbour's bytes shifted, or has one pair more, is
    // another question (and here the key service refuses the blob for it).
    let (ctx, w) = &files[1];
    let mut shifted = ctx.clone();
    shifted.insert("kmsfs:file".into(), "file-".into());
    shifted.insert("kmsfs:volume".into(), "1v1".into());
    let mut more = ctx.clone();
    more.insert("kmsfs:x".into(), String::new());
    for other in [shifted, more] {
        assert!(open(&other, w).is_err());
        assert!(open(&other, w).is_err());
    }
    assert_eq!(
        f.svc.decisions.entries(),
        files.len() + 3,
        "another context was answered by a stored entry"
    );
    // A denied caller's decision is another one, its question another asker.
    assert!(f.denied(&BOB));
    assert!(f.denied(&BOB));
    assert_eq!(f.svc.decisions.shared(), (3, 3));
}

/// Two callers opening the same file in turn, then each again and again: every open is
/// answered with the caller's own decision (the last entry found is tried first, and
/// must never answer another question) and recorded with its own identity, reasons and
/// pid (the records of repeated opens are copied from a template), the chain intact.
#[test]
fn alternating_and_repeated_opens_each_get_their_own_decision_and_record() {
    let f = fixture();
    f.grant(&f.svc, ALICE_ARN);
    let pattern = [&ALICE, &BOB, &ALICE, &ALICE, &BOB, &BOB, &ALICE, &BOB, &BOB];
    let before = f.records().len();
    for (n, who) in pattern.iter().enumerate() {
        let caller = Caller {
            pid: 100 + n as u32,
            ..**who
        };
        assert_eq!(f.denied(&caller), *who == &BOB, "open {n}");
    }
    let recs = f.records();
    assert_eq!(recs.len(), before + pattern.len());
    for (n, (who, rec)) in pattern.iter().zip(&recs[before..]).enumerate() {
        let arn = if *who == &ALICE { ALICE_ARN } else { BOB_ARN };
        assert_eq!(rec["userIdentity"]["arn"], json!(arn), "record {n}");
        assert_eq!(rec["kmsfs"]["uid"], json!(who.uid), "record {n}");
        assert_eq!(rec["kmsfs"]["pid"], json!(100 + n as u32), "record {n}");
        let allowed = rec["kmsfs"]["decision"]["decision"] == json!("allowed");
        assert_eq!(allowed, *who == &ALICE, "record {n}: {rec}");
        assert_eq!(rec.get("errorCode").is_some(), *who == &BOB, "record {n}");
    }
    // Each caller's records differ only in what differs between two records of one
    // decision (and the pid).
    for who in [&ALICE, &BOB] {
        let mut mine = pattern
            .iter()
            .zip(&recs[before..])
            .filter(|(w, _)| **w == who)
            .map(|(_, r)| {
                let mut r = stable(r.clone());
                r["kmsfs"].as_object_mut().unwrap().remove("pid");
                r
            });
        let first = mine.next().unwrap();
        assert!(mine.all(|r| r == first));
    }
    crate::audit::verify(&f.svc.store.audit_path()).unwrap();
}

/// Admission on a second sighting: a question asked once is not stored, the second ask
/// stores it, later ones are answered from it. A change empties the entries and the
/// sightings alike: a question asked once before the change is, after it, asked for the
/// first time (not stored), and an entry stored before it never answers after it.
#[test]
fn a_decision_is_stored_on_the_second_ask_and_changes_forget_sightings_too() {
    let f = fixture();
    let (id, _) = f.grant(&f.svc, ALICE_ARN);
    f.open(&ALICE).unwrap();
    assert_eq!(f.svc.decisions.entries(), 0);
    f.open(&ALICE).unwrap();
    assert_eq!(f.svc.decisions.entries(), 1);
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    assert_eq!(f.svc.decisions.entries(), 1);
    // Bob asks once, then the grant is revoked (by the CLI): Alice's stored allow and
    // Bob's sighting are both gone.
    assert!(f.denied(&BOB));
    assert_eq!(f.svc.decisions.entries(), 1);
    f.cli
        .call(
            &ROOT,
            "RevokeGrant",
            json!({"KeyId": f.key_arn, "GrantId": id}),
        )
        .unwrap();
    assert!(f.denied(&ALICE));
    assert_eq!(f.svc.decisions.entries(), 0);
    assert!(f.denied(&BOB));
    assert_eq!(f.svc.decisions.entries(), 0, "a sighting outlived a change");
    assert!(f.denied(&ALICE));
    assert!(f.denied(&BOB));
    assert_eq!(f.svc.decisions.entries(), 2);
    // A grant again (through this service): the stored denials never answer.
    f.grant(&f.svc, ALICE_ARN);
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    f.open(&ALICE).unwrap();
    assert!(f.denied(&BOB));
    crate::audit::verify(&f.svc.store.audit_path()).unwrap();
}

/// The data key of a new file: a question about a context asked once. The decision is
/// stored once for any context when its evaluation read no part of the context, and is
/// then the answer (and the record) for every later create by the same caller under
/// the same key; a decision that read the context (a condition on it, or a grant with
/// context constraints) is evaluated for every create; any change is seen on the next.
#[test]
fn a_create_decision_is_shared_by_every_context_only_when_it_read_none() {
    let f = fixture();
    let ctx = |file: &str| -> EncryptionContext {
        [
            ("kmsfs:file".to_string(), file.to_string()),
            ("kmsfs:volume".to_string(), "v1".to_string()),
        ]
        .into()
    };
    let create = |who: &Caller, file: &str| {
        f.svc
            .generate_data_key(who, &f.key_arn, &ctx(file))
            .map(|_| ())
    };
    let gdk_decisions = || -> Vec<Value> {
        f.records()
            .into_iter()
            .filter(|r| r["eventName"] == "GenerateDataKey")
            .map(|r| r["kmsfs"]["decision"].clone())
            .collect()
    };
    f.policy(
        &f.svc,
        json!({"Sid": "alice-creates", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey", "Resource": "*"}),
    );
    for i in 0..5 {
        create(&ALICE, &format!("a{i}")).unwrap();
    }
    assert_eq!(f.svc.decisions.entries(), 1, "not stored for any context");
    // The evaluated and the reused decisions are recorded alike.
    let d = gdk_decisions();
    let last5 = &d[d.len() - 5..];
    assert!(last5.iter().all(|x| x == &last5[0]), "{last5:?}");
    assert!(
        last5[0].to_string().contains("alice-creates"),
        "{}",
        last5[0]
    );
    // Bob has no right: denied for every context, his own entry.
    for i in 0..3 {
        let e = create(&BOB, &format!("b{i}")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
    }
    assert_eq!(f.svc.decisions.entries(), 2);

    // A condition on the context: decided per context, never stored.
    f.policy(
        &f.svc,
        json!({"Sid": "alice-some", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey", "Resource": "*",
               "Condition": {"StringLike": {"kms:EncryptionContext:kmsfs:file": "ok-*"}}}),
    );
    for i in 0..3 {
        create(&ALICE, &format!("ok-{i}")).unwrap();
        let e = create(&ALICE, &format!("no-{i}")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
    }
    // Also through a policy variable and through the context's keys.
    f.policy(
        &f.svc,
        json!({"Sid": "alice-var", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey",
               "Resource": "arn:aws:kms:*:*:key/${kms:EncryptionContext:kmsfs:file}"}),
    );
    let key_id = f.key_arn.rsplit('/').next().unwrap().to_string();
    for i in 0..2 {
        create(&ALICE, &key_id).unwrap();
        assert!(create(&ALICE, &format!("x{i}")).is_err());
    }
    f.policy(
        &f.svc,
        json!({"Sid": "alice-keys", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey", "Resource": "*",
               "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["kmsfs:file", "kmsfs:volume"]}}}),
    );
    create(&ALICE, "k1").unwrap();
    create(&ALICE, "k2").unwrap();
    let mut extra = ctx("k3");
    extra.insert("other".into(), "1".into());
    assert!(f.svc.generate_data_key(&ALICE, &f.key_arn, &extra).is_err());
    assert_eq!(
        f.svc.decisions.entries(),
        0,
        "a context-reading decision was stored"
    );

    // Revocation on the next create, with an entry for any context in place.
    f.policy(
        &f.svc,
        json!({"Sid": "alice-creates", "Effect": "Allow", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey", "Resource": "*"}),
    );
    create(&ALICE, "r1").unwrap();
    create(&ALICE, "r2").unwrap();
    create(&ALICE, "r3").unwrap();
    assert_eq!(f.svc.decisions.entries(), 1);
    f.policy(
        &f.cli,
        json!({"Sid": "alice-denied", "Effect": "Deny", "Principal": {"AWS": ALICE_ARN},
               "Action": "kms:GenerateDataKey", "Resource": "*"}),
    );
    let e = create(&ALICE, "r4").unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    // A grant with context constraints: the same, per context.
    f.policy(
        &f.svc,
        json!({"Sid": "none", "Effect": "Allow", "Principal": {"AWS": BOB_ARN},
                            "Action": "kms:DescribeKey", "Resource": "*"}),
    );
    f.svc
        .call(
            &ROOT,
            "CreateGrant",
            json!({"KeyId": f.key_arn, "GranteePrincipal": ALICE_ARN,
                   "Operations": ["GenerateDataKey"],
                   "Constraints": {"EncryptionContextSubset": {"kmsfs:file": "g-ok"}}}),
        )
        .unwrap();
    for _ in 0..3 {
        create(&ALICE, "g-ok").unwrap();
        assert!(create(&ALICE, "g-no").is_err());
    }
    assert_eq!(
        f.svc.decisions.entries(),
        0,
        "a constrained grant's decision was stored"
    );

    crate::audit::verify(&f.svc.store.audit_path()).unwrap();
}

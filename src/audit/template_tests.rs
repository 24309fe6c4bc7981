//! Record templates give the bytes and hashes the record builder gives, for every kind
//! of event, and never answer an event that differs in a recorded field.

use super::*;
use crate::audit::record::build_into;
use crate::audit::{Identity, RemoteOrigin};
use serde_json::json;

fn event(kind: &str) -> Event {
    let mut e = Event {
        event_name: "Decrypt".into(),
        read_only: true,
        identity: Identity {
            kind: "IAMUser".into(),
            arn: Some("arn:aws:iam::111122223333:user/alice".into()),
            account_id: Some("111122223333".into()),
            principal_id: Some("uid:1001".into()),
            uid: 1001,
            gid: 1001,
            pid: 4242,
        },
        request_parameters: Arc::new(json!({
            "EncryptionContext": {"kmsfs:file": "f1", "kmsfs:volume": "v"},
            "kmsfsOpenFor": ["Decrypt"]
        })),
        resources: vec!["arn:aws:kms:local:111122223333:key/k1".into()],
        decision: Some(Arc::new(json!({
            "action": "kms:Decrypt", "decision": "allowed",
            "matched": [{"Source": "KeyPolicy", "sid": "Enable IAM User Permissions"}],
            "resource": "arn:aws:kms:local:111122223333:key/k1"
        }))),
        via_service: Some("kmsfs".into()),
        fs: Some(Arc::new(json!({"kmsfs:file": "f1", "kmsfs:volume": "v"}))),
        ..Event::default()
    };
    match kind {
        "open" => {}
        "minimal" => {
            e = Event {
                event_name: "Decrypt".into(),
                ..Event::default()
            };
        }
        "denied" => {
            e.error_code = Some("AccessDeniedException".into());
            e.error_message = Some("no \"quotes\" \u{1} here, é".into());
        }
        "remote" => {
            e.remote = Some(RemoteOrigin {
                access_key_id: "AKIAEXAMPLE".into(),
                source_ip: "192.0.2.1".into(),
                user_agent: Some("aws-cli/1.46".into()),
                request_id: "r-1".into(),
            });
        }
        "escapes" => {
            // Caller-supplied members named like the record's own, out of order,
            // needing escapes: none of it may move a varying member.
            e.fs = Some(Arc::new(
                json!({"pid": "\"7\"", "seq": 1, "eventID": "x\n", "a": null}),
            ));
            e.request_parameters = Arc::new(json!({"prevHash": "\\", "hash": [1, 2]}));
            e.identity.arn = Some("arn:aws:iam::1:user/\"odd\"".into());
        }
        "huge" => {
            // Bounded values are cut: the template keeps the cut bytes.
            let big = "\u{1}".repeat(40_000);
            e.fs = Some(Arc::new(json!({ "k": big })));
            e.response_elements = json!({"Plaintext": "c2VjcmV0", "n": 1.5});
        }
        "state change" => {
            e.event_name = "CreateGrant".into();
            e.read_only = false;
            e.decision = None;
            e.fs = None;
            e.via_service = None;
            e.response_elements = json!({"GrantId": "g1"});
        }
        other => panic!("no event {other}"),
    }
    e
}

const KINDS: [&str; 7] = [
    "open",
    "minimal",
    "denied",
    "remote",
    "escapes",
    "huge",
    "state change",
];

/// The same inputs through the builder and through the templates (the first call of
/// an event builds its template, later ones copy it): the same bytes and hash.
fn assert_same(t: &mut Templates, e: &Event, n: u64) {
    let now = 1_795_000_000 + n as i64 * 7;
    let prev = format!("{:064x}", n.wrapping_mul(0x1234_5678_9abc));
    let id = format!("11111111-2222-4333-8444-{:012x}", n);
    let mut want = b"earlier\n".to_vec();
    let want_hash = build_into(e, now, "local", n + 1, &prev, &id, &mut want);
    let mut got = b"earlier\n".to_vec();
    let got_hash = t.build_into(e, now, "local", n + 1, &prev, &id, &mut got);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "record {n}"
    );
    assert_eq!(got_hash, want_hash, "record {n}");
}

#[test]
fn templated_records_are_byte_identical_to_built_ones() {
    let mut t = Templates::default();
    for (k, kind) in KINDS.iter().enumerate() {
        let mut e = event(kind);
        // The shared values, held as the caches hold them.
        let _held = e.clone();
        for n in 0..5u64 {
            // Varying members of every length: pids, seqs, times and ids.
            e.identity.pid = [1, 4242, 0, u32::MAX, 77][n as usize];
            assert_same(&mut t, &e, n * 999_999 + k as u64);
        }
        // One template per kind: the later records were copies.
        assert_eq!(t.len(), k + 1, "{kind}");
    }
}

/// An event that differs in any recorded field (a shared value by address, even with
/// equal contents) is not answered by another's template: it gets its own record.
#[test]
fn an_event_differing_in_a_recorded_field_gets_its_own_record() {
    let base = event("open");
    let mut variants: Vec<Event> = Vec::new();
    let mut v = |f: &dyn Fn(&mut Event)| {
        let mut e = base.clone();
        f(&mut e);
        variants.push(e);
    };
    v(&|e| e.event_name = "Encrypt".into());
    v(&|e| e.identity.kind = "AssumedRole".into());
    v(&|e| e.identity.arn = Some("arn:aws:iam::111122223333:user/bob".into()));
    v(&|e| e.identity.arn = None);
    v(&|e| e.identity.account_id = Some("444455556666".into()));
    v(&|e| e.identity.principal_id = Some("uid:1002".into()));
    v(&|e| e.identity.uid = 1002);
    v(&|e| e.identity.gid = 1002);
    v(&|e| e.request_parameters = Arc::new((*e.request_parameters).clone()));
    v(&|e| e.request_parameters = Arc::new(json!({"KeyId": "k2"})));
    v(&|e| e.response_elements = json!({"kmsfsPartialDecision": true}));
    v(&|e| e.error_code = Some("AccessDeniedException".into()));
    v(&|e| e.error_message = Some("denied".into()));
    v(&|e| e.resources = vec!["arn:aws:kms:local:111122223333:key/k2".into()]);
    v(&|e| e.resources.clear());
    v(&|e| e.read_only = false);
    v(&|e| e.decision = e.decision.as_deref().map(|d| Arc::new(d.clone())));
    v(&|e| e.decision = None);
    v(&|e| e.via_service = None);
    v(&|e| e.fs = e.fs.as_deref().map(|d| Arc::new(d.clone())));
    v(&|e| e.fs = Some(Arc::new(json!({"kmsfs:file": "f2"}))));
    v(&|e| e.fs = None);
    v(&|e| {
        e.remote = Some(RemoteOrigin {
            access_key_id: "AKIA".into(),
            source_ip: "192.0.2.9".into(),
            user_agent: None,
            request_id: "r".into(),
        })
    });
    for (i, e) in variants.iter().enumerate() {
        let _held = e.clone();
        let mut t = Templates::default();
        assert_same(&mut t, &base, 1);
        assert_same(&mut t, e, 2);
        assert_eq!(
            t.len(),
            2,
            "variant {i} was answered by the base's template"
        );
        // And the base is still answered by its own.
        assert_same(&mut t, &base, 3);
        assert_eq!(t.len(), 2);
    }
    // The pid alone differs: the template answers, with this pid.
    let mut t = Templates::default();
    let mut other_pid = base.clone();
    other_pid.identity.pid = 1;
    assert_same(&mut t, &base, 1);
    assert_same(&mut t, &other_pid, 2);
    assert_eq!(t.len(), 1);
}

#[test]
fn the_templates_stay_bounded() {
    let mut t = Templates::default();
    let base = event("open");
    let mut held = Vec::new();
    for n in 0..(MAX_TEMPLATES as u64 + 10) {
        let mut e = base.clone();
        e.fs = Some(Arc::new(json!({ "kmsfs:file": format!("f{n}") })));
        held.push(e.clone());
        assert_same(&mut t, &e, n);
        assert_eq!(t.len(), (n as usize % MAX_TEMPLATES) + 1);
        assert!(t.len() <= MAX_TEMPLATES);
    }
    // Many principals on one file: at most MAX_PER_SLOT templates in its slot.
    let mut t = Templates::default();
    for n in 0..(MAX_PER_SLOT as u64 + 3) {
        let mut e = base.clone();
        e.identity.principal_id = Some(format!("p{n}"));
        assert_same(&mut t, &e, n);
        assert!(t.len() <= MAX_PER_SLOT);
    }
}

/// An event with a shared value held by nothing else (an open whose values the caches
/// did not keep: a file opened once) gets no template, since no later event can carry
/// that value, and its record is the builder's; once a cache holds the values, the next
/// event makes one and the ones after it are copies.
#[test]
fn an_event_whose_values_nothing_else_holds_gets_no_template() {
    let mut t = Templates::default();
    for (n, kind) in KINDS.iter().enumerate() {
        let e = event(kind);
        assert_same(&mut t, &e, n as u64);
        assert_eq!(t.len(), 0, "{kind}");
    }
    // Held elsewhere but for one value: still none.
    for which in 0..3 {
        let e = event("open");
        let mut held = e.clone();
        match which {
            0 => held.request_parameters = Arc::new(json!(null)),
            1 => held.decision = None,
            _ => held.fs = None,
        }
        assert_same(&mut t, &e, 10 + which);
        assert_eq!(t.len(), 0, "value {which} held by the event alone");
    }
    // All held: a template, then copies.
    let e = event("open");
    let _held = e.clone();
    for n in 0..3u64 {
        assert_same(&mut t, &e, 20 + n);
        assert_eq!(t.len(), 1);
    }
}

//! Real AWS clients against `kmsfs serve --listen`: aws-cli and boto3 from the pinned
//! virtualenv (`scripts/python-env`), signing with access keys of principals that have
//! no uid, so every decision below was made for the access key's principal. The boto3
//! side of each test is a scenario in `tests/python/kms_wire.py`; the assertions are here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpStream;

use serde_json::{json, Value};
use support::wire::*;

fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

/// The audit records (one JSON object per line) of the store.
fn audit(s: &WireServer) -> Vec<Value> {
    std::fs::read_to_string(s.store().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn key_user_decrypts_and_key_administrator_is_refused_through_boto3_and_aws_cli() {
    let s = WireServer::start("roles");
    let run = s.boto3("roles", json!({"plaintext": "wire secret"}));
    let blob = run.ok("alice encrypts")["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        run.ok("alice decrypts")["Plaintext"],
        b64(b"wire secret").as_str()
    );
    let msg = run.error("bob decrypts", "AccessDeniedException");
    assert!(
        msg.contains(&arn("bob")),
        "the refusal names the caller: {msg}"
    );
    run.error("dave decrypts", "AccessDeniedException");
    run.error("bob encrypts", "AccessDeniedException");
    // The administrator administers; the user does not.
    assert_eq!(
        run.ok("bob describes the key")["KeyMetadata"]["KeyState"],
        "Enabled"
    );
    run.ok("bob enables rotation");
    run.error("alice disables the key", "AccessDeniedException");

    // aws-cli: the same decisions, with its exit statuses.
    let blob_file = s.file("blob", &b64_decode(&blob));
    let fileb = format!("fileb://{}", blob_file.display());
    let decrypt = ["decrypt", "--ciphertext-blob", &fileb];
    let out = s.aws(
        "alice",
        &[&decrypt[..], &["--query", "Plaintext", "--output", "text"]].concat(),
    );
    assert_eq!(b64_decode(&ok(&out)), b"wire secret");
    aws_service_error(&s.aws("bob", &decrypt), "AccessDeniedException", "Decrypt");

    // The refusal is audited as bob's, through his access key, from the loopback client.
    let records = audit(&s);
    let refused = records
        .iter()
        .find(|r| {
            r["eventName"] == "Decrypt"
                && r["errorCode"] == "AccessDeniedException"
                && r["userIdentity"]["arn"] == arn("bob").as_str()
        })
        .unwrap_or_else(|| panic!("no audited refusal of bob's Decrypt in {records:#?}"));
    assert_eq!(
        refused["userIdentity"]["accessKeyId"],
        s.key("bob").id.as_str()
    );
    assert_eq!(refused["sourceIPAddress"], "127.0.0.1");
    assert!(
        refused["kmsfs"]["viaService"].is_null(),
        "an HTTP client never calls through a service: {refused}"
    );
}

#[test]
fn grants_are_created_used_listed_retired_and_revoked_over_http() {
    let s = WireServer::start("grants");
    let run = s.boto3("grants", json!({}));
    let for_carol = b64(b"for carol");
    run.error("carol decrypts before any grant", "AccessDeniedException");
    let grant = run.ok("bob grants carol Decrypt");
    assert!(grant["GrantToken"].as_str().is_some_and(|t| !t.is_empty()));
    // The very next call is allowed, with or without the token.
    assert_eq!(
        run.ok("carol decrypts with the grant token")["Plaintext"],
        for_carol.as_str()
    );
    run.ok("carol decrypts without the token");
    // The grant gives Decrypt only.
    run.error("carol encrypts with the token", "AccessDeniedException");
    let listed = &run.ok("bob lists the grants")["Grants"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let g = &listed[0];
    assert_eq!(g["GrantId"], grant["GrantId"]);
    assert_eq!(g["GranteePrincipal"], arn("carol").as_str());
    assert_eq!(g["RetiringPrincipal"], arn("alice").as_str());
    assert_eq!(g["Operations"], json!(["Decrypt"]));

    // Retiring: neither a stranger nor the grantee (without RetireGrant in the grant);
    // the retiring principal may, and the access ends on the next call.
    run.error("dave retires", "AccessDeniedException");
    run.error("carol retires", "AccessDeniedException");
    run.ok("carol decrypts before the retirement");
    run.ok("alice retires");
    run.error(
        "carol decrypts after the retirement",
        "AccessDeniedException",
    );
    run.error("alice retires again", "NotFoundException");

    // Revoking: the administrator ends a grant at once; users may not revoke.
    run.ok("bob grants carol Decrypt again");
    run.ok("carol decrypts with the second grant");
    run.error("alice revokes", "AccessDeniedException");
    run.ok("bob revokes");
    run.error(
        "carol decrypts after the revocation",
        "AccessDeniedException",
    );
    assert_eq!(
        run.ok("bob lists the grants at the end")["Grants"],
        json!([])
    );
}

/// alice's use of the key is conditioned on `kms:EncryptionContext:dept`.
fn context_policy() -> String {
    let mut p: Value = serde_json::from_str(&key_policy()).unwrap();
    let users = p["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|st| st["Sid"] == "Users")
        .unwrap();
    users["Condition"] = json!({"StringEquals": {"kms:EncryptionContext:dept": "eng"}});
    p.to_string()
}

#[test]
fn encryption_context_conditions_and_grant_constraints_hold_over_http() {
    let s = WireServer::start("context");
    let run = s.boto3("context", json!({"key_policy": context_policy()}));
    run.ok("alice encrypts with dept=eng");
    run.error("alice encrypts with dept=sales", "AccessDeniedException");
    run.error("alice encrypts without a context", "AccessDeniedException");
    assert_eq!(
        run.ok("alice decrypts with dept=eng")["Plaintext"],
        b64(b"eng data").as_str()
    );
    run.error(
        "alice decrypts without the context",
        "AccessDeniedException",
    );

    // EncryptionContextSubset: the constraint's pairs must be in the request's context.
    run.ok("bob grants carol a subset constraint");
    run.ok("carol encrypts with a superset of the constraint");
    run.error("carol encrypts with dept=sales", "AccessDeniedException");
    run.error("carol encrypts without a context", "AccessDeniedException");
    assert_eq!(
        run.ok("carol decrypts her blob")["Plaintext"],
        b64(b"carol's").as_str()
    );
    // EncryptionContextEquals: exactly the constraint's pairs.
    run.ok("bob grants dave an equals constraint");
    run.ok("dave decrypts carol's blob with its exact context");
    run.error(
        "dave decrypts alice's blob with dept=eng only",
        "AccessDeniedException",
    );
}

#[test]
fn disabled_and_pending_deletion_keys_refuse_with_aws_exceptions() {
    let s = WireServer::start("states");
    let run = s.boto3("states", json!({}));
    run.ok("bob disables the key");
    run.error("alice encrypts while disabled", "DisabledException");
    run.error("alice decrypts while disabled", "DisabledException");
    assert_eq!(
        run.ok("bob describes the disabled key")["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    run.ok("bob enables the key");
    run.ok("alice decrypts once enabled");
    run.ok("bob schedules the deletion");
    run.error(
        "alice encrypts while pending deletion",
        "KMSInvalidStateException",
    );
    run.error(
        "alice decrypts while pending deletion",
        "KMSInvalidStateException",
    );
    let described = run.ok("bob describes the key pending deletion");
    assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
    assert!(described["KeyMetadata"]["DeletionDate"].is_string());
    run.ok("bob cancels the deletion");
    assert_eq!(
        run.ok("bob describes the key after the cancellation")["KeyMetadata"]["KeyState"],
        "Disabled"
    );
}

#[test]
fn sigv4_rejects_a_wrong_secret_an_unknown_key_an_old_request_and_a_tampered_body() {
    let s = WireServer::start("auth");
    let run = s.boto3("auth", json!({}));
    run.ok("a correctly signed request");
    run.error("a wrong secret", "InvalidSignatureException");
    run.error("an unknown access key id", "UnrecognizedClientException");
    run.error("no signature at all", "MissingAuthenticationTokenException");
    let expired = run.error("a request 20 minutes old", "InvalidSignatureException");
    assert!(
        expired.contains("Signature expired"),
        "AWS's wording for a request outside the 15-minute window: {expired}"
    );
    // Inside the window, an old clock is no reason to refuse.
    run.ok("a request 14 minutes old");
    assert_eq!(
        run.get("tampered"),
        &json!([true]),
        "the body was really changed after signing"
    );
    run.error(
        "a body tampered with after signing",
        "InvalidSignatureException",
    );

    // aws-cli with a wrong secret: its exit status and message for a service error.
    let mut wrong = s.key("bob").clone();
    let first = if wrong.secret.starts_with('x') {
        "y"
    } else {
        "x"
    };
    wrong.secret = format!("{first}{}", &wrong.secret[1..]);
    aws_service_error(
        &s.aws_with(&wrong, &["list-keys"]),
        "InvalidSignatureException",
        "ListKeys",
    );
}

#[test]
fn boto3_paginators_walk_150_keys_and_150_grants() {
    let s = WireServer::start("pages");
    let run = s.boto3("many", json!({"count": 150, "page_size": 40}));
    assert!(run.get("aborted").is_null(), "{:#}", run.0);
    let ids = |field: &str| -> Vec<String> {
        run.get(field)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let (created, listed) = (ids("created_keys"), ids("listed_keys"));
    assert_eq!(created.len(), 150);
    let unique: std::collections::BTreeSet<_> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a key listed twice");
    for id in &created {
        assert!(unique.contains(id), "key {id} missing from the pages");
    }
    // Pages of at most PageSize, several of them: the paginator followed NextMarker.
    let pages = run.get("key_pages").as_array().unwrap();
    assert!(pages.len() >= 4, "{pages:?}");
    assert!(pages.iter().all(|n| n.as_u64().unwrap() <= 40), "{pages:?}");

    let (created, listed) = (ids("created_grants"), ids("listed_grants"));
    assert_eq!(created.len(), 150);
    let mut sorted = listed.clone();
    sorted.sort();
    let mut want = created.clone();
    want.sort();
    assert_eq!(sorted, want, "every grant exactly once");
    let pages = run.get("grant_pages").as_array().unwrap();
    assert_eq!(pages.len(), 4, "{pages:?}");

    // aws-cli follows the markers on its own, and prints the pages as one result.
    let out = s.aws("bob", &["list-keys", "--page-size", "60"]);
    let all: Value = serde_json::from_str(&ok(&out)).unwrap();
    let n = all["Keys"].as_array().map_or(0, Vec::len);
    assert!(n >= 150, "aws-cli listed {n} keys");
}

/// Raises this process's open-files soft limit to its hard limit (the test holds a
/// thousand sockets; the server raises its own).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// The sockets the process `pid` holds open.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn a_normal_call_is_answered_while_1000_idle_connections_are_open() {
    const IDLE: usize = 1000;
    assert!(
        raise_nofile() > IDLE as u64 + 64,
        "RLIMIT_NOFILE hard limit too low"
    );
    let mut s = WireServer::start("idle");
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect(s.addr())
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}\n{}", s.log()))
        })
        .collect();
    // The server has accepted them (they are not merely waiting in the listen backlog,
    // which would hold a thousand too): its own sockets count them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open_sockets(s.pid()) < IDLE {
        assert!(
            std::time::Instant::now() < deadline,
            "the server holds {} sockets, not the {IDLE} idle ones\n{}",
            open_sockets(s.pid()),
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A signed call answered while they are all open: the server still holds them after
    // it answered (it closes a connection left idle only after its idle deadline).
    let (status, body) = s.signed_call(s.key("bob"), "ListKeys", &json!({"Limit": 1}));
    assert_eq!(status, 200, "{body}\n{}", s.log());
    assert!(body["Keys"].is_array(), "{body}");
    let held = open_sockets(s.pid());
    assert!(held >= IDLE, "only {held} sockets held after the call");
    // And the real clients, as a user would call meanwhile.
    let run = s.boto3("one_call", json!({}));
    run.ok("bob lists keys");
    ok(&s.aws("bob", &["list-keys", "--limit", "1"]));
    assert!(s.is_serving(), "the server died:\n{}", s.log());
    drop(idle);
}

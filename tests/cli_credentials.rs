//! `kmsfs credentials` through the real binary, a running `kmsfs serve` and real uids:
//! the root creates a key for any listed principal; a user whose identity policy allows
//! iam:CreateAccessKey on their own ARN creates one for themself; a user without it is
//! refused (exit 254, aws-cli's message); list shows no secrets; delete removes the key
//! and the running service stops accepting it at once.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::cli::*;

/// The fixture's principals with bob allowed to manage his own access keys and a
/// principal without any uid.
fn principals() -> String {
    principals_toml().replace(
        "\"kms:CreateKey\",\"kms:List*\"],\"Resource\":\"*\"}]}'''",
        &format!(
            "\"kms:CreateKey\",\"kms:List*\"],\"Resource\":\"*\"}},\
             {{\"Effect\":\"Allow\",\"Action\":[\"iam:CreateAccessKey\",\"iam:ListAccessKeys\",\"iam:DeleteAccessKey\"],\"Resource\":\"{}\"}}]}}'''",
            arn("bob")
        ),
    ) + &format!("[[principal]]\narn = \"{}\"\n", arn("ci"))
}

fn served() -> Served {
    let mut s = Served::init("credentials");
    std::fs::write(s.principals(), principals()).unwrap();
    std::fs::set_permissions(s.principals(), std::fs::Permissions::from_mode(0o644)).unwrap();
    s.serve();
    s
}

#[test]
fn root_and_permitted_users_create_list_and_delete_access_keys() {
    let s = served();
    assert!(
        principals().contains("iam:CreateAccessKey"),
        "the fixture's policy was patched"
    );
    // The root, for a principal without a uid: the secret is printed once.
    let made = json(&s.root(&["credentials", "create", "--principal", &arn("ci")]));
    let obj = made.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{made}");
    let id = made["AccessKeyId"].as_str().unwrap().to_string();
    let secret = made["SecretAccessKey"].as_str().unwrap().to_string();
    assert!(id.starts_with("AKIA") && id.len() == 20, "{id}");
    assert_eq!(secret.len(), 40);

    // bob, by his identity policy, for himself (default: yourself), in text form.
    let text = ok(&s.as_uid(BOB, &["credentials", "create", "--output", "text"]));
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 2, "{text}");
    let bob_id = fields[0].to_string();
    assert!(bob_id.starts_with("AKIA"), "{text}");

    // alice has no such policy: refused, with aws-cli's exit status and message.
    let out = s.as_uid(
        ALICE,
        &["credentials", "create", "--principal", &arn("alice")],
    );
    service_error(&out, "AccessDeniedException", "CreateAccessKey");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iam:CreateAccessKey"), "{err}");
    // bob may not create keys for others either.
    let out = s.as_uid(
        BOB,
        &["credentials", "create", "--principal", &arn("alice")],
    );
    service_error(&out, "AccessDeniedException", "CreateAccessKey");
    // An unknown principal is named.
    let ghost = "arn:aws:iam::111122223333:user/ghost";
    let out = s.root(&["credentials", "create", "--principal", ghost]);
    service_error(&out, "NoSuchEntityException", "CreateAccessKey");
    assert!(String::from_utf8_lossy(&out.stderr).contains(ghost));

    // List: no secrets; root sees all, bob his own, --principal filters.
    let all = json(&s.root(&["credentials", "list"]));
    let meta = all["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(meta.len(), 2, "{all}");
    assert!(!all.to_string().contains(&secret));
    for k in meta {
        assert_eq!(k["Status"], "Active");
        assert!(k["CreateDate"].is_string());
    }
    let ci_only = json(&s.root(&["credentials", "list", "--principal", &arn("ci")]));
    assert_eq!(ci_only["AccessKeyMetadata"][0]["AccessKeyId"], id.as_str());
    assert_eq!(ci_only["AccessKeyMetadata"].as_array().unwrap().len(), 1);
    let bobs = json(&s.as_uid(BOB, &["credentials", "list"]));
    assert_eq!(bobs["AccessKeyMetadata"][0]["AccessKeyId"], bob_id.as_str());
    assert_eq!(bobs["AccessKeyMetadata"][0]["UserName"], "bob");
    let out = s.as_uid(ALICE, &["credentials", "list"]);
    service_error(&out, "AccessDeniedException", "ListAccessKeys");

    // Delete: bob may not delete ci's key; the root may; then it is gone.
    let out = s.as_uid(BOB, &["credentials", "delete", "--access-key-id", &id]);
    service_error(&out, "AccessDeniedException", "DeleteAccessKey");
    let out = s.root(&["credentials", "delete", "--access-key-id", &id]);
    assert_eq!(ok(&out), "");
    let out = s.root(&["credentials", "delete", "--access-key-id", &id]);
    service_error(&out, "NoSuchEntityException", "DeleteAccessKey");
    ok(&s.as_uid(BOB, &["credentials", "delete", "--access-key-id", &bob_id]));
    let none = json(&s.root(&["credentials", "list"]));
    assert_eq!(none["AccessKeyMetadata"], serde_json::json!([]));

    // Every call went through the service and is in the audit log, without secrets.
    let log = std::fs::read_to_string(s.store().join("audit.log")).unwrap();
    assert!(log.contains("\"eventName\":\"CreateAccessKey\""));
    assert!(log.contains("\"eventName\":\"DeleteAccessKey\""));
    assert!(!log.contains(&secret));
}

#[test]
fn principals_without_uids_load_and_are_listed() {
    let mut s = Served::init("credentials-nouid");
    std::fs::write(s.principals(), principals()).unwrap();
    std::fs::set_permissions(s.principals(), std::fs::Permissions::from_mode(0o644)).unwrap();
    // The service starts with a uid-less entry in the file...
    s.serve();
    assert!(s.is_serving());
    // ...no uid resolves to it: an unmapped uid stays anonymous, a mapped one is itself.
    let stranger = json(&s.as_uid(STRANGER, &["whoami"]));
    assert_eq!(stranger["Principal"]["Type"], "Anonymous", "{stranger}");
    let alice = json(&s.as_uid(ALICE, &["whoami"]));
    assert_eq!(alice["Principal"]["Arn"], arn("alice").as_str());
    // ...and it is listed by ARN, for access keys.
    let made = json(&s.root(&["credentials", "create", "--principal", &arn("ci")]));
    let id = made["AccessKeyId"].as_str().unwrap().to_string();
    let listed = json(&s.root(&["credentials", "list", "--principal", &arn("ci")]));
    assert_eq!(listed["AccessKeyMetadata"][0]["AccessKeyId"], id.as_str());
    assert_eq!(listed["AccessKeyMetadata"][0]["UserName"], "ci");
    // An anonymous caller has no principal of its own to list keys for.
    let out = s.as_uid(STRANGER, &["credentials", "list"]);
    service_error(&out, "ValidationException", "ListAccessKeys");
}

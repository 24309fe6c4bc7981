//! Flags map to AWS requests; bad flags name themselves.

use super::*;
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
pub(super) struct Cli {
    #[command(flatten)]
    kms: KmsArgs,
}

pub(super) fn parse(argv: &[&str]) -> KmsArgs {
    let mut full = vec!["kms"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .kms
}

fn request(argv: &[&str]) -> (&'static str, Value) {
    let a = parse(argv);
    let (op, members) =
        build_request(&a.verb, a.cli_binary_format).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    (op, Value::Object(members))
}

#[test]
fn flags_map_to_aws_requests() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.json");
    std::fs::write(&policy, r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
    let blob = dir.path().join("ct.bin");
    std::fs::write(&blob, [0u8, 1, 2, 255]).unwrap();
    let policy_arg = format!("file://{}", policy.display());
    let blob_arg = format!("fileb://{}", blob.display());
    let cases: Vec<(Vec<&str>, &str, Value)> = vec![
        (vec!["create-key"], "CreateKey", json!({})),
        (
            vec![
                "create-key",
                "--description",
                "d",
                "--key-usage",
                "ENCRYPT_DECRYPT",
                "--key-spec",
                "SYMMETRIC_DEFAULT",
                "--origin",
                "EXTERNAL",
                "--policy",
                &policy_arg,
                "--bypass-policy-lockout-safety-check",
                "--tags",
                "TagKey=team,TagValue=ops",
                "TagKey=env,TagValue=prod",
            ],
            "CreateKey",
            json!({"Policy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}", "Description": "d",
                       "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT", "Origin": "EXTERNAL",
                       "BypassPolicyLockoutSafetyCheck": true,
                       "Tags": [{"TagKey": "team", "TagValue": "ops"}, {"TagKey": "env", "TagValue": "prod"}]}),
        ),
        (
            vec!["create-key", "--tags", r#"[{"TagKey":"a","TagValue":"b"}]"#],
            "CreateKey",
            json!({"Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        ),
        (
            vec!["describe-key", "--key-id", "alias/x"],
            "DescribeKey",
            json!({"KeyId": "alias/x"}),
        ),
        (
            vec!["list-keys", "--limit", "10", "--marker", "m"],
            "ListKeys",
            json!({"Limit": 10, "Marker": "m"}),
        ),
        (
            vec!["enable-key", "--key-id", "k"],
            "EnableKey",
            json!({"KeyId": "k"}),
        ),
        (
            vec!["disable-key", "--key-id", "k"],
            "DisableKey",
            json!({"KeyId": "k"}),
        ),
        (
            vec![
                "schedule-key-deletion",
                "--key-id",
                "k",
                "--pending-window-in-days",
                "7",
            ],
            "ScheduleKeyDeletion",
            json!({"KeyId": "k", "PendingWindowInDays": 7}),
        ),
        (
            vec!["cancel-key-deletion", "--key-id", "k"],
            "CancelKeyDeletion",
            json!({"KeyId": "k"}),
        ),
        (
            vec![
                "enable-key-rotation",
                "--key-id",
                "k",
                "--rotation-period-in-days",
                "90",
            ],
            "EnableKeyRotation",
            json!({"KeyId": "k", "RotationPeriodInDays": 90}),
        ),
        (
            vec!["rotate-key-on-demand", "--key-id", "k"],
            "RotateKeyOnDemand",
            json!({"KeyId": "k"}),
        ),
        (
            vec!["list-key-rotations", "--key-id", "k"],
            "ListKeyRotations",
            json!({"KeyId": "k"}),
        ),
        (
            vec!["get-key-policy", "--key-id", "k"],
            "GetKeyPolicy",
            json!({"KeyId": "k", "PolicyName": "default"}),
        ),
        (
            vec![
                "put-key-policy",
                "--key-id",
                "k",
                "--policy",
                "{}",
                "--allow-self-escalation",
            ],
            "PutKeyPolicy",
            json!({"KeyId": "k", "PolicyName": "default", "Policy": "{}", "AllowSelfEscalation": true}),
        ),
        (
            vec![
                "create-alias",
                "--alias-name",
                "alias/a",
                "--target-key-id",
                "k",
            ],
            "CreateAlias",
            json!({"AliasName": "alias/a", "TargetKeyId": "k"}),
        ),
        (
            vec!["delete-alias", "--alias-name", "alias/a"],
            "DeleteAlias",
            json!({"AliasName": "alias/a"}),
        ),
        (vec!["list-aliases"], "ListAliases", json!({})),
        (
            vec!["untag-resource", "--key-id", "k", "--tag-keys", "a", "b"],
            "UntagResource",
            json!({"KeyId": "k", "TagKeys": ["a", "b"]}),
        ),
        (
            vec![
                "create-grant",
                "--key-id",
                "k",
                "--grantee-principal",
                "arn:aws:iam::1:role/r",
                "--operations",
                "Decrypt",
                "Encrypt",
                "--constraints",
                "EncryptionContextSubset={dept=it,app=x}",
                "--name",
                "g",
            ],
            "CreateGrant",
            json!({"KeyId": "k", "GranteePrincipal": "arn:aws:iam::1:role/r", "Operations": ["Decrypt", "Encrypt"],
                       "Constraints": {"EncryptionContextSubset": {"dept": "it", "app": "x"}}, "Name": "g"}),
        ),
        (
            vec![
                "create-grant",
                "--key-id",
                "k",
                "--grantee-principal",
                "p",
                "--operations",
                "Decrypt",
                "--constraints",
                r#"{"EncryptionContextEquals":{"a":"b"}}"#,
                "--retiring-principal",
                "q",
            ],
            "CreateGrant",
            json!({"KeyId": "k", "GranteePrincipal": "p", "RetiringPrincipal": "q", "Operations": ["Decrypt"],
                       "Constraints": {"EncryptionContextEquals": {"a": "b"}}}),
        ),
        (
            vec!["list-grants", "--key-id", "k", "--limit", "5"],
            "ListGrants",
            json!({"KeyId": "k", "Limit": 5}),
        ),
        (
            vec!["revoke-grant", "--key-id", "k", "--grant-id", "g"],
            "RevokeGrant",
            json!({"KeyId": "k", "GrantId": "g"}),
        ),
        (
            vec!["retire-grant", "--grant-token", "t"],
            "RetireGrant",
            json!({"GrantToken": "t"}),
        ),
        (
            vec![
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "aGVsbG8=",
                "--encryption-context",
                "a=1,b=2",
            ],
            "Encrypt",
            json!({"KeyId": "k", "Plaintext": "aGVsbG8=", "EncryptionContext": {"a": "1", "b": "2"}}),
        ),
        (
            vec![
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "hello",
                "--cli-binary-format",
                "raw-in-base64-out",
            ],
            "Encrypt",
            json!({"KeyId": "k", "Plaintext": "aGVsbG8="}),
        ),
        (
            vec![
                "decrypt",
                "--ciphertext-blob",
                &blob_arg,
                "--encryption-context",
                r#"{"a":"1"}"#,
            ],
            "Decrypt",
            json!({"CiphertextBlob": "AAEC/w==", "EncryptionContext": {"a": "1"}}),
        ),
        (
            vec![
                "re-encrypt",
                "--ciphertext-blob",
                "AAEC/w==",
                "--destination-key-id",
                "k2",
                "--source-encryption-context",
                "a=1",
                "--destination-encryption-context",
                "b=2",
            ],
            "ReEncrypt",
            json!({"CiphertextBlob": "AAEC/w==", "SourceEncryptionContext": {"a": "1"}, "DestinationKeyId": "k2",
                       "DestinationEncryptionContext": {"b": "2"}}),
        ),
        (
            vec![
                "generate-data-key",
                "--key-id",
                "k",
                "--key-spec",
                "AES_256",
                "--grant-tokens",
                "t1",
                "t2",
            ],
            "GenerateDataKey",
            json!({"KeyId": "k", "KeySpec": "AES_256", "GrantTokens": ["t1", "t2"]}),
        ),
        (
            vec![
                "generate-data-key-without-plaintext",
                "--key-id",
                "k",
                "--number-of-bytes",
                "32",
            ],
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": "k", "NumberOfBytes": 32}),
        ),
        (
            vec!["generate-random", "--number-of-bytes", "16"],
            "GenerateRandom",
            json!({"NumberOfBytes": 16}),
        ),
        (
            vec![
                "import-key-material",
                "--key-id",
                "k",
                "--import-token",
                "AAAA",
                "--encrypted-key-material",
                &blob_arg,
                "--valid-to",
                "2027-01-31T00:00:00Z",
                "--expiration-model",
                "KEY_MATERIAL_EXPIRES",
            ],
            "ImportKeyMaterial",
            json!({"KeyId": "k", "ImportToken": "AAAA", "EncryptedKeyMaterial": "AAEC/w==", "ValidTo": 1801353600,
                       "ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
        ),
        (
            vec!["delete-imported-key-material", "--key-id", "k"],
            "DeleteImportedKeyMaterial",
            json!({"KeyId": "k"}),
        ),
    ];
    for (argv, op, want) in cases {
        let (got_op, got) = request(&argv);
        assert_eq!((got_op, &got), (op, &want), "{argv:?}");
    }
}

#[test]
fn bad_parameters_name_their_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["encrypt", "--key-id", "k", "--plaintext", "not base64!"],
            "--plaintext",
        ),
        (
            &["decrypt", "--ciphertext-blob", "fileb:///nonexistent/ct"],
            "--ciphertext-blob",
        ),
        (
            &[
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "AA==",
                "--encryption-context",
                "novalue",
            ],
            "--encryption-context",
        ),
        (
            &[
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "AA==",
                "--encryption-context",
                r#"{"a":1}"#,
            ],
            "--encryption-context",
        ),
        (&["create-key", "--tags", "Key=a,Value=b"], "--tags"),
        (
            &["create-key", "--policy", "file:///nonexistent/p.json"],
            "--policy",
        ),
        (
            &[
                "create-grant",
                "--key-id",
                "k",
                "--grantee-principal",
                "p",
                "--operations",
                "Decrypt",
                "--constraints",
                "Foo={a=b}",
            ],
            "--constraints",
        ),
        (
            &[
                "create-grant",
                "--key-id",
                "k",
                "--grantee-principal",
                "p",
                "--operations",
                "Decrypt",
                "--constraints",
                "EncryptionContextSubset=a=b",
            ],
            "--constraints",
        ),
        (&["retire-grant", "--key-id", "k"], "--grant-token"),
        (
            &[
                "import-key-material",
                "--key-id",
                "k",
                "--import-token",
                "AA==",
                "--encrypted-key-material",
                "AA==",
                "--valid-to",
                "tomorrow",
            ],
            "--valid-to",
        ),
    ];
    for (argv, flag) in cases {
        let a = parse(argv);
        let err = full_request(&a).expect_err(&format!("{argv:?} must fail"));
        assert_eq!(err.flag(), Some(*flag), "{argv:?}: {err}");
    }
}

#[test]
fn every_verb_is_an_operation_of_the_service_table() {
    use clap::Subcommand;
    let verbs = KmsVerb::augment_subcommands(clap::Command::new("kms"));
    let ops: Vec<String> = crate::kms::operations::names()
        .map(|n| {
            super::params::flag_of(n)
                .trim_start_matches("--")
                .to_string()
        })
        .collect();
    for verb in verbs.get_subcommands().map(clap::Command::get_name) {
        // kmsfs's one local verb never reaches the service.
        if verb != "wrap-key-material" {
            assert!(
                ops.iter().any(|o| o == verb),
                "{verb} is not in kms::operations"
            );
        }
    }
}

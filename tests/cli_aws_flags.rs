//! aws-cli's flags and formats through the real binary and a real key service:
//! `--dry-run` answered by the service, `--cli-input-json`, JMESPath `--query`,
//! `--output yaml|table`, `--max-items`/`--starting-token`, and validation's exit 252.

mod support;

use support::cli::*;

#[test]
fn aws_cli_flags_and_formats_work_against_the_real_service() {
    let s = Served::start("awsflags");
    let key = s.create_key();

    // DryRun: the service authorizes and answers DryRunOperationException; a caller who
    // may not encrypt still gets AccessDenied.
    let dry = [
        "kms",
        "encrypt",
        "--key-id",
        &key,
        "--plaintext",
        "aGk=",
        "--dry-run",
    ];
    service_error(
        &s.as_uid(ALICE, &dry),
        "DryRunOperationException",
        "Encrypt",
    );
    service_error(&s.as_uid(CAROL, &dry), "AccessDeniedException", "Encrypt");

    // --cli-input-json with a flag overriding it, a JMESPath query, text output.
    let input = serde_json::json!({"KeyId": "alias/none", "Plaintext": "aGk="}).to_string();
    let blob = ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "encrypt",
            "--cli-input-json",
            &input,
            "--key-id",
            &key,
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ],
    ));
    let yaml = ok(&s.as_uid(
        ALICE,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob,
            "--output",
            "yaml",
        ],
    ));
    let doc: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(doc["Plaintext"], "aGk=", "{yaml}");
    let table = ok(&s.as_uid(
        BOB,
        &["kms", "describe-key", "--key-id", &key, "--output", "table"],
    ));
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("DescribeKey"))
            && table.contains(&key),
        "{table}"
    );

    // Pagination flags over real aliases.
    for n in 0..3 {
        ok(&s.as_uid(
            BOB,
            &[
                "kms",
                "create-alias",
                "--alias-name",
                &format!("alias/p{n}"),
                "--target-key-id",
                &key,
            ],
        ));
    }
    let list = |extra: &[&str]| {
        let mut argv = vec!["kms", "list-aliases", "--key-id", &key];
        argv.extend_from_slice(extra);
        json(&s.as_uid(BOB, &argv))
    };
    let first = list(&["--max-items", "2", "--page-size", "1"]);
    assert_eq!(first["Aliases"].as_array().unwrap().len(), 2, "{first}");
    let token = first["NextToken"]
        .as_str()
        .expect("a NextToken")
        .to_string();
    let rest = list(&[
        "--starting-token",
        &token,
        "--query",
        "{Names: Aliases[].AliasName, Next: NextToken}",
    ]);
    assert_eq!(rest["Names"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["Next"].is_null(), "{rest}");
    let names = list(&[
        "--query",
        "sort(Aliases[?starts_with(AliasName, 'alias/p')].AliasName)",
    ]);
    assert_eq!(
        names,
        serde_json::json!(["alias/p0", "alias/p1", "alias/p2"])
    );

    // Validation before sending: exit 252 with botocore's wording.
    let o = s.as_uid(BOB, &["kms", "list-keys", "--limit", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(252), "{err}");
    assert!(
        err.contains("Parameter validation failed:\nInvalid value for parameter Limit, value: 0, valid min value: 1"),
        "{err}"
    );

    // Every command takes the four formats: whoami as YAML.
    let me = ok(&s.as_uid(ALICE, &["whoami", "--output", "yaml"]));
    let me: serde_json::Value = serde_norway::from_str(&me).unwrap();
    assert_eq!(me["Principal"]["Arn"], arn("alice"), "{me}");
}

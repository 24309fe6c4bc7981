//! `run_with` end to end over canned backends: exit codes and messages, pagination,
//! `--cli-input-*`, skeletons, dry runs and validation.

use super::tests::parse;
use super::*;
use crate::kms::{ErrorKind, KmsError};
use serde_json::json;
struct Canned(
    Result<Value, crate::kms::KmsError>,
    std::cell::RefCell<Vec<(String, Value)>>,
);

impl Backend for Canned {
    fn call(&self, operation: &str, request: Value) -> Result<Value, crate::kms::KmsError> {
        self.1.borrow_mut().push((operation.to_string(), request));
        self.0.clone()
    }
}

fn run_argv(argv: &[&str], output: OutputFormat, backend: &Canned) -> (i32, String, String) {
    let a = parse(argv);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&a, output, backend, &mut out, &mut err).unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn service_errors_exit_254_with_aws_cli_message_and_bad_parameters_252() {
    use crate::kms::{ErrorKind, KmsError};
    let denied = Canned(
        Err(KmsError::new(
            ErrorKind::AccessDenied,
            "User: x is not authorized",
        )),
        Default::default(),
    );
    let (code, out, err) = run_argv(
        &["decrypt", "--ciphertext-blob", "AAAA"],
        OutputFormat::Json,
        &denied,
    );
    assert_eq!((code, out.as_str()), (254, ""));
    assert_eq!(
        err,
        "\nAn error occurred (AccessDeniedException) when calling the Decrypt operation: User: x is not authorized\n"
    );
    let (code, _, err) = run_argv(
        &["encrypt", "--key-id", "k", "--plaintext", "%%"],
        OutputFormat::Json,
        &denied,
    );
    assert_eq!(code, 252);
    assert!(err.contains("'--plaintext'"), "{err}");
    assert!(
        denied.1.borrow().len() == 1,
        "a bad parameter never reaches the service"
    );
    let (code, _, err) = run_argv(
        &["list-keys", "--query", "Keys[?"],
        OutputFormat::Json,
        &denied,
    );
    assert_eq!(code, 252);
    assert!(err.contains("--query"), "{err}");
}

/// Serves ListAliases in pages of two from five aliases.
struct Pager(std::cell::RefCell<Vec<Value>>);

impl Backend for Pager {
    fn call(&self, operation: &str, request: Value) -> Result<Value, crate::kms::KmsError> {
        self.0.borrow_mut().push(request.clone());
        assert_eq!(operation, "ListAliases");
        let start: usize = request
            .get("Marker")
            .and_then(Value::as_str)
            .map_or(0, |m| m.parse().unwrap());
        let limit = request.get("Limit").and_then(Value::as_u64).unwrap_or(2) as usize;
        let all: Vec<Value> = (0..5)
            .map(|i| json!({"AliasName": format!("alias/{i}")}))
            .collect();
        let end = (start + limit).min(all.len());
        let mut page = json!({"Aliases": all[start..end].to_vec(), "Truncated": end < all.len()});
        if end < all.len() {
            page["NextMarker"] = json!(end.to_string());
        }
        Ok(page)
    }
}

fn run_pager(argv: &[&str]) -> (String, usize) {
    let a = parse(argv);
    let pager = Pager(Default::default());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        run_with(&a, OutputFormat::Text, &pager, &mut out, &mut err).unwrap(),
        0
    );
    let calls = pager.0.borrow().len();
    (String::from_utf8(out).unwrap(), calls)
}

#[test]
fn list_calls_fetch_and_merge_every_page_unless_limit_marker_or_no_paginate() {
    assert_eq!(
        run_pager(&["list-aliases", "--query", "Aliases[].AliasName"]),
        (
            "alias/0\talias/1\talias/2\talias/3\talias/4\n".to_string(),
            3
        )
    );
    // Merged output carries no pagination members.
    let (out, _) = run_pager(&["list-aliases"]);
    assert!(!out.contains("True") && !out.contains("False"), "{out}");
    assert_eq!(
        run_pager(&[
            "list-aliases",
            "--limit",
            "3",
            "--query",
            "Aliases[].AliasName"
        ])
        .1,
        1
    );
    assert_eq!(
        run_pager(&[
            "list-aliases",
            "--marker",
            "4",
            "--query",
            "Aliases[].AliasName"
        ])
        .0,
        "alias/4\n"
    );
    assert_eq!(
        run_pager(&["list-aliases", "--no-paginate", "--query", "NextMarker"]).0,
        "2\n"
    );
}

#[test]
fn decrypt_query_plaintext_text_prints_bare_base64() {
    let ok = Canned(
        Ok(
            json!({"KeyId": "arn:k", "Plaintext": "aGVsbG8=", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ),
        Default::default(),
    );
    let (code, out, _) = run_argv(
        &[
            "decrypt",
            "--ciphertext-blob",
            "AAAA",
            "--query",
            "Plaintext",
        ],
        OutputFormat::Text,
        &ok,
    );
    assert_eq!((code, out.as_str()), (0, "aGVsbG8=\n"));
    assert_eq!(
        ok.1.borrow()[0],
        ("Decrypt".to_string(), json!({"CiphertextBlob": "AAAA"}))
    );
}

fn canned(answer: Result<Value, KmsError>) -> Canned {
    Canned(answer, Default::default())
}

#[test]
fn validation_failures_exit_252_with_botocore_wording_before_sending() {
    let b = canned(Ok(json!({})));
    let cases: &[(&[&str], &str)] = &[
        (
            &["list-keys", "--limit", "0"],
            "\nParameter validation failed:\nInvalid value for parameter Limit, value: 0, valid min value: 1\n",
        ),
        (
            &["list-aliases", "--limit", "1001"],
            "\nParameter validation failed:\nInvalid value for parameter Limit, value: 1001, valid max value: 1000\n",
        ),
        (
            &["schedule-key-deletion", "--key-id", "k", "--pending-window-in-days", "0"],
            "\nParameter validation failed:\nInvalid value for parameter PendingWindowInDays, value: 0, valid min value: 1\n",
        ),
        (
            &["create-key", "--key-usage", "ENCRYPT", "--origin", "AWS_KMS"],
            "\nParameter validation failed:\nInvalid value for parameter KeyUsage, value: ENCRYPT, valid values: \
             SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT\n",
        ),
        (
            &["generate-data-key", "--key-id", "k", "--key-spec", "SYMMETRIC_DEFAULT"],
            "\nParameter validation failed:\nInvalid value for parameter KeySpec, value: SYMMETRIC_DEFAULT, valid values: AES_256, AES_128\n",
        ),
        (
            &["encrypt", "--plaintext", "aGk="],
            "usage: kmsfs kms encrypt [options]\nkmsfs kms encrypt: error: the following arguments are required: --key-id\n",
        ),
    ];
    for (argv, want) in cases {
        let (code, out, err) = run_argv(argv, OutputFormat::Json, &b);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (252, "", *want),
            "{argv:?}"
        );
    }
    assert!(
        b.1.borrow().is_empty(),
        "nothing invalid reaches the service"
    );
    // In range, and enums spelled right, pass.
    let (code, _, err) = run_argv(
        &[
            "create-key",
            "--key-spec",
            "HMAC_256",
            "--key-usage",
            "GENERATE_VERIFY_MAC",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn cli_input_json_and_yaml_supply_members_that_flags_override() {
    let b = canned(Ok(json!({"CiphertextBlob": "AA=="})));
    let input = r#"{"KeyId": "from-input", "Plaintext": "aGk=", "EncryptionContext": {"v": "1"}}"#;
    let (code, _, err) = run_argv(
        &[
            "encrypt",
            "--cli-input-json",
            input,
            "--key-id",
            "from-flag",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        b.1.borrow()[0],
        (
            "Encrypt".to_string(),
            json!({"KeyId": "from-flag", "Plaintext": "aGk=", "EncryptionContext": {"v": "1"}})
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("in.yaml");
    std::fs::write(&yaml, "KeyId: k\nLimit: 5\n").unwrap();
    let arg = format!("file://{}", yaml.display());
    let (code, _, err) = run_argv(
        &["list-grants", "--cli-input-yaml", &arg],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(b.1.borrow()[1].1, json!({"KeyId": "k", "Limit": 5}));

    let bad: &[(&str, &str)] = &[
        (
            r#"{"Plaintext": "aGk="}"#,
            "Parameter validation failed:\nMissing required parameter in input: \"KeyId\"",
        ),
        (r#"{"KeyId": "k", "Plaintext": "aGk=", "Color": "red"}"#, "Unknown parameter in input: \"Color\", must be one of: KeyId, Plaintext,"),
        (
            r#"{"KeyId": 7, "Plaintext": "aGk="}"#,
            "Invalid type for parameter KeyId, value: 7, type: <class 'int'>, valid types: <class 'str'>",
        ),
        ("[1]", "Error parsing parameter '--cli-input-json': the input must be an object"),
        ("{", "Error parsing parameter '--cli-input-json': Invalid input"),
    ];
    for (input, want) in bad {
        let (code, _, err) = run_argv(
            &["encrypt", "--cli-input-json", input],
            OutputFormat::Json,
            &b,
        );
        assert_eq!(code, 252, "{input}");
        assert!(err.contains(want), "{input}: {err}");
    }
    assert_eq!(b.1.borrow().len(), 2);
}

#[test]
fn skeletons_print_without_calling_and_the_input_one_round_trips() {
    let b = canned(Err(KmsError::new(ErrorKind::KmsInternal, "never called")));
    let (code, out, _) = run_argv(
        &["encrypt", "--generate-cli-skeleton"],
        OutputFormat::Text,
        &b,
    );
    assert_eq!(code, 0);
    let skeleton: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        skeleton,
        json!({"KeyId": "", "Plaintext": "", "EncryptionContext": {"KeyName": ""}, "GrantTokens": [""],
               "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DryRun": true})
    );
    assert!(
        out.starts_with("{\n    \"KeyId\""),
        "aws-cli's layout: {out}"
    );
    let (_, out, _) = run_argv(
        &["describe-key", "--generate-cli-skeleton", "output"],
        OutputFormat::Json,
        &b,
    );
    let sample: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sample["KeyMetadata"]["KeyState"], "Enabled");
    let (_, out, _) = run_argv(
        &["list-keys", "--generate-cli-skeleton", "yaml-input"],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(out, "Limit: 0\nMarker: ''\n");
    assert!(b.1.borrow().is_empty());

    // The skeleton, filled in, is a valid --cli-input-json.
    let ok = canned(Ok(json!({})));
    let mut filled = skeleton;
    filled["KeyId"] = json!("k");
    filled["Plaintext"] = json!("aGk=");
    filled["DryRun"] = json!(false);
    let (code, _, err) = run_argv(
        &["encrypt", "--cli-input-json", &filled.to_string()],
        OutputFormat::Json,
        &ok,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(ok.1.borrow()[0].1, filled);
}

#[test]
fn dry_run_is_sent_and_dry_run_operation_exception_exits_254() {
    let b = canned(Err(KmsError::new(
        ErrorKind::DryRunOperation,
        "The request would have succeeded, but the DryRun option is set.",
    )));
    let (code, out, err) = run_argv(
        &[
            "encrypt",
            "--key-id",
            "k",
            "--plaintext",
            "aGk=",
            "--dry-run",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!((code, out.as_str()), (254, ""));
    assert_eq!(
        err,
        "\nAn error occurred (DryRunOperationException) when calling the Encrypt operation: \
         The request would have succeeded, but the DryRun option is set.\n"
    );
    assert_eq!(b.1.borrow()[0].1["DryRun"], json!(true));
    run_argv(
        &[
            "revoke-grant",
            "--key-id",
            "k",
            "--grant-id",
            "g",
            "--no-dry-run",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(
        b.1.borrow()[1].1,
        json!({"KeyId": "k", "GrantId": "g", "DryRun": false})
    );
    // Verbs whose operation has no DryRun do not take the flag.
    let cli = <super::tests::Cli as clap::Parser>::try_parse_from([
        "kms",
        "enable-key",
        "--key-id",
        "k",
        "--dry-run",
    ]);
    assert!(cli.is_err());
}

#[test]
fn max_items_cuts_with_a_next_token_that_starting_token_resumes() {
    let (out, calls) = run_pager(&[
        "list-aliases",
        "--max-items",
        "3",
        "--query",
        "[Aliases[].AliasName, NextToken]",
    ]);
    assert_eq!(calls, 2);
    // aws-cli's text: the list on one line, the token on the next.
    let v: Vec<&str> = out.split(['\t', '\n']).filter(|s| !s.is_empty()).collect();
    assert_eq!(&v[..3], ["alias/0", "alias/1", "alias/2"], "{out}");
    let token = v[3];
    let (out, _) = run_pager(&[
        "list-aliases",
        "--starting-token",
        token,
        "--query",
        "Aliases[].AliasName",
    ]);
    assert_eq!(out, "alias/3\talias/4\n");
    // A cut on a page boundary resumes at the next page.
    let (out, _) = run_pager(&["list-aliases", "--max-items", "2", "--query", "NextToken"]);
    let (out, calls) = run_pager(&[
        "list-aliases",
        "--starting-token",
        out.trim(),
        "--query",
        "Aliases[].AliasName",
    ]);
    assert_eq!((out.as_str(), calls), ("alias/2\talias/3\talias/4\n", 2));
    // --page-size is each call's Limit; every page is still fetched.
    let (out, calls) = run_pager(&[
        "list-aliases",
        "--page-size",
        "1",
        "--query",
        "length(Aliases)",
    ]);
    assert_eq!((out.as_str(), calls), ("5\n", 5));
    // No NextToken when everything was printed.
    let (out, _) = run_pager(&["list-aliases", "--max-items", "5", "--query", "NextToken"]);
    assert_eq!(out, "None\n");
}

#[test]
fn every_output_format_and_jmespath_filters_work_on_responses() {
    let b = canned(Ok(
        json!({"KeyMetadata": {"KeyId": "k1", "Enabled": true, "CreationDate": 0}}),
    ));
    let (_, yaml, _) = run_argv(&["describe-key", "--key-id", "k1"], OutputFormat::Yaml, &b);
    assert_eq!(
        yaml,
        "KeyMetadata:\n  KeyId: k1\n  Enabled: true\n  CreationDate: 1970-01-01T00:00:00+00:00\n"
    );
    let (_, table, _) = run_argv(&["describe-key", "--key-id", "k1"], OutputFormat::Table, &b);
    assert!(
        table.lines().nth(1).unwrap().contains("DescribeKey"),
        "{table}"
    );
    assert!(
        table.contains("KeyMetadata") && table.contains("k1"),
        "{table}"
    );
    let (code, out, _) = run_argv(
        &[
            "describe-key",
            "--key-id",
            "k1",
            "--query",
            "KeyMetadata.{Id: KeyId, On: Enabled}",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "{\n    \"Id\": \"k1\",\n    \"On\": true\n}\n")
    );
    // A function applied to the wrong type fails after the call, as in aws-cli.
    let (code, _, err) = run_argv(
        &[
            "describe-key",
            "--key-id",
            "k1",
            "--query",
            "abs(KeyMetadata.KeyId)",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(code, 255, "{err}");
    let (code, out, _) = run_pager_query("Aliases[?AliasName=='alias/3'] | [0].AliasName");
    assert_eq!((code, out.as_str()), (0, "alias/3\n"));
}

fn run_pager_query(q: &str) -> (i32, String, usize) {
    let (out, calls) = run_pager(&["list-aliases", "--query", q]);
    (0, out, calls)
}

#[test]
fn aws_cli_global_flags_are_accepted_and_debug_shows_the_request() {
    let b = canned(Ok(json!({})));
    let (code, _, err) = run_argv(
        &[
            "enable-key",
            "--key-id",
            "k",
            "--region",
            "eu-west-1",
            "--profile",
            "p",
            "--endpoint-url",
            "http://localhost:1",
            "--no-cli-pager",
            "--debug",
        ],
        OutputFormat::Json,
        &b,
    );
    assert_eq!(code, 0);
    assert!(
        err.contains("calling EnableKey with {\"KeyId\":\"k\"}"),
        "{err}"
    );
    assert_eq!(b.1.borrow()[0].1, json!({"KeyId": "k"}));
}

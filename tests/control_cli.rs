//! `kmsfs kms <verb>` end to end over a real control socket: the CLI's request reaches a
//! handler as AWS JSON, the handler sees the real caller, and responses and errors come
//! back as aws-cli prints them.

use clap::Parser;
use kmsfs::cli::kms::{run_with, KmsArgs};
use kmsfs::cli::OutputFormat;
use kmsfs::control::{Handler, Server, SocketClient};
use kmsfs::kms::provider::Caller;
use kmsfs::kms::{ErrorKind, KmsError};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// A tiny stand-in key service: records each call; Decrypt succeeds only for uid 0
/// callers and only with the right encryption context.
#[derive(Default)]
struct Recorder(Mutex<Vec<(u32, String, Value)>>);

impl Handler for Recorder {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError> {
        self.0
            .lock()
            .unwrap()
            .push((caller.uid, operation.to_string(), request.clone()));
        match operation {
            "Decrypt" if request["EncryptionContext"] == json!({"volume": "v1"}) => Ok(
                json!({"KeyId": "arn:aws:kms:local:111122223333:key/k1", "Plaintext": "aGVsbG8=",
                          "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
            ),
            "Decrypt" => Err(KmsError::new(
                ErrorKind::InvalidCiphertext,
                "The ciphertext is invalid",
            )),
            "ListAliases" => Ok(
                json!({"Aliases": [{"AliasName": "alias/a", "TargetKeyId": "k1"},
                                                   {"AliasName": "alias/b", "TargetKeyId": "k2"}],
                                       "Truncated": false}),
            ),
            "DisableKey" => Err(KmsError::new(
                ErrorKind::AccessDenied,
                format!("uid {} may not DisableKey", caller.uid),
            )),
            _ => Ok(json!({})),
        }
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    kms: KmsArgs,
}

fn kms(client: &SocketClient, output: OutputFormat, argv: &[&str]) -> (i32, String, String) {
    let args = Cli::try_parse_from(std::iter::once("kms").chain(argv.iter().copied()))
        .unwrap()
        .kms;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&args, output, client, &mut out, &mut err).unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn aws_cli_style_calls_round_trip_through_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kms.sock");
    let recorder = Arc::new(Recorder::default());
    let _server = Server::bind(&path, recorder.clone())
        .unwrap()
        .spawn()
        .unwrap();
    let client = SocketClient::connect(&path).unwrap();

    // The script idiom: decrypt, select Plaintext as text, pipe to base64 -d.
    let (code, out, _) = kms(
        &client,
        OutputFormat::Text,
        &[
            "decrypt",
            "--ciphertext-blob",
            "AQID",
            "--encryption-context",
            "volume=v1",
            "--query",
            "Plaintext",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "aGVsbG8=\n"));

    let (code, out, _) = kms(
        &client,
        OutputFormat::Text,
        &["list-aliases", "--query", "Aliases[].AliasName"],
    );
    assert_eq!((code, out.as_str()), (0, "alias/a\talias/b\n"));

    let (code, out, _) = kms(
        &client,
        OutputFormat::Json,
        &["list-aliases", "--query", "Aliases[0]"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"AliasName": "alias/a", "TargetKeyId": "k1"})
    );

    let (code, out, err) = kms(
        &client,
        OutputFormat::Json,
        &["decrypt", "--ciphertext-blob", "AQID"],
    );
    assert_eq!((code, out.as_str()), (254, ""));
    assert!(
        err.contains(
            "An error occurred (InvalidCiphertextException) when calling the Decrypt operation"
        ),
        "{err}"
    );

    let (code, _, err) = kms(
        &client,
        OutputFormat::Json,
        &["disable-key", "--key-id", "k1"],
    );
    assert_eq!(code, 254);
    let me = nix::unistd::getuid().as_raw();
    assert!(
        err.contains(&format!(
            "(AccessDeniedException) when calling the DisableKey operation: uid {me} may"
        )),
        "{err}"
    );

    let (code, out, _) = kms(
        &client,
        OutputFormat::Json,
        &["enable-key", "--key-id", "k1"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "an empty response prints nothing, as aws-cli does"
    );

    let calls = recorder.0.lock().unwrap();
    assert_eq!(calls.len(), 6);
    assert!(
        calls.iter().all(|(uid, _, _)| *uid == me),
        "every call carries the socket peer's uid"
    );
    assert_eq!(calls[0].1, "Decrypt");
    assert_eq!(
        calls[0].2,
        json!({"CiphertextBlob": "AQID", "EncryptionContext": {"volume": "v1"}})
    );
}

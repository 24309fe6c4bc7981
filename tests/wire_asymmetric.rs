//! Issue 15's operations through `kmsfs serve --listen` with real AWS clients: boto3 (the
//! `asymmetric` scenario of `tests/python/kms_wire.py`, which cross-checks every result
//! with Python's `cryptography`) and aws-cli's own flags for Sign and Verify. One server,
//! one Python process, so the test stays fast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::wire::*;

fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

/// bob administers (he creates the keys), alice may use the keys for issue 15's
/// operations, dave is in no statement.
fn asymmetric_policy() -> String {
    let mut p: Value = serde_json::from_str(&key_policy()).unwrap();
    let users = p["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|st| st["Sid"] == "Users")
        .unwrap();
    users["Action"] = json!([
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Sign",
        "kms:Verify",
        "kms:GetPublicKey",
        "kms:GenerateMac",
        "kms:VerifyMac",
        "kms:GenerateDataKeyPair",
        "kms:GenerateDataKeyPairWithoutPlaintext",
        "kms:DeriveSharedSecret"
    ]);
    p.to_string()
}

#[test]
fn asymmetric_hmac_pair_and_agreement_operations_work_through_boto3_and_aws_cli() {
    let s = WireServer::start("asym");
    let run = s.boto3("asymmetric", json!({"key_policy": asymmetric_policy()}));

    // Sign and Verify, RAW and DIGEST; a tampered message is AWS's exception, not `false`.
    run.ok("alice signs RAW");
    run.ok("alice signs DIGEST");
    for step in ["alice verifies RAW", "alice verifies DIGEST"] {
        assert_eq!(run.ok(step)["SignatureValid"], true, "{step}");
    }
    run.error(
        "alice verifies a tampered message",
        "KMSInvalidSignatureException",
    );
    let public = run.ok("alice gets the public key");
    assert_eq!(public["KeySpec"], "ECC_NIST_P256");
    assert_eq!(public["KeyUsage"], "SIGN_VERIFY");
    assert_eq!(
        public["SigningAlgorithms"],
        json!(["ECDSA_SHA_256"]),
        "{public}"
    );
    // The key policy decides: dave is in no statement.
    let msg = run.error("dave signs", "AccessDeniedException");
    assert!(msg.contains(&arn("dave")), "the refusal names dave: {msg}");

    // RSA: encrypted by `cryptography` with OAEP SHA-256, decrypted by kmsfs.
    let rsa = run.ok("alice gets the RSA public key");
    assert_eq!(rsa["KeySpec"], "RSA_2048");
    assert_eq!(
        rsa["EncryptionAlgorithms"],
        json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
    );
    assert_eq!(
        run.ok("alice decrypts the RSA blob")["EncryptionAlgorithm"],
        "RSAES_OAEP_SHA_256"
    );

    // HMAC.
    assert_eq!(run.ok("alice verifies the MAC")["MacValid"], true);
    run.error("alice verifies a tampered MAC", "KMSInvalidMacException");
    // GetKeyLastUsage (in botocore's model): the last successful use was VerifyMac.
    let usage = run.ok("bob reads the MAC key's last usage");
    assert_eq!(usage["KeyLastUsage"]["Operation"], "VerifyMac", "{usage}");

    // Data key pairs.
    let pair = run.ok("alice generates a data key pair");
    assert_eq!(pair["KeyPairSpec"], "ECC_NIST_P256");
    run.ok("alice decrypts the sealed private key");
    let without = run.ok("alice generates a data key pair without plaintext");
    assert!(
        without.get("PrivateKeyPlaintext").is_none(),
        "no plaintext half: {without}"
    );
    assert_eq!(without["KeyPairSpec"], "RSA_2048");

    // ECDH.
    let shared = run.ok("alice derives a shared secret");
    assert_eq!(shared["KeyAgreementAlgorithm"], "ECDH");

    // The independent checks made in Python with `cryptography`.
    let checks = run.get("checks");
    for name in [
        "public key is P-256",
        "RAW signature verifies in cryptography",
        "DIGEST signature verifies in cryptography",
        "RSA plaintext round-trips",
        "data key pair halves match",
        "sealed private key is the plaintext one",
        "ECDH secret equals cryptography's",
    ] {
        assert_eq!(checks[name], true, "check `{name}` failed: {checks}");
    }

    // aws-cli's own flags against the endpoint: sign a file's bytes, then verify that
    // signature (the first byte flipped in the message: refused with aws-cli's shape).
    let key = run.get("sign_key").as_str().unwrap().to_string();
    let message = s.file("message.bin", b"signed by aws-cli\0\xff");
    let fileb = format!("fileb://{}", message.display());
    let out = s.aws(
        "alice",
        &[
            "sign",
            "--key-id",
            &key,
            "--message",
            &fileb,
            "--message-type",
            "RAW",
            "--signing-algorithm",
            "ECDSA_SHA_256",
            "--query",
            "Signature",
            "--output",
            "text",
        ],
    );
    let signature = b64_decode(&ok(&out));
    assert!(!signature.is_empty());
    let sig_file = s.file("signature.bin", &signature);
    let sig_fileb = format!("fileb://{}", sig_file.display());
    let verify = |msg: &str| {
        s.aws(
            "alice",
            &[
                "verify",
                "--key-id",
                &key,
                "--message",
                msg,
                "--message-type",
                "RAW",
                "--signing-algorithm",
                "ECDSA_SHA_256",
                "--signature",
                &sig_fileb,
                "--query",
                "SignatureValid",
                "--output",
                "text",
            ],
        )
    };
    assert_eq!(ok(&verify(&fileb)).trim(), "True");
    let tampered = s.file("tampered.bin", b"Signed by aws-cli\0\xff");
    let tampered = format!("fileb://{}", tampered.display());
    aws_service_error(&verify(&tampered), "KMSInvalidSignatureException", "Verify");
    // dave through aws-cli: the same refusal as through boto3.
    let out = s.aws(
        "dave",
        &[
            "sign",
            "--key-id",
            &key,
            "--message",
            &fileb,
            "--message-type",
            "RAW",
            "--signing-algorithm",
            "ECDSA_SHA_256",
        ],
    );
    aws_service_error(&out, "AccessDeniedException", "Sign");
}

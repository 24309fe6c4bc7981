//! Asymmetric keys (issue 15): key specs and usages at CreateKey, DescribeKey's and
//! GetPublicKey's fields, Sign/Verify for every signing spec, RSA Encrypt/Decrypt/
//! ReEncrypt, cross-checked with openssl against the exported public key, and the
//! refusals: wrong usage, tampered signatures, disabled keys, denying policies, grants.

mod support;

use std::path::Path;
use std::process::Command;

use kmsfs::kms::ErrorKind;
use serde_json::{json, Value};
use support::kms::*;

/// A policy giving the admin everything and alice the use of asymmetric keys.
fn asym_policy(extra: Value) -> String {
    let mut statements = vec![
        json!({ "Sid": "Root", "Effect": "Allow", "Principal": { "AWS": format!("arn:aws:iam::{ACCOUNT}:root") },
                "Action": "kms:*", "Resource": "*" }),
        json!({ "Sid": "Admin", "Effect": "Allow", "Principal": { "AWS": arn("admin") },
                "Action": "kms:*", "Resource": "*" }),
        json!({ "Sid": "Use", "Effect": "Allow", "Principal": { "AWS": arn("alice") },
                "Action": ["kms:Sign", "kms:Verify", "kms:GetPublicKey", "kms:Encrypt",
                           "kms:Decrypt", "kms:ReEncrypt*", "kms:DescribeKey",
                           "kms:GenerateDataKey"],
                "Resource": "*" }),
    ];
    if !extra.is_null() {
        statements.push(extra);
    }
    json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

fn create(e: &Env, spec: &str, usage: &str) -> Value {
    e.ok(
        ROOT,
        "CreateKey",
        json!({ "KeySpec": spec, "KeyUsage": usage, "Policy": asym_policy(Value::Null) }),
    )["KeyMetadata"]
        .clone()
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().unwrap()
}

#[track_caller]
fn openssl_ok(args: &[&str]) -> Vec<u8> {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// The public key, as openssl reads it (DER SubjectPublicKeyInfo), in a file.
fn public_key_file(e: &Env, key: &str, dir: &Path) -> String {
    let v = e.ok(ALICE, "GetPublicKey", json!({ "KeyId": key }));
    let der = unb64(v["PublicKey"].as_str().unwrap());
    let path = write(dir, &format!("{key}.der"), &der);
    // openssl parses it as a public key (fails on anything else).
    openssl_ok(&["pkey", "-pubin", "-inform", "DER", "-in", &path, "-noout"]);
    path
}

fn sign(e: &Env, key: &str, alg: &str, msg: &[u8], message_type: &str) -> Vec<u8> {
    let v = e.ok(
        ALICE,
        "Sign",
        json!({ "KeyId": key, "Message": b64(msg), "SigningAlgorithm": alg, "MessageType": message_type }),
    );
    assert_eq!(v["SigningAlgorithm"], alg);
    assert!(v["KeyId"].as_str().unwrap().ends_with(key));
    unb64(v["Signature"].as_str().unwrap())
}

fn verify(
    e: &Env,
    key: &str,
    alg: &str,
    msg: &[u8],
    sig: &[u8],
) -> Result<Value, kmsfs::kms::KmsError> {
    e.call(
        ALICE,
        "Verify",
        json!({ "KeyId": key, "Message": b64(msg), "SigningAlgorithm": alg, "Signature": b64(sig) }),
    )
}

/// openssl's verification of a kmsfs signature with the exported public key.
fn openssl_verifies(pubkey: &str, alg: &str, msg: &str, sig: &str) -> bool {
    let digest = if alg.ends_with("256") {
        "-sha256"
    } else if alg.ends_with("384") {
        "-sha384"
    } else {
        "-sha512"
    };
    let mut args = vec![
        "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", pubkey,
    ];
    args.extend(["-rawin", "-in", msg, "-sigfile", sig]);
    if alg.starts_with("ED25519") {
        // Pure Ed25519 hashes inside the scheme.
    } else {
        args.extend(["-digest", &digest[1..]]);
    }
    if alg.starts_with("RSASSA_PSS") {
        args.extend([
            "-pkeyopt",
            "rsa_padding_mode:pss",
            "-pkeyopt",
            "rsa_pss_saltlen:digest",
        ]);
    }
    let out = openssl(&args);
    String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully")
        && out.status.success()
}

#[test]
fn every_signing_spec_signs_what_openssl_verifies() {
    let e = env();
    let dir = tempfile::tempdir().unwrap();
    let msg = b"the message kmsfs signs";
    let msg_file = write(dir.path(), "msg", msg);
    let cases: &[(&str, &[&str])] = &[
        ("ECC_NIST_P256", &["ECDSA_SHA_256"]),
        ("ECC_NIST_P384", &["ECDSA_SHA_384"]),
        ("ECC_NIST_P521", &["ECDSA_SHA_512"]),
        ("ECC_SECG_P256K1", &["ECDSA_SHA_256"]),
        (
            "ECC_NIST_EDWARDS25519",
            &["ED25519_SHA_512", "ED25519_PH_SHA_512"],
        ),
        (
            "RSA_2048",
            &[
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
            ],
        ),
    ];
    for (spec, algs) in cases {
        let meta = create(&e, spec, "SIGN_VERIFY");
        let key = meta["KeyId"].as_str().unwrap().to_string();
        assert_eq!(meta["KeySpec"], *spec);
        assert_eq!(meta["CustomerMasterKeySpec"], *spec);
        assert_eq!(meta["KeyUsage"], "SIGN_VERIFY");
        assert_eq!(meta["SigningAlgorithms"], json!(algs), "{spec}");
        for absent in [
            "EncryptionAlgorithms",
            "MacAlgorithms",
            "KeyAgreementAlgorithms",
        ] {
            assert!(meta.get(absent).is_none(), "{spec} has {absent}");
        }
        let described = e.ok(ALICE, "DescribeKey", json!({ "KeyId": key }))["KeyMetadata"].clone();
        assert_eq!(described, meta);
        let pk = e.ok(ALICE, "GetPublicKey", json!({ "KeyId": key }));
        assert_eq!(pk["KeySpec"], *spec);
        assert_eq!(pk["KeyUsage"], "SIGN_VERIFY");
        assert_eq!(pk["SigningAlgorithms"], json!(algs));
        let pubkey = public_key_file(&e, &key, dir.path());
        for alg in *algs {
            let sig = sign(&e, &key, alg, msg, "RAW");
            let sig_file = write(dir.path(), "sig", &sig);
            // OpenSSL 3.0 has no Ed25519ph; the RFC 8032 vector in crypto::asym's unit
            // tests checks that scheme instead.
            assert!(
                *alg == "ED25519_PH_SHA_512"
                    || openssl_verifies(&pubkey, alg, &msg_file, &sig_file),
                "openssl rejects {spec} {alg}"
            );
            assert_eq!(
                verify(&e, &key, alg, msg, &sig).unwrap()["SignatureValid"],
                true
            );
            // A tampered signature and a garbage one are KMSInvalidSignatureException.
            let mut bad = sig.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x40;
            assert_kind(
                &verify(&e, &key, alg, msg, &bad).unwrap_err(),
                ErrorKind::KmsInvalidSignature,
            );
            assert_kind(
                &verify(&e, &key, alg, msg, b"garbage").unwrap_err(),
                ErrorKind::KmsInvalidSignature,
            );
            let bad_file = write(dir.path(), "bad", &bad);
            assert!(!openssl_verifies(&pubkey, alg, &msg_file, &bad_file));
            assert_kind(
                &verify(&e, &key, alg, b"another message", &sig).unwrap_err(),
                ErrorKind::KmsInvalidSignature,
            );
        }
    }
}

#[test]
fn digest_messages_are_checked_and_match_raw_ones() {
    let e = env();
    let key = create(&e, "ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = b"hashed by the caller";
    let digest = openssl_digest(msg);
    let sig = sign(&e, &key, "ECDSA_SHA_256", &digest, "DIGEST");
    // The same message, given raw to Verify, is the same message.
    assert_eq!(
        verify(&e, &key, "ECDSA_SHA_256", msg, &sig).unwrap()["SignatureValid"],
        true
    );
    let short = e.fails(
        ALICE,
        "Sign",
        json!({ "KeyId": key, "Message": b64(&digest[..20]), "MessageType": "DIGEST",
                "SigningAlgorithm": "ECDSA_SHA_256" }),
    );
    assert_kind(&short, ErrorKind::Validation);
    // Messages are at most 4096 bytes; an algorithm of another spec is the key's misuse.
    let long = e.fails(
        ALICE,
        "Sign",
        json!({ "KeyId": key, "Message": b64(&[7u8; 4097]), "SigningAlgorithm": "ECDSA_SHA_256" }),
    );
    assert_kind(&long, ErrorKind::Validation);
    let other = e.fails(
        ALICE,
        "Sign",
        json!({ "KeyId": key, "Message": b64(msg), "SigningAlgorithm": "ECDSA_SHA_384" }),
    );
    assert_kind(&other, ErrorKind::InvalidKeyUsage);
    let unknown = e.fails(
        ALICE,
        "Sign",
        json!({ "KeyId": key, "Message": b64(msg), "SigningAlgorithm": "ECDSA_SHA_1" }),
    );
    assert_kind(&unknown, ErrorKind::Validation);
}

fn openssl_digest(msg: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "m", msg);
    openssl_ok(&["dgst", "-sha256", "-binary", &f])
}

#[test]
fn rsa_keys_decrypt_what_openssl_encrypts_and_round_trip() {
    let e = env();
    let dir = tempfile::tempdir().unwrap();
    let meta = create(&e, "RSA_2048", "ENCRYPT_DECRYPT");
    let key = meta["KeyId"].as_str().unwrap().to_string();
    assert_eq!(
        meta["EncryptionAlgorithms"],
        json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
    );
    assert!(meta.get("SigningAlgorithms").is_none());
    let pubkey = public_key_file(&e, &key, dir.path());
    let plain = write(dir.path(), "plain", b"secret for RSA");
    for (alg, md) in [
        ("RSAES_OAEP_SHA_256", "sha256"),
        ("RSAES_OAEP_SHA_1", "sha1"),
    ] {
        let ct = openssl_ok(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            &pubkey,
            "-in",
            &plain,
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
        ]);
        let v = e.ok(
            ALICE,
            "Decrypt",
            json!({ "KeyId": key, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": alg }),
        );
        assert_eq!(unb64(v["Plaintext"].as_str().unwrap()), b"secret for RSA");
        assert_eq!(v["EncryptionAlgorithm"], alg);
        // kmsfs's own ciphertext decrypts too, and only with the same algorithm.
        let v = e.ok(
            ALICE,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": b64(b"abc"), "EncryptionAlgorithm": alg }),
        );
        assert_eq!(v["EncryptionAlgorithm"], alg);
        let blob = unb64(v["CiphertextBlob"].as_str().unwrap());
        assert_eq!(blob.len(), 256);
        let other = if md == "sha1" {
            "RSAES_OAEP_SHA_256"
        } else {
            "RSAES_OAEP_SHA_1"
        };
        let wrong = e.fails(
            ALICE,
            "Decrypt",
            json!({ "KeyId": key, "CiphertextBlob": b64(&blob), "EncryptionAlgorithm": other }),
        );
        assert_kind(&wrong, ErrorKind::InvalidCiphertext);
    }
    // AWS's limits: 190 bytes with OAEP SHA-256 on RSA_2048, 214 with SHA-1.
    for (alg, max) in [("RSAES_OAEP_SHA_256", 190usize), ("RSAES_OAEP_SHA_1", 214)] {
        let enc = |n: usize| {
            e.call(
                ALICE,
                "Encrypt",
                json!({ "KeyId": key, "Plaintext": b64(&vec![1u8; n]), "EncryptionAlgorithm": alg }),
            )
        };
        assert!(enc(max).is_ok());
        assert_kind(&enc(max + 1).unwrap_err(), ErrorKind::Validation);
    }
    // Without an algorithm, or with a context: AWS's refusals.
    let no_alg = e.fails(
        ALICE,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": b64(b"x") }),
    );
    assert_kind(&no_alg, ErrorKind::InvalidKeyUsage);
    let ctx = e.fails(
        ALICE,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                "EncryptionContext": { "a": "b" } }),
    );
    assert_kind(&ctx, ErrorKind::Validation);
    // Raw RSA output names no key: without KeyId it is not a ciphertext kmsfs knows.
    let v = e.ok(
        ALICE,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": b64(b"move me"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256" }),
    );
    let blob = v["CiphertextBlob"].as_str().unwrap().to_string();
    let no_key = e.fails(
        ALICE,
        "Decrypt",
        json!({ "CiphertextBlob": blob, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256" }),
    );
    assert_kind(&no_key, ErrorKind::InvalidCiphertext);
    // ReEncrypt from the RSA key to a symmetric key and back.
    let sym = e.ok(
        ROOT,
        "CreateKey",
        json!({ "Policy": asym_policy(Value::Null) }),
    )["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let to_sym = e.ok(
        ALICE,
        "ReEncrypt",
        json!({ "CiphertextBlob": blob, "SourceKeyId": key, "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                "DestinationKeyId": sym }),
    );
    assert_eq!(to_sym["SourceEncryptionAlgorithm"], "RSAES_OAEP_SHA_256");
    assert_eq!(
        to_sym["DestinationEncryptionAlgorithm"],
        "SYMMETRIC_DEFAULT"
    );
    let back = e.ok(
        ALICE,
        "ReEncrypt",
        json!({ "CiphertextBlob": to_sym["CiphertextBlob"], "DestinationKeyId": key,
                "DestinationEncryptionAlgorithm": "RSAES_OAEP_SHA_1" }),
    );
    let v = e.ok(
        ALICE,
        "Decrypt",
        json!({ "KeyId": key, "CiphertextBlob": back["CiphertextBlob"], "EncryptionAlgorithm": "RSAES_OAEP_SHA_1" }),
    );
    assert_eq!(unb64(v["Plaintext"].as_str().unwrap()), b"move me");
    // A symmetric key refuses RSA algorithms; an RSA key refuses data keys.
    let sym_rsa = e.fails(
        ALICE,
        "Encrypt",
        json!({ "KeyId": sym, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1" }),
    );
    assert_kind(&sym_rsa, ErrorKind::InvalidKeyUsage);
    let gdk = e.fails(
        ALICE,
        "GenerateDataKey",
        json!({ "KeyId": key, "KeySpec": "AES_256" }),
    );
    assert_kind(&gdk, ErrorKind::InvalidKeyUsage);
}

#[test]
fn create_key_validates_specs_and_usages_as_aws() {
    let e = env();
    let cases = [
        (json!({ "KeySpec": "ECC_NIST_P256" }), ErrorKind::Validation),
        (
            json!({ "KeySpec": "ECC_NIST_P256", "KeyUsage": "ENCRYPT_DECRYPT" }),
            ErrorKind::Validation,
        ),
        (
            json!({ "KeySpec": "ECC_SECG_P256K1", "KeyUsage": "KEY_AGREEMENT" }),
            ErrorKind::Validation,
        ),
        (
            json!({ "KeySpec": "HMAC_256", "KeyUsage": "SIGN_VERIFY" }),
            ErrorKind::Validation,
        ),
        (
            json!({ "KeySpec": "RSA_2048", "CustomerMasterKeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY" }),
            ErrorKind::Validation,
        ),
        (json!({ "KeySpec": "RSA_1024" }), ErrorKind::Validation),
        (
            json!({ "KeySpec": "ML_DSA_65", "KeyUsage": "SIGN_VERIFY" }),
            ErrorKind::UnsupportedOperation,
        ),
        (
            json!({ "KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "Origin": "EXTERNAL" }),
            ErrorKind::UnsupportedOperation,
        ),
    ];
    for (req, want) in cases {
        assert_kind(&e.fails(ROOT, "CreateKey", req.clone()), want);
    }
    // The deprecated alias works alone; other usages and specs get their lists.
    let m = e.ok(
        ROOT,
        "CreateKey",
        json!({ "CustomerMasterKeySpec": "RSA_3072", "KeyUsage": "SIGN_VERIFY" }),
    )["KeyMetadata"]
        .clone();
    assert_eq!(m["KeySpec"], "RSA_3072");
    let m = e.ok(
        ROOT,
        "CreateKey",
        json!({ "KeySpec": "ECC_NIST_P384", "KeyUsage": "KEY_AGREEMENT" }),
    )["KeyMetadata"]
        .clone();
    assert_eq!(m["KeyAgreementAlgorithms"], json!(["ECDH"]));
    assert!(m.get("SigningAlgorithms").is_none());
    let m = e.ok(
        ROOT,
        "CreateKey",
        json!({ "KeySpec": "HMAC_384", "KeyUsage": "GENERATE_VERIFY_MAC" }),
    )["KeyMetadata"]
        .clone();
    assert_eq!(m["MacAlgorithms"], json!(["HMAC_SHA_384"]));
    assert!(m.get("EncryptionAlgorithms").is_none());
    let hmac = m["KeyId"].as_str().unwrap().to_string();
    assert_kind(
        &e.fails(ROOT, "GetPublicKey", json!({ "KeyId": hmac })),
        ErrorKind::UnsupportedOperation,
    );
    // A symmetric key is described exactly as before.
    let m = e.ok(ROOT, "CreateKey", json!({}))["KeyMetadata"].clone();
    assert_eq!(m["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(m["EncryptionAlgorithms"], json!(["SYMMETRIC_DEFAULT"]));
    assert!(m.get("SigningAlgorithms").is_none());
    let sym = m["KeyId"].as_str().unwrap().to_string();
    assert_kind(
        &e.fails(ROOT, "GetPublicKey", json!({ "KeyId": sym })),
        ErrorKind::UnsupportedOperation,
    );
    assert_kind(
        &e.fails(
            ROOT,
            "Sign",
            json!({ "KeyId": sym, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256" }),
        ),
        ErrorKind::InvalidKeyUsage,
    );
}

#[test]
fn usage_state_policy_and_grants_gate_signing() {
    let e = env();
    let meta = e.ok(
        ROOT,
        "CreateKey",
        json!({ "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
                "Policy": asym_policy(json!({
                    "Sid": "OnlyDigests", "Effect": "Deny", "Principal": { "AWS": arn("alice") },
                    "Action": "kms:Sign", "Resource": "*",
                    "Condition": { "StringEquals": { "kms:MessageType": "RAW" } } })) }),
    )["KeyMetadata"]
        .clone();
    let key = meta["KeyId"].as_str().unwrap().to_string();
    let req = |mt: &str, msg: &[u8]| json!({ "KeyId": key, "Message": b64(msg), "MessageType": mt, "SigningAlgorithm": "ECDSA_SHA_256" });
    // The deny on kms:MessageType RAW: alice signs digests only.
    assert_kind(
        &e.fails(ALICE, "Sign", req("RAW", b"m")),
        ErrorKind::AccessDenied,
    );
    let digest = openssl_digest(b"m");
    let sig = unb64(
        e.ok(ALICE, "Sign", req("DIGEST", &digest))["Signature"]
            .as_str()
            .unwrap(),
    );
    // Wrong usage: a signing key does not encrypt, rotate or make data keys.
    assert_kind(
        &e.fails(
            ALICE,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": b64(b"x") }),
        ),
        ErrorKind::InvalidKeyUsage,
    );
    assert_kind(
        &e.fails(ADMIN, "EnableKeyRotation", json!({ "KeyId": key })),
        ErrorKind::UnsupportedOperation,
    );
    assert_kind(
        &e.fails(ADMIN, "RotateKeyOnDemand", json!({ "KeyId": key })),
        ErrorKind::UnsupportedOperation,
    );
    // A condition on kms:SigningAlgorithm (and the key's kms:KeySpec) in a grant-less
    // policy: bob has nothing until a grant gives him Verify only.
    assert_kind(
        &e.fails(BOB, "Sign", req("DIGEST", &digest)),
        ErrorKind::AccessDenied,
    );
    let bad_grant = e.fails(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": key, "GranteePrincipal": arn("bob"), "Operations": ["Encrypt"] }),
    );
    assert_kind(&bad_grant, ErrorKind::Validation);
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": key, "GranteePrincipal": arn("bob"), "Operations": ["Verify", "GetPublicKey"] }),
    );
    let v = e.ok(
        BOB,
        "Verify",
        json!({ "KeyId": key, "Message": b64(&digest), "MessageType": "DIGEST",
                "SigningAlgorithm": "ECDSA_SHA_256", "Signature": b64(&sig) }),
    );
    assert_eq!(v["SignatureValid"], true);
    assert_kind(
        &e.fails(BOB, "Sign", req("DIGEST", &digest)),
        ErrorKind::AccessDenied,
    );
    // A disabled key signs nothing.
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": key }));
    assert_kind(
        &e.fails(ALICE, "Sign", req("DIGEST", &digest)),
        ErrorKind::Disabled,
    );
    e.ok(ADMIN, "EnableKey", json!({ "KeyId": key }));
    // Condition keys from the key: kms:KeySpec in an identity-free deny.
    let audit = e.audit_text();
    assert!(audit.contains("\"Sign\""), "Sign is audited");
    assert!(!audit.contains(&b64(&digest)), "the message is not audited");
}

#[test]
fn key_pairs_survive_a_reopen_sealed_in_their_material_file() {
    let e = env();
    let key = create(&e, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let sig = sign(&e, &key, "ED25519_SHA_512", b"kept", "RAW");
    let file = e.store().join("material").join(&key).join("v1");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], b"KMV1");
    let other = e.reopen();
    let v = other
        .call(
            &ALICE,
            "Verify",
            json!({ "KeyId": key, "Message": b64(b"kept"), "SigningAlgorithm": "ED25519_SHA_512",
                    "Signature": b64(&sig) }),
        )
        .unwrap();
    assert_eq!(v["SignatureValid"], true);
    // DIGEST is not a message pure Ed25519 signs.
    let err = other
        .call(
            &ALICE,
            "Sign",
            json!({ "KeyId": key, "Message": b64(&[0u8; 64]), "MessageType": "DIGEST",
                    "SigningAlgorithm": "ED25519_SHA_512" }),
        )
        .unwrap_err();
    assert_kind(&err, ErrorKind::Validation);
    // Ed25519ph takes the message (kmsfs cannot hand ed25519-dalek a finished SHA-512),
    // and its signature is not a pure Ed25519 one.
    let err = other
        .call(
            &ALICE,
            "Sign",
            json!({ "KeyId": key, "Message": b64(&[0u8; 64]), "MessageType": "DIGEST",
                    "SigningAlgorithm": "ED25519_PH_SHA_512" }),
        )
        .unwrap_err();
    assert_kind(&err, ErrorKind::Validation);
    let ph = sign(&e, &key, "ED25519_PH_SHA_512", b"kept", "RAW");
    assert_ne!(ph, sig);
    for (alg, valid) in [("ED25519_PH_SHA_512", true), ("ED25519_SHA_512", false)] {
        let v = other.call(
            &ALICE,
            "Verify",
            json!({ "KeyId": key, "Message": b64(b"kept"), "SigningAlgorithm": alg,
                        "Signature": b64(&ph) }),
        );
        match (v, valid) {
            (Ok(v), true) => assert_eq!(v["SignatureValid"], true),
            (Err(err), false) => assert_kind(&err, ErrorKind::KmsInvalidSignature),
            (other, _) => panic!("{alg}: {other:?}"),
        }
    }
    // Moved to another key's directory, the material no longer authenticates.
    let sym = e.ok(ROOT, "CreateKey", json!({}))["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let other_key = create(&e, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::copy(
        &file,
        e.store().join("material").join(&other_key).join("v1"),
    )
    .unwrap();
    let third = e.reopen();
    let err = third
        .call(
            &ALICE,
            "Sign",
            json!({ "KeyId": other_key, "Message": b64(b"x"), "SigningAlgorithm": "ED25519_SHA_512" }),
        )
        .unwrap_err();
    assert_kind(&err, ErrorKind::KmsInternal);
    let _ = sym;
}

#[test]
fn larger_rsa_keys_sign_and_encrypt() {
    let e = env();
    for (spec, max256) in [("RSA_3072", 318usize), ("RSA_4096", 446)] {
        let key = create(&e, spec, "ENCRYPT_DECRYPT")["KeyId"]
            .as_str()
            .unwrap()
            .to_string();
        let v = e.ok(
            ALICE,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": b64(&vec![9u8; max256]), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256" }),
        );
        let v = e.ok(
            ALICE,
            "Decrypt",
            json!({ "KeyId": key, "CiphertextBlob": v["CiphertextBlob"], "EncryptionAlgorithm": "RSAES_OAEP_SHA_256" }),
        );
        assert_eq!(unb64(v["Plaintext"].as_str().unwrap()), vec![9u8; max256]);
    }
}

#[test]
fn cli_signs_with_fileb_and_verifies_with_openssl() {
    use support::cli::{json as out_json, service_error, Served};
    let s = Served::start("asym");
    let created = out_json(&s.root(&[
        "kms",
        "create-key",
        "--key-spec",
        "ECC_NIST_P384",
        "--key-usage",
        "SIGN_VERIFY",
    ]));
    assert_eq!(
        created["KeyMetadata"]["SigningAlgorithms"],
        json!(["ECDSA_SHA_384"])
    );
    let key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = s.public_file("msg.bin", b"signed through the CLI\x00\xff");
    let fileb = format!("fileb://{}", msg.display());
    let signed = out_json(&s.root(&[
        "kms",
        "sign",
        "--key-id",
        &key,
        "--message",
        &fileb,
        "--message-type",
        "RAW",
        "--signing-algorithm",
        "ECDSA_SHA_384",
    ]));
    let sig = unb64(signed["Signature"].as_str().unwrap());
    let sig_file = s.public_file("sig.bin", &sig);
    let pk = out_json(&s.root(&["kms", "get-public-key", "--key-id", &key]));
    assert_eq!(pk["KeyUsage"], "SIGN_VERIFY");
    let der = s.public_file("pub.der", &unb64(pk["PublicKey"].as_str().unwrap()));
    assert!(openssl_verifies(
        &der.display().to_string(),
        "ECDSA_SHA_384",
        &msg.display().to_string(),
        &sig_file.display().to_string()
    ));
    let verify_args = |sig: &str| {
        vec![
            "kms".to_string(),
            "verify".into(),
            "--key-id".into(),
            key.clone(),
            "--message".into(),
            fileb.clone(),
            "--signature".into(),
            format!("fileb://{sig}"),
            "--signing-algorithm".into(),
            "ECDSA_SHA_384".into(),
        ]
    };
    let args = verify_args(&sig_file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(out_json(&s.root(&args))["SignatureValid"], true);
    let mut bad = sig.clone();
    let last = bad.len() - 3;
    bad[last] ^= 1;
    let bad_file = s.public_file("bad.bin", &bad);
    let args = verify_args(&bad_file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    service_error(&s.root(&args), "KMSInvalidSignatureException", "Verify");
    // aws-cli's own check of the algorithm's enum, before anything is sent.
    let out = s.root(&[
        "kms",
        "sign",
        "--key-id",
        &key,
        "--message",
        &fileb,
        "--signing-algorithm",
        "ECDSA_SHA_1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(252),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn condition_keys_come_from_the_key_and_the_request() {
    let e = env();
    let deny = |action: &str, cond: Value| {
        json!({ "Effect": "Deny", "Principal": { "AWS": arn("alice") }, "Action": action,
                "Resource": "*", "Condition": cond })
    };
    let mut policy: Value = serde_json::from_str(&asym_policy(Value::Null)).unwrap();
    let statements = policy["Statement"].as_array_mut().unwrap();
    statements.push(deny(
        "kms:Sign",
        json!({ "StringLike": { "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_*" } }),
    ));
    statements.push(deny(
        "kms:GetPublicKey",
        json!({ "StringEquals": { "kms:KeyUsage": "ENCRYPT_DECRYPT", "kms:KeySpec": "RSA_2048" } }),
    ));
    statements.push(deny(
        "kms:Decrypt",
        json!({ "StringEquals": { "kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_1" } }),
    ));
    let policy = policy.to_string();
    let key_of = |usage: &str| {
        e.ok(
            ROOT,
            "CreateKey",
            json!({ "KeySpec": "RSA_2048", "KeyUsage": usage, "Policy": policy }),
        )["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let signing = key_of("SIGN_VERIFY");
    let sign_with = |alg: &str| {
        e.call(
            ALICE,
            "Sign",
            json!({ "KeyId": signing, "Message": b64(b"m"), "SigningAlgorithm": alg }),
        )
    };
    assert_kind(
        &sign_with("RSASSA_PKCS1_V1_5_SHA_256").unwrap_err(),
        ErrorKind::AccessDenied,
    );
    assert!(sign_with("RSASSA_PSS_SHA_256").is_ok());
    // kms:KeySpec and kms:KeyUsage are the key's own: the signing key's public key is
    // readable, the encryption key's is not.
    assert!(e
        .call(ALICE, "GetPublicKey", json!({ "KeyId": signing }))
        .is_ok());
    let enc = key_of("ENCRYPT_DECRYPT");
    assert_kind(
        &e.fails(ALICE, "GetPublicKey", json!({ "KeyId": enc })),
        ErrorKind::AccessDenied,
    );
    for (alg, allowed) in [("RSAES_OAEP_SHA_256", true), ("RSAES_OAEP_SHA_1", false)] {
        let ct = e.ok(
            ALICE,
            "Encrypt",
            json!({ "KeyId": enc, "Plaintext": b64(b"p"), "EncryptionAlgorithm": alg }),
        )["CiphertextBlob"]
            .clone();
        let r = e.call(
            ALICE,
            "Decrypt",
            json!({ "KeyId": enc, "CiphertextBlob": ct, "EncryptionAlgorithm": alg }),
        );
        assert_eq!(r.is_ok(), allowed, "{alg}: {r:?}");
    }
}

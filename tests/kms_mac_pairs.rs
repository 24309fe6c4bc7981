//! HMAC keys (GenerateMac, VerifyMac), data key pairs (GenerateDataKeyPair and
//! ...WithoutPlaintext) and key agreement (DeriveSharedSecret), through `Service::call`
//! and through the real CLI. Keys and secrets are checked against an independent
//! implementation: Python's `cryptography` in the tests' pinned virtualenv
//! (`scripts/python-env`), which also holds botocore's KMS model that every output is
//! validated against.

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kmsfs::kms::ErrorKind;
use serde_json::{json, Value};
use support::kms::*;

/// The virtualenv's python (built once by `scripts/python-env`; `KMSFS_PYENV` shares one).
fn python() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-env");
    let out = Command::new(script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/python-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("bin/python")
}

/// Runs a Python program with `input` as JSON on stdin; returns what it prints as JSON.
fn py(program: &str, input: &Value) -> Value {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks each (operation, output) against botocore's KMS model: every member is one
/// the output shape declares, blobs are base64, enums hold one of their values,
/// booleans are booleans. Prints the problems found (none expected).
const VALIDATE_OUTPUTS: &str = r#"
import base64, json, sys
import botocore.session
model = botocore.session.get_session().get_service_model("kms")
problems = []
for op, out in json.load(sys.stdin):
    shape = model.operation_model(op).output_shape
    for name, value in out.items():
        member = shape.members.get(name)
        if member is None:
            problems.append(f"{op}: {name} is not in the model"); continue
        t = member.type_name
        if t == "blob":
            raw = base64.b64decode(value, validate=True)
            lo, hi = member.metadata.get("min", 0), member.metadata.get("max", 1 << 30)
            if not lo <= len(raw) <= hi:
                problems.append(f"{op}: {name} is {len(raw)} bytes, outside {lo}..{hi}")
        elif t == "string":
            if not isinstance(value, str):
                problems.append(f"{op}: {name} is not a string")
            elif member.enum and value not in member.enum:
                problems.append(f"{op}: {name}={value} not in {member.enum}")
        elif t == "boolean" and not isinstance(value, bool):
            problems.append(f"{op}: {name} is not a boolean")
print(json.dumps(problems))
"#;

fn assert_valid_outputs(outputs: &[(&str, &Value)]) {
    let problems = py(VALIDATE_OUTPUTS, &json!(outputs));
    assert_eq!(problems, json!([]), "outputs that botocore's model refuses");
}

/// Loads each pair with `cryptography`: the private key parses as PKCS#8 DER, its
/// public key equals the returned SPKI, and a signature by the private key verifies
/// with the public key (ECDH-only curves sign with ECDSA too). Prints the key types.
const CHECK_PAIRS: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
DER, SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
kinds = []
for pair in json.load(sys.stdin):
    private = serialization.load_der_private_key(base64.b64decode(pair["private"]), None)
    public = serialization.load_der_public_key(base64.b64decode(pair["public"]))
    assert private.public_key().public_bytes(DER, SPKI) == public.public_bytes(DER, SPKI)
    msg = b"signed by the private half"
    if isinstance(private, rsa.RSAPrivateKey):
        sig = private.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        public.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
        kinds.append(f"RSA_{private.key_size}")
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        sig = private.sign(msg, ec.ECDSA(hashes.SHA256()))
        public.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        kinds.append(private.curve.name)
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        public.verify(private.sign(msg), msg)
        kinds.append("ed25519")
    else:
        raise SystemExit(f"unexpected key type {type(private)}")
print(json.dumps(kinds))
"#;

/// A symmetric key alice may use (the split policy), with an alias.
fn symmetric_key(e: &Env) -> String {
    let id = e.split_key();
    e.ok(
        ROOT,
        "CreateAlias",
        json!({ "AliasName": "alias/pairs", "TargetKeyId": id }),
    );
    id
}

#[test]
fn data_key_pairs_match_their_halves_and_the_sealed_private_key_decrypts() {
    let e = env();
    let id = symmetric_key(&e);
    let ctx = json!({ "purpose": "pairs" });
    let specs = [
        ("RSA_2048", "RSA_2048"),
        ("ECC_NIST_P256", "secp256r1"),
        ("ECC_NIST_P384", "secp384r1"),
        ("ECC_NIST_P521", "secp521r1"),
        ("ECC_SECG_P256K1", "secp256k1"),
        ("ECC_NIST_EDWARDS25519", "ed25519"),
    ];
    let mut pairs = Vec::new();
    let mut outputs = Vec::new();
    for (spec, _) in specs {
        let v = e.ok(
            ALICE,
            "GenerateDataKeyPair",
            json!({ "KeyId": "alias/pairs", "KeyPairSpec": spec, "EncryptionContext": ctx }),
        );
        assert_eq!(v["KeyPairSpec"], spec);
        assert!(v["KeyId"].as_str().unwrap().ends_with(&id));
        // The sealed private key is a KMS ciphertext: Decrypt opens it, with the
        // context and only with it.
        let blob = v["PrivateKeyCiphertextBlob"].as_str().unwrap();
        let opened = e.ok(
            ALICE,
            "Decrypt",
            json!({ "CiphertextBlob": blob, "EncryptionContext": ctx }),
        );
        assert_eq!(opened["Plaintext"], v["PrivateKeyPlaintext"], "{spec}");
        assert_kind(
            &e.fails(ALICE, "Decrypt", json!({ "CiphertextBlob": blob })),
            ErrorKind::InvalidCiphertext,
        );
        pairs.push(json!({ "private": v["PrivateKeyPlaintext"], "public": v["PublicKey"] }));
        outputs.push(v);

        // Without plaintext: no private key in the response, and the sealed one opens
        // to the private half of the returned public key.
        let w = e.ok(
            ALICE,
            "GenerateDataKeyPairWithoutPlaintext",
            json!({ "KeyId": id, "KeyPairSpec": spec, "EncryptionContext": ctx }),
        );
        assert!(w.get("PrivateKeyPlaintext").is_none());
        let opened = e.ok(
            ALICE,
            "Decrypt",
            json!({ "CiphertextBlob": w["PrivateKeyCiphertextBlob"], "EncryptionContext": ctx }),
        );
        pairs.push(json!({ "private": opened["Plaintext"], "public": w["PublicKey"] }));
        outputs.push(w);
    }
    let kinds = py(CHECK_PAIRS, &json!(pairs));
    let want: Vec<&str> = specs.iter().flat_map(|(_, k)| [*k, *k]).collect();
    assert_eq!(kinds, json!(want));
    let mut named: Vec<(&str, &Value)> = Vec::new();
    for (i, v) in outputs.iter().enumerate() {
        let op = if i % 2 == 0 {
            "GenerateDataKeyPair"
        } else {
            "GenerateDataKeyPairWithoutPlaintext"
        };
        named.push((op, v));
    }
    assert_valid_outputs(&named);
}

#[test]
fn data_key_pairs_refuse_bad_specs_disabled_keys_and_callers_without_permission() {
    let e = env();
    let id = symmetric_key(&e);
    let req = |spec: &str| json!({ "KeyId": id, "KeyPairSpec": spec });
    assert_kind(
        &e.fails(ALICE, "GenerateDataKeyPair", req("RSA_1024")),
        ErrorKind::Validation,
    );
    assert_kind(
        &e.fails(ALICE, "GenerateDataKeyPair", json!({ "KeyId": id })),
        ErrorKind::Validation,
    );
    for spec in ["SM2", "ML_KEM_768"] {
        assert_kind(
            &e.fails(ALICE, "GenerateDataKeyPair", req(spec)),
            ErrorKind::UnsupportedOperation,
        );
    }
    // Bob is in no statement and holds no grant; the admin has no GenerateDataKey*.
    for who in [BOB, ADMIN] {
        assert_kind(
            &e.fails(who, "GenerateDataKeyPair", req("ECC_NIST_P256")),
            ErrorKind::AccessDenied,
        );
    }
    // A grant for GenerateDataKey alone does not cover the pair operations.
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["GenerateDataKey"] }),
    );
    assert_kind(
        &e.fails(BOB, "GenerateDataKeyPair", req("ECC_NIST_P256")),
        ErrorKind::AccessDenied,
    );
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["GenerateDataKeyPairWithoutPlaintext"] }),
    );
    e.ok(
        BOB,
        "GenerateDataKeyPairWithoutPlaintext",
        req("ECC_NIST_P256"),
    );
    assert_kind(
        &e.fails(BOB, "GenerateDataKeyPair", req("ECC_NIST_P256")),
        ErrorKind::AccessDenied,
    );
    // kms:DataKeyPairSpec: a Deny on RSA pairs leaves ECC pairs alone.
    let policy: Value = serde_json::from_str(&split_policy()).unwrap();
    let mut policy = policy;
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "NoRsaPairs", "Effect": "Deny", "Principal": "*",
        "Action": "kms:GenerateDataKeyPair*", "Resource": "*",
        "Condition": { "StringLike": { "kms:DataKeyPairSpec": "RSA_*" } }
    }));
    e.ok(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "PolicyName": "default", "Policy": policy.to_string() }),
    );
    assert_kind(
        &e.fails(ALICE, "GenerateDataKeyPair", req("RSA_2048")),
        ErrorKind::AccessDenied,
    );
    e.ok(ALICE, "GenerateDataKeyPair", req("ECC_NIST_P256"));
    // DryRun answers after authorization and the key state.
    assert_kind(
        &e.fails(
            ALICE,
            "GenerateDataKeyPair",
            json!({ "KeyId": id, "KeyPairSpec": "ECC_NIST_P256", "DryRun": true }),
        ),
        ErrorKind::DryRunOperation,
    );
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": id }));
    assert_kind(
        &e.fails(ALICE, "GenerateDataKeyPair", req("ECC_NIST_P256")),
        ErrorKind::Disabled,
    );
    // The audit records the spec asked for (never the private key).
    let audit = e.audit_text();
    assert!(audit.contains("GenerateDataKeyPair"));
    assert!(!audit.contains("PrivateKeyPlaintext"));
}

/// A key policy that lets alice use the key for `actions`, the admin administer it, and
/// the account delegate to IAM.
fn use_policy(actions: &[&str]) -> String {
    let mut policy: Value = serde_json::from_str(&split_policy()).unwrap();
    policy["Statement"][2]["Action"] = json!(actions);
    policy.to_string()
}

fn create(e: &Env, spec: &str, usage: &str, actions: &[&str]) -> String {
    let v = e.ok(
        ROOT,
        "CreateKey",
        json!({ "KeySpec": spec, "KeyUsage": usage, "Policy": use_policy(actions) }),
    );
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

#[test]
fn hmac_keys_generate_and_verify_macs_of_their_algorithm_only() {
    let e = env();
    let msg = b64(b"the message a MAC protects");
    let mut outputs = Vec::new();
    for (spec, alg, len) in [
        ("HMAC_224", "HMAC_SHA_224", 28),
        ("HMAC_256", "HMAC_SHA_256", 32),
        ("HMAC_384", "HMAC_SHA_384", 48),
        ("HMAC_512", "HMAC_SHA_512", 64),
    ] {
        let id = create(
            &e,
            spec,
            "GENERATE_VERIFY_MAC",
            &["kms:GenerateMac", "kms:VerifyMac", "kms:DescribeKey"],
        );
        let d = e.ok(ALICE, "DescribeKey", json!({ "KeyId": id }));
        assert_eq!(d["KeyMetadata"]["MacAlgorithms"], json!([alg]));
        let g = e.ok(
            ALICE,
            "GenerateMac",
            json!({ "KeyId": id, "Message": msg, "MacAlgorithm": alg }),
        );
        assert_eq!(g["MacAlgorithm"], alg);
        assert!(g["KeyId"].as_str().unwrap().ends_with(&id));
        let mac = unb64(g["Mac"].as_str().unwrap());
        assert_eq!(mac.len(), len, "{spec}");
        // HMAC is deterministic: the same message gives the same MAC.
        let again = e.ok(
            ALICE,
            "GenerateMac",
            json!({ "KeyId": id, "Message": msg, "MacAlgorithm": alg }),
        );
        assert_eq!(again["Mac"], g["Mac"]);
        let v = e.ok(
            ALICE,
            "VerifyMac",
            json!({ "KeyId": id, "Message": msg, "MacAlgorithm": alg, "Mac": g["Mac"] }),
        );
        assert_eq!(v["MacValid"], true);
        assert_eq!(v["MacAlgorithm"], alg);
        // A MAC with one bit changed, a truncated one, or another message: refused.
        let mut bad = mac.clone();
        bad[0] ^= 1;
        for (m, t) in [
            (msg.clone(), b64(&bad)),
            (msg.clone(), b64(&mac[..len - 1])),
            (
                b64(b"another message"),
                g["Mac"].as_str().unwrap().to_string(),
            ),
        ] {
            assert_kind(
                &e.fails(
                    ALICE,
                    "VerifyMac",
                    json!({ "KeyId": id, "Message": m, "MacAlgorithm": alg, "Mac": t }),
                ),
                ErrorKind::KmsInvalidMac,
            );
        }
        // Another algorithm than the key spec's: InvalidKeyUsageException.
        let other = if alg == "HMAC_SHA_256" {
            "HMAC_SHA_512"
        } else {
            "HMAC_SHA_256"
        };
        assert_kind(
            &e.fails(
                ALICE,
                "GenerateMac",
                json!({ "KeyId": id, "Message": msg, "MacAlgorithm": other }),
            ),
            ErrorKind::InvalidKeyUsage,
        );
        outputs.push(("GenerateMac", g));
        outputs.push(("VerifyMac", v));
    }
    let named: Vec<(&str, &Value)> = outputs.iter().map(|(o, v)| (*o, v)).collect();
    assert_valid_outputs(&named);
    // The message and the MAC never reach the audit log.
    assert!(!e.audit_text().contains(&msg));
}

#[test]
fn mac_operations_refuse_wrong_usage_state_policy_and_grants() {
    let e = env();
    let id = create(&e, "HMAC_256", "GENERATE_VERIFY_MAC", &["kms:GenerateMac"]);
    let msg = b64(b"m");
    let gen = |who| {
        e.call(
            who,
            "GenerateMac",
            json!({ "KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256" }),
        )
    };
    let mac = gen(ALICE).unwrap()["Mac"].as_str().unwrap().to_string();
    let verify = json!({ "KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_256", "Mac": mac });
    // Alice may generate but not verify; bob may do neither.
    assert_kind(
        &e.fails(ALICE, "VerifyMac", verify.clone()),
        ErrorKind::AccessDenied,
    );
    assert_kind(&gen(BOB).unwrap_err(), ErrorKind::AccessDenied);
    // A grant for VerifyMac lets bob verify, not generate.
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["VerifyMac"] }),
    );
    e.ok(BOB, "VerifyMac", verify.clone());
    assert_kind(&gen(BOB).unwrap_err(), ErrorKind::AccessDenied);
    // A grant may not list operations an HMAC key cannot do.
    assert_kind(
        &e.fails(
            ADMIN,
            "CreateGrant",
            json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["Encrypt"] }),
        ),
        ErrorKind::Validation,
    );
    // Out-of-range inputs.
    for bad in [
        json!({ "KeyId": id, "Message": "", "MacAlgorithm": "HMAC_SHA_256" }),
        json!({ "KeyId": id, "Message": b64(&[0u8; 4097]), "MacAlgorithm": "HMAC_SHA_256" }),
        json!({ "KeyId": id, "Message": msg, "MacAlgorithm": "HMAC_SHA_1" }),
        json!({ "KeyId": id, "Message": msg }),
    ] {
        assert_kind(&e.fails(ALICE, "GenerateMac", bad), ErrorKind::Validation);
    }
    // An HMAC key does not encrypt; a symmetric key does not MAC.
    assert_kind(
        &e.fails(ROOT, "Encrypt", json!({ "KeyId": id, "Plaintext": msg })),
        ErrorKind::InvalidKeyUsage,
    );
    let sym = e.split_key();
    assert_kind(
        &e.fails(
            ROOT,
            "GenerateMac",
            json!({ "KeyId": sym, "Message": msg, "MacAlgorithm": "HMAC_SHA_256" }),
        ),
        ErrorKind::InvalidKeyUsage,
    );
    // kms:MacAlgorithm in a Deny.
    let mut policy: Value = serde_json::from_str(&use_policy(&["kms:GenerateMac"])).unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "No256", "Effect": "Deny", "Principal": "*", "Action": "kms:GenerateMac",
        "Resource": "*", "Condition": { "StringEquals": { "kms:MacAlgorithm": "HMAC_SHA_256" } }
    }));
    e.ok(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "PolicyName": "default", "Policy": policy.to_string() }),
    );
    assert_kind(&gen(ALICE).unwrap_err(), ErrorKind::AccessDenied);
    // Disabled: DisabledException, after authorization.
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": id }));
    assert_kind(&e.fails(BOB, "VerifyMac", verify), ErrorKind::Disabled);
}

/// The peer's side of ECDH, done by `cryptography`: a fresh key pair on `curve`, and
/// the shared secret with kmsfs's public key (SPKI DER).
const PEER_ECDH: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
req = json.load(sys.stdin)
curve = {"ECC_NIST_P256": ec.SECP256R1(), "ECC_NIST_P384": ec.SECP384R1(),
         "ECC_NIST_P521": ec.SECP521R1()}[req["spec"]]
kms_public = serialization.load_der_public_key(base64.b64decode(req["kms_public"]))
peer = ec.generate_private_key(curve)
spki = peer.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
print(json.dumps({"peer_public": base64.b64encode(spki).decode(),
                  "shared": base64.b64encode(peer.exchange(ec.ECDH(), kms_public)).decode()}))
"#;

#[test]
fn derive_shared_secret_agrees_with_an_independent_peer() {
    let e = env();
    let mut outputs = Vec::new();
    let mut peer_p256 = String::new();
    for spec in ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"] {
        let id = create(
            &e,
            spec,
            "KEY_AGREEMENT",
            &[
                "kms:DeriveSharedSecret",
                "kms:GetPublicKey",
                "kms:DescribeKey",
            ],
        );
        let d = e.ok(ALICE, "DescribeKey", json!({ "KeyId": id }));
        assert_eq!(d["KeyMetadata"]["KeyAgreementAlgorithms"], json!(["ECDH"]));
        let kms_public = e.ok(ALICE, "GetPublicKey", json!({ "KeyId": id }))["PublicKey"].clone();
        let peer = py(
            PEER_ECDH,
            &json!({ "spec": spec, "kms_public": kms_public }),
        );
        let v = e.ok(
            ALICE,
            "DeriveSharedSecret",
            json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer["peer_public"] }),
        );
        assert_eq!(v["SharedSecret"], peer["shared"], "{spec}");
        assert_eq!(v["KeyAgreementAlgorithm"], "ECDH");
        assert_eq!(v["KeyOrigin"], "AWS_KMS");
        assert!(v["KeyId"].as_str().unwrap().ends_with(&id));
        if spec == "ECC_NIST_P256" {
            peer_p256 = peer["peer_public"].as_str().unwrap().to_string();
        } else {
            // A peer key on another curve is refused.
            assert_kind(
                &e.fails(
                    ALICE,
                    "DeriveSharedSecret",
                    json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer_p256 }),
                ),
                ErrorKind::Validation,
            );
        }
        outputs.push(v);
    }
    let named: Vec<(&str, &Value)> = outputs.iter().map(|v| ("DeriveSharedSecret", v)).collect();
    assert_valid_outputs(&named);
}

#[test]
fn derive_shared_secret_refuses_wrong_usage_state_policy_and_grants() {
    let e = env();
    let id = create(&e, "ECC_NIST_P256", "KEY_AGREEMENT", &["kms:GetPublicKey"]);
    let own = e.ok(ALICE, "GetPublicKey", json!({ "KeyId": id }))["PublicKey"].clone();
    let req = json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": own });
    // Alice may read the public key but not derive; a grant lets bob derive.
    assert_kind(
        &e.fails(ALICE, "DeriveSharedSecret", req.clone()),
        ErrorKind::AccessDenied,
    );
    assert_kind(
        &e.fails(BOB, "DeriveSharedSecret", req.clone()),
        ErrorKind::AccessDenied,
    );
    e.ok(
        ADMIN,
        "CreateGrant",
        json!({ "KeyId": id, "GranteePrincipal": arn("bob"), "Operations": ["DeriveSharedSecret"] }),
    );
    let v = e.ok(BOB, "DeriveSharedSecret", req.clone());
    assert_eq!(unb64(v["SharedSecret"].as_str().unwrap()).len(), 32);
    // Bad inputs.
    for bad in [
        json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDHE", "PublicKey": own }),
        json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(b"not a key") }),
        json!({ "KeyId": id, "KeyAgreementAlgorithm": "ECDH" }),
    ] {
        assert_kind(
            &e.fails(BOB, "DeriveSharedSecret", bad),
            ErrorKind::Validation,
        );
    }
    // Signing keys and symmetric keys do not agree on secrets.
    let signing = create(
        &e,
        "ECC_NIST_P256",
        "SIGN_VERIFY",
        &["kms:DeriveSharedSecret"],
    );
    let sym = e.split_key();
    for k in [signing, sym] {
        assert_kind(
            &e.fails(
                ROOT,
                "DeriveSharedSecret",
                json!({ "KeyId": k, "KeyAgreementAlgorithm": "ECDH", "PublicKey": own }),
            ),
            ErrorKind::InvalidKeyUsage,
        );
    }
    // A key agreement key does not make data key pairs or encrypt.
    assert_kind(
        &e.fails(
            ROOT,
            "GenerateDataKeyPair",
            json!({ "KeyId": id, "KeyPairSpec": "ECC_NIST_P256" }),
        ),
        ErrorKind::InvalidKeyUsage,
    );
    // kms:KeyAgreementAlgorithm in a Deny.
    let mut policy: Value = serde_json::from_str(&use_policy(&["kms:GetPublicKey"])).unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "NoEcdh", "Effect": "Deny", "Principal": "*", "Action": "kms:DeriveSharedSecret",
        "Resource": "*", "Condition": { "StringEquals": { "kms:KeyAgreementAlgorithm": "ECDH" } }
    }));
    e.ok(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "PolicyName": "default", "Policy": policy.to_string() }),
    );
    assert_kind(
        &e.fails(BOB, "DeriveSharedSecret", req.clone()),
        ErrorKind::AccessDenied,
    );
    e.ok(
        ROOT,
        "PutKeyPolicy",
        json!({ "KeyId": id, "PolicyName": "default", "Policy": use_policy(&["kms:DescribeKey"]) }),
    );
    e.ok(ADMIN, "DisableKey", json!({ "KeyId": id }));
    assert_kind(
        &e.fails(BOB, "DeriveSharedSecret", req),
        ErrorKind::Disabled,
    );
}

mod through_the_cli {
    use super::support::cli::{self, json as out_json, ok, service_error, Served};
    use base64::Engine as _;
    use serde_json::json;

    fn unb64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .unwrap()
    }

    /// Bob administers; alice may do `actions`.
    fn policy(s: &Served, name: &str, actions: &[&str]) -> String {
        let p = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": cli::arn("bob")},
                 "Action": ["kms:Create*", "kms:Describe*", "kms:Get*", "kms:Put*", "kms:Disable*",
                            "kms:Enable*", "kms:List*", "kms:Revoke*"],
                 "Resource": "*"},
                {"Sid": "Users", "Effect": "Allow", "Principal": {"AWS": cli::arn("alice")},
                 "Action": actions, "Resource": "*"}
            ]
        });
        let f = s.public_file(name, p.to_string().as_bytes());
        format!("file://{}", f.display())
    }

    fn create(s: &Served, spec: &str, usage: &str, policy: &str) -> String {
        ok(&s.as_uid(
            cli::BOB,
            &[
                "kms",
                "create-key",
                "--key-spec",
                spec,
                "--key-usage",
                usage,
                "--policy",
                policy,
                "--query",
                "KeyMetadata.KeyId",
                "--output",
                "text",
            ],
        ))
        .trim()
        .to_string()
    }

    fn fileb(s: &Served, name: &str, bytes: &[u8]) -> String {
        format!("fileb://{}", s.public_file(name, bytes).display())
    }

    #[test]
    fn mac_verbs_take_aws_cli_flags() {
        let s = Served::start("macs");
        let p = policy(&s, "mac-policy.json", &["kms:GenerateMac", "kms:VerifyMac"]);
        let key = create(&s, "HMAC_384", "GENERATE_VERIFY_MAC", &p);
        let msg = fileb(&s, "msg.bin", b"\x00\xffbinary message");
        let g = out_json(&s.as_uid(
            cli::ALICE,
            &[
                "kms",
                "generate-mac",
                "--key-id",
                &key,
                "--message",
                &msg,
                "--mac-algorithm",
                "HMAC_SHA_384",
            ],
        ));
        assert_eq!(g["MacAlgorithm"], "HMAC_SHA_384");
        let mac = unb64(g["Mac"].as_str().unwrap());
        assert_eq!(mac.len(), 48);
        let verify = |mac: &[u8]| {
            let f = fileb(&s, "mac.bin", mac);
            s.as_uid(
                cli::ALICE,
                &[
                    "kms",
                    "verify-mac",
                    "--key-id",
                    &key,
                    "--message",
                    &msg,
                    "--mac-algorithm",
                    "HMAC_SHA_384",
                    "--mac",
                    &f,
                ],
            )
        };
        let v = out_json(&verify(&mac));
        assert_eq!(v["MacValid"], true);
        let mut bad = mac.clone();
        bad[47] ^= 0x80;
        service_error(&verify(&bad), "KMSInvalidMacException", "VerifyMac");
        // aws-cli's own check of the enum, before sending.
        let o = s.as_uid(
            cli::ALICE,
            &[
                "kms",
                "generate-mac",
                "--key-id",
                &key,
                "--message",
                &msg,
                "--mac-algorithm",
                "HMAC_MD5",
            ],
        );
        assert_eq!(o.status.code(), Some(252), "{o:?}");
        // Carol holds nothing.
        service_error(
            &s.as_uid(
                cli::CAROL,
                &[
                    "kms",
                    "generate-mac",
                    "--key-id",
                    &key,
                    "--message",
                    &msg,
                    "--mac-algorithm",
                    "HMAC_SHA_384",
                ],
            ),
            "AccessDeniedException",
            "GenerateMac",
        );
    }

    #[test]
    fn data_key_pair_and_shared_secret_verbs_take_aws_cli_flags() {
        let s = Served::start("pairs");
        let key = s.create_key();
        let v = out_json(&s.as_uid(
            cli::ALICE,
            &[
                "kms",
                "generate-data-key-pair",
                "--key-id",
                &key,
                "--key-pair-spec",
                "ECC_NIST_P384",
                "--encryption-context",
                "purpose=cli",
            ],
        ));
        assert_eq!(v["KeyPairSpec"], "ECC_NIST_P384");
        let blob = fileb(
            &s,
            "private.sealed",
            &unb64(v["PrivateKeyCiphertextBlob"].as_str().unwrap()),
        );
        let opened = out_json(&s.as_uid(
            cli::ALICE,
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob,
                "--encryption-context",
                "purpose=cli",
            ],
        ));
        assert_eq!(opened["Plaintext"], v["PrivateKeyPlaintext"]);
        let w = out_json(&s.as_uid(
            cli::ALICE,
            &[
                "kms",
                "generate-data-key-pair-without-plaintext",
                "--key-id",
                &key,
                "--key-pair-spec",
                "RSA_2048",
            ],
        ));
        assert!(w.get("PrivateKeyPlaintext").is_none());
        assert!(w["PublicKey"].as_str().is_some());

        // Two KEY_AGREEMENT keys derive the same secret from each other's public keys.
        let p = policy(
            &s,
            "agree-policy.json",
            &["kms:DeriveSharedSecret", "kms:GetPublicKey"],
        );
        let a = create(&s, "ECC_NIST_P256", "KEY_AGREEMENT", &p);
        let b = create(&s, "ECC_NIST_P256", "KEY_AGREEMENT", &p);
        let public_of = |k: &str, name: &str| {
            let text = ok(&s.as_uid(
                cli::ALICE,
                &[
                    "kms",
                    "get-public-key",
                    "--key-id",
                    k,
                    "--query",
                    "PublicKey",
                    "--output",
                    "text",
                ],
            ));
            fileb(&s, name, &unb64(&text))
        };
        let (pa, pb) = (public_of(&a, "a.der"), public_of(&b, "b.der"));
        let derive = |k: &str, peer: &str| {
            out_json(&s.as_uid(
                cli::ALICE,
                &[
                    "kms",
                    "derive-shared-secret",
                    "--key-id",
                    k,
                    "--key-agreement-algorithm",
                    "ECDH",
                    "--public-key",
                    peer,
                ],
            ))
        };
        let ab = derive(&a, &pb);
        let ba = derive(&b, &pa);
        assert_eq!(ab["SharedSecret"], ba["SharedSecret"]);
        assert_eq!(unb64(ab["SharedSecret"].as_str().unwrap()).len(), 32);
        service_error(
            &s.as_uid(
                cli::CAROL,
                &[
                    "kms",
                    "derive-shared-secret",
                    "--key-id",
                    &a,
                    "--key-agreement-algorithm",
                    "ECDH",
                    "--public-key",
                    &pb,
                ],
            ),
            "AccessDeniedException",
            "DeriveSharedSecret",
        );
    }
}

#[test]
fn key_last_usage_comes_from_the_audit_log() {
    let e = env();
    let id = e.split_key();
    let last = |e: &Env| e.ok(ADMIN, "GetKeyLastUsage", json!({ "KeyId": id }));
    let fresh = last(&e);
    assert_eq!(fresh["KeyLastUsage"], json!({}));
    assert_eq!(fresh["KeyCreationDate"], json!(START));
    assert!(fresh["TrackingStartDate"].as_i64().unwrap() <= START);
    e.encrypt(ALICE, &id, b"x").unwrap();
    e.clock.advance(60);
    e.ok(
        ALICE,
        "GenerateDataKeyPairWithoutPlaintext",
        json!({ "KeyId": id, "KeyPairSpec": "ECC_NIST_P256" }),
    );
    // Refused and management calls are not use.
    e.fails(
        BOB,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x") }),
    );
    e.ok(ADMIN, "DescribeKey", json!({ "KeyId": id }));
    let v = last(&e);
    assert_eq!(
        v["KeyLastUsage"]["Operation"],
        "GenerateDataKeyPairWithoutPlaintext"
    );
    assert_eq!(v["KeyLastUsage"]["Timestamp"], json!(START + 60));
    assert!(v["KeyLastUsage"]["CloudTrailEventId"].as_str().is_some());
    assert!(v["KeyId"].as_str().unwrap().ends_with(&id));
    // Alice may use the key but not ask this; aliases are not accepted.
    assert_kind(
        &e.fails(ALICE, "GetKeyLastUsage", json!({ "KeyId": id })),
        ErrorKind::AccessDenied,
    );
    e.ok(
        ROOT,
        "CreateAlias",
        json!({ "AliasName": "alias/used", "TargetKeyId": id }),
    );
    assert_kind(
        &e.fails(ADMIN, "GetKeyLastUsage", json!({ "KeyId": "alias/used" })),
        ErrorKind::NotFound,
    );
    assert_valid_outputs(&[("GetKeyLastUsage", &fresh), ("GetKeyLastUsage", &v)]);
}

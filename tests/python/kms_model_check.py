"""Validates kmsfs's KMS responses against botocore's KMS model.

Driven by tests/kms_botocore_model.rs:

    python kms_model_check.py KMSFS_BINARY STORE_DIR WORK_DIR OPERATIONS_FILE

OPERATIONS_FILE lists the operations kmsfs implements (kms::operations::names), one
per line. The script runs a scripted sequence of real calls through `kmsfs kms VERB
--cli-input-json ... --debug` (the store opened directly), takes each response in its
wire form (the JSON the CLI's --debug prints before any output formatting), and checks
it against the operation's output shape in botocore's model, as loaded by
`botocore.session.get_session().get_service_model('kms')`:

- structures: no member the model does not name, every required member present;
- strings: type, enum values, min/max length; blobs: base64 that decodes, min/max;
- timestamps: epoch seconds (a JSON number, as the JSON 1.1 wire carries them);
- integers/longs: whole numbers in range; booleans; lists; maps;
- and botocore's own JSON parser must accept the body.

It fails when an operation kmsfs lists has no sample call here (so new operations get
one) or is neither in botocore's model nor a declared kmsfs extension. Prints one line
per validated call; exits 1 with every problem listed.
"""

import base64
import binascii
import json
import subprocess
import sys

import botocore.parsers
import botocore.session
from botocore import xform_name
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# kmsfs's own operations: not in AWS's model, so nothing to validate them against.
KMSFS_EXTENSIONS = {"Simulate", "WhoAmI"}

MODEL = botocore.session.get_session().get_service_model("kms")


def validate(shape, value, path, problems):
    """Appends to `problems` every way `value` (wire JSON) breaks `shape`."""
    t = shape.type_name
    meta = shape.metadata

    def bad(msg):
        problems.append(f"{path}: {msg}")

    if t == "structure":
        if not isinstance(value, dict):
            return bad(f"expected an object, got {type(value).__name__}")
        for name in value:
            if name not in shape.members:
                bad(f"member {name!r} is not in the model ({shape.name})")
        for name in shape.required_members:
            if name not in value:
                bad(f"required member {name!r} is missing")
        for name, member in shape.members.items():
            if name in value:
                validate(member, value[name], f"{path}.{name}", problems)
    elif t == "list":
        if not isinstance(value, list):
            return bad("expected a list")
        check_len(len(value), meta, bad)
        for i, item in enumerate(value):
            validate(shape.member, item, f"{path}[{i}]", problems)
    elif t == "map":
        if not isinstance(value, dict):
            return bad("expected a map")
        for k, v in value.items():
            validate(shape.key, k, f"{path}<key>", problems)
            validate(shape.value, v, f"{path}[{k!r}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            return bad(f"expected a string, got {value!r}")
        if shape.enum and value not in shape.enum:
            bad(f"{value!r} is not one of {shape.name}'s values {shape.enum}")
        check_len(len(value), meta, bad)
    elif t == "blob":
        if not isinstance(value, str):
            return bad("expected base64 text")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return bad("not valid base64")
        check_len(len(raw), meta, bad)
    elif t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(f"expected epoch seconds (a number), got {value!r}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return bad(f"expected a whole number, got {value!r}")
        if "min" in meta and value < meta["min"]:
            bad(f"{value} < min {meta['min']}")
        if "max" in meta and value > meta["max"]:
            bad(f"{value} > max {meta['max']}")
    elif t == "boolean":
        if not isinstance(value, bool):
            bad(f"expected a boolean, got {value!r}")
    elif t in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(f"expected a number, got {value!r}")
    else:
        bad(f"shape type {t} is not handled by this validator")


def check_len(n, meta, bad):
    if "min" in meta and n < meta["min"]:
        bad(f"length {n} < min {meta['min']}")
    if "max" in meta and n > meta["max"]:
        bad(f"length {n} > max {meta['max']}")


def validate_output(op, response):
    problems = []
    shape = MODEL.operation_model(op).output_shape
    if shape is None:
        if response not in ({}, None):
            problems.append(f"{op}: the model has no output, got {response!r}")
        return problems
    validate(shape, response, op, problems)
    # botocore's own parser (what boto3 and aws-cli run) must take the body.
    parser = botocore.parsers.create_parser("json")
    body = json.dumps(response).encode()
    try:
        parser.parse({"status_code": 200, "headers": {}, "body": body}, shape)
    except Exception as e:  # noqa: BLE001 - any parser failure is a finding
        problems.append(f"{op}: botocore's parser failed: {e!r}")
    return problems


class Runner:
    def __init__(self, kmsfs, store, work):
        self.kmsfs, self.store, self.work = kmsfs, store, work
        self.validated = set()
        self.problems = []

    def raw(self, op, request):
        verb = xform_name(op).replace("_", "-")
        args = [self.kmsfs, "--store", self.store, "kms", verb,
                "--cli-input-json", json.dumps(request),
                "--no-paginate", "--debug", "--output", "json"]
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{op} {request} failed ({p.returncode}): {p.stderr}")
        marker = f"kmsfs kms: {op} returned "
        for line in p.stderr.splitlines():
            if line.startswith(marker):
                return json.loads(line[len(marker):])
        raise SystemExit(f"{op}: no wire response in --debug output: {p.stderr}")

    def call(self, op, request):
        """One real call; its wire response is validated unless op is an extension."""
        response = self.raw(op, request)
        if op not in KMSFS_EXTENSIONS:
            found = validate_output(op, response)
            self.problems.extend(found)
            self.validated.add(op)
            print(f"{op}: {'ok' if not found else f'{len(found)} problem(s)'}")
        return response


def b64(data):
    return base64.b64encode(data).decode()


def wrap_oaep_sha256(public_der_b64, material):
    """Wraps import material with Python's `cryptography` (independent of kmsfs)."""
    public = serialization.load_der_public_key(base64.b64decode(public_der_b64))
    return public.encrypt(material, padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))


def samples(r, implemented):
    """The scripted sequence: every operation kmsfs implements gets at least one call.
    Steps for operations kmsfs does not list (yet) are skipped."""
    has = implemented.__contains__
    key = r.call("CreateKey", {"Description": "model check",
                               "Tags": [{"TagKey": "team", "TagValue": "model"}]})["KeyMetadata"]["KeyId"]
    key2 = r.call("CreateKey", {})["KeyMetadata"]
    # uid 0 on a store opened directly acts as the account root.
    principal = f"arn:aws:iam::{key2['AWSAccountId']}:root"
    key2 = key2["KeyId"]
    r.call("DescribeKey", {"KeyId": key})
    r.call("ListKeys", {"Limit": 10})
    r.call("UpdateKeyDescription", {"KeyId": key, "Description": "model check 2"})
    r.call("DisableKey", {"KeyId": key})
    r.call("EnableKey", {"KeyId": key})
    r.call("EnableKeyRotation", {"KeyId": key})
    r.call("GetKeyRotationStatus", {"KeyId": key})
    r.call("RotateKeyOnDemand", {"KeyId": key})
    r.call("ListKeyRotations", {"KeyId": key})
    r.call("DisableKeyRotation", {"KeyId": key})
    policy = r.call("GetKeyPolicy", {"KeyId": key, "PolicyName": "default"})["Policy"]
    r.call("PutKeyPolicy", {"KeyId": key, "PolicyName": "default", "Policy": policy})
    r.call("ListKeyPolicies", {"KeyId": key})
    r.call("TagResource", {"KeyId": key, "Tags": [{"TagKey": "env", "TagValue": "test"}]})
    r.call("UntagResource", {"KeyId": key, "TagKeys": ["env"]})
    r.call("ListResourceTags", {"KeyId": key})
    r.call("CreateAlias", {"AliasName": "alias/model-check", "TargetKeyId": key})
    r.call("UpdateAlias", {"AliasName": "alias/model-check", "TargetKeyId": key2})
    r.call("ListAliases", {})
    r.call("ListAliases", {"KeyId": key2})
    r.call("DeleteAlias", {"AliasName": "alias/model-check"})

    grant = r.call("CreateGrant", {"KeyId": key, "GranteePrincipal": principal,
                                   "RetiringPrincipal": principal, "Operations": ["Decrypt", "Encrypt"],
                                   "Constraints": {"EncryptionContextSubset": {"app": "model"}},
                                   "Name": "model-check"})
    grant2 = r.call("CreateGrant", {"KeyId": key, "GranteePrincipal": principal,
                                    "Operations": ["Encrypt"]})
    r.call("ListGrants", {"KeyId": key})
    r.call("ListRetirableGrants", {"RetiringPrincipal": principal})
    r.call("RetireGrant", {"KeyId": key, "GrantId": grant["GrantId"]})
    r.call("RevokeGrant", {"KeyId": key, "GrantId": grant2["GrantId"]})

    ct = r.call("Encrypt", {"KeyId": key, "Plaintext": b64(b"model"),
                            "EncryptionContext": {"app": "model"}})["CiphertextBlob"]
    r.call("Decrypt", {"CiphertextBlob": ct, "EncryptionContext": {"app": "model"}})
    r.call("ReEncrypt", {"CiphertextBlob": ct, "SourceEncryptionContext": {"app": "model"},
                         "DestinationKeyId": key2})
    r.call("GenerateDataKey", {"KeyId": key, "KeySpec": "AES_256"})
    r.call("GenerateDataKeyWithoutPlaintext", {"KeyId": key, "NumberOfBytes": 32})
    r.call("GenerateRandom", {"NumberOfBytes": 16})

    ext = r.call("CreateKey", {"Origin": "EXTERNAL"})["KeyMetadata"]["KeyId"]
    params = r.call("GetParametersForImport", {"KeyId": ext, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                                               "WrappingKeySpec": "RSA_2048"})
    wrapped = wrap_oaep_sha256(params["PublicKey"], bytes(range(32)))
    r.call("ImportKeyMaterial", {"KeyId": ext, "ImportToken": params["ImportToken"],
                                 "EncryptedKeyMaterial": b64(wrapped),
                                 "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
    r.call("DescribeKey", {"KeyId": ext})
    r.call("DeleteImportedKeyMaterial", {"KeyId": ext})

    # Issue 15's operations (asymmetric, HMAC, data key pairs): run once kmsfs lists them.
    if has("Sign") or has("Verify") or has("GetPublicKey"):
        sk = r.call("CreateKey", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"})["KeyMetadata"]["KeyId"]
        r.call("DescribeKey", {"KeyId": sk})
        if has("GetPublicKey"):
            r.call("GetPublicKey", {"KeyId": sk})
        if has("Sign"):
            sig = r.call("Sign", {"KeyId": sk, "Message": b64(b"model"), "MessageType": "RAW",
                                  "SigningAlgorithm": "ECDSA_SHA_256"})["Signature"]
            if has("Verify"):
                r.call("Verify", {"KeyId": sk, "Message": b64(b"model"), "MessageType": "RAW",
                                  "SigningAlgorithm": "ECDSA_SHA_256", "Signature": sig})
    if has("GenerateMac") or has("VerifyMac"):
        hk = r.call("CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"})["KeyMetadata"]["KeyId"]
        mac = r.call("GenerateMac", {"KeyId": hk, "Message": b64(b"model"),
                                     "MacAlgorithm": "HMAC_SHA_256"})["Mac"]
        if has("VerifyMac"):
            r.call("VerifyMac", {"KeyId": hk, "Message": b64(b"model"),
                                 "MacAlgorithm": "HMAC_SHA_256", "Mac": mac})
    if has("GenerateDataKeyPair"):
        r.call("GenerateDataKeyPair", {"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"})
    if has("GenerateDataKeyPairWithoutPlaintext"):
        r.call("GenerateDataKeyPairWithoutPlaintext", {"KeyId": key, "KeyPairSpec": "RSA_2048"})
    if has("Encrypt") and has("GetPublicKey"):
        rk = r.call("CreateKey", {"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"})["KeyMetadata"]["KeyId"]
        rct = r.call("Encrypt", {"KeyId": rk, "Plaintext": b64(b"model"),
                                 "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})["CiphertextBlob"]
        r.call("Decrypt", {"KeyId": rk, "CiphertextBlob": rct, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
    if has("DeriveSharedSecret"):
        ak = r.call("CreateKey", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"})["KeyMetadata"]["KeyId"]
        peer = r.raw("GetPublicKey", {"KeyId": ak})["PublicKey"]
        r.call("DeriveSharedSecret", {"KeyId": ak, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer})
    if has("GetKeyLastUsage"):
        r.call("GetKeyLastUsage", {"KeyId": key})

    r.call("ScheduleKeyDeletion", {"KeyId": key2, "PendingWindowInDays": 7})
    r.call("CancelKeyDeletion", {"KeyId": key2})
    # Every list response's paging members, on a short page.
    r.call("ListKeys", {"Limit": 1})


def self_test():
    """The validator must see what it claims to check, or its silence proves nothing."""
    bad = {
        "unknown member": ("DescribeKey", {"KeyMetadata": {"KeyId": "k", "Colour": "red"}}),
        "missing required": ("DescribeKey", {"KeyMetadata": {"Arn": "a"}}),
        "wrong enum": ("DescribeKey", {"KeyMetadata": {"KeyId": "k", "KeyState": "Happy"}}),
        "iso timestamp": ("DescribeKey", {"KeyMetadata": {"KeyId": "k", "CreationDate": "2024-01-01"}}),
        "bad base64": ("GenerateRandom", {"Plaintext": "not base64!"}),
        "blob too long": ("GenerateRandom", {"Plaintext": b64(bytes(5000))}),
        "string for bool": ("GetKeyRotationStatus", {"KeyRotationEnabled": "true"}),
        "number as string": ("GetKeyRotationStatus", {"KeyRotationEnabled": True,
                                                       "RotationPeriodInDays": "90"}),
        "list expected": ("ListKeys", {"Keys": {"KeyId": "k"}}),
        "output where none": ("EnableKey", {"Ok": True}),
    }
    for name, (op, response) in bad.items():
        if not validate_output(op, response):
            raise SystemExit(f"validator self-test: {name} ({op}) was not reported")
    good = ("DescribeKey", {"KeyMetadata": {"KeyId": "k", "CreationDate": 1700000000,
                                            "KeyState": "Enabled", "Enabled": True}})
    if validate_output(*good):
        raise SystemExit(f"validator self-test: a valid response was refused: {validate_output(*good)}")


def main():
    self_test()
    kmsfs, store, work, ops_file = sys.argv[1:5]
    with open(ops_file) as f:
        implemented = [line.strip() for line in f if line.strip()]
    model_ops = set(MODEL.operation_names)
    problems = []
    for op in implemented:
        if op not in model_ops and op not in KMSFS_EXTENSIONS:
            problems.append(f"{op}: neither in botocore's KMS model nor a declared kmsfs extension")
    r = Runner(kmsfs, store, work)
    samples(r, set(implemented))
    problems.extend(r.problems)
    for op in implemented:
        if op in model_ops and op not in r.validated:
            problems.append(f"{op}: kmsfs implements it but this script has no sample call for it")
    print(f"validated {len(r.validated)} operations against botocore "
          f"{botocore.__version__}'s KMS model")
    if problems:
        print("\n".join(["PROBLEMS:"] + problems))
        sys.exit(1)


if __name__ == "__main__":
    main()

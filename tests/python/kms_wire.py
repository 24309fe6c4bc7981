#!/usr/bin/env python3
"""boto3 scenarios against `kmsfs serve --listen`, run by tests/wire_aws_clients.rs.

Usage: kms_wire.py SCENARIO < config.json

The config (JSON on stdin): {"endpoint": URL, "region": "local",
"creds": {NAME: [AccessKeyId, SecretAccessKey], ...}, "arns": {NAME: ARN, ...}, ...} plus
what the scenario needs (a key policy, counts).

Prints one JSON object on stdout: {"steps": {STEP: OUTCOME, ...}, ...}, where an outcome
is {"ok": <the response without ResponseMetadata; bytes as base64>, "request_id": ID} or
{"error": <AWS error code>, "message": TEXT, "status": <HTTP status>}. The Rust test
asserts on these; this script asserts nothing itself, so that a failure is reported by
the test with the whole transcript. A step the rest depends on stops the scenario when it
fails ("aborted": STEP).
"""

import base64
import datetime
import json
import sys

import boto3
import botocore
import botocore.auth
from botocore.config import Config
from botocore.exceptions import ClientError


class Aborted(Exception):
    pass


def client(cfg, name, secret=None, access_key_id=None, **config):
    """A KMS client for the credentials named `name` (or the given ones), no retries:
    every outcome the test sees is the server's answer to exactly one request."""
    akid, real_secret = cfg["creds"].get(name, ["", ""])
    session = boto3.session.Session(
        aws_access_key_id=access_key_id or akid,
        aws_secret_access_key=secret or real_secret,
        region_name=cfg["region"],
    )
    return session.client(
        "kms",
        endpoint_url=cfg["endpoint"],
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=60,
            read_timeout=120,
            **config,
        ),
    )


def jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


class Run:
    def __init__(self):
        self.steps = {}
        self.extra = {}

    def call(self, step, fn, need=False, **params):
        """Calls `fn(**params)` and records its outcome under `step`; returns the
        response (None on an error). `need`: the scenario cannot go on without it."""
        if step in self.steps:
            raise ValueError(f"step named twice: {step}")
        try:
            response = fn(**params)
        except ClientError as e:
            self.record_error(step, e)
            if need:
                raise Aborted(step)
            return None
        meta = response.pop("ResponseMetadata", {})
        self.steps[step] = {"ok": jsonable(response), "request_id": meta.get("RequestId", "")}
        return response

    def quiet(self, step, fn, **params):
        """Like `call` with `need`, but records only a failure: for the many calls
        whose successes would drown the transcript."""
        try:
            return fn(**params)
        except ClientError as e:
            self.record_error(step, e)
            raise Aborted(step)

    def record_error(self, step, e):
        self.steps[step] = {
            "error": e.response.get("Error", {}).get("Code", ""),
            "message": e.response.get("Error", {}).get("Message", ""),
            "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        }

    def output(self):
        return dict(self.extra, steps=self.steps)


def new_key(run, bob, cfg, step="bob creates the key", policy=None):
    r = run.call(
        step,
        bob.create_key,
        need=True,
        Policy=policy or cfg["key_policy"],
        Description="kmsfs wire test",
    )
    return r["KeyMetadata"]["KeyId"]


def roles(cfg, run):
    """A key user and a key administrator, each only through an access key."""
    bob, alice, dave = (client(cfg, n) for n in ("bob", "alice", "dave"))
    key = new_key(run, bob, cfg)
    plain = cfg["plaintext"].encode()
    blob = run.call("alice encrypts", alice.encrypt, need=True, KeyId=key, Plaintext=plain)
    blob = blob["CiphertextBlob"]
    run.call("alice decrypts", alice.decrypt, CiphertextBlob=blob)
    run.call("bob decrypts", bob.decrypt, CiphertextBlob=blob)
    run.call("dave decrypts", dave.decrypt, CiphertextBlob=blob)
    run.call("bob describes the key", bob.describe_key, KeyId=key)
    run.call("bob enables rotation", bob.enable_key_rotation, KeyId=key)
    run.call("alice disables the key", alice.disable_key, KeyId=key)
    run.call("bob encrypts", bob.encrypt, KeyId=key, Plaintext=plain)
    run.extra["key"] = key


def grants(cfg, run):
    """The grants scenario of tests/cli_kms.rs, over HTTP: create, use with and without
    the grant token, list, retire, revoke."""
    bob, alice, carol, dave = (client(cfg, n) for n in ("bob", "alice", "carol", "dave"))
    arns = cfg["arns"]
    key = new_key(run, bob, cfg)
    blob = run.call(
        "alice encrypts", alice.encrypt, need=True, KeyId=key, Plaintext=b"for carol"
    )["CiphertextBlob"]
    run.call("carol decrypts before any grant", carol.decrypt, CiphertextBlob=blob)

    def grant(step):
        return run.call(
            step,
            bob.create_grant,
            need=True,
            KeyId=key,
            GranteePrincipal=arns["carol"],
            RetiringPrincipal=arns["alice"],
            Operations=["Decrypt"],
        )

    first = grant("bob grants carol Decrypt")
    run.call(
        "carol decrypts with the grant token",
        carol.decrypt,
        CiphertextBlob=blob,
        GrantTokens=[first["GrantToken"]],
    )
    run.call("carol decrypts without the token", carol.decrypt, CiphertextBlob=blob)
    run.call(
        "carol encrypts with the token",
        carol.encrypt,
        KeyId=key,
        Plaintext=b"x",
        GrantTokens=[first["GrantToken"]],
    )
    run.call("bob lists the grants", bob.list_grants, KeyId=key)
    retire = {"KeyId": key, "GrantId": first["GrantId"]}
    run.call("dave retires", dave.retire_grant, **retire)
    run.call("carol retires", carol.retire_grant, **retire)
    run.call("carol decrypts before the retirement", carol.decrypt, CiphertextBlob=blob)
    run.call("alice retires", alice.retire_grant, **retire)
    run.call("carol decrypts after the retirement", carol.decrypt, CiphertextBlob=blob)
    run.call("alice retires again", alice.retire_grant, **retire)

    second = grant("bob grants carol Decrypt again")
    run.call("carol decrypts with the second grant", carol.decrypt, CiphertextBlob=blob)
    revoke = {"KeyId": key, "GrantId": second["GrantId"]}
    run.call("alice revokes", alice.revoke_grant, **revoke)
    run.call("bob revokes", bob.revoke_grant, **revoke)
    run.call("carol decrypts after the revocation", carol.decrypt, CiphertextBlob=blob)
    run.call("bob lists the grants at the end", bob.list_grants, KeyId=key)
    run.extra["grant_ids"] = [first["GrantId"], second["GrantId"]]


def context(cfg, run):
    """Encryption-context conditions in the key policy and constraints in grants."""
    bob, alice, carol, dave = (client(cfg, n) for n in ("bob", "alice", "carol", "dave"))
    arns = cfg["arns"]
    key = new_key(run, bob, cfg)
    eng = {"dept": "eng"}
    blob = run.call(
        "alice encrypts with dept=eng",
        alice.encrypt,
        need=True,
        KeyId=key,
        Plaintext=b"eng data",
        EncryptionContext=eng,
    )["CiphertextBlob"]
    run.call(
        "alice encrypts with dept=sales",
        alice.encrypt,
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"dept": "sales"},
    )
    run.call("alice encrypts without a context", alice.encrypt, KeyId=key, Plaintext=b"x")
    run.call(
        "alice decrypts with dept=eng",
        alice.decrypt,
        CiphertextBlob=blob,
        EncryptionContext=eng,
    )
    run.call("alice decrypts without the context", alice.decrypt, CiphertextBlob=blob)

    run.call(
        "bob grants carol a subset constraint",
        bob.create_grant,
        need=True,
        KeyId=key,
        GranteePrincipal=arns["carol"],
        Operations=["Encrypt", "Decrypt"],
        Constraints={"EncryptionContextSubset": eng},
    )
    doc = {"dept": "eng", "doc": "1"}
    carols = run.call(
        "carol encrypts with a superset of the constraint",
        carol.encrypt,
        need=True,
        KeyId=key,
        Plaintext=b"carol's",
        EncryptionContext=doc,
    )["CiphertextBlob"]
    run.call(
        "carol encrypts with dept=sales",
        carol.encrypt,
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"dept": "sales", "doc": "1"},
    )
    run.call("carol encrypts without a context", carol.encrypt, KeyId=key, Plaintext=b"x")
    run.call(
        "carol decrypts her blob",
        carol.decrypt,
        CiphertextBlob=carols,
        EncryptionContext=doc,
    )

    run.call(
        "bob grants dave an equals constraint",
        bob.create_grant,
        need=True,
        KeyId=key,
        GranteePrincipal=arns["dave"],
        Operations=["Decrypt"],
        Constraints={"EncryptionContextEquals": doc},
    )
    run.call(
        "dave decrypts carol's blob with its exact context",
        dave.decrypt,
        CiphertextBlob=carols,
        EncryptionContext=doc,
    )
    run.call(
        "dave decrypts alice's blob with dept=eng only",
        dave.decrypt,
        CiphertextBlob=blob,
        EncryptionContext=eng,
    )


def states(cfg, run):
    """A disabled key and a key pending deletion refuse their users."""
    bob, alice = client(cfg, "bob"), client(cfg, "alice")
    key = new_key(run, bob, cfg)
    blob = run.call(
        "alice encrypts", alice.encrypt, need=True, KeyId=key, Plaintext=b"state"
    )["CiphertextBlob"]
    run.call("bob disables the key", bob.disable_key, need=True, KeyId=key)
    run.call("alice encrypts while disabled", alice.encrypt, KeyId=key, Plaintext=b"x")
    run.call("alice decrypts while disabled", alice.decrypt, CiphertextBlob=blob)
    run.call("bob describes the disabled key", bob.describe_key, KeyId=key)
    run.call("bob enables the key", bob.enable_key, need=True, KeyId=key)
    run.call("alice decrypts once enabled", alice.decrypt, CiphertextBlob=blob)
    run.call(
        "bob schedules the deletion",
        bob.schedule_key_deletion,
        need=True,
        KeyId=key,
        PendingWindowInDays=7,
    )
    run.call("alice encrypts while pending deletion", alice.encrypt, KeyId=key, Plaintext=b"x")
    run.call("alice decrypts while pending deletion", alice.decrypt, CiphertextBlob=blob)
    run.call("bob describes the key pending deletion", bob.describe_key, KeyId=key)
    run.call("bob cancels the deletion", bob.cancel_key_deletion, KeyId=key)
    run.call("bob describes the key after the cancellation", bob.describe_key, KeyId=key)


def signed_at(offset):
    """Patches botocore's SigV4 clock by `offset` (a timedelta) until restored."""
    real = botocore.auth.get_current_datetime

    def shifted(*args, **kwargs):
        return real(*args, **kwargs) + offset

    botocore.auth.get_current_datetime = shifted
    return real


def auth(cfg, run):
    """SigV4 rejections: each request differs from a good one in one respect."""
    good = client(cfg, "bob")
    run.call("a correctly signed request", good.list_keys, Limit=10)

    secret = cfg["creds"]["bob"][1]
    wrong = ("A" if secret[0] != "A" else "B") + secret[1:]
    run.call("a wrong secret", client(cfg, "bob", secret=wrong).list_keys, Limit=10)
    run.call(
        "an unknown access key id",
        client(cfg, "bob", access_key_id="AKIAZZZZZZZZZZZZZZZ2").list_keys,
        Limit=10,
    )
    run.call(
        "no signature at all",
        client(cfg, "bob", signature_version=botocore.UNSIGNED).list_keys,
        Limit=10,
    )

    for minutes, step in ((-20, "a request 20 minutes old"), (-14, "a request 14 minutes old")):
        real = signed_at(datetime.timedelta(minutes=minutes))
        try:
            run.call(step, client(cfg, "bob").list_keys, Limit=10)
        finally:
            botocore.auth.get_current_datetime = real

    # The body is changed after botocore signed it (same length, so Content-Length still
    # matches and only the signature can tell).
    tampered = client(cfg, "bob")
    changed = []

    def tamper(request, **_):
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        new = body.replace(b'"Limit": 10', b'"Limit": 11')
        changed.append(new != body)
        request.body = new

    tampered.meta.events.register("before-send.kms.ListKeys", tamper)
    run.call("a body tampered with after signing", tampered.list_keys, Limit=10)
    run.extra["tampered"] = changed


def many(cfg, run):
    """boto3 paginators over `count` keys and `count` grants on one key."""
    bob = client(cfg, "bob")
    count, page_size = cfg["count"], cfg["page_size"]
    created = [
        run.quiet(
            f"bob creates key {i}", bob.create_key, Policy=cfg["key_policy"], Description=f"paged {i}"
        )["KeyMetadata"]["KeyId"]
        for i in range(count)
    ]
    pages = list(bob.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": page_size}))
    run.extra["created_keys"] = created
    run.extra["listed_keys"] = [k["KeyId"] for p in pages for k in p["Keys"]]
    run.extra["key_pages"] = [len(p["Keys"]) for p in pages]

    key = created[0]
    grant_ids = [
        run.quiet(
            f"bob creates grant {i}",
            bob.create_grant,
            KeyId=key,
            GranteePrincipal=cfg["arns"]["carol"],
            Operations=["Decrypt"],
        )["GrantId"]
        for i in range(count)
    ]
    pages = list(
        bob.get_paginator("list_grants").paginate(
            KeyId=key, PaginationConfig={"PageSize": page_size}
        )
    )
    run.extra["created_grants"] = grant_ids
    run.extra["listed_grants"] = [g["GrantId"] for p in pages for g in p["Grants"]]
    run.extra["grant_pages"] = [len(p["Grants"]) for p in pages]


def one_call(cfg, run):
    """One ordinary call (while the test holds many idle connections open)."""
    run.call("bob lists keys", client(cfg, "bob").list_keys, Limit=5)


def asymmetric(cfg, run):
    """Issue 15's operations over HTTP: sign/verify with an ECC key, RSA public-key
    encryption, HMAC, data key pairs and ECDH, each cross-checked with `cryptography`
    (an implementation independent of kmsfs). The checks' results go to `extra` as
    booleans so the Rust test asserts them with the transcript."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    bob, alice, dave = (client(cfg, n) for n in ("bob", "alice", "dave"))
    policy = cfg["key_policy"]
    checks = run.extra.setdefault("checks", {})

    def create(step, spec, usage):
        r = run.call(step, bob.create_key, need=True, Policy=policy, KeySpec=spec, KeyUsage=usage)
        return r["KeyMetadata"]["KeyId"]

    # ECDSA P-256: Sign RAW and DIGEST, Verify valid and tampered, GetPublicKey.
    ecc = create("bob creates an ECC_NIST_P256 signing key", "ECC_NIST_P256", "SIGN_VERIFY")
    run.extra["sign_key"] = ecc
    message = b"kmsfs signs over http"
    digest = hashes.Hash(hashes.SHA256())
    digest.update(message)
    digest = digest.finalize()
    raw = run.call("alice signs RAW", alice.sign, need=True, KeyId=ecc, Message=message,
                   MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    dig = run.call("alice signs DIGEST", alice.sign, need=True, KeyId=ecc, Message=digest,
                   MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    run.call("alice verifies RAW", alice.verify, KeyId=ecc, Message=message, MessageType="RAW",
             Signature=raw, SigningAlgorithm="ECDSA_SHA_256")
    run.call("alice verifies DIGEST", alice.verify, KeyId=ecc, Message=digest,
             MessageType="DIGEST", Signature=dig, SigningAlgorithm="ECDSA_SHA_256")
    run.call("alice verifies a tampered message", alice.verify, KeyId=ecc,
             Message=message + b"!", MessageType="RAW", Signature=raw,
             SigningAlgorithm="ECDSA_SHA_256")
    pub = run.call("alice gets the public key", alice.get_public_key, need=True, KeyId=ecc)
    public = serialization.load_der_public_key(pub["PublicKey"])
    checks["public key is P-256"] = isinstance(public, ec.EllipticCurvePublicKey) and \
        public.curve.name == "secp256r1"
    for name, sig, data, algo in (
        ("RAW signature verifies in cryptography", raw, message, hashes.SHA256()),
        ("DIGEST signature verifies in cryptography", dig, digest,
         utils.Prehashed(hashes.SHA256())),
    ):
        try:
            public.verify(sig, data, ec.ECDSA(algo))
            checks[name] = True
        except InvalidSignature:
            checks[name] = False
    run.call("dave signs", dave.sign, KeyId=ecc, Message=message, MessageType="RAW",
             SigningAlgorithm="ECDSA_SHA_256")

    # RSA: encrypted outside kmsfs under the exported public key, decrypted by kmsfs.
    rsa_key = create("bob creates an RSA_2048 encryption key", "RSA_2048", "ENCRYPT_DECRYPT")
    pub = run.call("alice gets the RSA public key", alice.get_public_key, need=True,
                   KeyId=rsa_key)
    rsa_public = serialization.load_der_public_key(pub["PublicKey"])
    secret = b"sealed by cryptography"
    blob = rsa_public.encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                   algorithm=hashes.SHA256(), label=None))
    out = run.call("alice decrypts the RSA blob", alice.decrypt, KeyId=rsa_key,
                   CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    checks["RSA plaintext round-trips"] = bool(out) and out["Plaintext"] == secret

    # HMAC_256.
    mac_key = create("bob creates an HMAC_256 key", "HMAC_256", "GENERATE_VERIFY_MAC")
    mac = run.call("alice generates a MAC", alice.generate_mac, need=True, KeyId=mac_key,
                   Message=message, MacAlgorithm="HMAC_SHA_256")["Mac"]
    run.call("alice verifies the MAC", alice.verify_mac, KeyId=mac_key, Message=message,
             MacAlgorithm="HMAC_SHA_256", Mac=mac)
    run.call("bob reads the MAC key's last usage", bob.get_key_last_usage, KeyId=mac_key)
    run.call("alice verifies a tampered MAC", alice.verify_mac, KeyId=mac_key,
             Message=message, MacAlgorithm="HMAC_SHA_256", Mac=bytes([mac[0] ^ 1]) + mac[1:])

    # A data key pair under a symmetric key: the halves match, the sealed half decrypts.
    sym = new_key(run, bob, cfg, step="bob creates a symmetric key", policy=policy)
    pair = run.call("alice generates a data key pair", alice.generate_data_key_pair,
                    need=True, KeyId=sym, KeyPairSpec="ECC_NIST_P256")
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    checks["data key pair halves match"] = public_der == pair["PublicKey"]
    opened = run.call("alice decrypts the sealed private key", alice.decrypt,
                      CiphertextBlob=pair["PrivateKeyCiphertextBlob"])
    checks["sealed private key is the plaintext one"] = bool(opened) and \
        opened["Plaintext"] == pair["PrivateKeyPlaintext"]
    run.call("alice generates a data key pair without plaintext",
             alice.generate_data_key_pair_without_plaintext, KeyId=sym, KeyPairSpec="RSA_2048")

    # ECDH: kmsfs's shared secret equals the one `cryptography` derives.
    agree = create("bob creates an ECC_NIST_P256 agreement key", "ECC_NIST_P256", "KEY_AGREEMENT")
    pub = run.call("alice gets the agreement public key", alice.get_public_key, need=True,
                   KeyId=agree)
    mine = ec.generate_private_key(ec.SECP256R1())
    mine_der = mine.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    shared = run.call("alice derives a shared secret", alice.derive_shared_secret, KeyId=agree,
                      KeyAgreementAlgorithm="ECDH", PublicKey=mine_der)
    expected = mine.exchange(ec.ECDH(), serialization.load_der_public_key(pub["PublicKey"]))
    checks["ECDH secret equals cryptography's"] = bool(shared) and \
        shared["SharedSecret"] == expected


SCENARIOS = {
    "roles": roles,
    "grants": grants,
    "context": context,
    "states": states,
    "auth": auth,
    "many": many,
    "one_call": one_call,
    "asymmetric": asymmetric,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: kms_wire.py {{{'|'.join(SCENARIOS)}}} < config.json")
    cfg = json.load(sys.stdin)
    run = Run()
    try:
        SCENARIOS[sys.argv[1]](cfg, run)
    except Aborted as e:
        run.extra["aborted"] = str(e)
    json.dump(run.output(), sys.stdout)
    print()


if __name__ == "__main__":
    main()

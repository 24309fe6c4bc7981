//! The operation table's key-state gates checked against AWS's key state table ("Key
//! states of AWS KMS keys"), row by row. The rows name operations as AWS's documentation
//! does, so they are strings here on purpose. Kept apart from `operations.rs` (and not
//! in `states.rs`, which must not depend on the table) so each reads on one screen.

use super::gate_by_name;
use crate::kms::model::{KeyState, Origin};
use crate::kms::states::gate;

/// (operation, Enabled, Disabled, PendingImport, PendingDeletion) for an AWS_KMS key
/// ("-" means allowed), then the same for an EXTERNAL key. The AWS key state table.
const OK: &str = "-";
/// The row of the cryptographic operations: Enabled only, DisabledException when
/// disabled, KMSInvalidStateException when pending import or deletion.
const ENABLED_ONLY: [&str; 4] = [
    OK,
    "DisabledException",
    "KMSInvalidStateException",
    "KMSInvalidStateException",
];
const TABLE: &[(&str, [&str; 4], [&str; 4])] = &[
    (
        "Encrypt",
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "Decrypt",
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "GenerateDataKey",
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "CreateGrant",
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            "DisabledException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "CancelKeyDeletion",
        [
            "KMSInvalidStateException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
            OK,
        ],
        [
            "KMSInvalidStateException",
            "KMSInvalidStateException",
            "KMSInvalidStateException",
            OK,
        ],
    ),
    (
        "ScheduleKeyDeletion",
        [OK, OK, OK, "KMSInvalidStateException"],
        [OK, OK, OK, "KMSInvalidStateException"],
    ),
    (
        "CreateAlias",
        [OK, OK, OK, "KMSInvalidStateException"],
        [OK, OK, OK, "KMSInvalidStateException"],
    ),
    (
        "EnableKey",
        [
            OK,
            OK,
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            OK,
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "DisableKey",
        [
            OK,
            OK,
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
        [
            OK,
            OK,
            "KMSInvalidStateException",
            "KMSInvalidStateException",
        ],
    ),
    (
        "EnableKeyRotation",
        [
            OK,
            "DisabledException",
            "UnsupportedOperationException",
            "KMSInvalidStateException",
        ],
        ["UnsupportedOperationException"; 4],
    ),
    (
        "GetKeyRotationStatus",
        [OK, OK, OK, OK],
        ["UnsupportedOperationException"; 4],
    ),
    (
        "GetParametersForImport",
        ["UnsupportedOperationException"; 4],
        [OK, OK, OK, "KMSInvalidStateException"],
    ),
    (
        "DeleteImportedKeyMaterial",
        ["UnsupportedOperationException"; 4],
        [OK, OK, OK, OK],
    ),
    ("DescribeKey", [OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("PutKeyPolicy", [OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("RevokeGrant", [OK, OK, OK, OK], [OK, OK, OK, OK]),
    ("DeleteAlias", [OK, OK, OK, OK], [OK, OK, OK, OK]),
    // Issue 15's operations: every one that uses the key's material (or, for
    // GetPublicKey, hands out part of it) needs an Enabled key, as Encrypt does.
    ("Sign", ENABLED_ONLY, ENABLED_ONLY),
    ("Verify", ENABLED_ONLY, ENABLED_ONLY),
    ("GetPublicKey", ENABLED_ONLY, ENABLED_ONLY),
    ("GenerateMac", ENABLED_ONLY, ENABLED_ONLY),
    ("VerifyMac", ENABLED_ONLY, ENABLED_ONLY),
    ("GenerateDataKeyPair", ENABLED_ONLY, ENABLED_ONLY),
    (
        "GenerateDataKeyPairWithoutPlaintext",
        ENABLED_ONLY,
        ENABLED_ONLY,
    ),
    ("DeriveSharedSecret", ENABLED_ONLY, ENABLED_ONLY),
    // GetKeyLastUsage reads metadata kmsfs keeps about the key, not its material; it is
    // not in AWS's table, so it follows DescribeKey (every state).
    ("GetKeyLastUsage", [OK, OK, OK, OK], [OK, OK, OK, OK]),
];

#[test]
fn key_state_table_matches_aws() {
    let states = [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingImport,
        KeyState::PendingDeletion,
    ];
    for (op, aws_kms, external) in TABLE {
        for (origin, row) in [(Origin::AwsKms, aws_kms), (Origin::External, external)] {
            for (state, want) in states.iter().zip(row.iter()) {
                let rule = gate_by_name(op);
                let got = gate(rule, *state, origin)
                    .map(|(k, _)| k.aws_name())
                    .unwrap_or(OK);
                assert_eq!(got, *want, "{op} on a {origin:?} key in state {state:?}");
            }
        }
    }
}

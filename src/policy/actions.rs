//! The AWS KMS actions by name, each declared once with the facts policy evaluation
//! and the key service need about it: whether it is a data-plane operation, a grant
//! operation, an operation that takes an encryption context, and whether AWS lets
//! another account call it. Pure data: the key service's operation table
//! (`kms::operations`) builds on these declarations, adding handlers and key-state
//! gates; every list of operation names anywhere is derived from [`ALL`].
//!
//! Sources: "Grant operations" and "Using grant constraints" in the AWS KMS Developer
//! Guide, the `GrantConstraints` API reference, and "Cross-account access" (the
//! operations callable with a key in another account).

/// What a grant may list this action as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantUse {
    /// Not a grant operation.
    No,
    /// A grant operation valid on a symmetric encryption key.
    Symmetric,
    /// A grant operation valid only on asymmetric or HMAC keys (which operations a
    /// grant may list is decided per key type by `kms::keyspec::grant_operations`).
    OtherKeyType,
}

/// One KMS action (API operation or grant operation) and its classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// The operation name, as in `X-Amz-Target` and grant operation lists.
    pub name: &'static str,
    /// The IAM action, `kms:<name>` (or the kmsfs extension's own name).
    pub iam: &'static str,
    /// A data-plane operation on a symmetric key: one that yields or consumes
    /// plaintext. These are what the escalation guard protects.
    pub data: bool,
    pub grant: GrantUse,
    /// Takes an encryption context, so grant constraints (EncryptionContextEquals,
    /// EncryptionContextSubset) apply to it. A constrained grant may still list
    /// CreateGrant, RetireGrant and DescribeKey, which the constraint does not limit
    /// (CreateGrant passes it on to the grants it creates).
    pub context: bool,
    /// AWS KMS lets a principal of another account call it (given both policies).
    pub cross_account: bool,
}

/// Declares an action; the macro writes `kms:<name>` so the name is spelled once.
macro_rules! kms_action {
    ($name:literal) => {
        Action {
            name: $name,
            iam: concat!("kms:", $name),
            data: false,
            grant: GrantUse::No,
            context: false,
            cross_account: false,
        }
    };
}

impl Action {
    const fn data(mut self) -> Self {
        self.data = true;
        self.context = true;
        self
    }
    const fn grant(mut self) -> Self {
        self.grant = GrantUse::Symmetric;
        self
    }
    const fn other_key_type(mut self) -> Self {
        self.grant = GrantUse::OtherKeyType;
        self
    }
    const fn cross_account(mut self) -> Self {
        self.cross_account = true;
        self
    }
    /// A data operation that AWS lets a grant allow and another account call.
    const fn crypto(self) -> Self {
        self.data().grant().cross_account()
    }
}

// Key management.
pub const CREATE_KEY: Action = kms_action!("CreateKey");
pub const DESCRIBE_KEY: Action = kms_action!("DescribeKey").grant().cross_account();
pub const LIST_KEYS: Action = kms_action!("ListKeys");
pub const UPDATE_KEY_DESCRIPTION: Action = kms_action!("UpdateKeyDescription");
pub const ENABLE_KEY: Action = kms_action!("EnableKey");
pub const DISABLE_KEY: Action = kms_action!("DisableKey");
pub const SCHEDULE_KEY_DELETION: Action = kms_action!("ScheduleKeyDeletion");
pub const CANCEL_KEY_DELETION: Action = kms_action!("CancelKeyDeletion");
pub const ENABLE_KEY_ROTATION: Action = kms_action!("EnableKeyRotation");
pub const DISABLE_KEY_ROTATION: Action = kms_action!("DisableKeyRotation");
pub const GET_KEY_ROTATION_STATUS: Action = kms_action!("GetKeyRotationStatus");
pub const ROTATE_KEY_ON_DEMAND: Action = kms_action!("RotateKeyOnDemand");
pub const LIST_KEY_ROTATIONS: Action = kms_action!("ListKeyRotations");
pub const GET_KEY_POLICY: Action = kms_action!("GetKeyPolicy");
pub const PUT_KEY_POLICY: Action = kms_action!("PutKeyPolicy");
pub const LIST_KEY_POLICIES: Action = kms_action!("ListKeyPolicies");
pub const TAG_RESOURCE: Action = kms_action!("TagResource");
pub const UNTAG_RESOURCE: Action = kms_action!("UntagResource");
pub const LIST_RESOURCE_TAGS: Action = kms_action!("ListResourceTags");
// Aliases.
pub const CREATE_ALIAS: Action = kms_action!("CreateAlias");
pub const UPDATE_ALIAS: Action = kms_action!("UpdateAlias");
pub const DELETE_ALIAS: Action = kms_action!("DeleteAlias");
pub const LIST_ALIASES: Action = kms_action!("ListAliases");
// Grants.
pub const CREATE_GRANT: Action = kms_action!("CreateGrant").grant().cross_account();
pub const LIST_GRANTS: Action = kms_action!("ListGrants");
pub const LIST_RETIRABLE_GRANTS: Action = kms_action!("ListRetirableGrants");
pub const REVOKE_GRANT: Action = kms_action!("RevokeGrant");
pub const RETIRE_GRANT: Action = kms_action!("RetireGrant").grant().cross_account();
// Cryptography on symmetric keys. ReEncrypt is one API operation authorized as two
// actions, ReEncryptFrom (source key) and ReEncryptTo (destination key).
pub const ENCRYPT: Action = kms_action!("Encrypt").crypto();
pub const DECRYPT: Action = kms_action!("Decrypt").crypto();
pub const RE_ENCRYPT: Action = kms_action!("ReEncrypt");
pub const RE_ENCRYPT_FROM: Action = kms_action!("ReEncryptFrom").crypto();
pub const RE_ENCRYPT_TO: Action = kms_action!("ReEncryptTo").crypto();
pub const GENERATE_DATA_KEY: Action = kms_action!("GenerateDataKey").crypto();
pub const GENERATE_DATA_KEY_WITHOUT_PLAINTEXT: Action =
    kms_action!("GenerateDataKeyWithoutPlaintext").crypto();
pub const GENERATE_DATA_KEY_PAIR: Action = kms_action!("GenerateDataKeyPair").crypto();
pub const GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT: Action =
    kms_action!("GenerateDataKeyPairWithoutPlaintext").crypto();
pub const GENERATE_RANDOM: Action = kms_action!("GenerateRandom");
// Imported key material.
pub const GET_PARAMETERS_FOR_IMPORT: Action = kms_action!("GetParametersForImport");
pub const IMPORT_KEY_MATERIAL: Action = kms_action!("ImportKeyMaterial");
pub const DELETE_IMPORTED_KEY_MATERIAL: Action = kms_action!("DeleteImportedKeyMaterial");
// Operations of asymmetric and HMAC keys; AWS allows them across accounts.
pub const SIGN: Action = kms_action!("Sign").other_key_type().cross_account();
pub const VERIFY: Action = kms_action!("Verify").other_key_type().cross_account();
pub const GET_PUBLIC_KEY: Action = kms_action!("GetPublicKey").other_key_type().cross_account();
pub const GENERATE_MAC: Action = kms_action!("GenerateMac").other_key_type().cross_account();
pub const VERIFY_MAC: Action = kms_action!("VerifyMac").other_key_type().cross_account();
pub const DERIVE_SHARED_SECRET: Action = kms_action!("DeriveSharedSecret")
    .other_key_type()
    .cross_account();
// Key usage tracking (read from the audit log); not callable across accounts.
pub const GET_KEY_LAST_USAGE: Action = kms_action!("GetKeyLastUsage");
// kmsfs extensions: evaluated like the kms: actions, never grant operations.
pub const SIMULATE: Action = Action {
    name: "Simulate",
    iam: "kmsfs:Simulate",
    ..kms_action!("")
};
pub const WHO_AM_I: Action = Action {
    name: "WhoAmI",
    iam: "kmsfs:WhoAmI",
    ..kms_action!("")
};
/// The kmsfs action that allows bypassing the escalation guard on a key (an action,
/// never an operation one can call).
pub const BYPASS_ESCALATION_GUARD: Action = Action {
    name: "BypassEscalationGuard",
    iam: "kmsfs:BypassEscalationGuard",
    ..kms_action!("")
};

/// Every action, in the order lists derived from it are shown.
pub const ALL: &[Action] = &[
    CREATE_KEY,
    DESCRIBE_KEY,
    LIST_KEYS,
    UPDATE_KEY_DESCRIPTION,
    ENABLE_KEY,
    DISABLE_KEY,
    SCHEDULE_KEY_DELETION,
    CANCEL_KEY_DELETION,
    ENABLE_KEY_ROTATION,
    DISABLE_KEY_ROTATION,
    GET_KEY_ROTATION_STATUS,
    ROTATE_KEY_ON_DEMAND,
    LIST_KEY_ROTATIONS,
    GET_KEY_POLICY,
    PUT_KEY_POLICY,
    LIST_KEY_POLICIES,
    TAG_RESOURCE,
    UNTAG_RESOURCE,
    LIST_RESOURCE_TAGS,
    CREATE_ALIAS,
    UPDATE_ALIAS,
    DELETE_ALIAS,
    LIST_ALIASES,
    CREATE_GRANT,
    LIST_GRANTS,
    LIST_RETIRABLE_GRANTS,
    REVOKE_GRANT,
    RETIRE_GRANT,
    DECRYPT,
    ENCRYPT,
    GENERATE_DATA_KEY,
    GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
    RE_ENCRYPT,
    RE_ENCRYPT_FROM,
    RE_ENCRYPT_TO,
    GENERATE_DATA_KEY_PAIR,
    GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT,
    GENERATE_RANDOM,
    GET_PARAMETERS_FOR_IMPORT,
    IMPORT_KEY_MATERIAL,
    DELETE_IMPORTED_KEY_MATERIAL,
    SIGN,
    VERIFY,
    GET_PUBLIC_KEY,
    GENERATE_MAC,
    VERIFY_MAC,
    DERIVE_SHARED_SECRET,
    GET_KEY_LAST_USAGE,
    SIMULATE,
    WHO_AM_I,
    BYPASS_ESCALATION_GUARD,
];

/// The action named `name` (exact, as operation names are case-sensitive).
pub fn lookup(name: &str) -> Option<&'static Action> {
    ALL.iter().find(|a| a.name == name)
}

/// The action whose IAM name is `iam` (case-insensitive, as IAM action names are).
pub fn lookup_iam(iam: &str) -> Option<&'static Action> {
    ALL.iter().find(|a| a.iam.eq_ignore_ascii_case(iam))
}

/// Names of the actions that satisfy `pred`, in [`ALL`]'s order.
pub fn names(pred: impl Fn(&Action) -> bool) -> impl Iterator<Item = &'static str> {
    ALL.iter().filter(move |a| pred(a)).map(|a| a.name)
}

/// Whether grant constraints apply to the grant operation `op` (it takes an
/// encryption context).
pub fn takes_context(op: &str) -> bool {
    lookup(op).is_some_and(|a| a.context)
}

/// Whether AWS KMS lets another account call the operation `op` (case-insensitive).
pub fn cross_account_allowed(op: &str) -> bool {
    ALL.iter()
        .any(|a| a.cross_account && a.name.eq_ignore_ascii_case(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_declared_once() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(
                ALL.iter().skip(i + 1).all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
            assert!(a.iam.ends_with(a.name), "{} vs {}", a.iam, a.name);
        }
    }

    /// AWS's grant constraints apply exactly to the symmetric cryptographic operations
    /// (GrantConstraints API reference); DescribeKey, RetireGrant and CreateGrant are
    /// grant operations the constraints do not limit.
    #[test]
    fn context_operations_are_awss_list() {
        let ctx: Vec<&str> = names(|a| a.context).collect();
        assert_eq!(
            ctx,
            [
                "Decrypt",
                "Encrypt",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "ReEncryptFrom",
                "ReEncryptTo",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
            ]
        );
        for op in ["DescribeKey", "RetireGrant", "CreateGrant", "Sign"] {
            assert!(!takes_context(op), "{op}");
        }
        assert!(names(|a| a.data).eq(names(|a| a.context)));
    }

    #[test]
    fn cross_account_is_awss_list() {
        let mut got: Vec<&str> = names(|a| a.cross_account).collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "CreateGrant",
                "Decrypt",
                "DeriveSharedSecret",
                "DescribeKey",
                "Encrypt",
                "GenerateDataKey",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "GenerateDataKeyWithoutPlaintext",
                "GenerateMac",
                "GetPublicKey",
                "ReEncryptFrom",
                "ReEncryptTo",
                "RetireGrant",
                "Sign",
                "Verify",
                "VerifyMac",
            ]
        );
        assert!(cross_account_allowed("decrypt"));
        assert!(!cross_account_allowed("PutKeyPolicy"));
    }
}

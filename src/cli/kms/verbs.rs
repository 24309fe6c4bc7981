//! The verbs of `kmsfs kms`, each declared once in [`verbs!`]: the verb's name is the
//! AWS operation's name (clap spells it `create-key`, the request goes out as
//! `CreateKey`), its Args type serializes straight to the AWS request members, and the
//! row lists the members AWS requires and the checks aws-cli makes before sending.
//!
//! Args fields are named after the AWS members (`key_id` → `KeyId`); a value that needs
//! reading (file://, base64, shorthand maps) is converted by member name in `params`.

use super::checks::Rule;
use serde::Serialize;

/// An on/off flag pair (`--x` / `--no-x`) that sends its member only when given.
macro_rules! toggle {
    ($(#[$doc:meta])* $name:ident, $on:ident, $off:ident, $member:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            #[arg(long, conflicts_with = stringify!($off))]
            pub $on: bool,
            #[arg(long)]
            pub $off: bool,
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                match (self.$on, self.$off) {
                    (true, _) => m.serialize_entry($member, &true)?,
                    (_, true) => m.serialize_entry($member, &false)?,
                    _ => {}
                }
                m.end()
            }
        }
    };
}

toggle!(
    /// AWS's lockout safety check bypass.
    BypassLockout,
    bypass_policy_lockout_safety_check,
    no_bypass_policy_lockout_safety_check,
    "BypassPolicyLockoutSafetyCheck"
);
toggle!(MultiRegion, multi_region, no_multi_region, "MultiRegion");
toggle!(
    /// Check authorization and key state only: AWS answers DryRunOperationException
    /// when the request would have succeeded.
    DryRun,
    dry_run,
    no_dry_run,
    "DryRun"
);

/// Declares the verbs: `Operation(Args) needs [required members] checks [rules]
/// returns [response members]`.
macro_rules! verbs {
    ($(
        $(#[doc = $doc:literal])*
        $verb:ident($args:ty)
            needs [$($req:ident),*]
            checks [$($rule:expr),*]
            returns [$($out:ident),*];
    )*) => {
        /// The verbs, named as aws-cli names them.
        #[derive(Debug, Clone, clap::Subcommand)]
        pub enum KmsVerb {
            $( $(#[doc = $doc])* $verb($args), )*
        }

        impl KmsVerb {
            /// The AWS operation this verb calls.
            pub fn operation(&self) -> &'static str {
                match self { $( KmsVerb::$verb(_) => stringify!($verb), )* }
            }

            /// The request members given as flags, before conversion.
            pub fn flag_members(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $( KmsVerb::$verb(a) => serde_json::to_value(a), )* }
            }

            /// The members AWS requires.
            pub fn required(&self) -> &'static [&'static str] {
                match self { $( KmsVerb::$verb(_) => &[$(stringify!($req)),*], )* }
            }

            /// The checks aws-cli makes before sending.
            pub fn rules(&self) -> &'static [Rule] {
                match self { $( KmsVerb::$verb(_) => &[$($rule),*], )* }
            }

            /// The response's members (for `--generate-cli-skeleton output`).
            pub fn returns(&self) -> &'static [&'static str] {
                match self { $( KmsVerb::$verb(_) => &[$(stringify!($out)),*], )* }
            }
        }
    };
}

use super::checks::consts::*;

verbs! {
    /// Create a customer managed key (symmetric AES-256 unless --key-spec says otherwise).
    CreateKey(CreateKeyArgs) needs [] checks [CMK_SPEC, CMK_SPEC_OLD, KEY_USAGE, ORIGIN] returns [KeyMetadata];
    /// Show a key's metadata (id, ARN, state, usage, dates).
    DescribeKey(DescribeKeyArgs) needs [KeyId] checks [] returns [KeyMetadata];
    /// List the keys in the store.
    ListKeys(PageArgs) needs [] checks [LIMIT] returns [Keys, NextMarker, Truncated];
    /// Replace a key's description.
    UpdateKeyDescription(UpdateKeyDescriptionArgs) needs [KeyId, Description] checks [] returns [];
    /// Enable a disabled key.
    EnableKey(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Disable a key: every cryptographic operation with it fails until enabled.
    DisableKey(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Schedule a key's deletion after a 7 to 30 day waiting period.
    ScheduleKeyDeletion(ScheduleKeyDeletionArgs) needs [KeyId] checks [PENDING_WINDOW]
        returns [KeyId, DeletionDate, KeyState, PendingWindowInDays];
    /// Cancel a scheduled deletion (the key is left disabled, as in AWS).
    CancelKeyDeletion(KeyIdArgs) needs [KeyId] checks [] returns [KeyId];
    /// Turn on automatic yearly (or --rotation-period-in-days) rotation.
    EnableKeyRotation(EnableKeyRotationArgs) needs [KeyId] checks [ROTATION_PERIOD] returns [];
    /// Turn off automatic rotation.
    DisableKeyRotation(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Show whether automatic rotation is on and when it next runs.
    GetKeyRotationStatus(KeyIdArgs) needs [KeyId] checks []
        returns [KeyRotationEnabled, KeyId, RotationPeriodInDays, NextRotationDate, OnDemandRotationStartDate];
    /// Rotate a key's material now.
    RotateKeyOnDemand(KeyIdArgs) needs [KeyId] checks [] returns [KeyId];
    /// List a key's completed rotations.
    ListKeyRotations(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [Rotations, NextMarker, Truncated];
    /// Print a key's policy document.
    GetKeyPolicy(GetKeyPolicyArgs) needs [KeyId] checks [] returns [Policy, PolicyName];
    /// Replace a key's policy (runs AWS's lockout safety check and kmsfs's escalation guard).
    PutKeyPolicy(PutKeyPolicyArgs) needs [KeyId, Policy] checks [] returns [];
    /// List a key's policy names (always "default").
    ListKeyPolicies(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [PolicyNames, NextMarker, Truncated];
    /// Create an alias (alias/NAME) for a key.
    CreateAlias(AliasArgs) needs [AliasName, TargetKeyId] checks [] returns [];
    /// Point an alias at another key.
    UpdateAlias(AliasArgs) needs [AliasName, TargetKeyId] checks [] returns [];
    /// Delete an alias (the key is untouched).
    DeleteAlias(DeleteAliasArgs) needs [AliasName] checks [] returns [];
    /// List aliases, all or those of one key.
    ListAliases(ListAliasesArgs) needs [] checks [LIMIT] returns [Aliases, NextMarker, Truncated];
    /// Add or overwrite tags on a key.
    TagResource(TagResourceArgs) needs [KeyId, Tags] checks [] returns [];
    /// Remove tags from a key.
    UntagResource(UntagResourceArgs) needs [KeyId, TagKeys] checks [] returns [];
    /// List a key's tags.
    ListResourceTags(KeyPageArgs) needs [KeyId] checks [LIMIT] returns [Tags, NextMarker, Truncated];
    /// Allow a principal to use a key for the listed operations, optionally under encryption-context constraints.
    CreateGrant(CreateGrantArgs) needs [KeyId, GranteePrincipal, Operations] checks [] returns [GrantToken, GrantId];
    /// List the grants of a key.
    ListGrants(ListGrantsArgs) needs [KeyId] checks [LIMIT] returns [Grants, NextMarker, Truncated];
    /// List the grants a principal may retire.
    ListRetirableGrants(ListRetirableGrantsArgs) needs [RetiringPrincipal] checks [LIMIT]
        returns [Grants, NextMarker, Truncated];
    /// Delete a grant (key administrators).
    RevokeGrant(RevokeGrantArgs) needs [KeyId, GrantId] checks [] returns [];
    /// Delete a grant (its grantee or retiring principal).
    RetireGrant(RetireGrantArgs) needs [] checks [GRANT_TO_RETIRE] returns [];
    /// Encrypt up to 4 KiB of plaintext under a key.
    Encrypt(EncryptArgs) needs [KeyId, Plaintext] checks [ENCRYPTION_ALGORITHM]
        returns [CiphertextBlob, KeyId, EncryptionAlgorithm];
    /// Decrypt a ciphertext blob (the key is the one named inside the blob).
    Decrypt(DecryptArgs) needs [CiphertextBlob] checks [ENCRYPTION_ALGORITHM]
        returns [KeyId, Plaintext, EncryptionAlgorithm];
    /// Decrypt and re-encrypt under another key or context without exposing the plaintext.
    ReEncrypt(ReEncryptArgs) needs [CiphertextBlob, DestinationKeyId]
        checks [SOURCE_ENCRYPTION_ALGORITHM, DESTINATION_ENCRYPTION_ALGORITHM]
        returns [CiphertextBlob, SourceKeyId, KeyId, SourceEncryptionAlgorithm, DestinationEncryptionAlgorithm];
    /// Return a new data key in plaintext and encrypted under a key.
    GenerateDataKey(GenerateDataKeyArgs) needs [KeyId] checks [DATA_KEY_SPEC, DATA_KEY_BYTES]
        returns [CiphertextBlob, Plaintext, KeyId];
    /// Return a new data key encrypted under a key only.
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyArgs) needs [KeyId] checks [DATA_KEY_SPEC, DATA_KEY_BYTES]
        returns [CiphertextBlob, KeyId];
    /// Return random bytes.
    GenerateRandom(GenerateRandomArgs) needs [] checks [RANDOM_BYTES] returns [Plaintext];
    /// Get a wrapping public key and import token to import key material (Origin EXTERNAL keys).
    GetParametersForImport(GetParametersForImportArgs) needs [KeyId, WrappingAlgorithm, WrappingKeySpec] checks []
        returns [KeyId, ImportToken, PublicKey, ParametersValidTo];
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial(ImportKeyMaterialArgs) needs [KeyId, ImportToken, EncryptedKeyMaterial]
        checks [EXPIRATION_MODEL] returns [];
    /// Delete a key's imported material (the key becomes PendingImport).
    DeleteImportedKeyMaterial(KeyIdArgs) needs [KeyId] checks [] returns [];
    /// Sign a message (RAW, up to 4096 bytes) or a digest (DIGEST) with an asymmetric SIGN_VERIFY key.
    Sign(SignArgs) needs [KeyId, Message, SigningAlgorithm] checks [MESSAGE_TYPE, SIGNING_ALGORITHM]
        returns [KeyId, Signature, SigningAlgorithm];
    /// Verify a signature made with an asymmetric SIGN_VERIFY key.
    Verify(VerifyArgs) needs [KeyId, Message, Signature, SigningAlgorithm] checks [MESSAGE_TYPE, SIGNING_ALGORITHM]
        returns [KeyId, SignatureValid, SigningAlgorithm];
    /// Download the public key of an asymmetric key (DER SubjectPublicKeyInfo).
    GetPublicKey(DescribeKeyArgs) needs [KeyId] checks []
        returns [KeyId, PublicKey, CustomerMasterKeySpec, KeySpec, KeyUsage, EncryptionAlgorithms, SigningAlgorithms, KeyAgreementAlgorithms];
    /// kmsfs extension, runs locally: wrap key material under the PublicKey from
    /// get-parameters-for-import as AWS's import guide does with openssl (default
    /// RSAES_OAEP_SHA_256), giving the --encrypted-key-material for import-key-material.
    WrapKeyMaterial(WrapKeyMaterialArgs) needs [PublicKey, KeyMaterial] checks [] returns [EncryptedKeyMaterial];
    /// Compute the HMAC of up to 4 KiB with an HMAC key.
    GenerateMac(GenerateMacArgs) needs [Message, KeyId, MacAlgorithm] checks [MAC_ALGORITHM]
        returns [Mac, MacAlgorithm, KeyId];
    /// Check an HMAC against a message with an HMAC key (KMSInvalidMacException if it does not match).
    VerifyMac(VerifyMacArgs) needs [Message, KeyId, MacAlgorithm, Mac] checks [MAC_ALGORITHM]
        returns [KeyId, MacValid, MacAlgorithm];
    /// Return a new RSA or ECC key pair: the private key in plaintext (PKCS#8 DER) and
    /// encrypted under a symmetric key, and the public key (DER SubjectPublicKeyInfo).
    GenerateDataKeyPair(GenerateDataKeyPairArgs) needs [KeyId, KeyPairSpec] checks [KEY_PAIR_SPEC]
        returns [PrivateKeyCiphertextBlob, PrivateKeyPlaintext, PublicKey, KeyId, KeyPairSpec];
    /// Return a new key pair: the private key encrypted under a symmetric key only, and the public key.
    GenerateDataKeyPairWithoutPlaintext(GenerateDataKeyPairArgs) needs [KeyId, KeyPairSpec] checks [KEY_PAIR_SPEC]
        returns [PrivateKeyCiphertextBlob, PublicKey, KeyId, KeyPairSpec];
    /// ECDH between a KEY_AGREEMENT key's private key and a peer's public key; returns the raw shared secret.
    DeriveSharedSecret(DeriveSharedSecretArgs) needs [KeyId, KeyAgreementAlgorithm, PublicKey]
        checks [KEY_AGREEMENT_ALGORITHM] returns [KeyId, SharedSecret, KeyAgreementAlgorithm, KeyOrigin];
    /// The last successful cryptographic operation with a key (from the audit log).
    GetKeyLastUsage(KeyIdArgs) needs [KeyId] checks []
        returns [KeyId, KeyLastUsage, TrackingStartDate, KeyCreationDate];
}

// The Args structs below repeat `key_id`, `grant_tokens` and `dry_run` on purpose: the
// field order is both the order of `--help` and the order of the request's JSON members,
// and `key_id` stands first in some verbs and after the message or context in others
// (Decrypt, GenerateMac, VerifyMac, GenerateDataKeyPair, RetireGrant), with help texts
// that differ. One flattened struct would reorder one or the other.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PageArgs {
    /// How many items one response may hold (the service's page size).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<i64>,
    /// Where to continue: a previous response's NextMarker.
    #[arg(long)]
    pub marker: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateKeyArgs {
    /// The key policy (JSON text, or file://policy.json).
    #[arg(long)]
    pub policy: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// ENCRYPT_DECRYPT (default), GENERATE_VERIFY_MAC, ...
    #[arg(long)]
    pub key_usage: Option<String>,
    /// SYMMETRIC_DEFAULT (default), HMAC_256, ...
    #[arg(long)]
    pub key_spec: Option<String>,
    /// Deprecated alias of --key-spec, accepted as aws-cli does.
    #[arg(long)]
    pub customer_master_key_spec: Option<String>,
    /// AWS_KMS (default) or EXTERNAL (import your own material).
    #[arg(long)]
    pub origin: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub bypass: BypassLockout,
    /// TagKey=k,TagValue=v ... or JSON.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub multi_region: MultiRegion,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeKeyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateKeyDescriptionArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// 7 to 30 (default 30).
    #[arg(long, allow_negative_numbers = true)]
    pub pending_window_in_days: Option<i64>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnableKeyRotationArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// 90 to 2560 (default 365).
    #[arg(long, allow_negative_numbers = true)]
    pub rotation_period_in_days: Option<i64>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyPageArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long, default_value = "default")]
    pub policy_name: String,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutKeyPolicyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long, default_value = "default")]
    pub policy_name: String,
    /// The policy (JSON text, or file://policy.json).
    #[arg(long)]
    pub policy: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub bypass: BypassLockout,
    /// kmsfs extension: let a caller change the policy so that it grants itself more
    /// than it had (refused by default).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_self_escalation: bool,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasArgs {
    /// alias/...
    #[arg(long)]
    pub alias_name: Option<String>,
    #[arg(long)]
    pub target_key_id: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAliasArgs {
    #[arg(long)]
    pub alias_name: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesArgs {
    #[arg(long)]
    pub key_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// TagKey=k,TagValue=v ... or JSON.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long, num_args = 1..)]
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub grantee_principal: Option<String>,
    #[arg(long)]
    pub retiring_principal: Option<String>,
    /// Decrypt Encrypt GenerateDataKey ... (space- or comma-separated).
    #[arg(long, num_args = 1..)]
    pub operations: Vec<String>,
    /// EncryptionContextSubset={k=v,...},EncryptionContextEquals={...} or JSON.
    #[arg(long)]
    pub constraints: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
    /// kmsfs extension: let a caller grant itself operations it does not hold.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_self_escalation: bool,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub grant_id: Option<String>,
    #[arg(long)]
    pub grantee_principal: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRetirableGrantsArgs {
    #[arg(long)]
    pub retiring_principal: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RevokeGrantArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub grant_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetireGrantArgs {
    #[arg(long)]
    pub grant_token: Option<String>,
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub grant_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub plaintext: Option<String>,
    /// k=v,k2=v2 or JSON.
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub encryption_algorithm: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptArgs {
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub ciphertext_blob: Option<String>,
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub encryption_algorithm: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptArgs {
    #[arg(long)]
    pub ciphertext_blob: Option<String>,
    #[arg(long)]
    pub source_encryption_context: Option<String>,
    #[arg(long)]
    pub source_key_id: Option<String>,
    #[arg(long)]
    pub destination_key_id: Option<String>,
    #[arg(long)]
    pub destination_encryption_context: Option<String>,
    #[arg(long)]
    pub source_encryption_algorithm: Option<String>,
    #[arg(long)]
    pub destination_encryption_algorithm: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub encryption_context: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub number_of_bytes: Option<i64>,
    /// AES_256 or AES_128.
    #[arg(long)]
    pub key_spec: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomArgs {
    #[arg(long, allow_negative_numbers = true)]
    pub number_of_bytes: Option<i64>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetParametersForImportArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub wrapping_algorithm: Option<String>,
    #[arg(long)]
    pub wrapping_key_spec: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportKeyMaterialArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Base64, or fileb://token.bin.
    #[arg(long)]
    pub import_token: Option<String>,
    /// Base64, or fileb://material.bin.
    #[arg(long)]
    pub encrypted_key_material: Option<String>,
    /// When the material expires: ISO 8601 or seconds since the epoch.
    #[arg(long)]
    pub valid_to: Option<String>,
    /// KEY_MATERIAL_EXPIRES or KEY_MATERIAL_DOES_NOT_EXPIRE.
    #[arg(long)]
    pub expiration_model: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WrapKeyMaterialArgs {
    /// The PublicKey returned by get-parameters-for-import: DER SubjectPublicKeyInfo
    /// (base64, or fileb://PublicKey.bin).
    #[arg(long)]
    pub public_key: Option<String>,
    /// The 32 bytes of key material (fileb://FILE, or base64).
    #[arg(long)]
    pub key_material: Option<String>,
    /// The WrappingAlgorithm given to get-parameters-for-import (default RSAES_OAEP_SHA_256).
    #[arg(long)]
    pub wrapping_algorithm: Option<String>,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub message: Option<String>,
    /// RAW (default) or DIGEST.
    #[arg(long)]
    pub message_type: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    /// RSASSA_PSS_SHA_256, ECDSA_SHA_256, ED25519_SHA_512, ...
    #[arg(long)]
    pub signing_algorithm: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyArgs {
    /// The key: key id or key ARN (or alias/NAME and alias ARN where AWS accepts them).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Base64 (aws-cli v2), or fileb://file for raw bytes.
    #[arg(long)]
    pub message: Option<String>,
    /// RAW (default) or DIGEST.
    #[arg(long)]
    pub message_type: Option<String>,
    /// Base64, or fileb://signature.bin.
    #[arg(long)]
    pub signature: Option<String>,
    #[arg(long)]
    pub signing_algorithm: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateMacArgs {
    /// The message: fileb://FILE for raw bytes, or base64.
    #[arg(long)]
    pub message: Option<String>,
    /// The HMAC key: key id, key ARN, alias/NAME or alias ARN.
    #[arg(long)]
    pub key_id: Option<String>,
    /// HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512 (the key spec's own).
    #[arg(long)]
    pub mac_algorithm: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyMacArgs {
    /// The message: fileb://FILE for raw bytes, or base64.
    #[arg(long)]
    pub message: Option<String>,
    /// The HMAC key: key id, key ARN, alias/NAME or alias ARN.
    #[arg(long)]
    pub key_id: Option<String>,
    /// The algorithm the MAC was computed with.
    #[arg(long)]
    pub mac_algorithm: Option<String>,
    /// The MAC to check: fileb://FILE, or base64.
    #[arg(long)]
    pub mac: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairArgs {
    /// k=v,k2=v2 or JSON: bound to the encrypted private key (Decrypt needs the same).
    #[arg(long)]
    pub encryption_context: Option<String>,
    /// The symmetric encryption key that encrypts the private key.
    #[arg(long)]
    pub key_id: Option<String>,
    /// RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521,
    /// ECC_SECG_P256K1 or ECC_NIST_EDWARDS25519.
    #[arg(long)]
    pub key_pair_spec: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeriveSharedSecretArgs {
    /// The KEY_AGREEMENT key: key id, key ARN, alias/NAME or alias ARN.
    #[arg(long)]
    pub key_id: Option<String>,
    /// ECDH.
    #[arg(long)]
    pub key_agreement_algorithm: Option<String>,
    /// The peer's public key, DER SubjectPublicKeyInfo: fileb://FILE, or base64.
    #[arg(long)]
    pub public_key: Option<String>,
    #[arg(long, num_args = 1..)]
    pub grant_tokens: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub dry_run: DryRun,
}

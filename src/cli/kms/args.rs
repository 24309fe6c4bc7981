//! The arguments of each `kmsfs kms` verb: one clap struct per request shape, whose
//! fields serialize straight to the AWS request members (see `verbs`).

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

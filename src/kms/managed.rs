//! The service-managed default key, `alias/kmsfs/default` (KeyManager AWS): what a
//! volume uses when no key is named, created on first use. It mirrors an AWS managed
//! key such as `aws/s3`:
//!
//! - Its policy lets every principal of the account use it for cryptography only
//!   through the filesystem (`kms:ViaService = "kmsfs"` and `kms:CallerAccount` = the
//!   account, Principal `*`), and lets the account read its metadata directly
//!   (Describe*, Get*, List*). Nobody can Encrypt/Decrypt with it outside a mount,
//!   anonymous callers (no account) cannot use it at all, and an IAM policy cannot
//!   widen it because the policy has no root-delegation statement for other actions.
//! - It rotates every 365 days; rotation cannot be turned off.
//! - PutKeyPolicy, Enable/DisableKey, ScheduleKeyDeletion, rotation settings, tags,
//!   description and aliases on it fail: the policy denies them (AccessDeniedException)
//!   and, should a policy ever allow them, the service refuses with
//!   UnsupportedOperationException as AWS does for AWS managed keys.
//!
//! Never holds material itself: it uses the same store functions as customer keys.

use super::keyspec::{KeySpec, KeyUsage};
use super::model::{
    AliasRecord, KeyManager, KeyRecord, KeyState, Origin, RotationSchedule, StoreState,
};
use super::store::{internal, Store};
use super::KmsError;
use crate::policy::actions as act;

pub const DEFAULT_ALIAS: &str = "alias/kmsfs/default";
pub const DEFAULT_DESCRIPTION: &str =
    "Default key that protects my kmsfs files when no other key is defined";
/// Alias prefixes reserved for service-managed keys.
pub const RESERVED_ALIAS_PREFIXES: &[&str] = &["alias/aws/", "alias/kmsfs/"];
/// The service name in kms:ViaService for filesystem calls.
pub const VIA_SERVICE: &str = "kmsfs";

/// The default key's policy for `account`.
pub fn default_key_policy(account: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Id": "auto-kmsfs-1",
  "Statement": [
    {{
      "Sid": "Allow access through kmsfs for all principals in the account",
      "Effect": "Allow",
      "Principal": {{ "AWS": "*" }},
      "Action": [
        "{encrypt}",
        "{decrypt}",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "{describe}"
      ],
      "Resource": "*",
      "Condition": {{
        "StringEquals": {{
          "kms:CallerAccount": "{account}",
          "kms:ViaService": "{VIA_SERVICE}"
        }}
      }}
    }},
    {{
      "Sid": "Allow direct access to key metadata to the account",
      "Effect": "Allow",
      "Principal": {{ "AWS": "arn:aws:iam::{account}:root" }},
      "Action": [ "kms:Describe*", "kms:Get*", "kms:List*" ],
      "Resource": "*"
    }}
  ]
}}"#,
        encrypt = act::ENCRYPT.iam,
        decrypt = act::DECRYPT.iam,
        describe = act::DESCRIBE_KEY.iam,
    )
}

/// Creates the default key and its alias in `st` (material written first). Returns
/// the key ARN.
pub fn create_default_key(
    store: &Store,
    st: &mut StoreState,
    account: &str,
    region: &str,
    now: i64,
) -> Result<String, KmsError> {
    let key_id = super::ciphertext::new_key_id().map_err(|e| internal(e.to_string()))?;
    let arn = format!("arn:aws:kms:{region}:{account}:key/{key_id}");
    let mut rec = KeyRecord {
        key_id: key_id.clone(),
        arn: arn.clone(),
        account: account.to_string(),
        description: DEFAULT_DESCRIPTION.to_string(),
        creation_date: now,
        state: KeyState::Enabled,
        origin: Origin::AwsKms,
        manager: KeyManager::Aws,
        policy: default_key_policy(account),
        tags: Vec::new(),
        grants: Vec::new(),
        materials: Vec::new(),
        current_version: None,
        rotation: Some(RotationSchedule {
            period_days: 365,
            anchor: now,
        }),
        rotations: Vec::new(),
        deletion_date: None,
        pending_window_days: None,
        import: None,
        key_spec: KeySpec::SymmetricDefault,
        key_usage: KeyUsage::EncryptDecrypt,
    };
    super::material::add_material(store, &mut rec, now, None)?;
    st.keys.insert(key_id.clone(), rec);
    st.aliases.insert(
        DEFAULT_ALIAS.to_string(),
        AliasRecord {
            name: DEFAULT_ALIAS.to_string(),
            target_key_id: key_id,
            creation_date: now,
            last_updated: now,
        },
    );
    Ok(arn)
}

//! The key service's persistent state as plain data: keys (metadata, policy text,
//! grants, tags, rotation, deletion, import state), aliases and volume secrets. This is
//! what `state.json` holds. Key material is never here: it lives sealed in its own files
//! (`material/<key-id>/v<N>` in the store), so destroying a key can overwrite and remove
//! exactly its bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::provider::DirRule;
use crate::policy::Grant;

/// The store's state format version (`state.json` "version").
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreState {
    pub version: u32,
    /// Incremented by every committed write.
    pub generation: u64,
    /// By key id.
    pub keys: BTreeMap<String, KeyRecord>,
    /// By full alias name ("alias/x").
    pub aliases: BTreeMap<String, AliasRecord>,
    /// Volume id → base64 of the sealed name-encryption secret.
    pub volume_secrets: BTreeMap<String, String>,
    /// Volume id → its directories' key rules (the authority against a rolled-back
    /// `kmsfs.dir`). Absent from states written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dir_rules: BTreeMap<String, VolumeDirRules>,
    /// Access key id → its record (the secret sealed under the root key). Absent when
    /// empty, and from states written before access keys existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub access_keys: BTreeMap<String, AccessKeyRecord>,
}

/// One access key of a principal (docs/STORE.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub principal_arn: String,
    /// "Active" (the only status kmsfs creates; deleting removes the record).
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    /// base64 of seal(secret key, AD = `kmsfs secret v1|<store id>|access-key:<id>|<principal ARN>`,
    /// the secret access key's 40 ASCII bytes).
    pub sealed_secret: String,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sealed secret is not the secret, but it has no business in logs either.
        f.debug_struct("AccessKeyRecord")
            .field("principal_arn", &self.principal_arn)
            .field("status", &self.status)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The key rules of one volume's directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDirRules {
    /// The format-1 rules found at the first mount were imported.
    pub imported: bool,
    /// Directory id (32 lowercase hex digits) → its record.
    pub dirs: BTreeMap<String, DirRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    #[serde(rename = "AWS_KMS")]
    AwsKms,
    #[serde(rename = "EXTERNAL")]
    External,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::AwsKms => "AWS_KMS",
            Origin::External => "EXTERNAL",
        }
    }
}

/// CUSTOMER keys are the user's; AWS keys are service-managed (kmsfs's default key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    #[serde(rename = "CUSTOMER")]
    Customer,
    #[serde(rename = "AWS")]
    Aws,
}

impl KeyManager {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyManager::Customer => "CUSTOMER",
            KeyManager::Aws => "AWS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One material version of a key; its sealed bytes are `material/<key>/v<version>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialVersion {
    pub version: u32,
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    #[serde(rename = "AUTOMATIC")]
    Automatic,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

impl RotationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationType::Automatic => "AUTOMATIC",
            RotationType::OnDemand => "ON_DEMAND",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    pub date: i64,
    pub kind: RotationType,
    pub version: u32,
}

/// Automatic rotation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSchedule {
    pub period_days: u32,
    /// The next automatic rotation is `anchor + period_days` (anchor: when rotation was
    /// enabled or last rotated automatically).
    pub anchor: i64,
}

impl RotationSchedule {
    pub fn next(&self) -> i64 {
        self.anchor + i64::from(self.period_days) * super::clock::DAY
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpirationModel {
    #[serde(rename = "KEY_MATERIAL_EXPIRES")]
    Expires,
    #[serde(rename = "KEY_MATERIAL_DOES_NOT_EXPIRE")]
    DoesNotExpire,
}

impl ExpirationModel {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpirationModel::Expires => "KEY_MATERIAL_EXPIRES",
            ExpirationModel::DoesNotExpire => "KEY_MATERIAL_DOES_NOT_EXPIRE",
        }
    }
}

/// State of an EXTERNAL-origin key's imported material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportState {
    /// HMAC of the first imported material: reimports must bring the same bytes.
    pub commitment: Option<String>,
    pub expiration_model: Option<ExpirationModel>,
    pub valid_to: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub arn: String,
    pub account: String,
    pub description: String,
    pub creation_date: i64,
    pub state: KeyState,
    pub origin: Origin,
    pub manager: KeyManager,
    /// The key policy exactly as given (GetKeyPolicy returns it byte for byte).
    pub policy: String,
    pub tags: Vec<Tag>,
    /// Grants in creation order (their tokens are derived, see `ops_grants`).
    pub grants: Vec<Grant>,
    /// Every material version ever created and not destroyed, oldest first.
    pub materials: Vec<MaterialVersion>,
    /// The version new ciphertexts use.
    pub current_version: Option<u32>,
    pub rotation: Option<RotationSchedule>,
    pub rotations: Vec<RotationRecord>,
    pub deletion_date: Option<i64>,
    pub pending_window_days: Option<u32>,
    pub import: Option<ImportState>,
}

impl KeyRecord {
    pub fn next_version(&self) -> u32 {
        self.materials.iter().map(|m| m.version).max().unwrap_or(0) + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub name: String,
    pub target_key_id: String,
    pub creation_date: i64,
    pub last_updated: i64,
}

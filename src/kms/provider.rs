//! The narrow interface the filesystem uses to obtain data keys. The filesystem never
//! sees CMK material, policies or grants: it asks, on behalf of the calling uid/gid,
//! and gets a data key or a [`KmsError`] whose kind maps to an errno.

use crate::crypto::{DataKey, SealingKey};
use crate::kms::KmsError;
use crate::policy::EncryptionContext;

/// Who made a filesystem request (from the FUSE request header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// The data-plane permission an open needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAction {
    /// kms:Decrypt: read access.
    Decrypt,
    /// kms:Encrypt: write access (also truncate without a handle).
    Encrypt,
}

/// A freshly generated data key, with its wrapped form (a KMS ciphertext blob that names
/// the CMK and material version) for the file's envelope.
#[derive(Debug)]
pub struct NewDataKey {
    pub key: DataKey,
    pub wrapped: Vec<u8>,
    /// The ARN of the CMK that wrapped it.
    pub key_arn: String,
}

/// Implemented by the key service. Every call authorizes with `kms:ViaService = "kmsfs"`
/// and the given encryption context, audits the decision with its reasons, and only then
/// touches key material.
pub trait DataKeys: Send + Sync {
    /// Authorizes `kms:GenerateDataKey` on `key_id` (key id, ARN, alias name or alias ARN).
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, KmsError>;

    /// Authorizes every action in `actions` on the CMK named inside `wrapped` (never one
    /// chosen by path), then unwraps the data key. Fails with the first denial.
    fn open_data_key(
        &self,
        caller: &Caller,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError>;

    /// The volume's name-encryption secret, sealed in the store under the root key and
    /// created on first use. Not a per-caller decision: names are listed without a KMS
    /// check (only opens are gated), but they are unreadable without the store.
    fn volume_secret(&self, volume_id: &str) -> Result<SealingKey, KmsError>;
}

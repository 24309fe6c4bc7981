//! The narrow interface the filesystem uses to obtain data keys. The filesystem never
//! sees CMK material, policies or grants: it asks, on behalf of the calling uid/gid,
//! and gets a data key or a [`KmsError`] whose kind maps to an errno.
//!
//! It also keeps, per volume, the authoritative record of every directory key rule
//! ([`DirRule`]): `kmsfs.dir` in the backing directory can be rolled back by whoever
//! writes there, the store cannot (by them).

use serde::{Deserialize, Serialize};

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

/// Who sent a network request, as the transport saw it (after its signature verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCaller {
    pub access_key_id: String,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
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

/// An existing data key wrapped anew under a key (by [`DataKeys::wrap_data_key`]): the
/// KMS ciphertext blob for the file's envelope and the ARN of the key that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub wrapped: Vec<u8>,
    pub key_arn: String,
}

/// The store's record of one directory's key rule: which rule (if any) and its version,
/// the number of times it was set or cleared through kmsfs. A directory the store has
/// no record of is version 0 with no rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRule {
    pub version: u64,
    pub rule: Option<String>,
}

impl DirRule {
    /// What a directory without a record has.
    pub const NONE: DirRule = DirRule {
        version: 0,
        rule: None,
    };

    /// Whether `new` may replace `current` (the stored record, if any): only a newer
    /// version, or the same version with the same rule (a retried write). Shared by
    /// every implementation of [`DataKeys::record_dir_rule`].
    pub fn may_replace(current: Option<&DirRule>, new: &DirRule) -> bool {
        let current = current.unwrap_or(&DirRule::NONE);
        new.version > current.version || new == current
    }
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
    /// `key_arn` is the ARN the file's header names (never a path): a key router uses it
    /// to send a file whose key lives in a remote KMS there; the local service opens by
    /// the key inside `wrapped` and ignores it.
    fn open_data_key(
        &self,
        caller: &Caller,
        key_arn: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError>;

    /// Authorizes `kms:Encrypt` on `key_id` (key id, ARN, alias name or alias ARN) with
    /// `context`, then wraps the existing data `key` under it: what `kmsfs rewrap` writes
    /// into a file's envelope (ReEncrypt semantics together with the Decrypt of
    /// [`Self::open_data_key`]). The file's content is untouched.
    fn wrap_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedDataKey, KmsError>;

    /// The volume's name-encryption secret, sealed in the store under the root key and
    /// created on first use. Not a per-caller decision: names are listed without a KMS
    /// check (only opens are gated), but they are unreadable without the store.
    fn volume_secret(&self, volume_id: &str) -> Result<SealingKey, KmsError>;

    /// The record of directory `dir_id` of volume `volume_id` (`None`: version 0, no
    /// rule). Like [`Self::volume_secret`], not a per-caller decision.
    fn dir_rule(&self, volume_id: &str, dir_id: &[u8; 16]) -> Result<Option<DirRule>, KmsError>;

    /// Records `rule` for the directory, after the filesystem checked that `caller` may
    /// change it (the directory's owner or root). Refuses (`KMSInvalidStateException`)
    /// a record that [`DirRule::may_replace`] rejects.
    fn record_dir_rule(
        &self,
        caller: &Caller,
        volume_id: &str,
        dir_id: &[u8; 16],
        rule: &DirRule,
    ) -> Result<(), KmsError>;

    /// Whether the volume's format-1 key rules were imported (see
    /// [`Self::import_dir_rules`]).
    fn dir_rules_imported(&self, volume_id: &str) -> Result<bool, KmsError>;

    /// Once per volume, at the first mount: records version 0 with its rule for each
    /// format-1 directory that has one and no record yet, and marks the volume imported.
    /// Until then such a rule is trusted on first use (docs/FORMAT.md).
    fn import_dir_rules(
        &self,
        volume_id: &str,
        rules: &[([u8; 16], String)],
    ) -> Result<(), KmsError>;
}

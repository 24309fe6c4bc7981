//! The local key service: customer master keys and their material versions, key
//! states, key policies, grants, aliases, tags, rotation, scheduled deletion, imported
//! material, and the [`Service`] that authorizes (policy), acts and audits every call.
//!
//! [`Service::call`] speaks AWS KMS's JSON API: operation names ("CreateKey",
//! "Decrypt", ...), PascalCase fields, base64 blobs, AWS's exceptions. Implemented:
//! CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion, EnableKeyRotation, DisableKeyRotation,
//! GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations, GetKeyPolicy,
//! PutKeyPolicy, ListKeyPolicies, TagResource, UntagResource, ListResourceTags,
//! CreateAlias, UpdateAlias, DeleteAlias, ListAliases, CreateGrant, ListGrants,
//! ListRetirableGrants, RevokeGrant, RetireGrant, Encrypt, Decrypt, ReEncrypt,
//! GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom,
//! GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial; and two
//! kmsfs extensions, "Simulate" (with `"ForCaller": true`, about the caller exactly as
//! identified, groups included, without needing GetKeyPolicy) and "WhoAmI" (the
//! caller's principal and the store that answered). kmsfs's own action
//! `kmsfs:BypassEscalationGuard` is evaluated like the `kms:` actions (see `guard`).
//!
//! `error` and `provider` are the contracts the filesystem, socket and CLI code against.
//! Never returns or logs key material; never acts before authorizing and auditing.

pub mod backup;
pub mod ciphertext;
pub mod clock;
pub mod error;
pub mod guard;
pub mod managed;
pub mod model;
mod ops_aliases;
mod ops_crypto;
mod ops_dir_rules;
pub(crate) mod ops_grants;
pub mod ops_import;
mod ops_keys;
pub mod provider;
pub(crate) mod request;
mod service;
pub mod simulate;
pub mod states;
pub mod store;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::{ErrorKind, KmsError};
pub use ops_import::{wrap_key_material, LOCAL_WRAPPING_ALGORITHM, LOCAL_WRAPPING_KEY_SPEC};
pub use service::{init_store, root_delegation_policy, simulate_json, Service, ServiceConfig};
pub use store::RootKeySource;

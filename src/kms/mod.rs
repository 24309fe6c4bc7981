//! The local key service: customer master keys and their material versions, key
//! states, key policies, grants, aliases, tags, rotation, scheduled deletion, imported
//! material, and the [`Service`] that authorizes (policy), acts and audits every call.
//!
//! [`Service::call`] speaks AWS KMS's JSON API: operation names as AWS spells them,
//! PascalCase fields, base64 blobs, AWS's exceptions. The operations kmsfs implements
//! are the rows of [`operations::TABLE`] (names and classification in
//! [`crate::policy::actions`], the one place that spells them), including two kmsfs
//! extensions: [`SIMULATE`](crate::policy::actions::SIMULATE) (with `"ForCaller": true`,
//! about the caller exactly as identified, groups included, without needing the key
//! policy) and [`WHO_AM_I`](crate::policy::actions::WHO_AM_I) (the caller's principal
//! and the store that answered). kmsfs's own action `kmsfs:BypassEscalationGuard` is evaluated like
//! the `kms:` actions (see `authz::guard`).
//!
//! `error` and `provider` are the contracts the filesystem, socket and CLI code against.
//! Never returns or logs key material; never acts before authorizing and auditing.

mod admission;
mod audit_trail;
mod authz;
pub mod backup;
mod change_watch;
pub mod ciphertext;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod keyspec;
mod lifecycle;
mod lookup;
mod managed;
mod material;
mod model;
pub mod operations;
mod ops_agreement;
mod ops_aliases;
mod ops_asym;
mod ops_crypto;
mod ops_dir_rules;
pub(crate) mod ops_grants;
mod ops_import;
mod ops_key_pairs;
mod ops_key_policies;
mod ops_keys;
mod ops_last_usage;
mod ops_mac;
mod principals_watch;
pub mod provider;
pub(crate) mod request;
mod service;
pub mod simulate;
mod states;
pub(crate) mod store;

pub use clock::{Clock, SystemClock, TestClock};
pub use credentials::{AccessKey, RemoteCaller};
pub use error::{ErrorKind, KmsError};
pub use ops_import::wrap_key_material;
pub use principals_watch::root_delegation_policy;
pub use service::{init_store, simulate_json, ChangeChecks, Service, ServiceConfig};
pub use store::RootKeySource;

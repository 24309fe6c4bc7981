//! The local key service: customer master keys and their material versions, key
//! states, key policies, grants, aliases, tags, rotation, scheduled deletion, imported
//! material, and the service that authorizes (policy), acts and audits every call.
//!
//! OWNER: kms helper. `error` and `provider` are contracts other modules code against.

pub mod error;
pub mod provider;

pub use error::{ErrorKind, KmsError};

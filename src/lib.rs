//! kmsfs: an encrypted FUSE filesystem whose every open is authorized the way AWS KMS
//! authorizes a request. Module map (dependencies point one way, top to bottom):
//!
//! - [`crypto`]: AEAD, HKDF, secret key types (leaf)
//! - [`format`]: on-disk bytes of volumes, envelopes, blocks, names (uses crypto)
//! - [`policy`]: the pure policy language and evaluator (leaf)
//! - [`audit`]: the append-only, hash-chained audit log (leaf)
//! - [`principals`]: uid/gid → principal ARN and identity policies (uses policy)
//! - [`kms`]: keys, store, grants, the service (authorize → act → audit)
//! - [`control`]: the Unix-socket protocol, server and client
//! - [`fs`]: the FUSE filesystem; talks to kms only through [`kms::provider::DataKeys`]
//! - [`wire`]: AWS KMS's HTTP protocol (JSON 1.1, SigV4) in front of the service
//! - [`cli`]: the `kmsfs` command line (anyhow lives only here)
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod cli;
pub mod control;
pub mod crypto;
pub mod format;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod kms;
pub mod policy;
pub mod principals;
pub mod remote;
pub mod wire;

//! AWS KMS's own wire protocol (JSON 1.1 over HTTP/1.1, SigV4) in front of the key
//! service, so that aws-cli, boto3 and the AWS SDKs work with `--endpoint-url`.
//!
//! - [`sigv4`]: Signature Version 4, verified in full (and signed, for clients)
//! - [`protocol`]: one HTTP request in, one AWS JSON response out (no I/O)
//! - [`server`]: hyper on tokio, TLS, limits and deadlines, shutdown
//!
//! This module authenticates and frames; it never authorizes. Who may do what is
//! decided by the key service for the access key's principal, exactly as for a uid.

mod backend;
mod deadlines;
pub mod protocol;
pub mod server;
pub mod sigv4;

pub use protocol::{ApiError, JSON_CONTENT_TYPE, TARGET_PREFIX};
pub use server::{Running, TlsFiles, WireConfig, WireError, WireServer};

use crate::kms::KmsError;

pub use crate::kms::credentials::{AccessKey, RemoteCaller};

/// What the endpoint needs from the key service.
pub trait WireBackend: Send + Sync + 'static {
    /// SigV4's credential scope region.
    fn region(&self) -> String;
    /// The secret of an active access key, with its principal ARN; None if unknown.
    fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, KmsError>;
    /// Runs one operation as the access key's principal.
    fn call(
        &self,
        who: &RemoteCaller,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError>;
}

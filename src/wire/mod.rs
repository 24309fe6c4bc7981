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

/// An active access key: its secret and the principal it acts as.
pub struct AccessKey {
    pub access_key_id: String,
    pub principal_arn: String,
    pub secret: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Who is calling over HTTP, as far as the request proves it (the access key) and as
/// the audit record reports it (address, user agent, request id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCaller {
    pub access_key_id: String,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// The `x-amzn-RequestId` of the response, and CloudTrail's `requestID`.
    pub request_id: String,
}

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

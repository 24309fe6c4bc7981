//! The key service behind the HTTP endpoint.
//!
//! Provisional until the credentials store exists: no access key is known yet, so every
//! signed request is answered `UnrecognizedClientException` (the endpoint, its
//! envelope and its errors already work end to end).

use serde_json::Value;

use super::{AccessKey, RemoteCaller, WireBackend};
use crate::kms::{ErrorKind, KmsError, Service};

impl WireBackend for Service {
    fn region(&self) -> String {
        match self.account_region() {
            Ok((_, region)) => region,
            // An unreadable principals file: no region can match, so every request is
            // refused by the scope check rather than served under a guessed region.
            Err(_) => String::new(),
        }
    }

    fn access_key(&self, _access_key_id: &str) -> Result<Option<AccessKey>, KmsError> {
        Ok(None)
    }

    fn call(
        &self,
        _who: &RemoteCaller,
        _operation: &str,
        _request: Value,
    ) -> Result<Value, KmsError> {
        Err(KmsError::new(
            ErrorKind::AccessDenied,
            "no access keys exist in this store yet",
        ))
    }
}

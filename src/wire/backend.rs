//! The key service behind the HTTP endpoint: access keys come from the store, and a
//! signed request runs as its key's principal exactly as a uid mapped to it would
//! (same policies, grants, key states and audit records; never `kms:ViaService`).

use serde_json::Value;

use super::{AccessKey, RemoteCaller, WireBackend};
use crate::kms::{KmsError, Service};

impl WireBackend for Service {
    fn region(&self) -> String {
        Service::region(self)
    }

    fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, KmsError> {
        Service::access_key(self, access_key_id)
    }

    fn call(&self, who: &RemoteCaller, operation: &str, request: Value) -> Result<Value, KmsError> {
        self.call_remote(who, operation, request)
    }
}

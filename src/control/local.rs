//! The key service in this process, behind the control layer's two traits: the socket
//! server dispatches to it ([`Handler`]), and a client without a running service calls
//! it directly ([`Backend`]), so both reach `kms` the same way.

use std::sync::Arc;

use serde_json::Value;

use crate::kms::provider::Caller;
use crate::kms::{KmsError, Service};

use super::{Backend, Handler};

impl Handler for Service {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError> {
        Service::call(self, caller, operation, request)
    }
}

/// A client calling a service opened in its own process, as `caller`.
pub struct LocalBackend {
    service: Arc<Service>,
    caller: Caller,
}

impl LocalBackend {
    pub fn new(service: Arc<Service>, caller: Caller) -> Self {
        LocalBackend { service, caller }
    }
}

impl Backend for LocalBackend {
    fn call(&self, operation: &str, request: Value) -> Result<Value, KmsError> {
        self.service.call(&self.caller, operation, request)
    }
}

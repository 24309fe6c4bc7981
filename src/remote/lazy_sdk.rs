//! The SDK client a router uses, started on first use: a volume with only local keys
//! runs no SDK runtime, and a client that cannot start fails remote calls (EIO) while
//! local keys keep working.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{
    Context, Profile, RemoteDataKey, RemoteError, RemoteKeys, RemoteReceipt, RemoteSettings,
    SdkRemote, Target,
};
use crate::crypto::DataKey;
use crate::kms::{ErrorKind, KmsError};

/// The remote KMS client over the AWS SDK ([`SdkRemote`]), each call bounded by
/// `timeout`. Started on the first remote call, so that a volume with only local keys
/// runs no SDK runtime. Should it fail to start, every remote call fails with the
/// reason (EIO) and local keys keep working.
pub fn remote_client(timeout: Duration) -> Arc<dyn RemoteKeys> {
    Arc::new(LazySdk {
        timeout,
        client: OnceLock::new(),
    })
}

struct LazySdk {
    timeout: Duration,
    client: OnceLock<Box<dyn RemoteKeys>>,
}

impl LazySdk {
    fn get(&self) -> &dyn RemoteKeys {
        self.client
            .get_or_init(|| {
                let settings = RemoteSettings {
                    timeout: self.timeout,
                    ..RemoteSettings::default()
                };
                match SdkRemote::new(settings) {
                    Ok(client) => Box::new(client),
                    Err(e) => {
                        log::error!("remote keys unavailable: {}", e.error.message);
                        Box::new(NoRemoteClient {
                            reason: e.error.message,
                        })
                    }
                }
            })
            .as_ref()
    }
}

impl RemoteKeys for LazySdk {
    fn generate_data_key(
        &self,
        profile: &Profile,
        target: &Target,
        context: &Context,
    ) -> Result<RemoteDataKey, RemoteError> {
        self.get().generate_data_key(profile, target, context)
    }
    fn decrypt(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        self.get().decrypt(profile, target, wrapped, context)
    }
    fn encrypt(
        &self,
        profile: &Profile,
        target: &Target,
        key: &DataKey,
        context: &Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        self.get().encrypt(profile, target, key, context)
    }
    fn encrypt_allowed(
        &self,
        profile: &Profile,
        target: &Target,
        context: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.get().encrypt_allowed(profile, target, context)
    }
    fn describe_key(
        &self,
        profile: &Profile,
        target: &Target,
    ) -> Result<(serde_json::Value, RemoteReceipt), RemoteError> {
        self.get().describe_key(profile, target)
    }
    fn decrypt_dry_run(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.get()
            .decrypt_dry_run(profile, target, wrapped, context)
    }
}

/// Stands in for the SDK client when it cannot start: every remote call fails (EIO).
struct NoRemoteClient {
    reason: String,
}

impl NoRemoteClient {
    fn refuse<T>(&self) -> Result<T, RemoteError> {
        Err(RemoteError {
            error: KmsError::new(
                ErrorKind::KmsInternal,
                format!("no remote KMS client: {}", self.reason),
            ),
            receipt: RemoteReceipt::default(),
        })
    }
}

impl RemoteKeys for NoRemoteClient {
    fn generate_data_key(
        &self,
        _: &Profile,
        _: &Target,
        _: &Context,
    ) -> Result<RemoteDataKey, RemoteError> {
        self.refuse()
    }
    fn decrypt(
        &self,
        _: &Profile,
        _: &Target,
        _: &[u8],
        _: &Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        self.refuse()
    }
    fn encrypt(
        &self,
        _: &Profile,
        _: &Target,
        _: &DataKey,
        _: &Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        self.refuse()
    }
    fn encrypt_allowed(
        &self,
        _: &Profile,
        _: &Target,
        _: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.refuse()
    }
    fn describe_key(
        &self,
        _: &Profile,
        _: &Target,
    ) -> Result<(serde_json::Value, RemoteReceipt), RemoteError> {
        self.refuse()
    }
    // Not the trait's default ("cannot dry-run"): the reason is that no client started.
    fn decrypt_dry_run(
        &self,
        _: &Profile,
        _: &Target,
        _: &[u8],
        _: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        self.refuse()
    }
}

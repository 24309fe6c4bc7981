//! [`RemoteKeys`] over the official AWS SDK for Rust: SigV4, retries and every credential
//! source a shared-config profile can name (static keys, `role_arn` + `source_profile`,
//! `credential_process`, SSO) are the SDK's, never hand-written.
//!
//! Owns one small tokio runtime; the sync trait methods are called from FUSE worker
//! threads, hand the call to that runtime and wait on a channel, so they work from any
//! thread (even one inside another runtime) and never hold a lock across a call.
//! Credentials come only from the named profile: there is no default chain, so nothing
//! of the process (environment keys, instance metadata) can sign a user's request.
//! Plaintext data keys go straight into [`DataKey`] and are never logged.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use aws_sdk_kms::config::SharedHttpClient;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::decrypt::builders::DecryptFluentBuilder;
use aws_sdk_kms::operation::encrypt::builders::EncryptFluentBuilder;
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use aws_smithy_http_client::tls;
use serde_json::{json, Value};
use zeroize::Zeroize;

pub use super::arn::arn_region;
use super::clients::build_client;
pub use super::clients::RemoteSettings;
use super::errors::{self, from_sdk};
use super::{Context, Profile, RemoteDataKey, RemoteError, RemoteKeys, RemoteReceipt, Target};
use crate::crypto::{DataKey, KEY_LEN};
use crate::kms::ErrorKind;

/// The SDK clients are per (profile, endpoint, region): each has its own identity cache,
/// so a profile's credentials are resolved once and refreshed by the SDK.
type ClientKey = (Profile, Option<String>, String);

/// A remote KMS reached through the AWS SDK.
pub struct SdkRemote {
    settings: RemoteSettings,
    // `Option` only so that Drop can shut it down without blocking (dropping a runtime
    // from inside another runtime's thread would panic).
    runtime: Option<tokio::runtime::Runtime>,
    http: SharedHttpClient,
    clients: Mutex<HashMap<ClientKey, Client>>,
}

impl std::fmt::Debug for SdkRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkRemote")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SdkRemote {
    pub fn new(settings: RemoteSettings) -> Result<SdkRemote, RemoteError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.worker_threads.max(1))
            .thread_name("kmsfs-remote")
            .enable_all()
            .build()
            .map_err(|e| {
                errors::local(
                    ErrorKind::KmsInternal,
                    format!("cannot start the remote KMS runtime: {e}"),
                )
            })?;
        // rustls with ring (as the server side), the system's roots and the CA bundle;
        // an `http://` endpoint (a loopback central kmsfs) connects in the clear.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context(&settings)?)
            .build_https();
        Ok(SdkRemote {
            settings,
            runtime: Some(runtime),
            http,
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// The client for `profile` toward `target`, made once.
    fn client(&self, profile: &Profile, target: &Target) -> Result<Client, RemoteError> {
        let region = arn_region(&target.key_arn).ok_or_else(|| {
            errors::local(
                ErrorKind::InvalidArn,
                format!(
                    "\"{}\" is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)",
                    target.key_arn
                ),
            )
        })?;
        let key = (profile.clone(), target.endpoint.clone(), region.to_string());
        // The lock covers a map lookup or a client's construction (no I/O): calls
        // themselves run unlocked, so concurrent calls never serialize here.
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = build_client(
            &self.settings,
            &self.http,
            profile,
            target.endpoint.as_deref(),
            region,
        );
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Runs `call` on the runtime; on an identity failure, forgets the client so that the
    /// next call reads the profile files again (the SDK parses them once per client, and
    /// an administrator may add the missing profile without remounting).
    fn call<T, F>(&self, profile: &Profile, target: &Target, call: F) -> Result<T, RemoteError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, RemoteError>> + Send + 'static,
    {
        let result = self.run(profile, call);
        if let Err(e) = &result {
            if e.error.message.starts_with(errors::NO_CREDENTIALS) {
                if let Some(region) = arn_region(&target.key_arn) {
                    let key = (profile.clone(), target.endpoint.clone(), region.to_string());
                    self.clients
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&key);
                }
            }
        }
        result
    }

    /// One SDK call of `profile` toward `target`: `request` builds it on the client
    /// (outside the runtime, so it may borrow the caller's arguments), it runs under the
    /// hard timeout, and `answer` reads its outcome as `profile`.
    fn exchange<O, E, Fut, T, A>(
        &self,
        profile: &Profile,
        target: &Target,
        request: impl FnOnce(Client) -> Fut,
        answer: A,
    ) -> Result<T, RemoteError>
    where
        Fut: Future<Output = Result<O, SdkError<E>>> + Send + 'static,
        A: FnOnce(&Profile, Result<O, SdkError<E>>) -> Result<T, RemoteError> + Send + 'static,
        T: Send + 'static,
    {
        let pending = request(self.client(profile, target)?);
        let p = profile.clone();
        self.call(profile, target, async move { answer(&p, pending.await) })
    }

    /// [`Self::exchange`] of a call whose every failure is an error: `answer` gets the
    /// output and its request id.
    fn send<O, E, Fut, T>(
        &self,
        profile: &Profile,
        target: &Target,
        request: impl FnOnce(Client) -> Fut,
        answer: impl FnOnce(O, RemoteReceipt) -> Result<T, RemoteError> + Send + 'static,
    ) -> Result<T, RemoteError>
    where
        O: RequestId,
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        Fut: Future<Output = Result<O, SdkError<E>>> + Send + 'static,
        T: Send + 'static,
    {
        self.exchange(profile, target, request, |p, out| {
            let out = out.map_err(|e| from_sdk(p, e))?;
            let receipt = receipt(out.request_id());
            answer(out, receipt)
        })
    }

    /// Runs `call` on the runtime and waits for it here, at most the timeout.
    fn run<T, F>(&self, profile: &Profile, call: F) -> Result<T, RemoteError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, RemoteError>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(errors::local(
                ErrorKind::KmsInternal,
                "remote KMS runtime stopped",
            ));
        };
        let timeout = self.settings.timeout;
        let late = errors::timed_out(profile, timeout);
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            let result = tokio::time::timeout(timeout, call)
                .await
                .unwrap_or(Err(late));
            // The caller may have given up already: nothing to tell then.
            let _ = tx.send(result);
        });
        // The task above always answers within `timeout`; the margin only covers a
        // runtime too busy to run it, so a worker still never hangs.
        match rx.recv_timeout(timeout + Duration::from_millis(500)) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(errors::timed_out(profile, timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(errors::local(
                ErrorKind::KmsInternal,
                "remote KMS call was dropped",
            )),
        }
    }
}

/// The system's roots plus the settings' (or `AWS_CA_BUNDLE`'s) PEM certificates.
fn tls_context(settings: &RemoteSettings) -> Result<tls::TlsContext, RemoteError> {
    let bundle = settings.ca_bundle.clone().or_else(|| {
        std::env::var_os("AWS_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut trust = tls::TrustStore::default();
    if let Some(path) = &bundle {
        let pem = std::fs::read(path).map_err(|e| {
            errors::local(
                ErrorKind::KmsInternal,
                format!("cannot read the CA bundle {}: {e}", path.display()),
            )
        })?;
        trust = trust.with_pem_certificate(pem);
    }
    tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| {
            errors::local(
                ErrorKind::KmsInternal,
                format!("TLS settings of the remote KMS client: {e}"),
            )
        })
}

impl Drop for SdkRemote {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn receipt(id: Option<&str>) -> RemoteReceipt {
    RemoteReceipt {
        request_id: id.map(str::to_string),
    }
}

fn context_map(context: &Context) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// A dry run's outcome: `DryRunOperationException` means the real call would have
/// passed, and so does a KMS that ignores DryRun and answers.
fn dry_run_answer<O, E>(
    profile: &Profile,
    out: Result<O, SdkError<E>>,
) -> Result<RemoteReceipt, RemoteError>
where
    O: RequestId,
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let err = match out {
        Ok(o) => return Ok(receipt(o.request_id())),
        Err(e) => e,
    };
    let mapped = from_sdk(profile, err);
    if mapped.error.kind == ErrorKind::DryRunOperation {
        Ok(mapped.receipt)
    } else {
        Err(mapped)
    }
}

/// An answer without what the call must return (`what`): the remote is not usable.
fn incomplete(what: &str, receipt: &RemoteReceipt) -> RemoteError {
    RemoteError {
        error: crate::kms::KmsError::new(
            ErrorKind::KmsInternal,
            format!("the remote KMS returned {what}"),
        ),
        receipt: receipt.clone(),
    }
}

/// The non-empty ciphertext blob of an answer.
fn wrapped_blob(blob: Option<Blob>, receipt: &RemoteReceipt) -> Result<Vec<u8>, RemoteError> {
    blob.map(Blob::into_inner)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| incomplete("no CiphertextBlob", receipt))
}

/// A 32-byte plaintext from the remote as a [`DataKey`]; the SDK's buffer is wiped.
fn data_key(plaintext: Option<Blob>, receipt: &RemoteReceipt) -> Result<DataKey, RemoteError> {
    let mut bytes = plaintext.map(Blob::into_inner).unwrap_or_default();
    let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map(DataKey::from_bytes);
    let len = bytes.len();
    bytes.zeroize();
    key.map_err(|_| incomplete(&format!("a {len}-byte data key, not {KEY_LEN}"), receipt))
}

/// `Decrypt` of `wrapped` with `KeyId = target.key_arn` and `context`, to send as is or
/// as a dry run.
fn decrypt_request(
    c: &Client,
    target: &Target,
    wrapped: &[u8],
    context: &Context,
) -> DecryptFluentBuilder {
    c.decrypt()
        .key_id(&target.key_arn)
        .ciphertext_blob(Blob::new(wrapped.to_vec()))
        .set_encryption_context(context_map(context))
}

/// `Encrypt` of `plaintext` under `target.key_arn` with `context`, to send as is or as a
/// dry run.
fn encrypt_request(
    c: &Client,
    target: &Target,
    plaintext: Blob,
    context: &Context,
) -> EncryptFluentBuilder {
    c.encrypt()
        .key_id(&target.key_arn)
        .plaintext(plaintext)
        .set_encryption_context(context_map(context))
}

impl RemoteKeys for SdkRemote {
    fn generate_data_key(
        &self,
        profile: &Profile,
        target: &Target,
        context: &Context,
    ) -> Result<RemoteDataKey, RemoteError> {
        let request = |c: Client| {
            c.generate_data_key()
                .key_id(&target.key_arn)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(context_map(context))
                .send()
        };
        let key = target.key_arn.clone();
        self.send(profile, target, request, move |out, receipt| {
            let key_arn = out.key_id.unwrap_or(key);
            let data = data_key(out.plaintext, &receipt)?;
            let wrapped = wrapped_blob(out.ciphertext_blob, &receipt)?;
            Ok(RemoteDataKey {
                key: data,
                wrapped,
                key_arn,
                receipt,
            })
        })
    }

    fn decrypt(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &Context,
    ) -> Result<(DataKey, RemoteReceipt), RemoteError> {
        let request = |c: Client| decrypt_request(&c, target, wrapped, context).send();
        self.send(profile, target, request, |out, receipt| {
            let data = data_key(out.plaintext, &receipt)?;
            Ok((data, receipt))
        })
    }

    fn encrypt(
        &self,
        profile: &Profile,
        target: &Target,
        key: &DataKey,
        context: &Context,
    ) -> Result<(Vec<u8>, RemoteReceipt), RemoteError> {
        // The SDK's request buffer is not zeroizing; it lives only for this call.
        let plaintext = Blob::new(key.expose().to_vec());
        let request = |c: Client| encrypt_request(&c, target, plaintext, context).send();
        self.send(profile, target, request, |out, receipt| {
            Ok((wrapped_blob(out.ciphertext_blob, &receipt)?, receipt))
        })
    }

    fn encrypt_allowed(
        &self,
        profile: &Profile,
        target: &Target,
        context: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        // A throwaway plaintext: with DryRun nothing is wrapped, and a KMS that ignores
        // DryRun wraps only these zeros.
        let zeros = Blob::new(vec![0u8; KEY_LEN]);
        let request = |c: Client| {
            encrypt_request(&c, target, zeros, context)
                .dry_run(true)
                .send()
        };
        self.exchange(profile, target, request, dry_run_answer)
    }

    /// `Decrypt` of `wrapped` with `DryRun = true`: whether `profile` may decrypt it, for
    /// `kmsfs whoami`. `DryRunOperationException` is a yes; a KMS without DryRun that
    /// decrypts is a yes too (the plaintext is dropped at once).
    fn decrypt_dry_run(
        &self,
        profile: &Profile,
        target: &Target,
        wrapped: &[u8],
        context: &Context,
    ) -> Result<RemoteReceipt, RemoteError> {
        let request = |c: Client| {
            decrypt_request(&c, target, wrapped, context)
                .dry_run(true)
                .send()
        };
        self.exchange(profile, target, request, |p, out| {
            let wiped = out.map(|mut o| {
                if let Some(pt) = o.plaintext.take() {
                    pt.into_inner().zeroize();
                }
                o
            });
            dry_run_answer(p, wiped)
        })
    }

    fn describe_key(
        &self,
        profile: &Profile,
        target: &Target,
    ) -> Result<(Value, RemoteReceipt), RemoteError> {
        let request = |c: Client| c.describe_key().key_id(&target.key_arn).send();
        self.send(profile, target, request, |out, receipt| {
            let meta = out.key_metadata.as_ref().map_or(Value::Null, |m| {
                json!({
                    "KeyId": m.key_id(),
                    "Arn": m.arn(),
                    "KeyState": m.key_state().map(|s| s.as_str()),
                    "KeyUsage": m.key_usage().map(|s| s.as_str()),
                    "KeySpec": m.key_spec().map(|s| s.as_str()),
                    "Enabled": m.enabled(),
                    "Description": m.description(),
                    "KeyManager": m.key_manager().map(|s| s.as_str()),
                    "Origin": m.origin().map(|s| s.as_str()),
                })
            });
            Ok((meta, receipt))
        })
    }
}

//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
//! GenerateRandom, and the filesystem's [`DataKeys`] path. The data path reads the state
//! snapshot and cached material only (one `stat` to notice other writers); its only
//! disk write is the audit record. Plaintext never reaches the audit log.

use crate::policy::actions as act;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::admission::{admit, admit_cached};
use super::authz::{Authz, Reuse};
use super::ciphertext::{self, Blob};
use super::managed::VIA_SERVICE;
use super::model::KeyRecord;
use super::ops_asym::{algorithm_condition, is_asymmetric, oaep_for, parse_encryption_algorithm};
use super::provider::{Caller, DataAction, DataKeys, DirRule, NewDataKey, WrappedDataKey};
use super::request::{b64, validation, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::crypto::{self, DataKey, SealingKey};
use crate::policy::EncryptionContext;
use base64::Engine as _;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const MAX_PLAINTEXT: usize = 4096;
const MAX_CIPHERTEXT: usize = 6144;

fn invalid_ciphertext(msg: impl std::fmt::Display) -> KmsError {
    err(ErrorKind::InvalidCiphertext, msg.to_string())
}

static EMPTY_CONTEXT: std::sync::OnceLock<EncryptionContext> = std::sync::OnceLock::new();

fn ctx_or_empty(ctx: Option<&EncryptionContext>) -> &EncryptionContext {
    ctx.unwrap_or_else(|| EMPTY_CONTEXT.get_or_init(EncryptionContext::new))
}

impl Service {
    /// Encrypts under the key's current material version (see [`ciphertext`]).
    pub(crate) fn seal_with(
        &self,
        k: &KeyRecord,
        plaintext: &[u8],
        ctx: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>, KmsError> {
        let v = k.current_version.ok_or_else(|| {
            err(
                ErrorKind::KmsInvalidState,
                format!("{} has no key material", k.arn),
            )
        })?;
        let key = self.cipher_key(&k.key_id, v)?;
        let header = ciphertext::header(&k.key_id, v).map_err(|e| internal(e.to_string()))?;
        let aad = ciphertext::aad(&header, ctx_or_empty(ctx));
        let sealed = key
            .seal(&aad, plaintext)
            .map_err(|e| internal(e.to_string()))?;
        let mut out = header.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a parsed blob with the material version it names.
    pub(crate) fn open_with(
        &self,
        k: &KeyRecord,
        blob: &Blob<'_>,
        ctx: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if !k.materials.iter().any(|m| m.version == blob.version) {
            return Err(invalid_ciphertext(
                "the ciphertext names a key material version this key does not have",
            ));
        }
        let key = self.cipher_key(&k.key_id, blob.version)?;
        let aad = ciphertext::aad(blob.header, ctx_or_empty(ctx));
        key.open(&aad, blob.sealed).map_err(|_| {
            invalid_ciphertext(
                "the ciphertext is damaged, or the encryption context does not match the one it was encrypted with",
            )
        })
    }

    pub(crate) fn encrypt(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let plaintext = r.blob("Plaintext")?;
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(validation(format!(
                "Plaintext must be 1 to {MAX_PLAINTEXT} bytes (it is {})",
                plaintext.len()
            )));
        }
        let ctx = r.opt_context("EncryptionContext")?;
        let alg = parse_encryption_algorithm(&r, "EncryptionAlgorithm")?;
        super::ops_grants::check_grant_tokens(&r)?;
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::ENCRYPT.iam, Some(k))
            .context(ctx.as_ref())
            .set("kms:EncryptionAlgorithm", algorithm_condition(alg))
            .request_alias(alias);
        admit(self, call, &snap.state, vec![(&act::ENCRYPT, a)], Some(&r))?;
        let blob = match oaep_for(k, alg, "EncryptionAlgorithm", ctx.is_some())? {
            Some(hash) => self.rsa_encrypt(k, hash, &plaintext)?,
            None => self.seal_with(k, &plaintext, ctx.as_ref())?,
        };
        Ok(json!({
            "CiphertextBlob": b64().encode(blob),
            "KeyId": k.arn,
            "EncryptionAlgorithm": algorithm_condition(alg),
        }))
    }

    pub(crate) fn decrypt(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let blob = r.blob("CiphertextBlob")?;
        if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
            return Err(validation(format!(
                "CiphertextBlob must be 1 to {MAX_CIPHERTEXT} bytes"
            )));
        }
        let ctx = r.opt_context("EncryptionContext")?;
        let alg = parse_encryption_algorithm(&r, "EncryptionAlgorithm")?;
        super::ops_grants::check_grant_tokens(&r)?;
        r.refuse_recipient()?;
        let key_param = r.opt_str("KeyId")?;
        if let Some(kid) = key_param {
            self.ensure_default_if_named(call, kid)?;
        }
        let snap = self.snapshot()?;
        // An asymmetric ciphertext is raw RSA output that names no key: the request's
        // KeyId is the key (AWS requires it for asymmetric keys).
        let named = match key_param {
            Some(kid) => Some(self.find_key(call, &snap.state, kid, true)?),
            None => None,
        };
        let (k, parsed, alias_used) = match named {
            Some((nk, alias)) if is_asymmetric(nk) => (nk, None, alias),
            _ => {
                let parsed = ciphertext::parse(&blob).map_err(invalid_ciphertext)?;
                let (k, _) = self.find_key(call, &snap.state, parsed.key_id, false)?;
                let mut alias_used = None;
                if let Some((nk, alias)) = named {
                    if nk.key_id != k.key_id {
                        return Err(err(
                            ErrorKind::IncorrectKey,
                            "The key ID in the request does not identify a KMS key that can perform this operation.",
                        ));
                    }
                    alias_used = alias;
                }
                (k, Some(parsed), alias_used)
            }
        };
        let a = Authz::new(act::DECRYPT.iam, Some(k))
            .context(ctx.as_ref())
            .set("kms:EncryptionAlgorithm", algorithm_condition(alg))
            .request_alias(alias_used);
        admit(self, call, &snap.state, vec![(&act::DECRYPT, a)], Some(&r))?;
        let plain = match (
            oaep_for(k, alg, "EncryptionAlgorithm", ctx.is_some())?,
            parsed,
        ) {
            (Some(hash), _) => self.rsa_decrypt(k, hash, &blob)?,
            (None, Some(parsed)) => self.open_with(k, &parsed, ctx.as_ref())?,
            (None, None) => return Err(invalid_ciphertext("the ciphertext names no key")),
        };
        Ok(json!({
            "KeyId": k.arn,
            "Plaintext": b64().encode(&*plain),
            "EncryptionAlgorithm": algorithm_condition(alg),
        }))
    }

    pub(crate) fn re_encrypt(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let blob = r.blob("CiphertextBlob")?;
        let src_ctx = r.opt_context("SourceEncryptionContext")?;
        let dst_ctx = r.opt_context("DestinationEncryptionContext")?;
        let dst_id = r.str("DestinationKeyId")?;
        let src_alg = parse_encryption_algorithm(&r, "SourceEncryptionAlgorithm")?;
        let dst_alg = parse_encryption_algorithm(&r, "DestinationEncryptionAlgorithm")?;
        super::ops_grants::check_grant_tokens(&r)?;
        self.ensure_default_if_named(call, dst_id)?;
        if let Some(s) = r.opt_str("SourceKeyId")? {
            self.ensure_default_if_named(call, s)?;
        }
        let snap = self.snapshot()?;
        let named = match r.opt_str("SourceKeyId")? {
            Some(s) => Some(self.find_key(call, &snap.state, s, true)?.0),
            None => None,
        };
        // As in Decrypt: an asymmetric source is the one SourceKeyId names.
        let (src, parsed) = match named {
            Some(nk) if is_asymmetric(nk) => (nk, None),
            _ => {
                let parsed = ciphertext::parse(&blob).map_err(invalid_ciphertext)?;
                let (src, _) = self.find_key(call, &snap.state, parsed.key_id, false)?;
                if named.is_some_and(|nk| nk.key_id != src.key_id) {
                    return Err(err(
                        ErrorKind::IncorrectKey,
                        "The key ID in the request does not identify a KMS key that can perform this operation.",
                    ));
                }
                (src, Some(parsed))
            }
        };
        let (dst, dst_alias) = self.find_key(call, &snap.state, dst_id, true)?;
        let same = (src.key_id == dst.key_id).to_string();
        let from = Authz::new(act::RE_ENCRYPT_FROM.iam, Some(src))
            .context(src_ctx.as_ref())
            .set("kms:ReEncryptOnSameKey", same.clone())
            .set("kms:EncryptionAlgorithm", algorithm_condition(src_alg));
        let a = Authz::new(act::RE_ENCRYPT_TO.iam, Some(dst))
            .context(dst_ctx.as_ref())
            .set("kms:ReEncryptOnSameKey", same)
            .set("kms:EncryptionAlgorithm", algorithm_condition(dst_alg))
            .request_alias(dst_alias);
        let checks = vec![(&act::RE_ENCRYPT_FROM, from), (&act::RE_ENCRYPT_TO, a)];
        admit(self, call, &snap.state, checks, Some(&r))?;
        let src_hash = oaep_for(src, src_alg, "SourceEncryptionAlgorithm", src_ctx.is_some())?;
        let dst_hash = oaep_for(
            dst,
            dst_alg,
            "DestinationEncryptionAlgorithm",
            dst_ctx.is_some(),
        )?;
        let plain = match (src_hash, parsed) {
            (Some(hash), _) => self.rsa_decrypt(src, hash, &blob)?,
            (None, Some(parsed)) => self.open_with(src, &parsed, src_ctx.as_ref())?,
            (None, None) => return Err(invalid_ciphertext("the ciphertext names no key")),
        };
        let out = match dst_hash {
            Some(hash) => self.rsa_encrypt(dst, hash, &plain)?,
            None => self.seal_with(dst, &plain, dst_ctx.as_ref())?,
        };
        Ok(json!({
            "CiphertextBlob": b64().encode(out),
            "SourceKeyId": src.arn,
            "KeyId": dst.arn,
            "SourceEncryptionAlgorithm": algorithm_condition(src_alg),
            "DestinationEncryptionAlgorithm": algorithm_condition(dst_alg),
        }))
    }

    pub(crate) fn generate_data_key_op(
        &self,
        call: &mut Call,
        req: &Value,
        with_plaintext: bool,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let len = match (r.opt_str("KeySpec")?, r.opt_int("NumberOfBytes", 1, 1024)?) {
            (Some(_), Some(_)) => {
                return Err(validation("give KeySpec or NumberOfBytes, not both"))
            }
            (None, None) => {
                return Err(validation(
                    "give KeySpec (AES_256 or AES_128) or NumberOfBytes",
                ))
            }
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (Some(s), None) => {
                return Err(validation(format!(
                    "KeySpec \"{s}\" is not valid; use AES_256 or AES_128"
                )))
            }
            (None, Some(n)) => usize::try_from(n).unwrap_or(32),
        };
        let ctx = r.opt_context("EncryptionContext")?;
        super::ops_grants::check_grant_tokens(&r)?;
        r.refuse_recipient()?;
        let op = if with_plaintext {
            &act::GENERATE_DATA_KEY
        } else {
            &act::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT
        };
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(op.iam, Some(k))
            .context(ctx.as_ref())
            .request_alias(alias);
        admit(self, call, &snap.state, vec![(op, a)], Some(&r))?;
        let data = Zeroizing::new(crypto::random_bytes(len).map_err(|e| internal(e.to_string()))?);
        let blob = self.seal_with(k, &data, ctx.as_ref())?;
        let mut out = json!({ "CiphertextBlob": b64().encode(blob), "KeyId": k.arn });
        if with_plaintext {
            if let Value::Object(o) = &mut out {
                o.insert("Plaintext".into(), Value::String(b64().encode(&*data)));
            }
        }
        Ok(out)
    }

    pub(crate) fn generate_random(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let n = r
            .opt_int("NumberOfBytes", 1, 1024)?
            .ok_or_else(|| validation("NumberOfBytes (1 to 1024) is required"))?;
        if r.has("CustomKeyStoreId") {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                "kmsfs has no custom key stores",
            ));
        }
        let snap = self.snapshot()?;
        self.authorize(
            call,
            &snap.state,
            Authz::new(act::GENERATE_RANDOM.iam, None),
        )?;
        let bytes = Zeroizing::new(
            crypto::random_bytes(usize::try_from(n).unwrap_or(32))
                .map_err(|e| internal(e.to_string()))?,
        );
        Ok(json!({ "Plaintext": b64().encode(&*bytes) }))
    }

    // ----- the filesystem's path ---------------------------------------------------------

    fn fs_generate(
        &self,
        call: &mut Call,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<(Value, NewDataKey), KmsError> {
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot_seen(call.changes)?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::GENERATE_DATA_KEY.iam, Some(k))
            .context(Some(context))
            .request_alias(alias);
        admit_cached(
            self,
            call,
            &snap,
            vec![(&act::GENERATE_DATA_KEY, a)],
            Reuse::Once,
        )?;
        let key = DataKey::generate().map_err(|e| internal(e.to_string()))?;
        let wrapped = self.seal_with(k, key.expose(), Some(context))?;
        Ok((
            json!({ "KeyId": k.arn }),
            NewDataKey {
                key,
                wrapped,
                key_arn: k.arn.clone(),
            },
        ))
    }

    fn fs_wrap(
        &self,
        call: &mut Call,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<(Value, WrappedDataKey), KmsError> {
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot_seen(call.changes)?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::ENCRYPT.iam, Some(k))
            .context(Some(context))
            .request_alias(alias);
        admit_cached(self, call, &snap, vec![(&act::ENCRYPT, a)], Reuse::Once)?;
        let wrapped = self.seal_with(k, key.expose(), Some(context))?;
        Ok((
            json!({ "KeyId": k.arn }),
            WrappedDataKey {
                wrapped,
                key_arn: k.arn.clone(),
            },
        ))
    }

    fn fs_open(
        &self,
        call: &mut Call,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<(Value, DataKey), KmsError> {
        let parsed = ciphertext::parse(wrapped).map_err(invalid_ciphertext)?;
        let snap = self.snapshot_seen(call.changes)?;
        let (k, _) = self.find_key(call, &snap.state, parsed.key_id, false)?;
        if actions.is_empty() {
            return Err(validation("open_data_key needs at least one action"));
        }
        // Encrypt and Decrypt share the key-state rule (Enabled), so gating each action
        // answers as gating Decrypt alone did.
        let checks = actions
            .iter()
            .map(|action| {
                let op = match action {
                    DataAction::Decrypt => &act::DECRYPT,
                    DataAction::Encrypt => &act::ENCRYPT,
                };
                (op, Authz::new(op.iam, Some(k)).context(Some(context)))
            })
            .collect();
        admit_cached(self, call, &snap, checks, Reuse::Again)?;
        let plain = self.open_with(k, &parsed, Some(context))?;
        let key = DataKey::from_slice(&plain)
            .ok_or_else(|| invalid_ciphertext("the wrapped data key is not 32 bytes long"))?;
        // Decrypt is read-only: its record carries no response elements, so none are
        // built per open (finish_with would drop them).
        debug_assert!(super::operations::is_read_only(act::DECRYPT.name));
        Ok((Value::Null, key))
    }
}

fn fs_request(key_id: Option<&str>, context: &EncryptionContext, actions: &[DataAction]) -> Value {
    let mut v = json!({ "EncryptionContext": context });
    if let Value::Object(o) = &mut v {
        if let Some(k) = key_id {
            o.insert("KeyId".into(), json!(k));
            o.insert("KeySpec".into(), json!("AES_256"));
        }
        if !actions.is_empty() {
            let names: Vec<&str> = actions
                .iter()
                .map(|a| match a {
                    DataAction::Decrypt => act::DECRYPT.name,
                    DataAction::Encrypt => act::ENCRYPT.name,
                })
                .collect();
            o.insert("kmsfsOpenFor".into(), json!(names));
        }
    }
    v
}

/// The audit values of an open (its request parameters and `fs` ids), built once per
/// encryption context and list of actions and shared by every later open of the same
/// file, instead of a dozen small JSON allocations (and frees) per open. They render
/// only the context and the action names the caller passes, never anything of the
/// state, the principals or the key: nothing can make an entry stale, so entries are
/// never invalidated, only bounded in number.
///
/// A context is kept only when it is asked for the second time (see
/// [`Sightings`](super::authz::cache::Sightings)): a stream of files each opened once
/// builds its values for its one record and keeps nothing.
#[derive(Default)]
pub(crate) struct OpenValues {
    by_context: Mutex<ContextMap>,
}

#[derive(Default)]
struct ContextMap {
    map: HashMap<EncryptionContext, ContextValues>,
    /// Contexts asked for once.
    seen: super::authz::cache::Sightings,
    hasher: std::collections::hash_map::RandomState,
}

struct ContextValues {
    fs: Arc<Value>,
    /// The request per action list ([`actions_code`]): one or two lists in practice.
    requests: Vec<(u32, Arc<Value>)>,
}

/// Contexts kept at most (each names one file): past it the cache starts over, so
/// memory stays bounded whatever the number of files opened. 512 keeps a working set
/// of often reopened files (what sharing saves on) while a scan of thousands of
/// distinct files costs at most about a megabyte: at 4 096 the full benchmark's daemon
/// peak grew from about 20 to about 28 MB.
const MAX_OPEN_CONTEXTS: usize = 512;

impl OpenValues {
    /// The (request parameters, `fs`) values of an open of `context` for `actions`:
    /// equal to `fs_request(None, context, actions)` and `json!(context)`.
    fn get(&self, context: &EncryptionContext, actions: &[DataAction]) -> (Arc<Value>, Arc<Value>) {
        let Some(code) = actions_code(actions) else {
            // Not a list an open passes (empty, or longer than any real one): not kept.
            return (
                Arc::new(fs_request(None, context, actions)),
                Arc::new(json!(context)),
            );
        };
        let fs = {
            let mut cm = self.by_context.lock().unwrap_or_else(|e| e.into_inner());
            match cm.map.get(context) {
                Some(cv) => {
                    if let Some((_, req)) = cv.requests.iter().find(|(c, _)| *c == code) {
                        return (req.clone(), cv.fs.clone());
                    }
                    Some(cv.fs.clone())
                }
                None => {
                    let h = cm.hasher.hash_one(context);
                    if !cm.seen.second(h) {
                        drop(cm);
                        // Asked for the first time: built for this open alone.
                        return (
                            Arc::new(fs_request(None, context, actions)),
                            Arc::new(json!(context)),
                        );
                    }
                    None
                }
            }
        };
        // Built outside the lock: other opens do not wait on the allocations.
        let req = Arc::new(fs_request(None, context, actions));
        let fs = fs.unwrap_or_else(|| Arc::new(json!(context)));
        let mut cm = self.by_context.lock().unwrap_or_else(|e| e.into_inner());
        let map = &mut cm.map;
        if map.len() >= MAX_OPEN_CONTEXTS && !map.contains_key(context) {
            map.clear();
        }
        let cv = map.entry(context.clone()).or_insert_with(|| ContextValues {
            fs: fs.clone(),
            requests: Vec::new(),
        });
        if !cv.requests.iter().any(|(c, _)| *c == code) {
            cv.requests.push((code, req.clone()));
        }
        (req, fs)
    }
}

/// A list of actions as one number (base 3, digits 1 and 2, so that the order and the
/// length count); None for an empty list or one longer than a real open's.
fn actions_code(actions: &[DataAction]) -> Option<u32> {
    if actions.is_empty() || actions.len() > 8 {
        return None;
    }
    Some(actions.iter().fold(0u32, |code, a| {
        code * 3
            + match a {
                DataAction::Decrypt => 1,
                DataAction::Encrypt => 2,
            }
    }))
}

impl DataKeys for Service {
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<NewDataKey, KmsError> {
        let req = fs_request(Some(key_id), context, &[]);
        let mut call = match self.begin(caller, Some(VIA_SERVICE)) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, act::GENERATE_DATA_KEY.name, &e);
                return Err(e);
            }
        };
        // The encryption context carries the volume and file ids: path-free by design.
        call.fs = Some(Arc::new(json!(context)));
        let (res, out) = match self.fs_generate(&mut call, key_id, context) {
            Ok((v, k)) => (Ok(v), Some(k)),
            Err(e) => (Err(e), None),
        };
        self.finish_owned(call, act::GENERATE_DATA_KEY.name, req, res)?;
        out.ok_or_else(|| internal("data key missing after a successful call"))
    }

    fn open_data_key(
        &self,
        caller: &Caller,
        _key_arn: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
        actions: &[DataAction],
    ) -> Result<DataKey, KmsError> {
        let mut call = match self.begin(caller, Some(VIA_SERVICE)) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, act::DECRYPT.name, &e);
                return Err(e);
            }
        };
        let (req, fs) = self.open_values.get(context, actions);
        call.fs = Some(fs);
        let (res, out) = match self.fs_open(&mut call, wrapped, context, actions) {
            Ok((v, k)) => (Ok(v), Some(k)),
            Err(e) => (Err(e), None),
        };
        self.finish_shared(call, act::DECRYPT.name, req, res)?;
        out.ok_or_else(|| internal("data key missing after a successful call"))
    }

    fn wrap_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedDataKey, KmsError> {
        let mut req = fs_request(Some(key_id), context, &[]);
        if let Value::Object(o) = &mut req {
            // Encrypt takes a plaintext, not a key spec.
            o.remove("KeySpec");
        }
        let mut call = match self.begin(caller, Some(VIA_SERVICE)) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, act::ENCRYPT.name, &e);
                return Err(e);
            }
        };
        call.fs = Some(Arc::new(json!(context)));
        let (res, out) = match self.fs_wrap(&mut call, key_id, key, context) {
            Ok((v, w)) => (Ok(v), Some(w)),
            Err(e) => (Err(e), None),
        };
        self.finish_owned(call, act::ENCRYPT.name, req, res)?;
        out.ok_or_else(|| internal("wrapped key missing after a successful call"))
    }

    fn volume_secret(&self, volume_id: &str) -> Result<SealingKey, KmsError> {
        if volume_id.is_empty() || volume_id.len() > 256 {
            return Err(validation("a volume id must be 1 to 256 characters"));
        }
        if let Some(k) = self
            .volume_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(volume_id)
        {
            return Ok(k.duplicate());
        }
        let label = format!("volume:{volume_id}");
        let snap = self.snapshot()?;
        let sealed_b64 = match snap.state.volume_secrets.get(volume_id) {
            Some(s) => s.clone(),
            None => self.mutate(|st| {
                if let Some(s) = st.volume_secrets.get(volume_id) {
                    return Ok((s.clone(), false));
                }
                let secret = SealingKey::generate().map_err(|e| internal(e.to_string()))?;
                let sealed = self.store.seal_secret(&label, secret.expose())?;
                let s = b64().encode(sealed);
                st.volume_secrets.insert(volume_id.to_string(), s.clone());
                Ok((s, true))
            })?,
        };
        let sealed = b64().decode(&sealed_b64).map_err(|_| {
            internal(format!(
                "the sealed secret of volume {volume_id} is damaged"
            ))
        })?;
        let plain = self.store.open_secret(&label, &sealed).ok_or_else(|| {
            internal(format!(
                "the sealed secret of volume {volume_id} fails authentication"
            ))
        })?;
        let key = SealingKey::from_slice(&plain).ok_or_else(|| {
            internal(format!(
                "the secret of volume {volume_id} has the wrong length"
            ))
        })?;
        self.volume_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(volume_id.to_string(), std::sync::Arc::new(key.duplicate()));
        Ok(key)
    }

    fn dir_rule(&self, volume_id: &str, dir_id: &[u8; 16]) -> Result<Option<DirRule>, KmsError> {
        self.fs_dir_rule(volume_id, dir_id)
    }

    fn record_dir_rule(
        &self,
        caller: &Caller,
        volume_id: &str,
        dir_id: &[u8; 16],
        rule: &DirRule,
    ) -> Result<(), KmsError> {
        self.fs_record_dir_rule(caller, volume_id, dir_id, rule)
    }

    fn dir_rules_imported(&self, volume_id: &str) -> Result<bool, KmsError> {
        self.fs_dir_rules_imported(volume_id)
    }

    fn import_dir_rules(
        &self,
        volume_id: &str,
        rules: &[([u8; 16], String)],
    ) -> Result<(), KmsError> {
        self.fs_import_dir_rules(volume_id, rules)
    }
}

#[cfg(test)]
mod tests {
    use super::{fs_request, OpenValues, MAX_OPEN_CONTEXTS};
    use crate::audit::canonical_bytes;
    use crate::kms::provider::DataAction::{Decrypt, Encrypt};
    use crate::policy::EncryptionContext;
    use serde_json::json;
    use std::sync::Arc;

    fn ctx(file: &str) -> EncryptionContext {
        [
            ("kmsfs:volume", "v"),
            ("kmsfs:file", file),
            ("zz\"\u{1}", "é"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The shared values are the values each open used to build for itself: the same
    /// canonical bytes, so the same records; a repeated open gets the same allocation.
    #[test]
    fn shared_open_values_equal_freshly_built_ones() {
        let cache = OpenValues::default();
        let lists = [
            &[Decrypt][..],
            &[Encrypt][..],
            &[Decrypt, Encrypt][..],
            &[Encrypt, Decrypt][..],
            &[Encrypt, Encrypt, Decrypt][..],
            &[][..],
        ];
        for file in ["f1", "f2"] {
            let c = ctx(file);
            // Asked for once: built for that open, not kept.
            let (req, fs) = cache.get(&c, lists[0]);
            let (again, fs_again) = cache.get(&c, lists[0]);
            assert!(!Arc::ptr_eq(&req, &again) && !Arc::ptr_eq(&fs, &fs_again));
            for actions in lists {
                let (req, fs) = cache.get(&c, actions);
                assert_eq!(
                    canonical_bytes(&req),
                    canonical_bytes(&fs_request(None, &c, actions))
                );
                assert_eq!(canonical_bytes(&fs), canonical_bytes(&json!(c)));
                let (again, fs_again) = cache.get(&c, actions);
                assert_eq!(Arc::ptr_eq(&req, &again), !actions.is_empty());
                assert_eq!(Arc::ptr_eq(&fs, &fs_again), !actions.is_empty());
            }
        }
        // Another file's context never gets this one's values.
        let (r1, _) = cache.get(&ctx("f1"), &[Decrypt]);
        let (r2, _) = cache.get(&ctx("f2"), &[Decrypt]);
        assert!(!Arc::ptr_eq(&r1, &r2));
        assert_ne!(canonical_bytes(&r1), canonical_bytes(&r2));
    }

    /// A stream of contexts each asked for once keeps none of them; a context asked for
    /// a second time is kept from then on, and a third ask gets the same values.
    #[test]
    fn only_a_context_asked_for_again_is_kept() {
        let cache = OpenValues::default();
        for n in 0..2000 {
            let c = ctx(&format!("once{n}"));
            let (req, fs) = cache.get(&c, &[Decrypt]);
            assert_eq!(
                canonical_bytes(&req),
                canonical_bytes(&fs_request(None, &c, &[Decrypt]))
            );
            assert_eq!(canonical_bytes(&fs), canonical_bytes(&json!(c)));
        }
        assert_eq!(cache.by_context.lock().unwrap().map.len(), 0);
        let c = ctx("twice");
        let (r1, _) = cache.get(&c, &[Decrypt]);
        assert_eq!(cache.by_context.lock().unwrap().map.len(), 0);
        let (r2, f2) = cache.get(&c, &[Decrypt]);
        assert_eq!(cache.by_context.lock().unwrap().map.len(), 1);
        let (r3, f3) = cache.get(&c, &[Decrypt]);
        assert!(!Arc::ptr_eq(&r1, &r2));
        assert!(Arc::ptr_eq(&r2, &r3) && Arc::ptr_eq(&f2, &f3));
    }

    #[test]
    fn the_open_values_cache_stays_bounded() {
        let cache = OpenValues::default();
        for n in 0..MAX_OPEN_CONTEXTS + 10 {
            let c = ctx(&format!("f{n}"));
            cache.get(&c, &[Decrypt]);
            let (req, fs) = cache.get(&c, &[Decrypt]);
            assert_eq!(
                canonical_bytes(&req),
                canonical_bytes(&fs_request(None, &c, &[Decrypt]))
            );
            assert_eq!(canonical_bytes(&fs), canonical_bytes(&json!(c)));
        }
        let kept = cache.by_context.lock().unwrap().map.len();
        assert!(kept <= MAX_OPEN_CONTEXTS, "{kept} contexts kept");
    }
}

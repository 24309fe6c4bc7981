//! Reading AWS KMS JSON requests: typed accessors over the request object that turn a
//! missing, mistyped or out-of-range field into the error AWS would send, naming the
//! field (SerializationException for a wrong JSON type, else ValidationException).
//! Blobs are base64 strings, as in AWS's JSON protocol. Owns no state and never logs
//! values (they can be plaintext).

use base64::Engine as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{ErrorKind, KmsError};
use crate::policy::EncryptionContext;

pub fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn validation(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::Validation, msg)
}

/// A member of the wrong JSON type: AWS answers SerializationException, not
/// ValidationException (its deserializer fails before any constraint is checked).
fn mistyped(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::Serialization, msg)
}

/// AWS's wording for a missing required member.
fn missing(name: &str) -> KmsError {
    validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(name)
    ))
}

pub(crate) fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

/// A request object.
pub struct Req<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Req<'a> {
    pub fn new(v: &'a Value) -> Result<Req<'a>, KmsError> {
        match v {
            Value::Object(map) => Ok(Req { map }),
            Value::Null => Ok(Req {
                map: EMPTY.get_or_init(Map::new),
            }),
            _ => Err(validation("the request body must be a JSON object")),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Refuses `Recipient` (Decrypt, GenerateDataKey*, DeriveSharedSecret): it asks for
    /// the answer sealed to a Nitro enclave's attested key, which kmsfs cannot check.
    pub fn refuse_recipient(&self) -> Result<(), KmsError> {
        if self.has("Recipient") {
            return Err(KmsError::new(
                ErrorKind::UnsupportedOperation,
                "kmsfs has no Nitro enclave attestation (Recipient)",
            ));
        }
        Ok(())
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(mistyped(format!("{name} must be a string"))),
        }
    }

    pub fn str(&self, name: &str) -> Result<&'a str, KmsError> {
        self.opt_str(name)?.ok_or_else(|| missing(name))
    }

    /// A required string of 1..=max characters.
    pub fn str_len(&self, name: &str, max: usize) -> Result<&'a str, KmsError> {
        let s = self.str(name)?;
        check_len(name, s, 1, max)?;
        Ok(s)
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(mistyped(format!("{name} must be true or false"))),
        }
    }

    pub fn flag(&self, name: &str) -> Result<bool, KmsError> {
        Ok(self.opt_bool(name)?.unwrap_or(false))
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| mistyped(format!("{name} must be an integer")))?;
                if n < min || n > max {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {min} and {max}",
                        lower_first(name)
                    )));
                }
                Ok(Some(n))
            }
        }
    }

    /// A timestamp: epoch seconds (a number, as AWS's JSON protocol sends it), or an
    /// RFC 3339 string or a string of epoch seconds (as people type it).
    pub fn opt_time(&self, name: &str) -> Result<Option<i64>, KmsError> {
        let bad = || {
            validation(format!(
                "{name} must be a timestamp: epoch seconds or RFC 3339 (2030-01-01T00:00:00Z)"
            ))
        };
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if let Ok(n) = s.trim().parse::<i64>() {
                    return Ok(Some(n));
                }
                time::OffsetDateTime::parse(
                    s.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .map(|t| Some(t.unix_timestamp()))
                .map_err(|_| bad())
            }
            Some(v) => v.as_f64().map(|f| Some(f as i64)).ok_or_else(bad),
        }
    }

    pub fn opt_blob(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KmsError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(s) => b64()
                .decode(s)
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| validation(format!("{name} is not valid base64"))),
        }
    }

    pub fn blob(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.opt_blob(name)?.ok_or_else(|| missing(name))
    }

    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| mistyped(format!("{name} must be a list of strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(mistyped(format!("{name} must be a list of strings"))),
        }
    }

    /// A string → string map (EncryptionContext and grant constraints).
    pub fn opt_context(&self, name: &str) -> Result<Option<EncryptionContext>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => context_from(name, v).map(Some),
        }
    }

    pub fn opt_obj(&self, name: &str) -> Result<Option<Req<'a>>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Req { map })),
            Some(_) => Err(mistyped(format!("{name} must be an object"))),
        }
    }

    pub fn opt_array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, KmsError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(mistyped(format!("{name} must be a list"))),
        }
    }

    /// Limit (1..=max, default `default`) and Marker for list operations.
    pub fn page(&self, max: i64, default: i64) -> Result<(usize, usize), KmsError> {
        let limit = self.opt_int("Limit", 1, max)?.unwrap_or(default);
        let start = match self.opt_str("Marker")? {
            None => 0,
            Some(m) => m.parse::<usize>().map_err(|_| {
                KmsError::new(
                    ErrorKind::InvalidMarker,
                    "the Marker is not one this service returned",
                )
            })?,
        };
        Ok((usize::try_from(limit).unwrap_or(100), start))
    }
}

pub fn check_len(name: &str, s: &str, min: usize, max: usize) -> Result<(), KmsError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length between {min} and {max}",
            lower_first(name)
        )));
    }
    Ok(())
}

/// Most bytes (UTF-8, keys and values together) an encryption context may hold.
///
/// AWS KMS refuses an oversized encryption context with a ValidationException but we
/// found no published figure; 8192 bytes is the limit other KMS services document for
/// theirs and leaves room for any realistic context (kmsfs's own are ~100 bytes). It
/// also bounds what a call can make the service hash, evaluate and audit.
pub const MAX_ENCRYPTION_CONTEXT_BYTES: usize = 8192;
/// Most pairs an encryption context may hold (kmsfs's bound, well above real use).
pub const MAX_ENCRYPTION_CONTEXT_PAIRS: usize = 64;

/// An encryption context as a person types it: a JSON object of strings, or the
/// shorthand `k=v,k2=v2` (a value may contain `=`). Checked as [`context_from`] checks a
/// request's; the one parser of contexts for the CLI and the service alike.
pub fn context_from_text(name: &str, text: &str) -> Result<EncryptionContext, KmsError> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| {
            validation(format!(
                "{name}: expected a JSON object of string values ({e})"
            ))
        })?;
        return context_from(name, &v);
    }
    let mut m = serde_json::Map::new();
    for pair in t.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(validation(format!("{name}: \"{pair}\" is not key=value")));
        };
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    context_from(name, &Value::Object(m))
}

pub fn context_from(name: &str, v: &Value) -> Result<EncryptionContext, KmsError> {
    let Value::Object(m) = v else {
        return Err(mistyped(format!(
            "{name} must be a map of strings to strings"
        )));
    };
    if m.len() > MAX_ENCRYPTION_CONTEXT_PAIRS {
        return Err(validation(format!(
            "{name} has {} pairs; an encryption context may have at most {MAX_ENCRYPTION_CONTEXT_PAIRS}",
            m.len()
        )));
    }
    let total: usize = m
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.as_str().map_or(0, str::len)))
        .fold(0, usize::saturating_add);
    if total > MAX_ENCRYPTION_CONTEXT_BYTES {
        return Err(validation(format!(
            "{name} is {total} bytes (keys and values, UTF-8); an encryption context may be at most {MAX_ENCRYPTION_CONTEXT_BYTES} bytes"
        )));
    }
    let mut out = EncryptionContext::new();
    for (k, v) in m {
        let Value::String(s) = v else {
            return Err(mistyped(format!(
                "{name}: the value of \"{k}\" must be a string"
            )));
        };
        if k.is_empty() {
            return Err(validation(format!("{name}: keys must not be empty")));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// Slices `items` for a page; returns the page and the NextMarker if more remain.
pub fn paginate<T>(items: Vec<T>, (limit, start): (usize, usize)) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = start.saturating_add(limit);
    let marker = (next < total).then(|| next.to_string());
    (page, marker)
}

/// Adds Truncated and NextMarker to a list response.
pub fn with_marker(mut v: Value, marker: Option<String>) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("Truncated".into(), Value::Bool(marker.is_some()));
        if let Some(mk) = marker {
            m.insert("NextMarker".into(), Value::String(mk));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_is_refused_only_when_present() {
        let with =
            serde_json::json!({ "KeyId": "k", "Recipient": { "AttestationDocument": "AA==" } });
        let err = Req::new(&with).unwrap().refuse_recipient().unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedOperation);
        let without = serde_json::json!({ "KeyId": "k" });
        assert!(Req::new(&without).unwrap().refuse_recipient().is_ok());
    }
}

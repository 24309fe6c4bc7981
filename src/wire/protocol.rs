//! AWS's JSON 1.1 protocol for one request, without I/O: authenticate (SigV4), check
//! the envelope (`POST /`, `X-Amz-Target`, `Content-Type`, a JSON object body), run the
//! operation through the [`WireBackend`], and shape the answer or the error as KMS does
//! (`{"__type": ..., "message": ...}` with AWS's status codes).

use serde_json::Value;
use zeroize::Zeroizing;

use super::sigv4::{self, AuthError, SignableRequest, VerifyError};
use super::{RemoteCaller, WireBackend};
use crate::kms::{ErrorKind, KmsError};

/// The request and response media type of AWS's JSON 1.1 protocol.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `X-Amz-Target: TrentService.<Operation>` names a KMS operation.
pub const TARGET_PREFIX: &str = "TrentService.";

/// An error answer: HTTP status, AWS exception name, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub name: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, name: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            name,
            message: message.into(),
        }
    }

    fn unknown_operation(message: impl Into<String>) -> Self {
        ApiError::new(400, "UnknownOperationException", message)
    }

    fn serialization(message: impl Into<String>) -> Self {
        ApiError::new(400, "SerializationException", message)
    }

    /// The body AWS sends: `{"__type": "...", "message": "..."}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({"__type": self.name, "message": self.message})
            .to_string()
            .into_bytes()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        // AWS answers every authentication failure with 400 on its JSON services.
        ApiError::new(400, e.aws_name(), e.to_string())
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        let status = match e.kind {
            ErrorKind::KmsInternal => 500,
            ErrorKind::DependencyTimeout => 503,
            _ => 400,
        };
        ApiError::new(status, e.kind.aws_name(), e.message)
    }
}

/// One HTTP request as received: header names in any case, `path` and `query` as on
/// the request line.
#[derive(Debug, Clone)]
pub struct WireRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The peer's IP address (CloudTrail's `sourceIPAddress`).
    pub source_ip: String,
}

impl WireRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The key store seen as SigV4's secret lookup.
struct Keys<'a>(&'a dyn WireBackend);

impl sigv4::SecretLookup for Keys<'_> {
    type Error = KmsError;
    fn secret(&self, id: &str) -> Result<Option<Zeroizing<String>>, KmsError> {
        Ok(self.0.access_key(id)?.map(|k| k.secret))
    }
}

/// Answers one request: the operation's JSON output, or the error to send. `now` is the
/// service clock (epoch seconds) for SigV4's skew window.
pub fn handle(
    backend: &dyn WireBackend,
    now: i64,
    req: &WireRequest,
    request_id: &str,
) -> Result<Value, ApiError> {
    let signable = SignableRequest {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: &req.headers,
        body: &req.body,
    };
    let verified = match sigv4::verify(&signable, &backend.region(), now, &Keys(backend)) {
        Ok(v) => v,
        Err(VerifyError::Auth(e)) => return Err(e.into()),
        Err(VerifyError::Lookup(e)) => return Err(e.into()),
    };
    if req.method != "POST" || sigv4::canonical_uri(&req.path) != "/" {
        return Err(ApiError::unknown_operation(format!(
            "kmsfs answers AWS KMS's JSON 1.1 protocol on POST / only, not {} {}",
            req.method, req.path
        )));
    }
    let operation = operation_of(req.header("x-amz-target"))?;
    check_content_type(req.header("content-type"))?;
    let input = parse_body(&req.body)?;
    let who = RemoteCaller {
        access_key_id: verified.access_key_id,
        source_ip: req.source_ip.clone(),
        user_agent: req.header("user-agent").map(str::to_string),
        request_id: request_id.to_string(),
    };
    backend.call(&who, operation, input).map_err(ApiError::from)
}

/// The operation named by `X-Amz-Target`, if kmsfs implements it.
fn operation_of(target: Option<&str>) -> Result<&'static str, ApiError> {
    let Some(target) = target else {
        return Err(ApiError::unknown_operation(
            "the X-Amz-Target header is missing (expected TrentService.<Operation>)",
        ));
    };
    let name = target.strip_prefix(TARGET_PREFIX).ok_or_else(|| {
        ApiError::unknown_operation(format!(
            "X-Amz-Target \"{target}\" does not name a TrentService operation"
        ))
    })?;
    crate::kms::operations::lookup(name)
        .map(crate::kms::operations::Operation::name)
        .ok_or_else(|| {
            ApiError::unknown_operation(format!("kmsfs does not implement the operation {name}"))
        })
}

fn check_content_type(value: Option<&str>) -> Result<(), ApiError> {
    // Parameters (`; charset=utf-8`) are allowed; the media type is not negotiable.
    let media = value
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if media.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ApiError::serialization(format!(
            "Content-Type must be {JSON_CONTENT_TYPE}, not \"{media}\""
        )))
    }
}

/// The operation input: a JSON object (an empty body counts as `{}`).
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::serialization(
            "Start of structure or map expected: the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::serialization(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// A fresh request id in the form AWS uses (a random UUID, version 4).
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // Without randomness an id is still unique enough for logs: fall back to the clock.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    // 16 bytes are always 32 hex digits, so these ranges are in bounds.
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

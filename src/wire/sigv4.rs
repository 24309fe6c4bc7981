//! AWS Signature Version 4: verifying a signed HTTP request (the endpoint's side) and
//! signing one (the tests' and the bench's client side), built from the same canonical
//! request so the two can never drift apart.
//!
//! Only the header form (`Authorization: AWS4-HMAC-SHA256 ...`) is accepted; presigned
//! query strings, chunked (streaming) payloads and session tokens are refused. Never
//! logs a secret, a signing key or a signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The only algorithm SigV4 names.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The service part of the credential scope that this endpoint answers.
pub const SERVICE: &str = "kms";

/// The scope's terminator.
const TERMINATOR: &str = "aws4_request";

/// How far a request's `X-Amz-Date` may be from the service clock, either way (AWS's
/// window).
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// `X-Amz-Content-Sha256` values that mean "the body is not signed": refused, since a
/// KMS request's body is the whole request.
const UNSIGNED_PAYLOADS: &[&str] = &[
    "UNSIGNED-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
];

/// AWS's wording for a signature that does not match.
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// AWS's wording for an unknown access key.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// Why a request is not authenticated, each as the AWS exception that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    MissingToken,
    /// The header is there but incomplete or unparsable.
    #[error("{0}")]
    Incomplete(String),
    /// Unknown access key, or a session token (no STS here).
    #[error("{INVALID_TOKEN}")]
    UnrecognizedClient,
    /// Wrong scope, unsigned required headers, expired, or a signature mismatch.
    #[error("{0}")]
    InvalidSignature(String),
}

impl AuthError {
    /// The AWS exception name (`__type`).
    pub fn aws_name(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
            AuthError::InvalidSignature(_) => "InvalidSignatureException",
        }
    }
}

/// The parts of an HTTP request that SigV4 covers. Header names may be in any case;
/// `path` and `query` are as sent on the request line (still percent-encoded).
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignableRequest<'_> {
    /// Every value of header `name` (case-insensitive), in order.
    fn header_values(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// YYYYMMDD of the scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lowercase names, as listed (`;`-separated in the header).
    pub signed_headers: Vec<String>,
    signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let incomplete = |m: &str| AuthError::Incomplete(m.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            incomplete("Authorization header must start with the algorithm AWS4-HMAC-SHA256.")
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header parameter '{part}' is not of the form key=value."
            )));
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(AuthError::Incomplete(missing.trim_end().to_string()));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, term] = scope.as_slice() else {
        return Err(AuthError::Incomplete(format!(
            "Credential should have five parts: ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request, got '{credential}'."
        )));
    };
    if akid.is_empty() {
        return Err(incomplete("Credential has an empty access key id."));
    }
    if *term != TERMINATOR {
        return Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{term}'."
        )));
    }
    let signed_headers: Vec<String> = signed
        .split(';')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if signed_headers.is_empty() {
        return Err(incomplete("SignedHeaders is empty."));
    }
    Ok(Authorization {
        access_key_id: (*akid).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        signed_headers,
        signature: signature.to_string(),
    })
}

/// Lower-case hex SHA-256, as SigV4 writes hashes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// The signing key: HMAC chain over date, region, service and `aws4_request`, keyed by
/// `"AWS4" + secret`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let mut first = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    first.extend_from_slice(b"AWS4");
    first.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date[..], region.as_bytes());
    let k_service = hmac(&k_region[..], service.as_bytes());
    hmac(&k_service[..], TERMINATOR.as_bytes())
}

/// RFC 3986 encoding as SigV4 defines it: everything but unreserved characters is
/// `%XX` (upper-case hex); `/` is kept when `keep_slash`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hexpair = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hexpair.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The canonical URI of a non-S3 service: the path with `.`/`..` and empty segments
/// removed (RFC 3986 normalisation), then encoded once more, so a path that was sent
/// percent-encoded appears encoded twice, as AWS's signers produce it.
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalised = String::from("/");
    normalised.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalised.push('/');
    }
    uri_encode(normalised.as_bytes(), true)
}

/// The canonical query string: each name and value decoded, encoded as SigV4 does,
/// and sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 canonicalises it: trimmed, inner runs of spaces collapsed.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request over the headers named in `signed` (lowercase, in order).
pub fn canonical_request(
    req: &SignableRequest<'_>,
    signed: &[String],
    payload_hash: &str,
) -> String {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed {
        let values: Vec<String> = req.header_values(name).map(canonical_value).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

fn signature_hex(secret: &str, date: &str, region: &str, service: &str, to_sign: &str) -> String {
    let key = signing_key(secret, date, region, service);
    hex::encode(&hmac(&key[..], to_sign.as_bytes())[..])
}

/// Client side: signs every header of `req` (which must already carry `host` and
/// `x-amz-date`), and returns the `Authorization` header's value.
pub fn authorization_header(
    req: &SignableRequest<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> String {
    let amz_date = req.header("x-amz-date").unwrap_or_default();
    let date = amz_date.get(..8).unwrap_or_default();
    let mut signed: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let payload = req
        .header("x-amz-content-sha256")
        .map_or_else(|| sha256_hex(req.body), str::to_string);
    let canonical = canonical_request(req, &signed, &payload);
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let sig = signature_hex(
        secret,
        date,
        region,
        service,
        &string_to_sign(amz_date, &scope, &canonical),
    );
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    )
}

/// `YYYYMMDDTHHMMSSZ` of epoch seconds.
pub fn format_amz_date(epoch: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&fmt).unwrap_or_default()
}

fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// What a verified request proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
}

/// What the verifier needs from the key store: the secret of an access key, if known.
pub trait SecretLookup {
    type Error;
    fn secret(&self, access_key_id: &str) -> Result<Option<Zeroizing<String>>, Self::Error>;
}

/// Either an authentication failure or the lookup's own error.
#[derive(Debug)]
pub enum VerifyError<E> {
    Auth(AuthError),
    Lookup(E),
}

impl<E> From<AuthError> for VerifyError<E> {
    fn from(e: AuthError) -> Self {
        VerifyError::Auth(e)
    }
}

/// Server side: verifies `req` in full against `region` (service `kms`) at time `now`.
/// Checks, in AWS's order: a token at all, its form, no session token, the scope, the
/// required signed headers, the clock, the key, the payload hash, then the signature
/// (compared in constant time).
pub fn verify<L: SecretLookup>(
    req: &SignableRequest<'_>,
    region: &str,
    now: i64,
    keys: &L,
) -> Result<Verified, VerifyError<L::Error>> {
    let Some(header) = req.header("authorization") else {
        return Err(AuthError::MissingToken.into());
    };
    let auth = parse_authorization(header)?;
    if req.header("x-amz-security-token").is_some() {
        return Err(AuthError::UnrecognizedClient.into());
    }
    if auth.service != SERVICE {
        return Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        ))
        .into());
    }
    if auth.region != region {
        return Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. The region of this endpoint is '{region}'.",
            auth.region
        ))
        .into());
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(AuthError::InvalidSignature(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            ))
            .into());
        }
    }
    let Some(amz_date) = req.header("x-amz-date") else {
        return Err(AuthError::Incomplete(
            "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
        )
        .into());
    };
    let Some(at) = parse_amz_date(amz_date) else {
        return Err(AuthError::Incomplete(format!(
            "X-Amz-Date '{amz_date}' is not of the form YYYYMMDDTHHMMSSZ."
        ))
        .into());
    };
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(AuthError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or_default()
        ))
        .into());
    }
    if at < now.saturating_sub(MAX_CLOCK_SKEW_SECS) {
        return Err(AuthError::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now.saturating_sub(MAX_CLOCK_SKEW_SECS)),
            format_amz_date(now)
        ))
        .into());
    }
    if at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(AuthError::InvalidSignature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format_amz_date(now.saturating_add(MAX_CLOCK_SKEW_SECS)),
            format_amz_date(now)
        ))
        .into());
    }
    let secret = keys
        .secret(&auth.access_key_id)
        .map_err(VerifyError::Lookup)?
        .ok_or(AuthError::UnrecognizedClient)?;
    let body_hash = sha256_hex(req.body);
    let payload = match req.header("x-amz-content-sha256") {
        None => body_hash,
        Some(p) if UNSIGNED_PAYLOADS.contains(&p) => {
            return Err(AuthError::InvalidSignature(format!(
                "x-amz-content-sha256 '{p}' is not accepted: the body of a KMS request must be signed."
            ))
            .into())
        }
        // The declared hash is what the signature covers; it must also be the body's.
        Some(p) if p.eq_ignore_ascii_case(&body_hash) => p.to_string(),
        Some(_) => {
            return Err(AuthError::InvalidSignature(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into(),
            )
            .into())
        }
    };
    let canonical = canonical_request(req, &auth.signed_headers, &payload);
    let scope = format!("{}/{region}/{SERVICE}/{TERMINATOR}", auth.date);
    let expected = signature_hex(
        &secret,
        &auth.date,
        region,
        SERVICE,
        &string_to_sign(amz_date, &scope, &canonical),
    );
    // Lengths are public (64 hex digits); the contents are compared in constant time.
    let matches = expected.len() == auth.signature.len()
        && bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes()));
    if !matches {
        return Err(AuthError::InvalidSignature(SIGNATURE_MISMATCH.to_string()).into());
    }
    Ok(Verified {
        access_key_id: auth.access_key_id,
    })
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;

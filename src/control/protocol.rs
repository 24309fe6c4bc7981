//! The wire protocol of the control socket, version 1.
//!
//! ```text
//! frame    = length:u32 (big-endian, bytes of body) body
//! body     = UTF-8 JSON, at most MAX_FRAME bytes
//! request  = {"Version":1,"Operation":"Decrypt","Request":{ ...AWS KMS JSON request... }}
//!            (Operation: an AWS KMS operation name, or "iam:" and an IAM one)
//! response = {"Ok":{ ...AWS KMS JSON response... }}
//!          | {"Error":{"__type":"AccessDeniedException","message":"..."}}
//! ```
//! One response per request, in order, many requests per connection. The request
//! carries no identity: the server takes the caller from the socket's peer credentials.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{Read, Write};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either side sends or accepts. AWS KMS requests are small (4 KiB
/// plaintext, 32 KiB policies, 6 KiB ciphertext); 1 MiB leaves room for listings.
pub const MAX_FRAME: usize = 1 << 20;

/// A request frame's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    #[serde(rename = "Version")]
    pub version: u32,
    #[serde(rename = "Operation")]
    pub operation: String,
    #[serde(rename = "Request", default = "empty_object")]
    pub request: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A response frame's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseFrame {
    Ok(Value),
    Error(ErrorBody),
}

/// An error as AWS's JSON protocol writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "__type")]
    pub kind: String,
    pub message: String,
}

impl ResponseFrame {
    pub fn error(kind: &str, message: impl Into<String>) -> Self {
        ResponseFrame::Error(ErrorBody {
            kind: kind.to_string(),
            message: message.into(),
        })
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// Writes one frame (length and body in a single write, so frames never interleave).
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    // Cannot truncate: body.len() <= MAX_FRAME < u32::MAX.
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames. A length above
/// `max` is refused before any of the body is read.
pub fn read_frame(r: &mut impl Read, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let announced = u32::from_be_bytes(len_buf);
    let len = announced as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // Grown as bytes arrive, not allocated and zeroed up front: a peer that announces a
    // megabyte and sends four bytes costs four bytes (and the fuzz target stays fast).
    let mut body = Vec::new();
    r.by_ref()
        .take(u64::from(announced))
        .read_to_end(&mut body)?;
    if body.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(Some(body))
}

/// Parses a request body, answering what the server should send back if it is not a
/// valid version-1 request.
pub fn parse_request(body: &[u8]) -> Result<RequestFrame, ResponseFrame> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ResponseFrame::error(
            "ValidationException",
            format!("request is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = &value else {
        return Err(ResponseFrame::error(
            "ValidationException",
            "request must be a JSON object",
        ));
    };
    match obj.get("Version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(ResponseFrame::error(
                "UnsupportedOperationException",
                format!("control protocol version {v} is not supported; this server speaks version {PROTOCOL_VERSION}"),
            ))
        }
        None => return Err(ResponseFrame::error("ValidationException", "request has no numeric \"Version\"")),
    }
    let frame: RequestFrame = serde_json::from_value(value).map_err(|e| {
        ResponseFrame::error("ValidationException", format!("malformed request: {e}"))
    })?;
    // An AWS KMS operation name, or an IAM one in the `iam:` namespace (access keys,
    // `kmsfs credentials`), which the HTTP endpoint's `TrentService.<name>` cannot spell.
    let name = frame
        .operation
        .strip_prefix("iam:")
        .unwrap_or(&frame.operation);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ResponseFrame::error(
            "ValidationException",
            format!(
                "\"Operation\" must be an AWS KMS operation name (or iam:<IAM operation>), got {:?}",
                frame.operation
            ),
        ));
    }
    if !frame.request.is_object() {
        return Err(ResponseFrame::error(
            "ValidationException",
            "\"Request\" must be a JSON object",
        ));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_and_clean_eof_is_none() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{}").unwrap();
        write_frame(&mut buf, b"[1]").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 2]);
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, MAX_FRAME).unwrap().unwrap(), b"{}");
        assert_eq!(read_frame(&mut r, MAX_FRAME).unwrap().unwrap(), b"[1]");
        assert!(read_frame(&mut r, MAX_FRAME).unwrap().is_none());
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused() {
        let big = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &big[..], MAX_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..], MAX_FRAME),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 5, b'{'][..], MAX_FRAME),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            write_frame(&mut Vec::new(), &vec![b' '; MAX_FRAME + 1]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn request_parsing_answers_each_malformation() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"{"Version":1,"Operation":"Decrypt","Request":{"KeyId":"k"}}"#,
                None,
            ),
            (r#"{"Version":1,"Operation":"ListKeys"}"#, None),
            (
                r#"{"Version":2,"Operation":"Decrypt","Request":{}}"#,
                Some("UnsupportedOperationException"),
            ),
            (
                r#"{"Operation":"Decrypt","Request":{}}"#,
                Some("ValidationException"),
            ),
            (
                r#"{"Version":"1","Operation":"Decrypt"}"#,
                Some("ValidationException"),
            ),
            (r#"{"Version":1,"Request":{}}"#, Some("ValidationException")),
            (
                r#"{"Version":1,"Operation":"","Request":{}}"#,
                Some("ValidationException"),
            ),
            (
                r#"{"Version":1,"Operation":"../x","Request":{}}"#,
                Some("ValidationException"),
            ),
            (
                r#"{"Version":1,"Operation":"Decrypt","Request":[1]}"#,
                Some("ValidationException"),
            ),
            (r#"[1,2]"#, Some("ValidationException")),
            ("not json", Some("ValidationException")),
            ("\u{0}\u{1}", Some("ValidationException")),
        ];
        for (body, want) in cases {
            match (parse_request(body.as_bytes()), want) {
                (Ok(_), None) => {}
                (Err(ResponseFrame::Error(e)), Some(kind)) => assert_eq!(e.kind, *kind, "{body}"),
                (got, _) => panic!("{body}: unexpected {got:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_request(&bytes);
            let _ = read_frame(&mut &bytes[..], 64);
        }

        #[test]
        fn any_operation_and_object_round_trips(op in "[A-Za-z0-9]{1,40}", k in "\\PC{0,20}", v in "\\PC{0,20}") {
            let frame = RequestFrame { version: PROTOCOL_VERSION, operation: op, request: json!({ k: v }) };
            let body = serde_json::to_vec(&frame).unwrap();
            let mut wire = Vec::new();
            write_frame(&mut wire, &body).unwrap();
            let got = read_frame(&mut &wire[..], MAX_FRAME).unwrap().unwrap();
            proptest::prop_assert_eq!(parse_request(&got).unwrap(), frame);
        }
    }

    #[test]
    fn response_frames_have_aws_json_shape() {
        let ok = serde_json::to_value(ResponseFrame::Ok(json!({"KeyId": "k"}))).unwrap();
        assert_eq!(ok, json!({"Ok": {"KeyId": "k"}}));
        let err =
            serde_json::to_value(ResponseFrame::error("NotFoundException", "no key")).unwrap();
        assert_eq!(
            err,
            json!({"Error": {"__type": "NotFoundException", "message": "no key"}})
        );
    }
}

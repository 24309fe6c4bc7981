//! Building one record's JSON from an [`Event`] and hashing it canonically.

use super::Event;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Written in place of a member whose name says it carries a secret, as CloudTrail does.
pub const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

/// Member names (lowercased) that must never reach the log with their value. The key
/// service is not supposed to pass them at all; this catches a mistake before it
/// becomes a permanent, replicated copy of a secret.
const SECRET_MEMBERS: &[&str] = &[
    "plaintext",
    "keymaterial",
    "encryptedkeymaterial",
    "importtoken",
    "privatekeyplaintext",
    "passphrase",
    "datakey",
];

/// Builds the record line (compact JSON, without newline) and returns it with its hash.
pub(crate) fn build(
    event: &Event,
    now: i64,
    default_region: &str,
    seq: u64,
    prev_hash: &str,
    event_id: &str,
) -> (Vec<u8>, String) {
    let id = &event.identity;
    let mut user = Map::new();
    user.insert("type".into(), Value::String(id.kind.clone()));
    if let Some(p) = &id.principal_id {
        user.insert("principalId".into(), Value::String(p.clone()));
    }
    if let Some(a) = &id.arn {
        user.insert("arn".into(), Value::String(a.clone()));
    }
    if let Some(a) = &id.account_id {
        user.insert("accountId".into(), Value::String(a.clone()));
    }

    let parsed: Vec<Option<KeyArn<'_>>> =
        event.resources.iter().map(|a| KeyArn::parse(a)).collect();
    let region = parsed
        .iter()
        .flatten()
        .map(|a| a.region)
        .find(|r| !r.is_empty())
        .unwrap_or(default_region)
        .to_string();
    let recipient = parsed
        .iter()
        .flatten()
        .map(|a| a.account.to_string())
        .next()
        .or_else(|| id.account_id.clone());
    let resources: Vec<Value> = event
        .resources
        .iter()
        .zip(parsed.iter())
        .map(|(arn, p)| {
            let mut r = Map::new();
            if let Some(p) = p {
                r.insert("accountId".into(), Value::String(p.account.to_string()));
            }
            r.insert("type".into(), Value::String("AWS::KMS::Key".into()));
            r.insert("ARN".into(), Value::String(arn.clone()));
            Value::Object(r)
        })
        .collect();

    let mut rec = Map::new();
    rec.insert("eventVersion".into(), json!("1.08"));
    rec.insert("userIdentity".into(), Value::Object(user));
    rec.insert("eventTime".into(), Value::String(event_time(now)));
    rec.insert("eventSource".into(), json!("kms.amazonaws.com"));
    rec.insert("eventName".into(), Value::String(event.event_name.clone()));
    rec.insert("awsRegion".into(), Value::String(region));
    rec.insert("sourceIPAddress".into(), json!("local"));
    rec.insert("userAgent".into(), json!("kmsfs"));
    rec.insert(
        "requestParameters".into(),
        scrubbed(&event.request_parameters),
    );
    rec.insert(
        "responseElements".into(),
        scrubbed(&event.response_elements),
    );
    if let Some(code) = &event.error_code {
        rec.insert("errorCode".into(), Value::String(code.clone()));
    }
    if let Some(msg) = &event.error_message {
        rec.insert("errorMessage".into(), Value::String(msg.clone()));
    }
    rec.insert("eventID".into(), Value::String(event_id.to_string()));
    rec.insert("readOnly".into(), Value::Bool(event.read_only));
    rec.insert("resources".into(), Value::Array(resources));
    rec.insert("eventType".into(), json!("AwsApiCall"));
    rec.insert("managementEvent".into(), json!(true));
    if let Some(acct) = recipient {
        rec.insert("recipientAccountId".into(), Value::String(acct));
    }
    rec.insert("eventCategory".into(), json!("Management"));

    let mut k = Map::new();
    k.insert("seq".into(), json!(seq));
    k.insert(
        "decision".into(),
        event.decision.clone().unwrap_or(Value::Null),
    );
    k.insert("uid".into(), json!(id.uid));
    k.insert("gid".into(), json!(id.gid));
    k.insert("pid".into(), json!(id.pid));
    k.insert(
        "viaService".into(),
        event
            .via_service
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
    );
    k.insert("fs".into(), event.fs.clone().unwrap_or(Value::Null));
    k.insert("prevHash".into(), Value::String(prev_hash.to_string()));
    rec.insert("kmsfs".into(), Value::Object(k));

    let mut record = Value::Object(rec);
    let hash = hex::encode(Sha256::digest(canonical_bytes(&record)));
    if let Some(Value::Object(k)) = record.get_mut("kmsfs") {
        k.insert("hash".into(), Value::String(hash.clone()));
    }
    let mut line = Vec::with_capacity(1024);
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut line, &record);
    (line, hash)
}

/// The bytes a record's hash covers: compact JSON with every object's members sorted by
/// name (byte order), strings escaped as serde_json escapes them. Sorting makes the hash
/// independent of member order, so a reader that reformats a line does not break it
/// while any change of a name or a value does. Callers remove `kmsfs.hash` first.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (name, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Writing into a Vec cannot fail.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Copies `v`, replacing the value of every secret-bearing member at any depth.
fn scrubbed(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, value)| {
                    let lower = name.to_ascii_lowercase();
                    if SECRET_MEMBERS.contains(&lower.as_str()) {
                        (name.clone(), Value::String(HIDDEN.into()))
                    } else {
                        (name.clone(), scrubbed(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(scrubbed).collect()),
        other => other.clone(),
    }
}

/// ISO 8601 UTC with seconds, as CloudTrail writes eventTime.
pub(crate) fn event_time(now: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// A random (version 4) UUID in its 8-4-4-4-12 text form.
pub(crate) fn uuid_v4() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The parts of `arn:aws:kms:REGION:ACCOUNT:key/ID` the record needs.
struct KeyArn<'a> {
    region: &'a str,
    account: &'a str,
}

impl<'a> KeyArn<'a> {
    fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(_partition),
            Some(_service),
            Some(region),
            Some(account),
            Some(_rest),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        Some(KeyArn { region, account })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_sort_members_and_ignore_order() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":"\u00e9\n","x":[true,null]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[true,null],"y":"é\n"},"b":1}"#).unwrap();
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
        assert_eq!(
            String::from_utf8(canonical_bytes(&a)).unwrap(),
            r#"{"a":{"x":[true,null],"y":"é\n"},"b":1}"#
        );
    }

    #[test]
    fn event_time_is_iso8601_utc_seconds() {
        assert_eq!(event_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(event_time(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn uuid_v4_has_version_and_variant_bits() {
        let u = uuid_v4().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4().unwrap());
    }

    #[test]
    fn secret_members_are_hidden_at_any_depth() {
        let v = json!({"Plaintext":"c2VjcmV0","nested":[{"keyMaterial":"AAAA","KeyId":"k"}]});
        let s = scrubbed(&v);
        assert_eq!(
            s,
            json!({"Plaintext":HIDDEN,"nested":[{"keyMaterial":HIDDEN,"KeyId":"k"}]})
        );
    }
}

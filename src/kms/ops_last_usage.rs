//! GetKeyLastUsage: the last successful cryptographic operation with a key, read from
//! the audit log rather than kept as state, so that the data path keeps its one write
//! (the audit record) and the answer is exactly what the log can prove. Tracking starts
//! at the log's first record. The cost is one pass over the log per call: an
//! administrator's question, not a data-path one.

use serde_json::{json, Map, Value};

use super::authz::Authz;
use super::request::Req;
use super::service::{Call, Service};
use super::store::internal;
use super::KmsError;
use crate::audit::Reader;
use crate::policy::actions as act;

/// The operations AWS tracks (`KeyLastUsageTrackingOperation`, without the ML-KEM
/// Encapsulate and Decapsulate kmsfs does not have). The filesystem's data-key calls
/// are recorded as GenerateDataKey and Decrypt, so mounts count as use.
const TRACKED: &[&str] = &[
    "Decrypt",
    "DeriveSharedSecret",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
];

/// The last use found in the log, and when the log starts.
#[derive(Debug, Default)]
struct Usage {
    tracking_start: Option<i64>,
    last: Option<(String, i64, String)>,
}

fn event_time(record: &Value) -> Option<i64> {
    let t = record.get("eventTime")?.as_str()?;
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Whether `record` is the outcome of a successful tracked operation on `arn` (a call's
/// earlier records carry only its partial authorization decisions).
fn is_use_of(record: &Value, arn: &str) -> bool {
    let name = record.get("eventName").and_then(Value::as_str);
    if !name.is_some_and(|n| TRACKED.contains(&n)) || record.get("errorCode").is_some() {
        return false;
    }
    if record
        .pointer("/responseElements/kmsfsPartialDecision")
        .is_some()
    {
        return false;
    }
    record
        .get("resources")
        .and_then(Value::as_array)
        .is_some_and(|rs| {
            rs.iter()
                .any(|r| r.get("ARN").and_then(Value::as_str) == Some(arn))
        })
}

fn scan(reader: Reader, arn: &str) -> Usage {
    let mut usage = Usage::default();
    // A line another writer is still appending (or a damaged one, which `kmsfs audit
    // verify` reports) says nothing about use: skip it.
    for (_, record) in reader.flatten() {
        if usage.tracking_start.is_none() {
            usage.tracking_start = event_time(&record);
        }
        if is_use_of(&record, arn) {
            if let (Some(op), Some(at)) = (
                record.get("eventName").and_then(Value::as_str),
                event_time(&record),
            ) {
                let id = record
                    .get("eventID")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                usage.last = Some((op.to_string(), at, id.to_string()));
            }
        }
    }
    usage
}

impl Service {
    pub(crate) fn get_key_last_usage(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let snap = self.snapshot()?;
        // AWS takes a key id or key ARN here, not an alias.
        let (k, _) = self.find_key(call, &snap.state, key_id, false)?;
        self.authorize(
            call,
            &snap.state,
            Authz::new(act::GET_KEY_LAST_USAGE.iam, Some(k)),
        )?;
        self.gate(&act::GET_KEY_LAST_USAGE, k, call.now)?;
        let reader = Reader::open(self.audit.path())
            .map_err(|e| internal(format!("cannot read the audit log: {e}")))?;
        let usage = scan(reader, &k.arn);
        let mut last = Map::new();
        if let Some((op, at, id)) = usage.last {
            last.insert("Operation".into(), json!(op));
            last.insert("Timestamp".into(), json!(at));
            if !id.is_empty() {
                last.insert("CloudTrailEventId".into(), json!(id));
            }
        }
        Ok(json!({
            "KeyId": k.arn,
            "KeyLastUsage": last,
            "TrackingStartDate": usage.tracking_start.unwrap_or(k.creation_date),
            "KeyCreationDate": k.creation_date,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:local:111122223333:key/k";

    fn rec(name: &str, arn: &str, extra: Value) -> Value {
        let mut v = json!({
            "eventName": name,
            "eventTime": "2026-11-29T10:00:00Z",
            "eventID": "e",
            "resources": [{ "ARN": arn }],
        });
        if let (Value::Object(o), Value::Object(x)) = (&mut v, extra) {
            o.extend(x);
        }
        v
    }

    #[test]
    fn only_successful_tracked_outcomes_on_the_key_count() {
        assert!(is_use_of(&rec("Decrypt", ARN, json!({})), ARN));
        assert!(is_use_of(&rec("VerifyMac", ARN, json!({})), ARN));
        assert!(!is_use_of(&rec("Decrypt", "arn:other", json!({})), ARN));
        assert!(!is_use_of(&rec("DescribeKey", ARN, json!({})), ARN));
        assert!(!is_use_of(
            &rec(
                "Decrypt",
                ARN,
                json!({ "errorCode": "AccessDeniedException" })
            ),
            ARN
        ));
        assert!(!is_use_of(
            &rec(
                "ReEncrypt",
                ARN,
                json!({ "responseElements": { "kmsfsPartialDecision": true } })
            ),
            ARN
        ));
        assert_eq!(
            event_time(&rec("Decrypt", ARN, json!({}))),
            Some(1_795_946_400)
        );
    }
}

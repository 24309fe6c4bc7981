//! aws-cli's parameter handling, by AWS member name: reading `file://` and `fileb://`,
//! blobs as base64, `k=v` shorthand maps, tags, grant constraints and timestamps; then
//! the checks aws-cli makes before sending (ranges, enums, required members) with its
//! wording, and the skeletons of `--generate-cli-skeleton`.

use super::BinaryFormat;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// A parameter aws-cli would refuse (exit 252).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A flag's value could not be read or parsed.
    #[error("Error parsing parameter '{flag}': {message}")]
    Parse { flag: String, message: String },
    /// botocore's validation report: one line per problem.
    #[error("Parameter validation failed:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Required flags missing (argparse's wording).
    #[error("the following arguments are required: {}", .0.join(", "))]
    Missing(Vec<String>),
}

impl ParamError {
    /// The flag a parse error names (tests and messages).
    pub fn flag(&self) -> Option<&str> {
        match self {
            ParamError::Parse { flag, .. } => Some(flag),
            _ => None,
        }
    }
}

pub(super) fn param_err(flag: &str, message: impl Into<String>) -> ParamError {
    ParamError::Parse {
        flag: flag.to_string(),
        message: message.into(),
    }
}

/// What kind of value an AWS request member holds (the service model's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string that may come from file://.
    Text,
    /// Bytes, carried as base64.
    Blob,
    /// A string→string map (`k=v,k2=v2` or JSON).
    StringMap,
    Tags,
    Constraints,
    Timestamp,
    /// A list given as words or comma-separated.
    CommaList,
    List,
    Integer,
    Boolean,
    String,
}

/// The shape of a request member.
pub fn shape_of(member: &str) -> Shape {
    match member {
        "Policy" | "Description" => Shape::Text,
        "Plaintext"
        | "CiphertextBlob"
        | "ImportToken"
        | "EncryptedKeyMaterial"
        | "PublicKey"
        | "KeyMaterial"
        | "Message"
        | "Mac"
        | "Signature" => Shape::Blob,
        "EncryptionContext" | "SourceEncryptionContext" | "DestinationEncryptionContext" => {
            Shape::StringMap
        }
        "Tags" => Shape::Tags,
        "Constraints" => Shape::Constraints,
        "ValidTo" => Shape::Timestamp,
        "Operations" => Shape::CommaList,
        "GrantTokens" | "TagKeys" => Shape::List,
        "Limit" | "PendingWindowInDays" | "RotationPeriodInDays" | "NumberOfBytes" => {
            Shape::Integer
        }
        "BypassPolicyLockoutSafetyCheck" | "MultiRegion" | "DryRun" | "AllowSelfEscalation" => {
            Shape::Boolean
        }
        _ => Shape::String,
    }
}

/// `KeyId` → `--key-id`.
pub fn flag_of(member: &str) -> String {
    let mut flag = String::from("--");
    for (i, c) in member.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            flag.push('-');
        }
        flag.push(c.to_ascii_lowercase());
    }
    flag
}

/// `key_id` → `KeyId`.
pub fn member_of(id: &str) -> String {
    id.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Converts the members given as flags (raw strings) into the AWS request's values.
pub fn convert_flags(raw: Value, binary: BinaryFormat) -> Result<Map<String, Value>, ParamError> {
    let Value::Object(raw) = raw else {
        return Ok(Map::new());
    };
    let mut out = Map::new();
    for (member, v) in raw {
        if v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
            continue; // not given: AWS treats absent and default differently
        }
        let flag = flag_of(&member);
        let text = v.as_str().map(str::to_string);
        let list: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let converted = match (shape_of(&member), text) {
            (Shape::Text, Some(t)) => Value::String(text_param(&flag, &t)?),
            (Shape::Blob, Some(t)) => Value::String(blob_param(&flag, &t, binary)?),
            (Shape::StringMap, Some(t)) => string_map_param(&flag, &t)?,
            (Shape::Constraints, Some(t)) => constraints_param(&flag, &t)?,
            (Shape::Timestamp, Some(t)) => timestamp_param(&flag, &t)?,
            (Shape::Tags, _) => tags_param(&flag, &list)?.unwrap_or_else(|| json!([])),
            (Shape::CommaList, _) => json!(split_list(&list)),
            _ => v,
        };
        out.insert(member, converted);
    }
    Ok(out)
}

/// `["Decrypt,Encrypt", "GenerateDataKey"]` → `["Decrypt", "Encrypt", "GenerateDataKey"]`.
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where a parameter's value comes from (aws-cli's paramfile prefixes).
enum Source {
    Literal(String),
    /// file://: the file's text.
    Text(String),
    /// fileb://: the file's bytes.
    Bytes(Vec<u8>),
}

fn read_source(flag: &str, raw: &str) -> Result<Source, ParamError> {
    if let Some(path) = raw.strip_prefix("fileb://") {
        std::fs::read(path)
            .map(Source::Bytes)
            .map_err(|e| param_err(flag, format!("Unable to load paramfile {raw}: {e}")))
    } else if let Some(path) = raw.strip_prefix("file://") {
        std::fs::read_to_string(path)
            .map(Source::Text)
            .map_err(|e| param_err(flag, format!("Unable to load paramfile {raw}: {e}")))
    } else {
        Ok(Source::Literal(raw.to_string()))
    }
}

/// A text parameter: literal, file:// text, or fileb:// bytes that must be UTF-8.
pub(super) fn text_param(flag: &str, raw: &str) -> Result<String, ParamError> {
    match read_source(flag, raw)? {
        Source::Literal(s) | Source::Text(s) => Ok(s),
        Source::Bytes(b) => {
            String::from_utf8(b).map_err(|_| param_err(flag, "the file is not UTF-8 text"))
        }
    }
}

/// A blob parameter, returned as the base64 the AWS JSON protocol carries. fileb:// is
/// raw bytes; a literal or file:// text is base64 (aws-cli v2), or raw text with
/// `--cli-binary-format raw-in-base64-out`.
fn blob_param(flag: &str, raw: &str, binary: BinaryFormat) -> Result<String, ParamError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = match read_source(flag, raw)? {
        Source::Bytes(bytes) => return Ok(b64.encode(bytes)),
        Source::Literal(s) | Source::Text(s) => s,
    };
    if binary == BinaryFormat::RawInBase64Out {
        return Ok(b64.encode(text.as_bytes()));
    }
    let trimmed = text.trim();
    let bytes = b64.decode(trimmed).map_err(|e| {
        param_err(
            flag,
            format!(
                "Invalid base64: {e}. Give base64, fileb://FILE for raw bytes, or \
                 --cli-binary-format raw-in-base64-out for literal text"
            ),
        )
    })?;
    // Re-encode so the request carries canonical base64 whatever padding was given.
    Ok(b64.encode(bytes))
}

/// A string→string map: `k=v,k2=v2` (aws-cli shorthand) or a JSON object, or either
/// from file://.
fn string_map_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    let text = text_param(flag, raw)?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| param_err(flag, format!("Invalid JSON: {e}\nJSON received: {trimmed}")))?;
        return match &v {
            Value::Object(m) if m.values().all(Value::is_string) => Ok(v),
            _ => Err(param_err(flag, "expected a JSON object of string values")),
        };
    }
    parse_shorthand_map(trimmed)
        .map(Value::Object)
        .map_err(|m| param_err(flag, m))
}

/// `k=v,k2=v2` → {"k":"v","k2":"v2"}. Values may be quoted to contain commas.
fn parse_shorthand_map(s: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    if s.is_empty() {
        return Ok(map);
    }
    for pair in split_top_level(s, ',') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("Expected: '=', received: end of input after {pair:?} (use key=value,key2=value2 or JSON)"));
        };
        let k = unquote(k.trim());
        if k.is_empty() {
            return Err(format!("empty key in {pair:?}"));
        }
        map.insert(k, Value::String(unquote(v.trim())));
    }
    Ok(map)
}

fn unquote(s: &str) -> String {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Splits on `sep` outside braces, brackets and quotes.
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `--tags TagKey=k,TagValue=v TagKey=k2,TagValue=v2` or `--tags '[{"TagKey":..}]'`.
fn tags_param(flag: &str, raw: &[String]) -> Result<Option<Value>, ParamError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for item in raw {
        let text = text_param(flag, item)?;
        let trimmed = text.trim();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            let v: Value = serde_json::from_str(trimmed)
                .map_err(|e| param_err(flag, format!("Invalid JSON: {e}")))?;
            let items = match v {
                Value::Array(items) => items,
                obj @ Value::Object(_) => vec![obj],
                _ => {
                    return Err(param_err(
                        flag,
                        "expected a JSON list of {\"TagKey\":..,\"TagValue\":..}",
                    ))
                }
            };
            for t in items {
                let ok = t.get("TagKey").is_some_and(Value::is_string)
                    && t.get("TagValue").is_some_and(Value::is_string);
                if !ok {
                    return Err(param_err(
                        flag,
                        format!("each tag needs string TagKey and TagValue, got {t}"),
                    ));
                }
                tags.push(t);
            }
        } else {
            let m = parse_shorthand_map(trimmed).map_err(|m| param_err(flag, m))?;
            let (Some(k), Some(v)) = (m.get("TagKey"), m.get("TagValue")) else {
                return Err(param_err(
                    flag,
                    format!("expected TagKey=key,TagValue=value, got {trimmed:?}"),
                ));
            };
            if let Some(extra) = m.keys().find(|k| *k != "TagKey" && *k != "TagValue") {
                return Err(param_err(
                    flag,
                    format!("Unknown key {extra:?}, valid choices are: TagKey, TagValue"),
                ));
            }
            tags.push(json!({"TagKey": k, "TagValue": v}));
        }
    }
    Ok(Some(Value::Array(tags)))
}

/// `EncryptionContextSubset={k=v,k2=v2},EncryptionContextEquals={k=v}` or JSON.
fn constraints_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    const NAMES: [&str; 2] = ["EncryptionContextSubset", "EncryptionContextEquals"];
    let text = text_param(flag, raw)?;
    let trimmed = text.trim();
    let value = if trimmed.starts_with('{') {
        serde_json::from_str::<Value>(trimmed)
            .map_err(|e| param_err(flag, format!("Invalid JSON: {e}")))?
    } else {
        let mut m = Map::new();
        for part in split_top_level(trimmed, ',') {
            let Some((name, inner)) = part.split_once('=') else {
                return Err(param_err(
                    flag,
                    format!("expected Name={{k=v,...}}, got {part:?}"),
                ));
            };
            let inner = inner.trim();
            let Some(body) = inner.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return Err(param_err(
                    flag,
                    format!("the value of {name} must be in braces: {name}={{k=v,...}}"),
                ));
            };
            m.insert(
                name.trim().to_string(),
                Value::Object(parse_shorthand_map(body.trim()).map_err(|e| param_err(flag, e))?),
            );
        }
        Value::Object(m)
    };
    let Value::Object(m) = &value else {
        return Err(param_err(flag, "expected an object"));
    };
    for (name, v) in m {
        if !NAMES.contains(&name.as_str()) {
            return Err(param_err(
                flag,
                format!(
                    "Unknown key {name:?}, valid choices are: {}",
                    NAMES.join(", ")
                ),
            ));
        }
        if !matches!(v, Value::Object(o) if o.values().all(Value::is_string)) {
            return Err(param_err(
                flag,
                format!("{name} must map strings to strings"),
            ));
        }
    }
    Ok(value)
}

/// A timestamp as aws-cli accepts it: ISO 8601 / RFC 3339, or seconds since the epoch.
/// Sent as epoch seconds, as AWS's JSON protocol encodes timestamps.
fn timestamp_param(flag: &str, raw: &str) -> Result<Value, ParamError> {
    if let Ok(secs) = raw.trim().parse::<i64>() {
        return Ok(json!(secs));
    }
    time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| json!(t.unix_timestamp()))
        .map_err(|e| param_err(flag, format!("Unable to parse timestamp {raw:?}: {e} (use 2027-01-31T00:00:00Z or epoch seconds)")))
}

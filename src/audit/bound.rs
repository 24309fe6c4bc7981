//! Keeping every record small whatever a caller sends: the request and response of a
//! call are copied into its record, and a denied call with a megabyte of encryption
//! context must not cost the log a megabyte (nor fill the store's disk in a loop).
//! A field that fits in [`MAX_FIELD_BYTES`] is written as it is; only a larger one is
//! cut by the rules below.
//!
//! What is cut stays checkable: a cut string ends with a marker giving its length and
//! the SHA-256 of its UTF-8 bytes; a cut object, list or member is replaced by a marker
//! giving the length and SHA-256 of its canonical form ([`super::canonical_bytes`],
//! with secret members already hidden). Someone holding the original request can
//! recompute the hash and show that the record describes it.

use super::canonical::{canonical_bytes_scrubbed, is_secret_member, HIDDEN};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A string (member value or name) longer than this many bytes is cut.
pub(crate) const MAX_STRING_BYTES: usize = 1024;
/// How much of a cut string is kept before its marker.
const KEPT_PREFIX_BYTES: usize = 256;
/// An object or a list keeps at most this many members.
pub(crate) const MAX_MEMBERS: usize = 64;
/// Each free-form field of a record (requestParameters, responseElements, the decision,
/// the filesystem ids) is at most this many bytes in canonical form.
pub(crate) const MAX_FIELD_BYTES: usize = 12 * 1024;
/// The member a cut object gets, and the only member of a field replaced whole.
pub(crate) const TRUNCATED_MEMBER: &str = "kmsfs:truncated";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `s` itself if short enough, else its first bytes (on a character boundary) and a
/// marker with its length and hash.
pub(crate) fn cut_str(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_STRING_BYTES {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = KEPT_PREFIX_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}...[truncated by kmsfs: {} bytes, sha256:{}]",
        s.get(..end).unwrap_or(""),
        s.len(),
        sha256_hex(s.as_bytes())
    ))
}

fn marker(canonical: &[u8]) -> Value {
    Value::String(format!(
        "[truncated by kmsfs: {} bytes, sha256:{}]",
        canonical.len(),
        sha256_hex(canonical)
    ))
}

/// A copy of `v` within the record limits: secret members hidden (with `scrub`), long
/// strings and names cut, at most [`MAX_MEMBERS`] members per object or list, and at
/// most [`MAX_FIELD_BYTES`] in canonical form.
pub(crate) fn bounded(v: &Value, scrub: bool) -> Value {
    let mut out = shrink(v, scrub);
    let mut size = canonical_bytes_scrubbed(&out).len();
    if size <= MAX_FIELD_BYTES {
        return out;
    }
    // Still too big: replace the largest members by their markers until it fits.
    match &mut out {
        Value::Object(m) => {
            let mut sizes: Vec<(String, usize)> = m
                .iter()
                .map(|(k, v)| (k.clone(), canonical_bytes_scrubbed(v).len()))
                .collect();
            sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
            for (k, _) in sizes {
                if size <= MAX_FIELD_BYTES {
                    break;
                }
                if let Some(member) = m.get_mut(&k) {
                    let before = canonical_bytes_scrubbed(member);
                    let replacement = marker(&before);
                    size = size.saturating_sub(before.len())
                        + canonical_bytes_scrubbed(&replacement).len();
                    *member = replacement;
                }
            }
        }
        Value::Array(items) => {
            let mut sizes: Vec<(usize, usize)> = items
                .iter()
                .enumerate()
                .map(|(i, v)| (i, canonical_bytes_scrubbed(v).len()))
                .collect();
            sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
            for (i, _) in sizes {
                if size <= MAX_FIELD_BYTES {
                    break;
                }
                if let Some(item) = items.get_mut(i) {
                    let before = canonical_bytes_scrubbed(item);
                    let replacement = marker(&before);
                    size = size.saturating_sub(before.len())
                        + canonical_bytes_scrubbed(&replacement).len();
                    *item = replacement;
                }
            }
        }
        _ => {}
    }
    if size <= MAX_FIELD_BYTES {
        return out;
    }
    // Many long member names: only the whole field's length and hash remain.
    let whole = if scrub {
        canonical_bytes_scrubbed(v)
    } else {
        super::canonical_bytes(v)
    };
    let mut m = Map::new();
    m.insert(TRUNCATED_MEMBER.to_string(), marker(&whole));
    Value::Object(m)
}

/// The structural part of [`bounded`]: hides secrets, cuts strings and member lists.
fn shrink(v: &Value, scrub: bool) -> Value {
    match v {
        Value::String(s) => Value::String(cut_str(s).into_owned()),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_MEMBERS)
                .map(|i| shrink(i, scrub))
                .collect();
            if items.len() > MAX_MEMBERS {
                let rest = Value::Array(items.iter().skip(MAX_MEMBERS).cloned().collect());
                out.push(Value::String(format!(
                    "[truncated by kmsfs: {} more items, sha256 of their list:{}]",
                    items.len() - MAX_MEMBERS,
                    sha256_hex(&scrubbed_or_not(&rest, scrub))
                )));
            }
            Value::Array(out)
        }
        Value::Object(m) => {
            // Keep the first members in canonical (sorted) order, so the cut does not
            // depend on the order the caller sent them in.
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut out = Map::new();
            for (k, v) in members.iter().take(MAX_MEMBERS) {
                let value = if scrub && is_secret_member(k) {
                    Value::String(HIDDEN.to_string())
                } else {
                    shrink(v, scrub)
                };
                out.insert(cut_str(k).into_owned(), value);
            }
            if m.len() > MAX_MEMBERS {
                let rest: Map<String, Value> = members
                    .iter()
                    .skip(MAX_MEMBERS)
                    .map(|(k, v)| ((*k).clone(), (*v).clone()))
                    .collect();
                out.insert(
                    TRUNCATED_MEMBER.to_string(),
                    Value::String(format!(
                        "[truncated by kmsfs: {} more members, sha256 of an object of them:{}]",
                        m.len() - MAX_MEMBERS,
                        sha256_hex(&scrubbed_or_not(&Value::Object(rest), scrub))
                    )),
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn scrubbed_or_not(v: &Value, scrub: bool) -> Vec<u8> {
    if scrub {
        canonical_bytes_scrubbed(v)
    } else {
        super::canonical_bytes(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_values_are_untouched() {
        let v = json!({"KeyId": "k", "EncryptionContext": {"a": "1"}, "List": [1, 2, 3]});
        assert_eq!(bounded(&v, false), v);
    }

    #[test]
    fn a_long_string_keeps_a_prefix_and_its_length_and_hash() {
        let long = "é".repeat(MAX_STRING_BYTES);
        let cut = cut_str(&long);
        assert!(cut.len() < 400, "{}", cut.len());
        assert!(cut.starts_with("éé"));
        assert!(cut.contains(&format!("{} bytes", long.len())));
        assert!(cut.contains(&sha256_hex(long.as_bytes())));
    }

    #[test]
    fn every_field_ends_within_the_limit_whatever_its_shape() {
        let many_members: Map<String, Value> = (0..5000)
            .map(|i| (format!("k{i:05}"), Value::String("v".repeat(50))))
            .collect();
        let long_names: Map<String, Value> = (0..MAX_MEMBERS)
            .map(|i| (format!("{i:04}{}", "n".repeat(4000)), Value::from(i)))
            .collect();
        let nested = (0..100).fold(json!("x".repeat(10_000)), |acc, i| json!([acc, i]));
        let cases = [
            json!({"EncryptionContext": {"big": "x".repeat(300_000)}}),
            json!({"EncryptionContext": many_members}),
            Value::Object(long_names),
            json!((0..10_000).collect::<Vec<_>>()),
            json!({"deep": nested}),
            json!({"a": {"b": {"c": "\u{1}".repeat(MAX_STRING_BYTES)}}}),
        ];
        for v in cases {
            let b = bounded(&v, true);
            let n = canonical_bytes_scrubbed(&b).len();
            assert!(n <= MAX_FIELD_BYTES, "{n} bytes");
        }
    }

    #[test]
    fn secrets_are_hidden_before_anything_is_hashed() {
        let v = json!({"Plaintext": "s".repeat(5000), "KeyId": "k"});
        let b = bounded(&v, true);
        assert_eq!(b["Plaintext"], HIDDEN);
        assert!(!b
            .to_string()
            .contains(&sha256_hex("s".repeat(5000).as_bytes())));
    }
}

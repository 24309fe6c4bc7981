//! The canonical form of a record: compact JSON with members sorted by name, and the
//! names of members that carry secrets (written as [`HIDDEN`]). The record writer and
//! the size bounds both hash and scrub through these, so they live apart from either.

use serde_json::Value;

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
    "secretaccesskey",
];

/// The bytes a record's hash covers: compact JSON with every object's members sorted by
/// name (byte order), strings escaped as serde_json escapes them. Sorting makes the hash
/// independent of member order, so a reader that reformats a line does not break it
/// while any change of a name or a value does. Callers remove `kmsfs.hash` first.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical_with(value, &mut out, false);
    out
}

/// [`canonical_bytes`] with secret members hidden, as a record writes them.
pub(crate) fn canonical_bytes_scrubbed(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical_with(value, &mut out, true);
    out
}

pub(crate) fn is_secret_member(name: &str) -> bool {
    SECRET_MEMBERS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Canonical form of `value`; with `scrub`, members named in SECRET_MEMBERS (at any
/// depth) are written as HIDDEN instead of their value.
pub(super) fn write_canonical_with(value: &Value, out: &mut Vec<u8>, scrub: bool) {
    write_canonical_within(value, out, scrub, usize::MAX);
}

/// [`write_canonical_with`] that gives up (returning false, with `out` partly written)
/// as soon as `out` would grow past `limit` bytes, before writing a long string whole.
pub(super) fn write_canonical_within(
    value: &Value,
    out: &mut Vec<u8>,
    scrub: bool,
    limit: usize,
) -> bool {
    let fits = |out: &Vec<u8>, more: usize| out.len().saturating_add(more) <= limit;
    match value {
        Value::Object(map) => {
            let member = |i: usize, name: &str, v: &Value, out: &mut Vec<u8>| {
                if i > 0 {
                    out.push(b',');
                }
                if !fits(out, name.len() + 3) {
                    return false;
                }
                write_string(name, out);
                out.push(b':');
                if scrub && is_secret_member(name) {
                    write_string(HIDDEN, out);
                    true
                } else {
                    write_canonical_within(v, out, scrub, limit)
                }
            };
            out.push(b'{');
            // Maps keep insertion order, and most are built sorted (or have one
            // member): then they are written as they are, without a sorted copy.
            let sorted = map
                .keys()
                .zip(map.keys().skip(1))
                .all(|(a, b)| a.as_bytes() < b.as_bytes());
            if sorted {
                for (i, (name, v)) in map.iter().enumerate() {
                    if !member(i, name, v, out) {
                        return false;
                    }
                }
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                for (i, (name, v)) in members.into_iter().enumerate() {
                    if !member(i, name, v, out) {
                        return false;
                    }
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_canonical_within(v, out, scrub, limit) {
                    return false;
                }
            }
            out.push(b']');
        }
        Value::String(s) => {
            // Escaping only lengthens a string: check before writing a long one.
            if !fits(out, s.len() + 2) {
                return false;
            }
            write_string(s, out);
        }
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Writing into a Vec cannot fail.
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
    }
    out.len() <= limit
}

pub(super) fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes only `"`, `\\` and control characters below 0x20; a string
    // with none of them (ids, ARNs, names: almost every string of a record) is written
    // as it is, byte for byte what serde_json writes, without its per-byte escape loop.
    // A fold without early exit: the compiler vectorizes it, and record strings are short.
    let plain = !s.bytes().fold(false, |esc, b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::write_string;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut all: Vec<String> = [
            "",
            "arn:aws:kms:local:111122223333:key/1234",
            "with \"quote\"",
            "back\\slash",
            "tab\tnew\nline\r\u{1}\u{1f}",
            "del \u{7f} é ✓ 🔑",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.push((0u8..=0x7f).map(char::from).collect());
        for s in all {
            let mut ours = Vec::new();
            write_string(&s, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}

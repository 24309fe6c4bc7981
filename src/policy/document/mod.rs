//! Parsing and validation of policy documents (key policies and IAM identity
//! policies). Owns the grammar and every refusal message; never evaluates a request.
//! Every message names the statement (index and Sid), the field, and what was expected.
//!
//! Here: the parsed types, the top level (size limits, Version, Id, Statement, unique
//! Sids) and the message helpers; `json` reads the JSON strictly, `statement` one
//! statement and its Condition block, `principal` the Principal element.

mod json;
mod principal;
mod statement;

use super::condition::Condition;
use super::pattern::Pattern;
use super::PolicyError;
use json::{e_msg, parse_json_strict};
use serde_json::Value;
use statement::parse_statement;

/// AWS's key policy size limit, in bytes.
pub const MAX_KEY_POLICY_BYTES: usize = 32_768;
/// AWS's managed identity policy limit: non-whitespace characters.
pub const MAX_IDENTITY_POLICY_CHARS: usize = 6_144;

/// Which kind of document: a key policy (resource-based: every statement names a
/// Principal) or an identity policy (attached to a principal: no Principal element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    KeyPolicy,
    Identity,
}

/// The policy language version. Policy variables are only recognised in 2012-10-17;
/// in 2008-10-17 (also the default when Version is omitted) `${...}` is literal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVersion {
    V2008_10_17,
    V2012_10_17,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// One entry of a Principal's "AWS" list, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsPrincipal {
    Any,
    /// `arn:PART:iam::ACCT:root` or a bare account id: the account.
    AccountRoot {
        account: String,
    },
    /// A user, role, assumed-role or federated-user ARN (exact).
    Arn {
        arn: String,
        account: String,
        /// For `role/...` ARNs: the role name, so that sessions of the role match.
        role_name: Option<String>,
    },
}

/// The Principal / NotPrincipal element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrincipalSpec {
    pub(crate) negated: bool,
    pub(crate) aws: Vec<AwsPrincipal>,
    /// Service / Federated / CanonicalUser principals: kept for completeness, they
    /// never match a kmsfs caller.
    pub(crate) others: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) index: usize,
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    pub(crate) principal: Option<PrincipalSpec>,
    pub(crate) actions_negated: bool,
    /// Patterns over "service:action", matched ASCII case-insensitively.
    pub(crate) actions: Vec<Pattern>,
    pub(crate) resources_negated: bool,
    pub(crate) resources: Vec<Pattern>,
    pub(crate) conditions: Vec<Condition>,
}

/// The parsed content of a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) kind: PolicyKind,
    pub(crate) version: PolicyVersion,
    pub(crate) id: Option<String>,
    pub(crate) statements: Vec<Statement>,
}

fn err(msg: impl Into<String>) -> PolicyError {
    PolicyError {
        message: msg.into(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const TOP_FIELDS: &[&str] = &["Version", "Id", "Statement"];

fn unknown_field(name: &str, allowed: &[&str]) -> String {
    let hint = allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(name))
        .map(|a| format!(" (element names are case-sensitive: did you mean \"{a}\"?)"))
        .unwrap_or_default();
    format!(
        "unknown field \"{name}\"{hint}; expected only {}",
        allowed.join(", ")
    )
}

/// How to treat an object key that appears twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DuplicateKeys {
    /// Refuse the document (every document a caller submits).
    Refuse,
    /// Keep the last copy, as kmsfs did before it refused them: only for reading a
    /// policy stored by such a version, so that key stays usable until it is replaced.
    LastWins,
}

pub(crate) fn parse(text: &str, kind: PolicyKind) -> Result<Parsed, PolicyError> {
    parse_with(text, kind, DuplicateKeys::Refuse)
}

pub(crate) fn parse_with(
    text: &str,
    kind: PolicyKind,
    duplicates: DuplicateKeys,
) -> Result<Parsed, PolicyError> {
    match kind {
        PolicyKind::KeyPolicy if text.len() > MAX_KEY_POLICY_BYTES => {
            return Err(err(format!(
                "the key policy is {} bytes; a key policy may be at most {MAX_KEY_POLICY_BYTES} bytes",
                text.len()
            )));
        }
        PolicyKind::Identity => {
            let n = text.chars().filter(|c| !c.is_whitespace()).count();
            if n > MAX_IDENTITY_POLICY_CHARS {
                return Err(err(format!(
                    "the identity policy has {n} characters (whitespace excluded); an identity policy may have at most {MAX_IDENTITY_POLICY_CHARS}"
                )));
            }
        }
        _ => {}
    }
    let value = match duplicates {
        DuplicateKeys::Refuse => parse_json_strict(text)?,
        DuplicateKeys::LastWins => serde_json::from_str(text).map_err(|e| {
            err(format!(
                "the policy is not valid JSON: {} at line {}, column {}",
                e_msg(&e),
                e.line(),
                e.column()
            ))
        })?,
    };
    let Value::Object(top) = value else {
        return Err(err(format!(
            "the policy must be a JSON object with Version and Statement; found {}",
            json_type(&value)
        )));
    };
    for k in top.keys() {
        if !TOP_FIELDS.contains(&k.as_str()) {
            return Err(err(format!("policy: {}", unknown_field(k, TOP_FIELDS))));
        }
    }
    let version = match top.get("Version") {
        None => PolicyVersion::V2008_10_17,
        Some(Value::String(s)) if s == "2012-10-17" => PolicyVersion::V2012_10_17,
        Some(Value::String(s)) if s == "2008-10-17" => PolicyVersion::V2008_10_17,
        Some(other) => {
            return Err(err(format!(
                "policy: Version {} is not valid; expected \"2012-10-17\" or \"2008-10-17\"",
                show(other)
            )))
        }
    };
    let id = match top.get("Id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(err(format!(
                "policy: Id must be a string; found {}",
                json_type(other)
            )))
        }
    };
    let raw_statements: Vec<&Value> = match top.get("Statement") {
        None => return Err(err(
            "policy: Statement is missing; expected an object or a non-empty array of statements",
        )),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(err(
                "policy: Statement is an empty array; expected at least one statement",
            ))
        }
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(other) => {
            return Err(err(format!(
                "policy: Statement must be an object or an array of objects; found {}",
                json_type(other)
            )))
        }
    };
    let variables = version == PolicyVersion::V2012_10_17;
    let mut statements = Vec::with_capacity(raw_statements.len());
    for (index, raw) in raw_statements.into_iter().enumerate() {
        let st = parse_statement(index, raw, kind, variables)?;
        if let Some(sid) = &st.sid {
            if let Some(prev) = statements
                .iter()
                .find(|p: &&Statement| p.sid.as_deref() == Some(sid.as_str()))
            {
                return Err(err(format!(
                    "{}: Sid \"{sid}\" is already used by Statement[{}]; Sids must be unique within a policy",
                    where_(index, Some(sid)),
                    prev.index
                )));
            }
        }
        statements.push(st);
    }
    Ok(Parsed {
        kind,
        version,
        id,
        statements,
    })
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn where_(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(s) => format!("Statement[{index}] (Sid \"{s}\")"),
        None => format!("Statement[{index}]"),
    }
}

/// A string or a non-empty array of strings (numbers and booleans are accepted as
/// their text only where `scalars` is true, as IAM does for condition values).
fn string_list(v: &Value, scalars: bool) -> Result<Vec<String>, String> {
    let one = |x: &Value| -> Result<String, String> {
        match x {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) if scalars => Ok(n.to_string()),
            Value::Bool(b) if scalars => Ok(b.to_string()),
            other => Err(format!(
                "must be a string or an array of strings; found {} {}",
                json_type(other),
                show(other)
            )),
        }
    };
    match v {
        Value::Array(a) if a.is_empty() => {
            Err("is an empty array; expected at least one value".into())
        }
        Value::Array(a) => a.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_messages_are_cut_only_beyond_60_characters() {
        // A JSON string of 60 characters (58 + quotes) is shown whole; 61 is cut to
        // 57 characters and "...". Counted in characters, not bytes.
        let at_limit = Value::String("é".repeat(58));
        assert_eq!(show(&at_limit), at_limit.to_string());
        let over = Value::String("é".repeat(59));
        let shown = show(&over);
        assert!(shown.ends_with("..."), "{shown}");
        assert_eq!(shown.chars().count(), 60);
    }

    #[test]
    fn a_json_error_keeps_the_parser_message_and_its_position_once() {
        let e = parse("{\"Statement\": }", PolicyKind::KeyPolicy).unwrap_err();
        assert_eq!(
            e.message,
            "the policy is not valid JSON: expected value at line 1, column 15"
        );
    }
}

//! Parsing and validation of policy documents (key policies and IAM identity
//! policies). Owns the grammar and every refusal message; never evaluates a request.
//! Every message names the statement (index and Sid), the field, and what was expected.

use super::condition::{Condition, Operator, Values};
use super::pattern::Pattern;
use super::PolicyError;
use serde_json::{Map, Value};

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
const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

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

/// serde_json's message without its own " at line X column Y" suffix.
/// Parses the policy's JSON, refusing a key that appears twice in one object, at any
/// depth. serde_json (like most parsers) keeps the last copy silently, so
/// `{"Statement":[Deny],"Statement":[Allow]}` would be evaluated as the Allow while a
/// reviewer reading the stored text sees the Deny: the text must mean one thing.
fn parse_json_strict(text: &str) -> Result<Value, PolicyError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue {
        path: String::new(),
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            // Only our visitor raises data errors: the document is valid JSON.
            err(format!(
                "{} (line {}, column {}); a key may appear only once in each object",
                e_msg(&e),
                e.line(),
                e.column()
            ))
        } else {
            err(format!(
                "the policy is not valid JSON: {} at line {}, column {}",
                e_msg(&e),
                e.line(),
                e.column()
            ))
        }
    })
}

/// Builds a [`Value`] like serde_json does, but fails on a duplicate object key,
/// naming it and where it is (`Statement[1].Condition`).
struct StrictValue {
    /// Where this value sits, in the corpus's `Statement[i].Field` notation; empty for
    /// the top level.
    path: String,
}

impl StrictValue {
    fn child(&self, member: &str) -> StrictValue {
        StrictValue {
            path: if self.path.is_empty() {
                member.to_string()
            } else {
                format!("{}.{member}", self.path)
            },
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let item = StrictValue {
                path: format!("{}[{}]", self.path, items.len()),
            };
            match seq.next_element_seed(item)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                let place = if self.path.is_empty() {
                    "at the top level of the policy".to_string()
                } else {
                    format!("in {}", self.path)
                };
                return Err(serde::de::Error::custom(format!(
                    "duplicate key \"{key}\" {place}"
                )));
            }
            let value = map.next_value_seed(self.child(&key))?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

fn e_msg(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
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

fn parse_statement(
    index: usize,
    raw: &Value,
    kind: PolicyKind,
    variables: bool,
) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = raw else {
        return Err(err(format!(
            "Statement[{index}] must be an object; found {}",
            json_type(raw)
        )));
    };
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(err(format!(
                "Statement[{index}]: Sid must be a string; found {}",
                json_type(other)
            )))
        }
    };
    let at = where_(index, sid.as_deref());
    let fail = |msg: String| err(format!("{at}: {msg}"));
    for k in obj.keys() {
        if !STATEMENT_FIELDS.contains(&k.as_str()) {
            return Err(fail(unknown_field(k, STATEMENT_FIELDS)));
        }
    }
    let effect = match obj.get("Effect") {
        None => {
            return Err(fail(
                "Effect is missing; expected \"Allow\" or \"Deny\"".into(),
            ))
        }
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(fail(format!(
                "Effect {} is not valid; expected \"Allow\" or \"Deny\"",
                show(other)
            )))
        }
    };
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal"), kind) {
        (Some(_), Some(_), _) => {
            return Err(fail(
                "has both Principal and NotPrincipal; expected exactly one".into(),
            ))
        }
        (None, None, PolicyKind::KeyPolicy) => {
            return Err(fail(
                "Principal is missing; every statement of a key policy must name a Principal (or NotPrincipal)".into(),
            ))
        }
        (Some(_), None, PolicyKind::Identity) | (None, Some(_), PolicyKind::Identity) => {
            return Err(fail(
                "has a Principal (or NotPrincipal); an identity policy must not name a principal, it applies to the principal it is attached to".into(),
            ))
        }
        (None, None, PolicyKind::Identity) => None,
        (Some(p), None, PolicyKind::KeyPolicy) => {
            Some(parse_principal(p, false).map_err(|m| fail(format!("Principal {m}")))?)
        }
        (None, Some(p), PolicyKind::KeyPolicy) => {
            Some(parse_principal(p, true).map_err(|m| fail(format!("NotPrincipal {m}")))?)
        }
    };
    let (actions_negated, raw_actions, afield) = match (obj.get("Action"), obj.get("NotAction")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both Action and NotAction; expected exactly one".into(),
            ))
        }
        (None, None) => {
            return Err(fail(
                "Action is missing; expected Action or NotAction (such as \"kms:Decrypt\")".into(),
            ))
        }
        (Some(a), None) => (false, a, "Action"),
        (None, Some(a)) => (true, a, "NotAction"),
    };
    let action_strings =
        string_list(raw_actions, false).map_err(|m| fail(format!("{afield} {m}")))?;
    let mut actions = Vec::with_capacity(action_strings.len());
    for a in &action_strings {
        if a != "*" {
            let valid = a.split_once(':').is_some_and(|(svc, name)| {
                !svc.is_empty()
                    && !name.is_empty()
                    && svc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            });
            if !valid {
                return Err(fail(format!(
                    "{afield} \"{a}\" is not valid; expected \"*\" or \"service:ActionName\" (wildcards * and ? allowed), such as \"kms:Decrypt\" or \"kms:*\""
                )));
            }
        }
        actions.push(
            Pattern::parse(&a.to_ascii_lowercase(), false)
                .map_err(|m| fail(format!("{afield} {m}")))?,
        );
    }
    let (resources_negated, raw_res, rfield) = match (obj.get("Resource"), obj.get("NotResource")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both Resource and NotResource; expected exactly one".into(),
            ))
        }
        (None, None) => {
            return Err(fail(
                "Resource is missing; expected Resource or NotResource (in a key policy, \"*\" means this key)".into(),
            ))
        }
        (Some(r), None) => (false, r, "Resource"),
        (None, Some(r)) => (true, r, "NotResource"),
    };
    let res_strings = string_list(raw_res, false).map_err(|m| fail(format!("{rfield} {m}")))?;
    let mut resources = Vec::with_capacity(res_strings.len());
    for r in &res_strings {
        if r != "*" && !r.starts_with("arn:") {
            return Err(fail(format!(
                "{rfield} \"{r}\" is not valid; expected \"*\" or an ARN such as \"arn:aws:kms:local:111122223333:key/...\""
            )));
        }
        resources.push(Pattern::parse(r, variables).map_err(|m| fail(format!("{rfield} {m}")))?);
    }
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => parse_conditions(c, variables).map_err(fail)?,
        Some(other) => {
            return Err(fail(format!(
                "Condition must be an object such as {{\"StringEquals\": {{\"kms:ViaService\": \"kmsfs\"}}}}; found {}",
                json_type(other)
            )))
        }
    };
    Ok(Statement {
        index,
        sid,
        effect,
        principal,
        actions_negated,
        actions,
        resources_negated,
        resources,
        conditions,
    })
}

fn parse_conditions(c: &Map<String, Value>, variables: bool) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for (opname, block) in c {
        let op =
            Operator::parse(opname).map_err(|m| format!("Condition operator \"{opname}\" {m}"))?;
        let Value::Object(keys) = block else {
            return Err(format!(
                "Condition operator \"{opname}\" must map to an object of condition keys; found {}",
                json_type(block)
            ));
        };
        if keys.is_empty() {
            return Err(format!(
                "Condition operator \"{opname}\" has no condition keys; expected at least one such as \"kms:ViaService\""
            ));
        }
        for (key, vals) in keys {
            let valid_key = key.split_once(':').is_some_and(|(p, n)| {
                !p.is_empty() && !n.is_empty() && !key.chars().any(|c| c.is_whitespace())
            });
            if !valid_key {
                return Err(format!(
                    "Condition key \"{key}\" under \"{opname}\" is not valid; expected \"prefix:name\" such as \"kms:EncryptionContext:Department\" or \"aws:PrincipalArn\""
                ));
            }
            let raw = string_list(vals, true)
                .map_err(|m| format!("Condition \"{opname}\" key \"{key}\": value {m}"))?;
            let values = Values::parse(op.family, &raw, variables)
                .map_err(|m| format!("Condition \"{opname}\" key \"{key}\": {m}"))?;
            out.push(Condition {
                op,
                key: key.to_ascii_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_principal(v: &Value, negated: bool) -> Result<PrincipalSpec, String> {
    let mut spec = PrincipalSpec {
        negated,
        aws: Vec::new(),
        others: Vec::new(),
    };
    match v {
        Value::String(s) if s == "*" => {
            spec.aws.push(AwsPrincipal::Any);
            Ok(spec)
        }
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                let list = string_list(val, false).map_err(|m| format!("\"{k}\" {m}"))?;
                match k.as_str() {
                    "AWS" => {
                        for p in &list {
                            spec.aws.push(parse_aws_principal(p)?);
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => {
                        for p in list {
                            if p.is_empty() {
                                return Err(format!("\"{k}\" has an empty value"));
                            }
                            spec.others.push(p);
                        }
                    }
                    other => {
                        return Err(format!(
                            "has unknown principal type \"{other}\"; expected \"AWS\", \"Service\", \"Federated\" or \"CanonicalUser\""
                        ))
                    }
                }
            }
            Ok(spec)
        }
        other => Err(format!(
            "{} is not valid; expected \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::111122223333:root\"}}",
            show(other)
        )),
    }
}

fn parse_aws_principal(p: &str) -> Result<AwsPrincipal, String> {
    if p == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(p) {
        return Ok(AwsPrincipal::AccountRoot {
            account: p.to_string(),
        });
    }
    let bad = |why: &str| {
        format!(
            "\"AWS\" value \"{p}\" is not valid: {why}; expected \"*\", a 12-digit account id, or an ARN such as arn:aws:iam::111122223333:root, arn:aws:iam::111122223333:user/alice, arn:aws:iam::111122223333:role/Admin or arn:aws:sts::111122223333:assumed-role/Admin/session"
        )
    };
    if p.contains('*') || p.contains('?') {
        return Err(bad(
            "wildcards are not allowed in a principal (only \"*\" on its own)",
        ));
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(bad("it is neither an account id nor an ARN"));
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() {
        return Err(bad("it is not an IAM or STS ARN"));
    }
    if !is_account_id(account) {
        return Err(bad("the account part must be 12 digits"));
    }
    let account = account.to_string();
    let exact = |role_name: Option<&str>| AwsPrincipal::Arn {
        arn: p.to_string(),
        account: account.clone(),
        role_name: role_name.map(str::to_string),
    };
    match (*service, *resource) {
        ("iam", "root") => Ok(AwsPrincipal::AccountRoot {
            account: account.clone(),
        }),
        // Users and roles may have a path (`user/eng/alice`); the name is the last part.
        ("iam", r) if r.starts_with("user/") => match last_name(&r[5..]) {
            Some(_) => Ok(exact(None)),
            None => Err(bad("the user name is empty")),
        },
        ("iam", r) if r.starts_with("role/") => match last_name(&r[5..]) {
            Some(role) => Ok(exact(Some(role))),
            None => Err(bad("the role name is empty")),
        },
        // STS names a session by role and session name, both required, no path.
        ("sts", r) if r.starts_with("assumed-role/") => {
            match r["assumed-role/".len()..].split('/').collect::<Vec<_>>().as_slice() {
                [role, session] if !role.is_empty() && !session.is_empty() => Ok(exact(None)),
                _ => Err(bad(
                    "an assumed-role ARN must be assumed-role/ROLE/SESSION with both names",
                )),
            }
        }
        ("sts", r) if r.starts_with("federated-user/") => {
            let name = &r["federated-user/".len()..];
            if name.is_empty() || name.contains('/') {
                Err(bad("a federated-user ARN must be federated-user/NAME"))
            } else {
                Ok(exact(None))
            }
        }
        ("iam", r) if r.starts_with("group/") => Err(bad("an IAM group cannot be a principal")),
        _ => Err(bad("the resource part must be root, user/NAME, role/NAME, assumed-role/ROLE/SESSION or federated-user/NAME")),
    }
}

/// The last `/`-separated part of a user or role path, if it is not empty.
fn last_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
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

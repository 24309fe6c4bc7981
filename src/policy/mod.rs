//! The policy language of AWS KMS key policies and IAM identity policies: parsing,
//! validation and evaluation. Pure: no I/O, no clock (the request carries the time),
//! no logging. Every answer is an [`Evaluation`] that carries its reasons; the
//! simulator, the audit log and the filesystem's EACCES all use that one value.
//!
//! The public types below are the contract the key service and the CLI code against;
//! extend them, do not rename them.
//!
//! Layout: [`document`] parses and validates (every refusal message lives there),
//! `condition` holds the IAM operators, `pattern` the wildcard/variable matcher, and
//! `eval` the AWS KMS decision logic. Nothing here may do I/O, read the clock, log,
//! or panic on any input.
//!
//! Choices where AWS leaves room, so that nobody has to re-derive them:
//! - Size limits: key policies at most 32768 bytes (AWS's limit); identity policies at
//!   most 6144 non-whitespace characters (AWS's managed-policy limit), so that a policy
//!   that works here also fits in AWS.
//! - Element names, Effect values and operator names are case-sensitive (with a "did
//!   you mean" hint); action names, condition key names and policy variable names are
//!   not; values are, except under the IgnoreCase operators and Bool.
//! - Sids must be unique within a document; a Principal ARN may not contain wildcards;
//!   a role ARN names that role's sessions (`arn:aws:sts::A:assumed-role/ROLE/...`).
//! - Policy variables exist only in Version 2012-10-17 (a missing Version means
//!   2008-10-17, where `${...}` is literal). A variable with no value and no default
//!   makes that one value match nothing; multi-valued keys cannot be variables.
//! - `kms:EncryptionContext:<k>`: `<k>` is case-insensitive like the rest of the key
//!   name, the value is compared as the operator says. `kms:EncryptionContextKeys` is
//!   absent when the context is absent or empty. Grant constraints compare keys
//!   case-insensitively and values case-sensitively, and apply only to the operations
//!   that take an encryption context (AWS's rule).
//! - A multi-valued key without ForAnyValue/ForAllValues matches when any of its
//!   values matches (a negated operator: when none does).
//! - `aws:userid` is the account id for the account root (as in AWS), absent for the
//!   anonymous caller (as in AWS), and otherwise the caller's uid (kmsfs has no IAM
//!   unique ids). `aws:PrincipalType` is Account, User, AssumedRole, FederatedUser,
//!   Role or Anonymous.
//! - The anonymous caller (no ARN) has no identity policies, grants or account: only
//!   `"*"` (or a NotPrincipal not listing it) matches, and such a statement decides.
//! - An account root caller needs no identity policy (AWS does not apply identity
//!   policies to the root user), in its own account and across accounts.
//! - A grant whose grantee is an account root serves that account's principals only
//!   when their identity policies allow the operation too.
//! - The caller of [`evaluate`] passes only the key's grants and only the caller's
//!   identity policies. Parsing costs far more than evaluating (about 160 µs against
//!   2 µs for a 20-statement policy): keep parsed [`PolicyDocument`]s, not text.

pub mod actions;
mod condition;
pub mod document;
mod eval;
mod pattern;

pub use document::{PolicyKind, PolicyVersion, MAX_IDENTITY_POLICY_CHARS, MAX_KEY_POLICY_BYTES};

use std::collections::BTreeMap;

/// A parsed, validated policy document. Keeps the original text (GetKeyPolicy returns it).
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    pub text: String,
    pub(crate) parsed: document::Parsed,
}

/// Why a document was refused. Its Display is the user-facing message of a
/// `MalformedPolicyDocumentException`: it names the statement (index or Sid), the field
/// and what was expected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

impl PolicyDocument {
    /// Parses a key policy: every statement must name a Principal or NotPrincipal, and
    /// the text may be at most [`MAX_KEY_POLICY_BYTES`] bytes.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        Self::parse_kind(text, PolicyKind::KeyPolicy)
    }

    /// Parses an identity (IAM) policy: no statement may name a principal, and the
    /// text may have at most [`MAX_IDENTITY_POLICY_CHARS`] non-whitespace characters
    /// (AWS's managed-policy limit, applied so a policy that works here fits in AWS).
    pub fn parse_identity(text: &str) -> Result<PolicyDocument, PolicyError> {
        Self::parse_kind(text, PolicyKind::Identity)
    }

    pub fn parse_kind(text: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
        let parsed = document::parse(text, kind)?;
        Ok(PolicyDocument {
            text: text.to_string(),
            parsed,
        })
    }

    /// Parses a key policy stored by an earlier kmsfs, which accepted duplicate object
    /// keys and evaluated the last copy. A stored policy with no duplicate parses
    /// exactly as [`PolicyDocument::parse`]; with duplicates, it parses as before and
    /// the second value is the refusal [`PolicyDocument::parse`] gives, so the caller can
    /// warn and the key stays usable until a corrected policy replaces it.
    pub fn parse_stored(text: &str) -> Result<(PolicyDocument, Option<PolicyError>), PolicyError> {
        match Self::parse(text) {
            Ok(doc) => Ok((doc, None)),
            Err(strict) => {
                let parsed = document::parse_with(
                    text,
                    PolicyKind::KeyPolicy,
                    document::DuplicateKeys::LastWins,
                )?;
                // Anything but a duplicate key would have failed the lenient parse too.
                Ok((
                    PolicyDocument {
                        text: text.to_string(),
                        parsed,
                    },
                    Some(strict),
                ))
            }
        }
    }

    pub fn kind(&self) -> PolicyKind {
        self.parsed.kind
    }

    pub fn version(&self) -> PolicyVersion {
        self.parsed.version
    }

    /// The document's `Id`, if any.
    pub fn id(&self) -> Option<&str> {
        self.parsed.id.as_deref()
    }

    pub fn statement_count(&self) -> usize {
        self.parsed.statements.len()
    }

    /// The Sids of the statements in order (`None` for statements without one).
    pub fn sids(&self) -> Vec<Option<&str>> {
        self.parsed
            .statements
            .iter()
            .map(|s| s.sid.as_deref())
            .collect()
    }

    /// Whether this document, used as the key policy (with the caller's identity
    /// policies, without grants), allows `req`. PutKeyPolicy's lockout safety check
    /// calls this with the new policy and action `kms:PutKeyPolicy`. As cheap as one
    /// [`evaluate`].
    pub fn allows(&self, req: &Request<'_>, identity_policies: &[IdentityPolicy]) -> bool {
        evaluate(req, self, identity_policies, &[]).decision == Decision::Allowed
    }
}

/// Who is calling. `arn == None` is the anonymous principal (only `"Principal": "*"`
/// statements can match it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub arn: Option<String>,
    /// The principal's account (for anonymous callers: empty).
    pub account: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// An identity (IAM) policy attached to the caller.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// File name or `inline:<n>`: shown in reasons.
    pub name: String,
    pub document: PolicyDocument,
}

pub type EncryptionContext = BTreeMap<String, String>;

/// A grant as the key service stores it; the evaluator only reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub grant_id: String,
    pub name: Option<String>,
    pub key_arn: String,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub issuing_account: String,
    /// AWS operation names without prefix: "Decrypt", "GenerateDataKey", "CreateGrant", ...
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    /// Seconds since the Unix epoch.
    pub creation_date: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantConstraints {
    pub encryption_context_equals: Option<EncryptionContext>,
    pub encryption_context_subset: Option<EncryptionContext>,
}

/// Values of request-specific condition keys, set by the key service: kms:ViaService,
/// kms:GrantOperations, kms:GranteePrincipal, kms:RetiringPrincipal,
/// kms:GrantIsForAWSResource, kms:BypassPolicyLockoutSafetyCheck, kms:RequestAlias,
/// kms:ResourceAliases, kms:KeySpec, ... Global keys (aws:PrincipalArn, aws:username,
/// aws:CurrentTime, kms:CallerAccount, kmsfs:Uid, kms:EncryptionContext:*, ...) are
/// derived by the evaluator from the [`Request`]'s other fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestContext {
    /// Keys are stored lowercased (condition key names are case-insensitive).
    values: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a single-valued key.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
    }
    /// Sets a multi-valued key (e.g. kms:GrantOperations).
    pub fn set_multi(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_ascii_lowercase(), values);
    }
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(|v| v.as_slice())
    }
}

/// One authorization question.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    /// "kms:Decrypt" etc.
    pub action: &'a str,
    /// The key ARN.
    pub resource: &'a str,
    /// The account that owns the key.
    pub resource_account: &'a str,
    pub encryption_context: Option<&'a EncryptionContext>,
    pub context: &'a RequestContext,
    /// Seconds since the Unix epoch (aws:CurrentTime, aws:EpochTime).
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    #[serde(rename = "allowed")]
    Allowed,
    #[serde(rename = "explicitDeny")]
    ExplicitDeny,
    #[serde(rename = "implicitDeny")]
    ImplicitDeny,
}

/// What decided (or contributed to) an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "Source")]
pub enum Reason {
    KeyPolicy {
        sid: Option<String>,
        index: usize,
        effect: String,
    },
    IdentityPolicy {
        name: String,
        sid: Option<String>,
        index: usize,
        effect: String,
    },
    Grant {
        grant_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub matched: Vec<Reason>,
    /// Human-readable explanation lines ("the key policy delegates to IAM via the root
    /// statement but no identity policy allows kms:Decrypt", ...).
    pub notes: Vec<String>,
}

/// Evaluates `req` against the key policy, the caller's identity policies and the key's
/// grants exactly as AWS KMS does.
///
/// - an explicit Deny in the key policy or an identity policy wins over everything;
/// - a key-policy Allow naming the caller (or `"*"`) allows on its own in the key's
///   account; one naming the account root delegates to that account's identity
///   policies (the root principal itself needs no identity policy);
/// - a caller of another account needs a key-policy Allow naming its account (or it)
///   and an identity-policy Allow, and only for the actions [`actions`] marks `cross_account`;
/// - grants allow their operations (names without `kms:`) to their grantee when their
///   encryption context constraints hold, with or without identity policies.
///
/// Identity policies of an anonymous caller are ignored; it matches only `"*"`.
pub fn evaluate(
    req: &Request<'_>,
    key_policy: &PolicyDocument,
    identity_policies: &[IdentityPolicy],
    grants: &[Grant],
) -> Evaluation {
    eval::evaluate(req, key_policy, identity_policies, grants)
}

/// Which request values an evaluation read, of those a caller reusing decisions must
/// know about: every other input of a decision is in the request's principal, action,
/// resource and condition keys and in the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reads {
    /// The request's time (`aws:CurrentTime`, `aws:EpochTime`): such a decision holds
    /// for this instant only.
    pub time: bool,
    /// The encryption context (`kms:EncryptionContext:*`, `kms:EncryptionContextKeys`,
    /// as a condition or a policy variable, or a grant's context constraints). A
    /// decision that did not read it is the same for a request with any other context
    /// and equal other inputs.
    pub context: bool,
}

/// [`evaluate`], and which of the time and the encryption context the decision read
/// ([`Reads`]). A decision that read neither is the same for a later request with
/// equal inputs, whatever its context, so a caller may reuse it (the key service's
/// decision cache does).
pub fn evaluate_traced(
    req: &Request<'_>,
    key_policy: &PolicyDocument,
    identity_policies: &[IdentityPolicy],
    grants: &[Grant],
) -> (Evaluation, Reads) {
    eval::evaluate_traced(req, key_policy, identity_policies, grants)
}

impl Reason {
    /// `KeyPolicy:<Sid or #index>`, `IdentityPolicy:<name>` or `Grant:<id>`: the short
    /// form used in test tables and text output.
    pub fn label(&self) -> String {
        match self {
            Reason::KeyPolicy { sid: Some(s), .. } => format!("KeyPolicy:{s}"),
            Reason::KeyPolicy { index, .. } => format!("KeyPolicy:#{index}"),
            Reason::IdentityPolicy { name, .. } => format!("IdentityPolicy:{name}"),
            Reason::Grant { grant_id } => format!("Grant:{grant_id}"),
        }
    }
}

impl Evaluation {
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allowed
    }

    /// The JSON `kmsfs simulate` prints:
    /// `{"EvalDecision": "allowed|explicitDeny|implicitDeny", "MatchedStatements": [...],
    /// "Notes": [...]}`.
    pub fn to_simulate_json(&self) -> serde_json::Value {
        use serde_json::json;
        let decision = match self.decision {
            Decision::Allowed => "allowed",
            Decision::ExplicitDeny => "explicitDeny",
            Decision::ImplicitDeny => "implicitDeny",
        };
        let matched: Vec<serde_json::Value> = self
            .matched
            .iter()
            .map(|r| match r {
                Reason::KeyPolicy { sid, index, effect } => json!({
                    "SourcePolicyType": "KeyPolicy",
                    "SourcePolicyId": "KeyPolicy",
                    "Sid": sid,
                    "StatementIndex": index,
                    "Effect": effect,
                }),
                Reason::IdentityPolicy {
                    name,
                    sid,
                    index,
                    effect,
                } => json!({
                    "SourcePolicyType": "IdentityPolicy",
                    "SourcePolicyId": name,
                    "Sid": sid,
                    "StatementIndex": index,
                    "Effect": effect,
                }),
                Reason::Grant { grant_id } => json!({
                    "SourcePolicyType": "Grant",
                    "SourcePolicyId": grant_id,
                    "Sid": null,
                    "StatementIndex": null,
                    "Effect": "Allow",
                }),
            })
            .collect();
        json!({
            "EvalDecision": decision,
            "MatchedStatements": matched,
            "Notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;

    fn alice() -> Principal {
        Principal {
            arn: Some("arn:aws:iam::111122223333:user/alice".into()),
            account: "111122223333".into(),
            uid: Some(1001),
            gid: None,
        }
    }

    fn request<'a>(p: &'a Principal, action: &'a str, ctx: &'a RequestContext) -> Request<'a> {
        Request {
            principal: p,
            action,
            resource: "arn:aws:kms:local:111122223333:key/k",
            resource_account: "111122223333",
            encryption_context: None,
            context: ctx,
            now: 0,
        }
    }

    #[test]
    fn key_policy_over_32768_bytes_is_refused_with_the_limit_named() {
        let pad = " ".repeat(MAX_KEY_POLICY_BYTES);
        let text = format!("{ROOT_POLICY}{pad}");
        let e = PolicyDocument::parse(&text).unwrap_err();
        assert!(e.message.contains("at most 32768 bytes"), "{e}");
        // Exactly at the limit is fine.
        let text = format!(
            "{ROOT_POLICY}{}",
            " ".repeat(MAX_KEY_POLICY_BYTES - ROOT_POLICY.len())
        );
        assert!(PolicyDocument::parse(&text).is_ok());
    }

    #[test]
    fn duplicate_keys_are_refused_but_a_stored_policy_with_them_still_reads_as_before() {
        let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}],"Statement":[{"Sid":"Last","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
        let e = PolicyDocument::parse(text).unwrap_err();
        assert!(
            e.message
                .contains("duplicate key \"Statement\" at the top level of the policy"),
            "{e}"
        );
        let (doc, refusal) = PolicyDocument::parse_stored(text).unwrap();
        assert_eq!(refusal, Some(e));
        assert_eq!(doc.statement_count(), 1);
        let (_, none) = PolicyDocument::parse_stored(ROOT_POLICY).unwrap();
        assert_eq!(none, None);
        // Syntax errors stay syntax errors, and say so.
        let bad = PolicyDocument::parse(r#"{"Version":"2012-10-17","Statement":[}"#).unwrap_err();
        assert!(bad.message.contains("not valid JSON"), "{bad}");
        assert!(PolicyDocument::parse_stored("{").is_err());
    }

    #[test]
    fn identity_policy_limit_counts_non_whitespace_characters() {
        let many: Vec<String> = (0..400).map(|i| format!("\"kms:Action{i:05}\"")).collect();
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":[{}],"Resource":"*"}}}}"#,
            many.join(",")
        );
        let e = PolicyDocument::parse_identity(&text).unwrap_err();
        assert!(e.message.contains("at most 6144"), "{e}");
        // Whitespace does not count.
        let spaced = format!(
            "{}{}",
            r#"{"Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*"}}"#,
            " ".repeat(10_000)
        );
        assert!(PolicyDocument::parse_identity(&spaced).is_ok());
    }

    #[test]
    fn document_keeps_its_text_and_exposes_its_shape() {
        let d = PolicyDocument::parse(ROOT_POLICY).unwrap();
        assert_eq!(d.text, ROOT_POLICY);
        assert_eq!(d.kind(), PolicyKind::KeyPolicy);
        assert_eq!(d.version(), PolicyVersion::V2012_10_17);
        assert_eq!(d.statement_count(), 1);
        assert_eq!(d.sids(), vec![Some("Enable IAM User Permissions")]);
        assert_eq!(d.id(), None);
    }

    #[test]
    fn lockout_check_allows_root_delegation_and_refuses_a_policy_without_the_caller() {
        let ctx = RequestContext::new();
        let root = Principal {
            arn: Some("arn:aws:iam::111122223333:root".into()),
            account: "111122223333".into(),
            uid: Some(0),
            gid: None,
        };
        let p = PolicyDocument::parse(ROOT_POLICY).unwrap();
        assert!(p.allows(&request(&root, "kms:PutKeyPolicy", &ctx), &[]));
        let bob_only = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"kms:*","Resource":"*"}}"#,
        )
        .unwrap();
        assert!(!bob_only.allows(&request(&root, "kms:PutKeyPolicy", &ctx), &[]));
    }

    #[test]
    fn simulate_json_has_the_documented_shape() {
        let ctx = RequestContext::new();
        let a = alice();
        let ident = IdentityPolicy {
            name: "alice.json".into(),
            document: PolicyDocument::parse_identity(
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"Use","Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#,
            )
            .unwrap(),
        };
        let grant = Grant {
            grant_id: "g-1".into(),
            name: None,
            key_arn: "arn:aws:kms:local:111122223333:key/k".into(),
            grantee_principal: "arn:aws:iam::111122223333:user/alice".into(),
            retiring_principal: None,
            issuing_account: "111122223333".into(),
            operations: vec!["Decrypt".into()],
            constraints: None,
            creation_date: 0,
        };
        let kp = PolicyDocument::parse(ROOT_POLICY).unwrap();
        let ev = evaluate(&request(&a, "kms:Decrypt", &ctx), &kp, &[ident], &[grant]);
        let j = ev.to_simulate_json();
        assert_eq!(j["EvalDecision"], "allowed");
        let m = j["MatchedStatements"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0]["SourcePolicyType"], "KeyPolicy");
        assert_eq!(m[0]["Sid"], "Enable IAM User Permissions");
        assert_eq!(m[0]["StatementIndex"], 0);
        assert_eq!(m[1]["SourcePolicyType"], "IdentityPolicy");
        assert_eq!(m[1]["SourcePolicyId"], "alice.json");
        assert_eq!(m[1]["Sid"], "Use");
        assert_eq!(m[2]["SourcePolicyType"], "Grant");
        assert_eq!(m[2]["SourcePolicyId"], "g-1");
        assert!(j["Notes"].as_array().unwrap().is_empty());

        let ev = evaluate(&request(&a, "kms:Decrypt", &ctx), &kp, &[], &[]);
        let j = ev.to_simulate_json();
        assert_eq!(j["EvalDecision"], "implicitDeny");
        assert!(j["MatchedStatements"].as_array().unwrap().is_empty());
        assert!(!j["Notes"].as_array().unwrap().is_empty());
    }

    #[test]
    fn evaluation_round_trips_through_serde_for_the_audit_log() {
        let ctx = RequestContext::new();
        let a = alice();
        let kp = PolicyDocument::parse(ROOT_POLICY).unwrap();
        let ev = evaluate(&request(&a, "kms:Decrypt", &ctx), &kp, &[], &[]);
        let text = serde_json::to_string(&ev).unwrap();
        let back: Evaluation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn time_out_of_range_does_not_panic() {
        let mut ctx = RequestContext::new();
        ctx.set("kms:ViaService", "kmsfs");
        let a = alice();
        let kp = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01"}}}}"#,
        )
        .unwrap();
        for now in [i64::MIN, -1, 0, i64::MAX] {
            let mut r = request(&a, "kms:Decrypt", &ctx);
            r.now = now;
            let _ = evaluate(&r, &kp, &[], &[]);
        }
    }
}

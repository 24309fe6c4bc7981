//! Evaluation of one request against a key policy, the caller's identity policies and
//! the key's grants, following AWS KMS's documented logic. Pure and allocation-light:
//! condition keys are computed on demand from the [`Request`], never collected into a
//! map, so that a key with 1000 grants and no conditions costs a few string compares.

use super::condition::Condition;
use super::document::{AwsPrincipal, Effect, PrincipalSpec, Statement};
use super::pattern::{glob_match, Part, Pattern};
use super::{Decision, Evaluation, Grant, IdentityPolicy, PolicyDocument, Reads, Reason, Request};
use std::borrow::Cow;

/// The parts of a caller ARN the evaluator needs.
struct Caller<'a> {
    arn: Option<&'a str>,
    account: &'a str,
    /// `root`, `user/...`, `assumed-role/R/S`, ...
    resource: &'a str,
    is_root: bool,
}

impl<'a> Caller<'a> {
    fn new(req: &Request<'a>) -> Caller<'a> {
        let arn = req.principal.arn.as_deref();
        let (arn_account, resource) = match arn {
            Some(a) => {
                let mut it = a.splitn(6, ':');
                let acct = it.nth(4).unwrap_or("");
                (acct, it.next().unwrap_or(""))
            }
            None => ("", ""),
        };
        let account = if req.principal.account.is_empty() {
            arn_account
        } else {
            req.principal.account.as_str()
        };
        Caller {
            arn,
            account,
            resource,
            is_root: arn.is_some() && resource == "root",
        }
    }

    /// For `arn:aws:sts::A:assumed-role/ROLE/SESSION`: ROLE.
    fn assumed_role(&self) -> Option<&'a str> {
        self.resource
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
    }

    fn principal_type(&self) -> &'static str {
        match self.arn {
            None => "Anonymous",
            Some(_) if self.is_root => "Account",
            Some(_) if self.resource.starts_with("user/") => "User",
            Some(_) if self.resource.starts_with("assumed-role/") => "AssumedRole",
            Some(_) if self.resource.starts_with("federated-user/") => "FederatedUser",
            Some(_) if self.resource.starts_with("role/") => "Role",
            Some(_) => "Unknown",
        }
    }

    /// True when `arn` names this caller: the same ARN, or the role whose session the
    /// caller is.
    fn is(&self, arn: &str, account: &str, role_name: Option<&str>) -> bool {
        let Some(me) = self.arn else {
            return false;
        };
        if me == arn {
            return true;
        }
        match (role_name, self.assumed_role()) {
            (Some(r), Some(mine)) => r == mine && account == self.account,
            _ => false,
        }
    }
}

/// How a statement's Principal relates to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrincipalMatch {
    None,
    /// The statement names the caller (or everyone): it decides on its own.
    Direct,
    /// The statement names the caller's account: for an Allow, the account's identity
    /// policies must allow too (delegation to IAM).
    Account,
}

fn principal_match(spec: &PrincipalSpec, caller: &Caller<'_>) -> PrincipalMatch {
    let mut best = PrincipalMatch::None;
    for p in &spec.aws {
        let m = match p {
            AwsPrincipal::Any => PrincipalMatch::Direct,
            AwsPrincipal::AccountRoot { account } => {
                if caller.arn.is_none() || account != caller.account {
                    PrincipalMatch::None
                } else if caller.is_root {
                    PrincipalMatch::Direct
                } else {
                    PrincipalMatch::Account
                }
            }
            AwsPrincipal::Arn {
                arn,
                account,
                role_name,
            } => {
                if caller.is(arn, account, role_name.as_deref()) {
                    PrincipalMatch::Direct
                } else {
                    PrincipalMatch::None
                }
            }
        };
        if m == PrincipalMatch::Direct {
            best = m;
            break;
        }
        if m == PrincipalMatch::Account {
            best = m;
        }
    }
    if spec.negated {
        // NotPrincipal: the statement applies to everyone not listed; listing the
        // account excludes every principal of that account.
        if best == PrincipalMatch::None {
            PrincipalMatch::Direct
        } else {
            PrincipalMatch::None
        }
    } else {
        best
    }
}

/// Request values of condition keys, computed on demand.
pub(crate) struct Ctx<'r, 'a> {
    req: &'r Request<'a>,
    caller: Caller<'a>,
    /// Set when a condition read the request's time: such a decision holds only for
    /// this instant, so the key service must not reuse it.
    read_time: std::cell::Cell<bool>,
    /// Set when a condition, a policy variable or a grant constraint read the
    /// request's encryption context: only a decision that did not is the same for
    /// every context.
    read_context: std::cell::Cell<bool>,
}

impl<'r, 'a> Ctx<'r, 'a> {
    /// The values of `key` (lowercased). `None` when the request has no such key.
    pub(crate) fn values(&self, key: &str) -> Option<Cow<'r, [String]>> {
        let one = |s: String| Some(Cow::Owned(vec![s]));
        let c = &self.caller;
        match key {
            "aws:principalarn" => c.arn.and_then(|a| one(a.to_string())),
            "aws:principalaccount" | "kms:calleraccount" => {
                if c.account.is_empty() {
                    None
                } else {
                    one(c.account.to_string())
                }
            }
            "aws:principaltype" => one(c.principal_type().to_string()),
            "aws:username" => c
                .resource
                .strip_prefix("user/")
                .and_then(|u| u.rsplit('/').next())
                .and_then(|u| one(u.to_string())),
            // AWS: the account id for the root user, nothing for anonymous callers;
            // kmsfs has no IAM unique ids, so a named principal's is its uid.
            "aws:userid" => match (c.arn, self.req.principal.uid) {
                (None, _) => None,
                (Some(_), _) if c.is_root => one(c.account.to_string()),
                (Some(_), Some(uid)) => one(uid.to_string()),
                (Some(_), None) => None,
            },
            "aws:currenttime" => {
                self.read_time.set(true);
                one(format_time(self.req.now))
            }
            "aws:epochtime" => {
                self.read_time.set(true);
                one(self.req.now.to_string())
            }
            "kmsfs:uid" => self.req.principal.uid.and_then(|u| one(u.to_string())),
            "kmsfs:gid" => self.req.principal.gid.and_then(|g| one(g.to_string())),
            "kms:encryptioncontextkeys" => {
                self.read_context.set(true);
                let ec = self.req.encryption_context?;
                if ec.is_empty() {
                    None
                } else {
                    Some(Cow::Owned(ec.keys().cloned().collect()))
                }
            }
            _ => {
                if let Some(k) = key.strip_prefix("kms:encryptioncontext:") {
                    self.read_context.set(true);
                    // The key part of the condition key is case-insensitive like every
                    // condition key name; the value is compared as the operator says.
                    let ec = self.req.encryption_context?;
                    let v: Vec<String> = ec
                        .iter()
                        .filter(|(ek, _)| ek.eq_ignore_ascii_case(k) || ek.to_lowercase() == k)
                        .map(|(_, v)| v.clone())
                        .collect();
                    return if v.is_empty() {
                        None
                    } else {
                        Some(Cow::Owned(v))
                    };
                }
                self.req
                    .context
                    .values
                    .get(key)
                    .map(|v| Cow::Borrowed(v.as_slice()))
            }
        }
    }

    /// A single value for a policy variable; multi-valued keys cannot be variables.
    fn variable(&self, key: &str) -> Option<String> {
        let v = self.values(key)?;
        match v.as_ref() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    fn resolve<'p>(&self, p: &'p Pattern) -> Option<Cow<'p, [Part]>> {
        p.resolve(|k| self.variable(k))
    }

    fn condition_holds(&self, c: &Condition) -> bool {
        let vals = self.values(&c.key);
        c.holds(vals.as_deref(), |p| self.resolve(p))
    }
}

fn format_time(now: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| now.to_string())
}

fn action_matches(st: &Statement, action: &str) -> bool {
    let any = st
        .actions
        .iter()
        .any(|p| glob_match(&p.parts, action, true));
    any != st.actions_negated
}

fn resource_matches(st: &Statement, ctx: &Ctx<'_, '_>) -> bool {
    let resource = ctx.req.resource;
    let any = st.resources.iter().any(|p| {
        if p.is_star() {
            return true;
        }
        match ctx.resolve(p) {
            Some(parts) => glob_match(&parts, resource, false),
            None => false,
        }
    });
    any != st.resources_negated
}

fn conditions_hold(st: &Statement, ctx: &Ctx<'_, '_>) -> bool {
    st.conditions.iter().all(|c| ctx.condition_holds(c))
}

fn describe(sid: &Option<String>, index: usize) -> String {
    match sid {
        Some(s) => format!("statement {index} (Sid \"{s}\")"),
        None => format!("statement {index}"),
    }
}

/// The grant's constraints against the request's encryption context: keys compare
/// case-insensitively, values case-sensitively (AWS's rule for grant constraints).
fn constraints_hold(g: &Grant, op: &str, req: &Request<'_>) -> bool {
    let Some(c) = &g.constraints else {
        return true;
    };
    if !super::actions::takes_context(op) {
        return true;
    }
    let empty = super::EncryptionContext::new();
    let ec = req.encryption_context.unwrap_or(&empty);
    let has = |k: &str, v: &str| {
        ec.iter().any(|(rk, rv)| {
            rv == v && (rk.eq_ignore_ascii_case(k) || rk.to_lowercase() == k.to_lowercase())
        })
    };
    if let Some(eq) = &c.encryption_context_equals {
        if eq.len() != ec.len() || !eq.iter().all(|(k, v)| has(k, v)) {
            return false;
        }
    }
    if let Some(sub) = &c.encryption_context_subset {
        if !sub.iter().all(|(k, v)| has(k, v)) {
            return false;
        }
    }
    true
}

/// How a grant's grantee relates to the caller: the caller itself (or the role of its
/// session) is Direct; the caller's account (root ARN or bare id) is Account, which
/// AWS honours only when the caller's identity policies allow the operation (the
/// account delegates the grant to its principals), unless the caller is the root.
fn grantee_matches(g: &Grant, caller: &Caller<'_>) -> PrincipalMatch {
    let Some(me) = caller.arn else {
        return PrincipalMatch::None;
    };
    let grantee = g.grantee_principal.as_str();
    if grantee == me {
        return PrincipalMatch::Direct;
    }
    // Hot path (a key with many grants): only an account or a role can still match,
    // so skip the ARN split for every other grantee.
    let maybe_account = grantee.ends_with(":root") || grantee.len() == 12;
    if !maybe_account && caller.assumed_role().is_none() {
        return PrincipalMatch::None;
    }
    let mut it = grantee.splitn(6, ':');
    let account = it.nth(4).unwrap_or("");
    let res = it.next().unwrap_or("");
    let names_account = (res == "root" && account == caller.account)
        || (grantee.len() == 12 && grantee == caller.account);
    if names_account {
        return if caller.is_root {
            PrincipalMatch::Direct
        } else {
            PrincipalMatch::Account
        };
    }
    // A grant to a role serves the role's sessions.
    match caller.assumed_role() {
        Some(role)
            if account == caller.account
                && res.starts_with("role/")
                && res.rsplit('/').next() == Some(role) =>
        {
            PrincipalMatch::Direct
        }
        _ => PrincipalMatch::None,
    }
}

pub(crate) fn evaluate(
    req: &Request<'_>,
    key_policy: &PolicyDocument,
    identity_policies: &[IdentityPolicy],
    grants: &[Grant],
) -> Evaluation {
    evaluate_traced(req, key_policy, identity_policies, grants).0
}

/// [`evaluate`], also saying which request values that are not inputs of a decision
/// cache entry it read (see [`Reads`]).
pub(crate) fn evaluate_traced(
    req: &Request<'_>,
    key_policy: &PolicyDocument,
    identity_policies: &[IdentityPolicy],
    grants: &[Grant],
) -> (Evaluation, Reads) {
    let ctx = Ctx {
        req,
        caller: Caller::new(req),
        read_time: std::cell::Cell::new(false),
        read_context: std::cell::Cell::new(false),
    };
    let ev = evaluate_in(&ctx, key_policy, identity_policies, grants);
    let reads = Reads {
        time: ctx.read_time.get(),
        context: ctx.read_context.get(),
    };
    (ev, reads)
}

fn evaluate_in(
    ctx: &Ctx<'_, '_>,
    key_policy: &PolicyDocument,
    identity_policies: &[IdentityPolicy],
    grants: &[Grant],
) -> Evaluation {
    let req = ctx.req;
    let caller = &ctx.caller;
    let action = req.action;
    let caller_name = caller.arn.unwrap_or("the anonymous principal");

    let mut denies: Vec<Reason> = Vec::new();
    let mut direct: Vec<Reason> = Vec::new();
    let mut delegating: Vec<(Reason, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    for st in &key_policy.parsed.statements {
        if !action_matches(st, action) {
            continue;
        }
        let pm = match &st.principal {
            Some(spec) => principal_match(spec, caller),
            None => PrincipalMatch::None,
        };
        if pm == PrincipalMatch::None || !resource_matches(st, ctx) || !conditions_hold(st, ctx) {
            continue;
        }
        let reason = Reason::KeyPolicy {
            sid: st.sid.clone(),
            index: st.index,
            effect: st.effect.as_str().to_string(),
        };
        match (st.effect, pm) {
            (Effect::Deny, _) => denies.push(reason),
            (Effect::Allow, PrincipalMatch::Direct) => direct.push(reason),
            (Effect::Allow, _) => delegating.push((reason, describe(&st.sid, st.index))),
        }
    }

    // Identity policies belong to a named principal; an anonymous caller has none.
    let mut identity: Vec<Reason> = Vec::new();
    if caller.arn.is_some() {
        for ip in identity_policies {
            for st in &ip.document.parsed.statements {
                if !action_matches(st, action)
                    || !resource_matches(st, ctx)
                    || !conditions_hold(st, ctx)
                {
                    continue;
                }
                let reason = Reason::IdentityPolicy {
                    name: ip.name.clone(),
                    sid: st.sid.clone(),
                    index: st.index,
                    effect: st.effect.as_str().to_string(),
                };
                match st.effect {
                    Effect::Deny => denies.push(reason),
                    Effect::Allow => identity.push(reason),
                }
            }
        }
    }

    if !denies.is_empty() {
        notes.push(format!(
            "an explicit Deny applies to {caller_name} for {action}; it overrides every Allow and every grant"
        ));
        return Evaluation {
            decision: Decision::ExplicitDeny,
            matched: denies,
            notes,
        };
    }

    let op = action.strip_prefix("kms:").unwrap_or(action);
    let mut granted: Vec<Reason> = Vec::new();
    let mut constrained_out: Vec<&str> = Vec::new();
    if caller.arn.is_some() {
        for g in grants {
            // Grantee first: on a key with many grants it rejects almost all of them
            // with one string comparison.
            let gm = grantee_matches(g, caller);
            if gm == PrincipalMatch::None
                || !g.operations.iter().any(|o| o.eq_ignore_ascii_case(op))
            {
                continue;
            }
            if gm == PrincipalMatch::Account && identity.is_empty() {
                notes.push(format!(
                    "grant {} names account {} but no identity policy of {caller_name} allows {action}",
                    g.grant_id, caller.account
                ));
                continue;
            }
            if g.constraints.is_some() {
                // Whether the constraints hold depends on the context.
                ctx.read_context.set(true);
            }
            if constraints_hold(g, op, req) {
                granted.push(Reason::Grant {
                    grant_id: g.grant_id.clone(),
                });
            } else {
                constrained_out.push(&g.grant_id);
            }
        }
    }

    let same_account = caller.arn.is_none() || caller.account == req.resource_account;
    let mut allowed: Vec<Reason> = Vec::new();
    if same_account {
        allowed.extend(direct.iter().cloned());
        // Delegation: the account's identity policies decide; the account root itself
        // is not subject to identity policies.
        if !delegating.is_empty() && (caller.is_root || !identity.is_empty()) {
            allowed.extend(delegating.iter().map(|(r, _)| r.clone()));
            allowed.extend(identity.iter().cloned());
        }
    } else {
        let cross_ok = super::actions::cross_account_allowed(op) && action.len() == op.len() + 4;
        let key_side = !direct.is_empty() || !delegating.is_empty();
        let id_side = caller.is_root || !identity.is_empty();
        if !cross_ok {
            notes.push(format!(
                "{action} cannot be called across accounts (caller account {}, key account {}): AWS KMS allows only {} from another account",
                caller.account,
                req.resource_account,
                super::actions::names(|a| a.cross_account)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if key_side && id_side {
            allowed.extend(direct.iter().cloned());
            allowed.extend(delegating.iter().map(|(r, _)| r.clone()));
            allowed.extend(identity.iter().cloned());
        } else if key_side {
            notes.push(format!(
                "cross-account access needs both sides: the key policy allows account {} but no identity policy of {caller_name} allows {action}",
                caller.account
            ));
        } else if id_side {
            notes.push(format!(
                "cross-account access needs both sides: an identity policy of {caller_name} allows {action} but the key policy (account {}) does not allow account {} or {caller_name}",
                req.resource_account, caller.account
            ));
        }
    }
    allowed.extend(granted.iter().cloned());

    if !allowed.is_empty() {
        return Evaluation {
            decision: Decision::Allowed,
            matched: allowed,
            notes: Vec::new(),
        };
    }

    if same_account {
        if let Some((_, first)) = delegating.first() {
            notes.push(format!(
                "the key policy delegates to IAM through {first} but no identity policy of {caller_name} allows {action}"
            ));
        } else if !identity.is_empty() {
            notes.push(format!(
                "an identity policy of {caller_name} allows {action}, but identity policies count only when the key policy delegates to IAM with a statement naming arn:aws:iam::{}:root; no such statement allows {action}",
                req.resource_account
            ));
        } else {
            notes.push(format!(
                "no statement of the key policy allows {caller_name} to call {action}, and no identity policy or grant does"
            ));
        }
    } else if notes.is_empty() {
        notes.push(format!(
            "no statement of the key policy allows {caller_name} (account {}) to call {action} on a key of account {}",
            caller.account, req.resource_account
        ));
    }
    for g in constrained_out {
        notes.push(format!(
            "grant {g} allows {op} to {caller_name} but its encryption context constraint does not match the request's encryption context"
        ));
    }
    Evaluation {
        decision: Decision::ImplicitDeny,
        matched: Vec::new(),
        notes,
    }
}

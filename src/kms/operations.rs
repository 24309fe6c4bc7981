//! The key service's operation table: each operation kmsfs answers, declared once with
//! its handler, whether it changes anything (CloudTrail's `readOnly`), how it pages,
//! and how key states gate it. Names and classification (data, grant, context,
//! cross-account) come from [`crate::policy::actions`], which policy evaluation uses
//! too. Dispatch, the audit's read-only flag, the key-state gate, and the CLI's (and any
//! later endpoint's) pagination all read this table; nothing lists operations by hand.
//!
//! To add an operation: declare its action in `policy::actions`, write the handler,
//! and add one row to [`TABLE`].

use serde_json::Value;

use super::provider::Caller;
use super::service::{err, Call, Service};
use super::states::Gate;
use super::{ErrorKind, KmsError};
use crate::policy::actions::{self as act, Action, GrantUse};

/// Runs one operation for a call in flight (after the caller is identified, before the
/// audit record is written).
pub(crate) type Handler = fn(&Service, &mut Call, &Value) -> Result<Value, KmsError>;

/// How a list operation pages, as aws-cli's paginator model describes it: the request
/// members `Marker` and `Limit`, the response members `NextMarker` and `Truncated`, and
/// the list member that accumulates across pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    /// The request member that carries the previous page's `NextMarker`.
    pub input_token: &'static str,
    /// The request member that bounds a page.
    pub limit_key: &'static str,
    /// The response member naming where the next page starts.
    pub output_token: &'static str,
    /// The response member that says whether more pages follow.
    pub more_results: &'static str,
    /// The response list that pages add to.
    pub result_key: &'static str,
}

const fn pages(result_key: &'static str) -> Option<Pagination> {
    Some(Pagination {
        input_token: "Marker",
        limit_key: "Limit",
        output_token: "NextMarker",
        more_results: "Truncated",
        result_key,
    })
}

/// One row of the table.
pub struct Operation {
    action: &'static Action,
    /// None for an action that is authorized and gated but not callable on its own
    /// (ReEncryptFrom and ReEncryptTo are halves of ReEncrypt).
    handler: Option<Handler>,
    read_only: bool,
    pagination: Option<Pagination>,
    gate: Gate,
}

impl Operation {
    /// The operation name (`X-Amz-Target: TrentService.<name>`).
    pub fn name(&self) -> &'static str {
        self.action.name
    }
    /// Its action and classification (data, grant, context, cross-account).
    pub fn action(&self) -> &'static Action {
        self.action
    }
    /// Changes nothing (CloudTrail's `readOnly`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// How it pages, for operations that list.
    pub fn pagination(&self) -> Option<&Pagination> {
        self.pagination.as_ref()
    }
    /// Its key-state rule.
    pub fn gate(&self) -> Gate {
        self.gate
    }
    /// Whether a request can name it (false for the halves of ReEncrypt).
    pub fn is_callable(&self) -> bool {
        self.handler.is_some()
    }
    pub(crate) fn handler(&self) -> Option<Handler> {
        self.handler
    }
}

/// A row; `ro` is CloudTrail's readOnly.
const fn op(action: &'static Action, handler: Handler, ro: bool, gate: Gate) -> Operation {
    Operation {
        action,
        handler: Some(handler),
        read_only: ro,
        pagination: None,
        gate,
    }
}

/// A list operation: read-only, gated by nothing, paged by `result_key`.
const fn list(action: &'static Action, handler: Handler, result_key: &'static str) -> Operation {
    Operation {
        action,
        handler: Some(handler),
        read_only: true,
        pagination: pages(result_key),
        gate: Gate::Any,
    }
}

const RO: bool = true;
const RW: bool = false;

/// Every operation, in the order the documentation lists them.
pub static TABLE: &[Operation] = &[
    op(
        &act::CREATE_KEY,
        |s, c, r| s.create_key(c, r),
        RW,
        Gate::Any,
    ),
    op(
        &act::DESCRIBE_KEY,
        |s, c, r| s.describe_key(c, r),
        RO,
        Gate::Any,
    ),
    list(&act::LIST_KEYS, |s, c, r| s.list_keys(c, r), "Keys"),
    op(
        &act::UPDATE_KEY_DESCRIPTION,
        |s, c, r| s.update_key_description(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    op(
        &act::ENABLE_KEY,
        |s, c, r| s.set_enabled(c, r, true),
        RW,
        Gate::EnabledOrDisabled,
    ),
    op(
        &act::DISABLE_KEY,
        |s, c, r| s.set_enabled(c, r, false),
        RW,
        Gate::EnabledOrDisabled,
    ),
    op(
        &act::SCHEDULE_KEY_DELETION,
        |s, c, r| s.schedule_key_deletion(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    op(
        &act::CANCEL_KEY_DELETION,
        |s, c, r| s.cancel_key_deletion(c, r),
        RW,
        Gate::PendingDeletion,
    ),
    op(
        &act::ENABLE_KEY_ROTATION,
        |s, c, r| s.enable_key_rotation(c, r),
        RW,
        Gate::Rotation,
    ),
    op(
        &act::DISABLE_KEY_ROTATION,
        |s, c, r| s.disable_key_rotation(c, r),
        RW,
        Gate::Rotation,
    ),
    op(
        &act::GET_KEY_ROTATION_STATUS,
        |s, c, r| s.get_key_rotation_status(c, r),
        RO,
        Gate::RotationInfo,
    ),
    op(
        &act::ROTATE_KEY_ON_DEMAND,
        |s, c, r| s.rotate_key_on_demand(c, r),
        RW,
        Gate::Rotation,
    ),
    Operation {
        gate: Gate::RotationInfo,
        ..list(
            &act::LIST_KEY_ROTATIONS,
            |s, c, r| s.list_key_rotations(c, r),
            "Rotations",
        )
    },
    op(
        &act::GET_KEY_POLICY,
        |s, c, r| s.get_key_policy(c, r),
        RO,
        Gate::Any,
    ),
    op(
        &act::PUT_KEY_POLICY,
        |s, c, r| s.put_key_policy(c, r),
        RW,
        Gate::Any,
    ),
    list(
        &act::LIST_KEY_POLICIES,
        |s, c, r| s.list_key_policies(c, r),
        "PolicyNames",
    ),
    op(
        &act::TAG_RESOURCE,
        |s, c, r| s.tag_resource(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    op(
        &act::UNTAG_RESOURCE,
        |s, c, r| s.untag_resource(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    list(
        &act::LIST_RESOURCE_TAGS,
        |s, c, r| s.list_resource_tags(c, r),
        "Tags",
    ),
    op(
        &act::CREATE_ALIAS,
        |s, c, r| s.create_alias(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    op(
        &act::UPDATE_ALIAS,
        |s, c, r| s.update_alias(c, r),
        RW,
        Gate::NotPendingDeletion,
    ),
    op(
        &act::DELETE_ALIAS,
        |s, c, r| s.delete_alias(c, r),
        RW,
        Gate::Any,
    ),
    list(
        &act::LIST_ALIASES,
        |s, c, r| s.list_aliases(c, r),
        "Aliases",
    ),
    op(
        &act::CREATE_GRANT,
        |s, c, r| s.create_grant(c, r),
        RW,
        Gate::Enabled,
    ),
    list(&act::LIST_GRANTS, |s, c, r| s.list_grants(c, r), "Grants"),
    list(
        &act::LIST_RETIRABLE_GRANTS,
        |s, c, r| s.list_retirable_grants(c, r),
        "Grants",
    ),
    op(
        &act::REVOKE_GRANT,
        |s, c, r| s.revoke_grant(c, r),
        RW,
        Gate::Any,
    ),
    op(
        &act::RETIRE_GRANT,
        |s, c, r| s.retire_grant(c, r),
        RW,
        Gate::Any,
    ),
    op(&act::ENCRYPT, |s, c, r| s.encrypt(c, r), RO, Gate::Enabled),
    op(&act::DECRYPT, |s, c, r| s.decrypt(c, r), RO, Gate::Enabled),
    op(
        &act::RE_ENCRYPT,
        |s, c, r| s.re_encrypt(c, r),
        RO,
        Gate::Any,
    ),
    half(&act::RE_ENCRYPT_FROM),
    half(&act::RE_ENCRYPT_TO),
    op(
        &act::GENERATE_DATA_KEY,
        |s, c, r| s.generate_data_key_op(c, r, true),
        RO,
        Gate::Enabled,
    ),
    op(
        &act::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
        |s, c, r| s.generate_data_key_op(c, r, false),
        RO,
        Gate::Enabled,
    ),
    op(
        &act::GENERATE_RANDOM,
        |s, c, r| s.generate_random(c, r),
        RO,
        Gate::Any,
    ),
    op(
        &act::GET_PARAMETERS_FOR_IMPORT,
        |s, c, r| s.get_parameters_for_import(c, r),
        RO,
        Gate::Import,
    ),
    op(
        &act::IMPORT_KEY_MATERIAL,
        |s, c, r| s.import_key_material(c, r),
        RW,
        Gate::Import,
    ),
    op(
        &act::DELETE_IMPORTED_KEY_MATERIAL,
        |s, c, r| s.delete_imported_key_material(c, r),
        RW,
        Gate::DeleteImport,
    ),
    op(&act::SIMULATE, |s, c, r| s.simulate(c, r), RO, Gate::Any),
    op(&act::WHO_AM_I, |s, c, _| Ok(s.who_am_i(c)), RO, Gate::Any),
];

/// The halves of ReEncrypt: each key is authorized and gated as its own action.
const fn half(action: &'static Action) -> Operation {
    Operation {
        action,
        handler: None,
        read_only: true,
        pagination: None,
        gate: Gate::Enabled,
    }
}

/// The operation a request names, if kmsfs implements it.
pub fn lookup(name: &str) -> Option<&'static Operation> {
    TABLE
        .iter()
        .find(|o| o.is_callable() && o.action.name == name)
}

/// The row of an action (callable or not).
pub(crate) fn row(action: &Action) -> Option<&'static Operation> {
    TABLE.iter().find(|o| o.action.name == action.name)
}

/// The key-state rule of an action; actions without a row (other key types) are not
/// gated here, since no handler acts on them.
pub(crate) fn gate_of(action: &Action) -> Gate {
    row(action).map_or(Gate::Any, |o| o.gate)
}

impl Service {
    /// Runs one AWS KMS JSON API operation for `caller` (a row of [`TABLE`]). Every call is audited, allowed or not.
    pub fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
    ) -> Result<Value, KmsError> {
        let mut call = match self.begin(caller, None) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, operation, &e);
                return Err(e);
            }
        };
        // Access-key management (IAM's operations) shares the socket, not the table.
        if super::credentials::IAM_OPERATIONS.contains(&operation) {
            let result = self.iam_dispatch(&mut call, operation, &request);
            let name = super::credentials::event_name(operation);
            return self.finish(&call, name, &request, result);
        }
        let result = self.dispatch(&mut call, operation, &request);
        self.finish(&call, operation, &request, result)
    }

    pub(crate) fn dispatch(
        &self,
        call: &mut Call,
        op: &str,
        req: &Value,
    ) -> Result<Value, KmsError> {
        match lookup(op).and_then(|o| o.handler()) {
            Some(handler) => handler(self, call, req),
            None => Err(err(
                ErrorKind::UnsupportedOperation,
                format!("kmsfs does not implement the operation \"{op}\""),
            )),
        }
    }
}

#[cfg(test)]
pub(crate) fn gate_by_name(name: &str) -> Gate {
    act::lookup(name).map_or(Gate::Any, gate_of)
}

/// CloudTrail's `readOnly` for an operation name (false for unknown operations); also
/// for IAM's ListAccessKeys, the one read-only access-key operation (`credentials`).
pub(crate) fn is_read_only(name: &str) -> bool {
    lookup(name).is_some_and(Operation::is_read_only) || name == "ListAccessKeys"
}

/// The operations kmsfs implements, by name, in the table's order.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .filter(|o| o.is_callable())
        .map(Operation::name)
}

/// Data-plane operations (what the escalation guard protects), by grant name.
pub(crate) fn data_operations() -> impl Iterator<Item = &'static str> {
    act::names(|a| a.data)
}

/// Whether a grant may list `op` on a symmetric encryption key.
pub(crate) fn grant_use(op: &str) -> GrantUse {
    act::lookup(op).map_or(GrantUse::No, |a| a.grant)
}

/// The grant operations valid on a symmetric encryption key, for messages.
pub(crate) fn grant_operations() -> impl Iterator<Item = &'static str> {
    act::names(|a| a.grant == GrantUse::Symmetric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_at_most_one_row() {
        for (i, o) in TABLE.iter().enumerate() {
            assert!(
                TABLE.iter().skip(i + 1).all(|p| p.name() != o.name()),
                "{} twice",
                o.name()
            );
        }
    }

    #[test]
    fn read_only_matches_cloudtrail() {
        // CloudTrail marks Describe/Get/List and the cryptographic operations readOnly.
        for o in TABLE.iter().filter(|o| o.is_callable()) {
            let n = o.name();
            let by_prefix =
                n.starts_with("Describe") || n.starts_with("Get") || n.starts_with("List");
            if by_prefix {
                assert!(o.is_read_only(), "{n}");
            }
            if o.action().data {
                assert!(o.is_read_only(), "{n}");
            }
        }
        assert!(!is_read_only(act::PUT_KEY_POLICY.name));
    }

    #[test]
    fn every_list_operation_pages() {
        for o in TABLE.iter().filter(|o| o.name().starts_with("List")) {
            assert!(o.pagination().is_some(), "{}", o.name());
        }
        assert_eq!(
            lookup(act::LIST_GRANTS.name)
                .and_then(Operation::pagination)
                .map(|p| p.result_key),
            Some("Grants")
        );
        assert!(lookup(act::RE_ENCRYPT_FROM.name).is_none());
    }
}

#[cfg(test)]
#[path = "operations_gate_tests.rs"]
mod gate_tests;

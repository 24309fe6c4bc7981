//! Key lookup: a KeyId (key id, key ARN, alias name or alias ARN) to a live key of the
//! state, the key's effective state as of now, and the key-state gate of an action
//! (rules in [`super::states`], per operation in [`super::operations`]).

use super::model::{KeyRecord, KeyState, StoreState};
use super::service::{err, Call, Service};
use super::{ciphertext, states, ErrorKind, KmsError};
use crate::policy::actions::Action;

impl Service {
    // ----- key lookup -----------------------------------------------------------------

    /// Resolves a KeyId (key id, key ARN, and when `allow_alias` alias name or alias
    /// ARN) to a live key; returns the alias name used, if any.
    pub(crate) fn find_key<'s>(
        &self,
        call: &Call,
        st: &'s StoreState,
        key_id: &str,
        allow_alias: bool,
    ) -> Result<(&'s KeyRecord, Option<String>), KmsError> {
        let account = call.principals.account();
        let region = call.principals.region();
        // A stored key's exact ARN always resolves, even if the principals file has
        // since changed the account or region new keys get.
        if key_id.starts_with("arn:") {
            if let Some(k) = st.keys.values().find(|k| k.arn == key_id) {
                if !is_destroyed(k, call.now) {
                    return Ok((k, None));
                }
            }
        }
        let (id, alias) = parse_key_ref(key_id, account, region)?;
        let id = match alias {
            Some(ref name) => {
                if !allow_alias {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("Invalid keyId '{key_id}': this operation needs a key id or key ARN, not an alias"),
                    ));
                }
                match st.aliases.get(name) {
                    Some(a) => a.target_key_id.clone(),
                    None => {
                        return Err(err(
                            ErrorKind::NotFound,
                            format!("Alias arn:aws:kms:{region}:{account}:{name} is not found."),
                        ))
                    }
                }
            }
            None => id,
        };
        match st.keys.get(&id) {
            Some(k) if !is_destroyed(k, call.now) => Ok((k, alias)),
            _ => Err(err(
                ErrorKind::NotFound,
                format!("Key 'arn:aws:kms:{region}:{account}:key/{id}' does not exist"),
            )),
        }
    }

    /// Whether this store holds the key `key_ref` names (key id, key ARN, alias name or
    /// alias ARN of this store's account and region), whatever its state: a key it
    /// holds is never sent to a remote KMS, even once disabled or pending deletion.
    pub fn holds_key(&self, key_ref: &str) -> Result<bool, KmsError> {
        // Every file header names a key ARN, so this is the path of every local open:
        // one map lookup by the ARN's key id, no scan. "Held" by the installed snapshot
        // is answered without a change check: it only routes the open to this service,
        // whose decision checks for changes itself (a key deleted since is refused
        // there, never sent elsewhere). "Not held" is answered after a check.
        if let Some((_, id)) = key_ref.rsplit_once(":key/") {
            let installed = self.installed_snapshot();
            if installed
                .state
                .keys
                .get(id)
                .is_some_and(|k| k.arn == key_ref)
            {
                return Ok(true);
            }
        }
        let snap = self.snapshot()?;
        if let Some((_, id)) = key_ref.rsplit_once(":key/") {
            if snap.state.keys.get(id).is_some_and(|k| k.arn == key_ref) {
                return Ok(true);
            }
        }
        let (account, region) = self.account_region()?;
        let Ok((id, alias)) = parse_key_ref(key_ref, &account, &region) else {
            return Ok(false);
        };
        Ok(match alias {
            Some(name) => snap.state.aliases.contains_key(&name),
            None => snap.state.keys.contains_key(&id),
        })
    }

    /// Fails with the key-state exception AWS gives `op` on this key.
    pub(crate) fn gate(&self, action: &Action, k: &KeyRecord, now: i64) -> Result<(), KmsError> {
        let rule = super::operations::gate_of(action);
        if let Some((kind, msg)) = states::gate(rule, effective_state(k, now), k.origin) {
            return Err(err(kind, format!("{} {msg}", k.arn)));
        }
        // Then what the key is: an operation its spec or usage does not allow.
        match super::keyspec::usage_refusal(action.name, k.key_spec, k.key_usage) {
            None => Ok(()),
            Some((kind, msg)) => Err(err(kind, format!("{} {msg}", k.arn))),
        }
    }
}

/// True once a key's deletion date has passed (tick may not have run yet).
pub(crate) fn is_destroyed(k: &KeyRecord, now: i64) -> bool {
    k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now)
}

/// The state as of `now`: imported material past its ValidTo counts as gone.
pub(crate) fn effective_state(k: &KeyRecord, now: i64) -> KeyState {
    if k.state != KeyState::PendingDeletion
        && k.import
            .as_ref()
            .and_then(|i| i.valid_to)
            .is_some_and(|v| v <= now)
    {
        return KeyState::PendingImport;
    }
    k.state
}

/// Splits a KeyId into (key id, alias name). Foreign accounts/regions are NotFound.
/// AWS's length limit of a KeyId member (key id, key ARN, alias name or alias ARN).
const MAX_KEY_ID_LEN: usize = 2048;

pub(crate) fn parse_key_ref(
    key_id: &str,
    account: &str,
    region: &str,
) -> Result<(String, Option<String>), KmsError> {
    let not_found = |why: &str| {
        err(
            ErrorKind::NotFound,
            format!("Invalid keyId '{key_id}': {why}"),
        )
    };
    if key_id.is_empty() {
        return Err(super::request::validation(
            "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if key_id.len() > MAX_KEY_ID_LEN {
        // Checked before the id is echoed in any message.
        return Err(super::request::validation(format!(
            "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length less than or equal to {MAX_KEY_ID_LEN}"
        )));
    }
    if key_id.starts_with("alias/") {
        return Ok((String::new(), Some(key_id.to_string())));
    }
    if let Some(rest) = key_id.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [_partition, service, r, a, resource] = parts.as_slice() else {
            return Err(not_found("not a valid ARN"));
        };
        if *service != "kms" {
            return Err(not_found("not a KMS ARN"));
        }
        if *r != region || *a != account {
            return Err(err(
                ErrorKind::NotFound,
                format!("Key '{key_id}' does not exist (this store serves account {account} in region {region})"),
            ));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            if !ciphertext::is_key_id(id) {
                return Err(not_found("the key id in the ARN is not a key id"));
            }
            return Ok((id.to_string(), None));
        }
        if resource.starts_with("alias/") {
            return Ok((String::new(), Some(resource.to_string())));
        }
        return Err(not_found("the ARN names neither a key nor an alias"));
    }
    if ciphertext::is_key_id(key_id) {
        return Ok((key_id.to_string(), None));
    }
    Err(not_found(
        "expected a key id, key ARN, alias name or alias ARN",
    ))
}

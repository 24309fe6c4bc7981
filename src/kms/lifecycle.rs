//! Key lifecycle over time: the service-managed default key created on first use, and
//! [`Service::tick`], which applies what is due (scheduled deletions, automatic
//! rotations, imported material expiry) and shreds material a crash left unreferenced.

use serde_json::json;

use super::lookup::parse_key_ref;
use super::model::{KeyRecord, KeyState, RotationType};
use super::service::{lock, Call, Service};
use super::{managed, KmsError};
use crate::policy::actions as act;

/// What the service does by itself when it is due, recorded under CloudTrail's event
/// names for these service events. Not operations: no caller invokes them and no
/// policy names them, so they are not in the operation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceEvent {
    /// A key's scheduled deletion date passed.
    DeleteKey,
    /// Imported key material reached its expiry (`ValidTo`).
    DeleteExpiredKeyMaterial,
    /// Automatic rotation gave the key new material.
    RotateKey,
}

impl ServiceEvent {
    fn name(self) -> &'static str {
        match self {
            ServiceEvent::DeleteKey => "DeleteKey",
            ServiceEvent::DeleteExpiredKeyMaterial => "DeleteExpiredKeyMaterial",
            ServiceEvent::RotateKey => "RotateKey",
        }
    }
}

impl Service {
    /// Creates the service-managed default key if it does not exist yet.
    pub(crate) fn ensure_default_key(&self, now: i64) -> Result<(), KmsError> {
        let snap = self.snapshot()?;
        if snap.state.aliases.contains_key(managed::DEFAULT_ALIAS) {
            return Ok(());
        }
        let (account, region) = self.account_region()?;
        let created = self.mutate(|st| {
            if st.aliases.contains_key(managed::DEFAULT_ALIAS) {
                return Ok((None, false));
            }
            let arn = managed::create_default_key(&self.store, st, &account, &region, now)?;
            Ok((Some(arn), true))
        })?;
        if let Some(arn) = created {
            self.audit_service_event(
                act::CREATE_KEY.name,
                &arn,
                now,
                json!({ "KeyManager": "AWS", "Alias": managed::DEFAULT_ALIAS }),
            );
        }
        Ok(())
    }

    /// Creates the default key first if `key_id` names its alias.
    pub(crate) fn ensure_default_if_named(
        &self,
        call: &Call,
        key_id: &str,
    ) -> Result<(), KmsError> {
        let account = call.principals.account();
        let region = call.principals.region();
        if let Ok((_, Some(alias))) = parse_key_ref(key_id, account, region) {
            if alias == managed::DEFAULT_ALIAS {
                self.ensure_default_key(call.now)?;
            }
        }
        Ok(())
    }

    /// Applies what is due: scheduled deletions (crypto-shredding the material),
    /// automatic rotations, imported material expiry; and shreds material a crash left
    /// unreferenced. The server calls it periodically; it is cheap when nothing is due.
    pub fn tick(&self) -> Result<(), KmsError> {
        let now = self.clock.now();
        let snap = self.snapshot()?;
        let due = snap.state.keys.values().any(|k| is_due(k, now));
        if due {
            let done = self.mutate(|st| {
                let mut done = Vec::new();
                let ids: Vec<String> = st.keys.keys().cloned().collect();
                for id in ids {
                    let Some(k) = st.keys.get_mut(&id) else {
                        continue;
                    };
                    if !is_due(k, now) {
                        continue;
                    }
                    if k.state == KeyState::PendingDeletion
                        && k.deletion_date.is_some_and(|d| d <= now)
                    {
                        let arn = k.arn.clone();
                        st.keys.remove(&id);
                        st.aliases.retain(|_, a| a.target_key_id != id);
                        done.push((ServiceEvent::DeleteKey, id.clone(), arn, json!({})));
                        continue;
                    }
                    if let Some(vt) = k.import.as_ref().and_then(|i| i.valid_to) {
                        if vt <= now && k.current_version.is_some() {
                            k.current_version = None;
                            k.materials.clear();
                            if k.state != KeyState::PendingDeletion {
                                k.state = KeyState::PendingImport;
                            }
                            done.push((
                                ServiceEvent::DeleteExpiredKeyMaterial,
                                id.clone(),
                                k.arn.clone(),
                                json!({}),
                            ));
                            continue;
                        }
                    }
                    if let Some(rot) = k.rotation.clone() {
                        if k.state == KeyState::Enabled && rot.next() <= now {
                            let v = super::material::add_material(
                                &self.store,
                                k,
                                now,
                                Some(RotationType::Automatic),
                            )?;
                            if let Some(r) = k.rotation.as_mut() {
                                r.anchor = now;
                            }
                            done.push((
                                ServiceEvent::RotateKey,
                                id.clone(),
                                k.arn.clone(),
                                json!({ "MaterialVersion": v }),
                            ));
                        }
                    }
                }
                let changed = !done.is_empty();
                Ok((done, changed))
            })?;
            for (event, id, arn, detail) in done {
                if event != ServiceEvent::RotateKey {
                    // After the commit: the state no longer names this material
                    // (a deleted key, or expired imported material), so shred it.
                    self.forget_material(&id);
                    self.store.shred_key(&id)?;
                }
                self.audit_service_event(event.name(), &arn, now, detail);
            }
        }
        // Garbage is judged against the state read under the lock: a snapshot taken
        // before it could miss a key another writer just committed, and shred it.
        let _in_process = lock(&self.writer);
        let guard = self.store.lock()?;
        let (state, _) = self.store.read_state_locked(&guard)?;
        self.store.collect_garbage(&state)
    }
}

fn is_due(k: &KeyRecord, now: i64) -> bool {
    (k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now))
        || (k.current_version.is_some()
            && k.import
                .as_ref()
                .and_then(|i| i.valid_to)
                .is_some_and(|v| v <= now))
        || (k.state == KeyState::Enabled && k.rotation.as_ref().is_some_and(|r| r.next() <= now))
}

//! The store's record of directory key rules (see [`super::provider::DirRule`]): read
//! by the filesystem before it trusts a `kmsfs.dir`, written when a rule is set or
//! cleared through a mount. Never evaluates a policy: whether the caller may change a
//! directory's rule is the filesystem's ownership check, as for the file itself; the
//! change is audited under the caller's identity.

use serde_json::json;

use super::managed::VIA_SERVICE;
use super::model::VolumeDirRules;
use super::provider::{Caller, DirRule};
use super::request::validation;
use super::service::{err, Service};
use super::{ErrorKind, KmsError};

/// The audit event of a recorded rule change (a kmsfs extension, not an operation).
const RECORD_EVENT: &str = "PutDirectoryKeyRule";

fn check_volume_id(volume_id: &str) -> Result<(), KmsError> {
    if volume_id.is_empty() || volume_id.len() > 256 {
        return Err(validation("a volume id must be 1 to 256 characters"));
    }
    Ok(())
}

impl Service {
    pub(crate) fn fs_dir_rule(
        &self,
        volume_id: &str,
        dir_id: &[u8; 16],
    ) -> Result<Option<DirRule>, KmsError> {
        check_volume_id(volume_id)?;
        let snap = self.snapshot()?;
        Ok(snap
            .state
            .dir_rules
            .get(volume_id)
            .and_then(|v| v.dirs.get(&hex::encode(dir_id)))
            .cloned())
    }

    pub(crate) fn fs_record_dir_rule(
        &self,
        caller: &Caller,
        volume_id: &str,
        dir_id: &[u8; 16],
        rule: &DirRule,
    ) -> Result<(), KmsError> {
        check_volume_id(volume_id)?;
        let dir_hex = hex::encode(dir_id);
        let req = json!({
            "VolumeId": volume_id,
            "DirectoryId": dir_hex,
            "Version": rule.version,
            "KeyId": rule.rule,
        });
        let call = match self.begin(caller, Some(VIA_SERVICE)) {
            Ok(c) => c,
            Err(e) => {
                self.audit_unidentified(caller, RECORD_EVENT, &e);
                return Err(e);
            }
        };
        let res = self.mutate(|st| {
            let vol = st.dir_rules.entry(volume_id.to_string()).or_default();
            let current = vol.dirs.get(&dir_hex);
            if !DirRule::may_replace(current, rule) {
                let have = current.map_or(0, |c| c.version);
                return Err(err(
                    ErrorKind::KmsInvalidState,
                    format!(
                        "directory {dir_hex} of volume {volume_id} has key rule version {have} in the store; version {} with a different rule cannot replace it",
                        rule.version
                    ),
                ));
            }
            let changed = current != Some(rule);
            vol.dirs.insert(dir_hex.clone(), rule.clone());
            Ok(((), changed))
        });
        self.finish(&call, RECORD_EVENT, &req, res.map(|()| json!({})))
            .map(|_| ())
    }

    pub(crate) fn fs_dir_rules_imported(&self, volume_id: &str) -> Result<bool, KmsError> {
        check_volume_id(volume_id)?;
        let snap = self.snapshot()?;
        Ok(snap
            .state
            .dir_rules
            .get(volume_id)
            .is_some_and(|v| v.imported))
    }

    pub(crate) fn fs_import_dir_rules(
        &self,
        volume_id: &str,
        rules: &[([u8; 16], String)],
    ) -> Result<(), KmsError> {
        check_volume_id(volume_id)?;
        self.mutate(|st| {
            let vol = st
                .dir_rules
                .entry(volume_id.to_string())
                .or_insert_with(VolumeDirRules::default);
            if vol.imported {
                return Ok(((), false));
            }
            for (dir_id, rule) in rules {
                vol.dirs
                    .entry(hex::encode(dir_id))
                    .or_insert_with(|| DirRule {
                        version: 0,
                        rule: Some(rule.clone()),
                    });
            }
            vol.imported = true;
            Ok(((), true))
        })
    }
}

//! Key lifecycle operations: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription,
//! EnableKey/DisableKey, ScheduleKeyDeletion/CancelKeyDeletion, rotation, key policies
//! and tags, with AWS's parameters, responses and exceptions. Each authorizes, gates on
//! key state, then changes state through [`Service::mutate`]. Never returns material.

use crate::policy::actions::{self as act, Action};
use serde_json::{json, Value};

use super::authz::Authz;
use super::clock::DAY;
use super::keyspec::{KeySpec, KeyUsage};
use super::model::{
    KeyManager, KeyRecord, KeyState, Origin, RotationSchedule, RotationType, StoreState, Tag,
};
use super::principals_watch::root_delegation_policy;
use super::request::{check_len, paginate, validation, with_marker, Req};
use super::service::{err, Call, Service};
use super::store::internal;
use super::{ErrorKind, KmsError};
use crate::policy::PolicyDocument;

/// Most on-demand rotations AWS allows per key.
pub const MAX_ON_DEMAND_ROTATIONS: usize = 10;
const MAX_POLICY_LEN: usize = 32_768;
pub(super) const MAX_TAGS: usize = 50;

/// DescribeKey's KeyMetadata.
pub fn key_metadata(k: &KeyRecord, now: i64) -> Value {
    let state = super::lookup::effective_state(k, now);
    let mut m = json!({
        "AWSAccountId": k.account,
        "KeyId": k.key_id,
        "Arn": k.arn,
        "CreationDate": k.creation_date,
        "Enabled": state == KeyState::Enabled,
        "Description": k.description,
        "KeyUsage": k.key_usage.as_str(),
        "KeyState": state.as_str(),
        "Origin": k.origin.as_str(),
        "KeyManager": k.manager.as_str(),
        "CustomerMasterKeySpec": k.key_spec.as_str(),
        "KeySpec": k.key_spec.as_str(),
    });
    if let Value::Object(o) = &mut m {
        super::keyspec::add_algorithms(o, k.key_spec, k.key_usage);
        o.insert("MultiRegion".into(), json!(false));
        if let Some(d) = k.deletion_date {
            o.insert("DeletionDate".into(), json!(d));
            if let Some(w) = k.pending_window_days {
                o.insert("PendingDeletionWindowInDays".into(), json!(w));
            }
        }
        if let Some(imp) = &k.import {
            if let Some(model) = imp.expiration_model {
                o.insert("ExpirationModel".into(), json!(model.as_str()));
            }
            if let Some(vt) = imp.valid_to {
                o.insert("ValidTo".into(), json!(vt));
            }
        }
    }
    m
}

pub(crate) fn parse_tags(r: &Req<'_>, name: &str) -> Result<Vec<Tag>, KmsError> {
    let Some(list) = r.opt_array(name)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Tag> = Vec::new();
    for v in list {
        let t = Req::new(v)?;
        let key = t.str("TagKey")?;
        let value = t.opt_str("TagValue")?.unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(err(
                ErrorKind::Tag,
                format!("TagKey \"{key}\" must be 1 to 128 characters"),
            ));
        }
        if value.chars().count() > 256 {
            return Err(err(
                ErrorKind::Tag,
                format!("the value of tag \"{key}\" is longer than 256 characters"),
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(err(
                ErrorKind::Tag,
                format!("TagKey \"{key}\": tag keys beginning with aws: are reserved"),
            ));
        }
        out.retain(|x| x.key != key);
        out.push(Tag {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(out)
}

/// CreateKey's KeySpec (or its deprecated alias CustomerMasterKeySpec) and KeyUsage,
/// with AWS's defaults (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) and its validation: the
/// usage must be one the spec allows.
fn parse_spec_and_usage(r: &Req<'_>) -> Result<(KeySpec, KeyUsage), KmsError> {
    let spec_text = match (r.opt_str("KeySpec")?, r.opt_str("CustomerMasterKeySpec")?) {
        (Some(_), Some(_)) => {
            return Err(validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec parameter is deprecated. Use KeySpec only.",
            ))
        }
        (Some(s), None) | (None, Some(s)) => Some(s),
        (None, None) => None,
    };
    let spec = match spec_text {
        None => KeySpec::SymmetricDefault,
        Some(s) => match KeySpec::parse(s) {
            Some(spec) => spec,
            None => {
                if let Some(why) = super::keyspec::unsupported_spec(s) {
                    return Err(err(
                        ErrorKind::UnsupportedOperation,
                        format!("KeySpec {s}: {why}"),
                    ));
                }
                return Err(validation(format!(
                    "1 validation error detected: Value '{s}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    KeySpec::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        },
    };
    let usage = match r.opt_str("KeyUsage")? {
        None => KeyUsage::EncryptDecrypt,
        Some(u) => KeyUsage::parse(u).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value '{u}' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                KeyUsage::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    if !spec.usages().contains(&usage) {
        let given = if r.has("KeyUsage") {
            ""
        } else {
            " (the default)"
        };
        return Err(validation(format!(
            "KeyUsage {}{given} is not compatible with KeySpec {}; valid: {}",
            usage.as_str(),
            spec.as_str(),
            spec.usages()
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok((spec, usage))
}

fn managed_refusal(k: &KeyRecord, op: &str) -> KmsError {
    err(
        ErrorKind::UnsupportedOperation,
        format!(
            "{} is a service-managed key (KeyManager AWS, {}); {op} cannot change it",
            k.arn,
            super::managed::DEFAULT_ALIAS
        ),
    )
}

pub(crate) fn parse_policy_text(text: &str) -> Result<PolicyDocument, KmsError> {
    if text.len() > MAX_POLICY_LEN {
        return Err(err(
            ErrorKind::MalformedPolicyDocument,
            format!(
                "the key policy is {} bytes; the limit is {MAX_POLICY_LEN}",
                text.len()
            ),
        ));
    }
    PolicyDocument::parse(text).map_err(|e| err(ErrorKind::MalformedPolicyDocument, e.message))
}

impl Service {
    /// The shape of most management operations: resolve (no alias), authorize, gate,
    /// refuse service-managed keys unless `managed_ok`, then change the key and commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_key<R>(
        &self,
        call: &mut Call,
        key_id: &str,
        op: &Action,
        managed_ok: bool,
        extra: impl FnOnce(Authz<'_>) -> Authz<'_>,
        f: impl FnOnce(&Service, &mut Call, &StoreState, &mut KeyRecord) -> Result<(R, bool), KmsError>,
    ) -> Result<R, KmsError> {
        self.mutate(|st| {
            let (k, _) = self.find_key(call, st, key_id, false)?;
            let id = k.key_id.clone();
            self.authorize(call, st, extra(Authz::new(op.iam, Some(k))))?;
            self.gate(op, k, call.now)?;
            if !managed_ok && k.manager == KeyManager::Aws {
                return Err(managed_refusal(k, op.name));
            }
            let mut rec = k.clone();
            let (r, changed) = f(self, call, st, &mut rec)?;
            if changed {
                st.keys.insert(id, rec);
            }
            Ok((r, changed))
        })
    }

    pub(crate) fn create_key(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let description = r.opt_str("Description")?.unwrap_or("");
        check_len("Description", description, 0, 8192)?;
        let (spec, usage) = parse_spec_and_usage(&r)?;
        let origin = match r.opt_str("Origin")? {
            None | Some("AWS_KMS") => Origin::AwsKms,
            Some("EXTERNAL") => Origin::External,
            Some(o @ ("AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE")) => {
                return Err(err(
                    ErrorKind::UnsupportedOperation,
                    format!("Origin {o}: kmsfs has no custom key stores"),
                ))
            }
            Some(o) => {
                return Err(validation(format!(
                    "Origin \"{o}\" is not valid; use AWS_KMS or EXTERNAL"
                )))
            }
        };
        if origin == Origin::External && !spec.is_symmetric() {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                format!(
                    "KeySpec {} with Origin EXTERNAL: kmsfs imports key material into SYMMETRIC_DEFAULT keys only",
                    spec.as_str()
                ),
            ));
        }
        if r.flag("MultiRegion")? {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                "kmsfs keys are single-Region (MultiRegion false)",
            ));
        }
        if r.has("CustomKeyStoreId") || r.has("XksKeyId") {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                "kmsfs has no custom key stores",
            ));
        }
        let bypass = r.flag("BypassPolicyLockoutSafetyCheck")?;
        let tags = parse_tags(&r, "Tags")?;
        if tags.len() > MAX_TAGS {
            return Err(err(
                ErrorKind::Tag,
                format!("a key can have at most {MAX_TAGS} tags"),
            ));
        }
        let account = call.principals.account().to_string();
        let region = call.principals.region().to_string();
        let given_policy = r.opt_str("Policy")?;
        let policy_text = match given_policy {
            Some(p) => p.to_string(),
            None => root_delegation_policy(&account),
        };
        let doc = parse_policy_text(&policy_text)?;
        let snap = self.snapshot()?;
        self.authorize(
            call,
            &snap.state,
            Authz::new(act::CREATE_KEY.iam, None)
                .set("kms:BypassPolicyLockoutSafetyCheck", bypass.to_string())
                .set("kms:KeyOrigin", origin.as_str())
                .set("kms:KeySpec", spec.as_str())
                .set("kms:KeyUsage", usage.as_str())
                .set("kms:MultiRegion", "false")
                .request_tags(&tags),
        )?;
        if !tags.is_empty() {
            // AWS: tagging at creation also needs kms:TagResource (IAM).
            self.authorize(
                call,
                &snap.state,
                Authz::new(act::TAG_RESOURCE.iam, None).request_tags(&tags),
            )?;
        }
        let key_id = super::ciphertext::new_key_id().map_err(|e| internal(e.to_string()))?;
        let mut rec = KeyRecord {
            arn: format!("arn:aws:kms:{region}:{account}:key/{key_id}"),
            key_id: key_id.clone(),
            account,
            description: description.to_string(),
            creation_date: call.now,
            state: if origin == Origin::External {
                KeyState::PendingImport
            } else {
                KeyState::Enabled
            },
            origin,
            manager: KeyManager::Customer,
            policy: policy_text,
            tags,
            grants: Vec::new(),
            materials: Vec::new(),
            current_version: None,
            rotation: None,
            rotations: Vec::new(),
            deletion_date: None,
            pending_window_days: None,
            import: (origin == Origin::External).then(Default::default),
            key_spec: spec,
            key_usage: usage,
        };
        if given_policy.is_some() {
            self.lockout_check(call, &snap.state, &rec, &doc, bypass)?;
        }
        let now = call.now;
        self.mutate(|st| {
            if origin == Origin::AwsKms {
                super::material::add_material(&self.store, &mut rec, now, None)?;
            }
            call.resources.push(rec.arn.clone());
            let meta = key_metadata(&rec, now);
            st.keys.insert(key_id, rec);
            Ok((json!({ "KeyMetadata": meta }), true))
        })
    }

    pub(crate) fn describe_key(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.ensure_default_if_named(call, key_id)?;
        let snap = self.snapshot()?;
        let (k, alias) = self.find_key(call, &snap.state, key_id, true)?;
        let a = Authz::new(act::DESCRIBE_KEY.iam, Some(k)).request_alias(alias);
        self.authorize(call, &snap.state, a)?;
        Ok(json!({ "KeyMetadata": key_metadata(k, call.now) }))
    }

    pub(crate) fn list_keys(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let page = r.page(1000, 100)?;
        let snap = self.snapshot()?;
        self.authorize(call, &snap.state, Authz::new(act::LIST_KEYS.iam, None))?;
        let keys: Vec<Value> = snap
            .state
            .keys
            .values()
            .filter(|k| !super::lookup::is_destroyed(k, call.now))
            .map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.arn }))
            .collect();
        let (keys, marker) = paginate(keys, page);
        Ok(with_marker(json!({ "Keys": keys }), marker))
    }

    pub(crate) fn update_key_description(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let desc = r.str("Description")?.to_string();
        check_len("Description", &desc, 0, 8192)?;
        self.update_key(
            call,
            key_id,
            &act::UPDATE_KEY_DESCRIPTION,
            false,
            |a| a,
            |_, _, _, k| {
                k.description = desc;
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn set_enabled(
        &self,
        call: &mut Call,
        req: &Value,
        enable: bool,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let op = if enable {
            &act::ENABLE_KEY
        } else {
            &act::DISABLE_KEY
        };
        self.update_key(
            call,
            key_id,
            op,
            false,
            |a| a,
            |_, _, _, k| {
                k.state = if enable {
                    KeyState::Enabled
                } else {
                    KeyState::Disabled
                };
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn schedule_key_deletion(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let days = r.opt_int("PendingWindowInDays", 7, 30)?.unwrap_or(30);
        self.update_key(
            call,
            key_id,
            &act::SCHEDULE_KEY_DELETION,
            false,
            |a| {
                a.set(
                    "kms:ScheduleKeyDeletionPendingWindowInDays",
                    days.to_string(),
                )
            },
            |_, call, _, k| {
                let date = call.now + days * DAY;
                k.state = KeyState::PendingDeletion;
                k.deletion_date = Some(date);
                k.pending_window_days = u32::try_from(days).ok();
                Ok((
                    json!({
                        "KeyId": k.arn,
                        "DeletionDate": date,
                        "KeyState": "PendingDeletion",
                        "PendingWindowInDays": days,
                    }),
                    true,
                ))
            },
        )
    }

    pub(crate) fn cancel_key_deletion(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.update_key(
            call,
            key_id,
            &act::CANCEL_KEY_DELETION,
            false,
            |a| a,
            |_, _, _, k| {
                k.deletion_date = None;
                k.pending_window_days = None;
                k.state = if k.origin == Origin::External && k.current_version.is_none() {
                    KeyState::PendingImport
                } else {
                    KeyState::Disabled
                };
                Ok((json!({ "KeyId": k.arn }), true))
            },
        )
    }

    pub(crate) fn enable_key_rotation(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let days = r.opt_int("RotationPeriodInDays", 90, 2560)?.unwrap_or(365);
        self.update_key(
            call,
            key_id,
            &act::ENABLE_KEY_ROTATION,
            false,
            |a| a.set("kms:RotationPeriodInDays", days.to_string()),
            |_, call, _, k| {
                let anchor = k.rotation.as_ref().map(|r| r.anchor).unwrap_or(call.now);
                k.rotation = Some(RotationSchedule {
                    period_days: u32::try_from(days).unwrap_or(365),
                    anchor,
                });
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn disable_key_rotation(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.update_key(
            call,
            key_id,
            &act::DISABLE_KEY_ROTATION,
            false,
            |a| a,
            |_, _, _, k| {
                k.rotation = None;
                Ok((json!({}), true))
            },
        )
    }

    /// Read-only key operations: resolve, authorize, gate, answer from the snapshot.
    pub(super) fn read_key<R>(
        &self,
        call: &mut Call,
        key_id: &str,
        op: &Action,
        f: impl FnOnce(&KeyRecord, &StoreState) -> Result<R, KmsError>,
    ) -> Result<R, KmsError> {
        let snap = self.snapshot()?;
        let (k, _) = self.find_key(call, &snap.state, key_id, false)?;
        self.authorize(call, &snap.state, Authz::new(op.iam, Some(k)))?;
        self.gate(op, k, call.now)?;
        f(k, &snap.state)
    }

    pub(crate) fn get_key_rotation_status(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.read_key(call, key_id, &act::GET_KEY_ROTATION_STATUS, |k, _| {
            let mut v = json!({ "KeyRotationEnabled": k.rotation.is_some(), "KeyId": k.arn });
            if let (Some(rot), Value::Object(o)) = (&k.rotation, &mut v) {
                o.insert("RotationPeriodInDays".into(), json!(rot.period_days));
                o.insert("NextRotationDate".into(), json!(rot.next()));
            }
            Ok(v)
        })
    }

    pub(crate) fn rotate_key_on_demand(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.update_key(call, key_id, &act::ROTATE_KEY_ON_DEMAND, false, |a| a, |svc, call, _, k| {
            let done = k.rotations.iter().filter(|r| r.kind == RotationType::OnDemand).count();
            if done >= MAX_ON_DEMAND_ROTATIONS {
                return Err(err(
                    ErrorKind::LimitExceeded,
                    format!("{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations", k.arn),
                ));
            }
            super::material::add_material(&svc.store, k, call.now, Some(RotationType::OnDemand))?;
            Ok((json!({ "KeyId": k.arn }), true))
        })
    }

    pub(crate) fn list_key_rotations(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let page = r.page(1000, 100)?;
        self.read_key(call, key_id, &act::LIST_KEY_ROTATIONS, |k, _| {
            let items: Vec<Value> = k
                .rotations
                .iter()
                .map(|r| json!({ "KeyId": k.arn, "RotationDate": r.date, "RotationType": r.kind.as_str() }))
                .collect();
            let (items, marker) = paginate(items, page);
            Ok(with_marker(json!({ "Rotations": items }), marker))
        })
    }
}

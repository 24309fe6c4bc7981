//! Key policies and tags: GetKeyPolicy, ListKeyPolicies, PutKeyPolicy, TagResource,
//! UntagResource and ListResourceTags, with AWS's parameters, responses and exceptions.

use crate::policy::actions as act;
use serde_json::{json, Value};

use super::ops_keys::{parse_policy_text, parse_tags, MAX_TAGS};
use super::request::{paginate, validation, with_marker, Req};
use super::service::{err, Call, Service};
use super::{ErrorKind, KmsError};

impl Service {
    fn check_policy_name(r: &Req<'_>) -> Result<(), KmsError> {
        match r.opt_str("PolicyName")? {
            None | Some("default") => Ok(()),
            Some(other) => Err(err(
                ErrorKind::NotFound,
                format!(
                    "No such policy exists: \"{other}\" (a key has one policy, named \"default\")"
                ),
            )),
        }
    }

    pub(crate) fn get_key_policy(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        Self::check_policy_name(&r)?;
        self.read_key(call, key_id, &act::GET_KEY_POLICY, |k, _| {
            Ok(json!({ "Policy": k.policy, "PolicyName": "default" }))
        })
    }

    pub(crate) fn list_key_policies(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        self.read_key(call, key_id, &act::LIST_KEY_POLICIES, |_, _| {
            Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
        })
    }

    pub(crate) fn put_key_policy(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        Self::check_policy_name(&r)?;
        let text = r.str("Policy")?.to_string();
        let bypass = r.flag("BypassPolicyLockoutSafetyCheck")?;
        let allow_escalation = r.flag("AllowSelfEscalation")?;
        let doc = parse_policy_text(&text)?;
        self.update_key(
            call,
            key_id,
            &act::PUT_KEY_POLICY,
            false,
            |a| a.set("kms:BypassPolicyLockoutSafetyCheck", bypass.to_string()),
            |svc, call, st, k| {
                svc.lockout_check(call, st, k, &doc, bypass)?;
                let escalated = svc.policy_escalation(call, st, k, &doc)?;
                svc.apply_guard(call, st, k, escalated, allow_escalation, "key policy")?;
                k.policy = text;
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn tag_resource(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let tags = parse_tags(&r, "Tags")?;
        if !r.has("Tags") {
            return Err(validation("1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null"));
        }
        let request_tags = tags.clone();
        self.update_key(
            call,
            key_id,
            &act::TAG_RESOURCE,
            false,
            |a| a.request_tags(&request_tags),
            |_, _, _, k| {
                for t in tags {
                    k.tags.retain(|x| x.key != t.key);
                    k.tags.push(t);
                }
                if k.tags.len() > MAX_TAGS {
                    return Err(err(
                        ErrorKind::Tag,
                        format!("a key can have at most {MAX_TAGS} tags"),
                    ));
                }
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn untag_resource(&self, call: &mut Call, req: &Value) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let keys = r.opt_str_list("TagKeys")?.ok_or_else(|| {
            validation("1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")
        })?;
        let tag_keys = keys.clone();
        self.update_key(
            call,
            key_id,
            &act::UNTAG_RESOURCE,
            false,
            |a| a.set_multi("aws:TagKeys", tag_keys),
            |_, _, _, k| {
                k.tags.retain(|t| !keys.contains(&t.key));
                Ok((json!({}), true))
            },
        )
    }

    pub(crate) fn list_resource_tags(
        &self,
        call: &mut Call,
        req: &Value,
    ) -> Result<Value, KmsError> {
        let r = Req::new(req)?;
        let key_id = r.str("KeyId")?;
        let page = r.page(50, 50)?;
        self.read_key(call, key_id, &act::LIST_RESOURCE_TAGS, |k, _| {
            let tags: Vec<Value> = k
                .tags
                .iter()
                .map(|t| json!({ "TagKey": t.key, "TagValue": t.value }))
                .collect();
            let (tags, marker) = paginate(tags, page);
            Ok(with_marker(json!({ "Tags": tags }), marker))
        })
    }
}

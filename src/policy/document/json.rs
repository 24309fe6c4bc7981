//! The policy's JSON read strictly: a key that appears twice in one object is refused,
//! naming where. Only reads JSON; what the members mean is checked by the caller.

use super::err;
use crate::policy::PolicyError;
use serde_json::{Map, Value};

/// Parses the policy's JSON, refusing a key that appears twice in one object, at any
/// depth. serde_json (like most parsers) keeps the last copy silently, so
/// `{"Statement":[Deny],"Statement":[Allow]}` would be evaluated as the Allow while a
/// reviewer reading the stored text sees the Deny: the text must mean one thing.
pub(super) fn parse_json_strict(text: &str) -> Result<Value, PolicyError> {
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

/// serde_json's message without its own " at line X column Y" suffix.
pub(super) fn e_msg(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

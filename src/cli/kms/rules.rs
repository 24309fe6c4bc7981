//! The checks aws-cli makes before sending a request, with botocore's wording
//! ("Parameter validation failed:" then "Invalid value for parameter ..."), and the
//! skeletons `--generate-cli-skeleton` prints.

use super::checks::Rule;
use super::params::{flag_of, member_of, shape_of, ParamError, Shape};
use super::verbs::KmsVerb;
use serde_json::{json, Map, Value};

/// botocore's name for a JSON value's Python type.
fn python_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "<class 'str'>",
        Value::Number(n) if n.is_f64() => "<class 'float'>",
        Value::Number(_) => "<class 'int'>",
        Value::Bool(_) => "<class 'bool'>",
        Value::Array(_) => "<class 'list'>",
        Value::Object(_) => "<class 'dict'>",
        Value::Null => "<class 'NoneType'>",
    }
}

fn show(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Checks a complete request (flags merged over any --cli-input-json) as aws-cli does
/// before sending. `from_input` says a --cli-input-* document took part, which changes
/// how a missing member is reported (botocore's report rather than argparse's).
pub fn validate(
    verb: &KmsVerb,
    request: &Map<String, Value>,
    from_input: bool,
) -> Result<(), ParamError> {
    let missing: Vec<&str> = verb
        .required()
        .iter()
        .copied()
        .filter(|m| !request.contains_key(*m))
        .collect();
    if !missing.is_empty() && !from_input {
        return Err(ParamError::Missing(
            missing.iter().map(|m| flag_of(m)).collect(),
        ));
    }
    let mut report: Vec<String> = missing
        .iter()
        .map(|m| format!("Missing required parameter in input: \"{m}\""))
        .collect();
    let known = input_members(verb);
    for (member, v) in request {
        if !known.contains(member) {
            report.push(format!(
                "Unknown parameter in input: \"{member}\", must be one of: {}",
                known.join(", ")
            ));
            continue;
        }
        let type_ok = match shape_of(member) {
            Shape::Integer => v.is_i64(),
            Shape::Boolean => v.is_boolean(),
            Shape::StringMap | Shape::Constraints => v.is_object(),
            Shape::Tags | Shape::CommaList | Shape::List => v.is_array(),
            Shape::Timestamp => v.is_number() || v.is_string(),
            Shape::Text | Shape::Blob | Shape::String => v.is_string(),
        };
        if !type_ok {
            let want = match shape_of(member) {
                Shape::Integer => "<class 'int'>",
                Shape::Boolean => "<class 'bool'>",
                Shape::StringMap | Shape::Constraints => "<class 'dict'>",
                Shape::Tags | Shape::CommaList | Shape::List => "<class 'list'>, <class 'tuple'>",
                _ => "<class 'str'>",
            };
            report.push(format!(
                "Invalid type for parameter {member}, value: {}, type: {}, valid types: {want}",
                show(v),
                python_type(v)
            ));
        }
    }
    for rule in verb.rules() {
        match *rule {
            Rule::Range { member, min, max } => {
                let Some(n) = request.get(member).and_then(Value::as_i64) else {
                    continue;
                };
                if n < min {
                    report.push(format!(
                        "Invalid value for parameter {member}, value: {n}, valid min value: {min}"
                    ));
                } else if n > max {
                    report.push(format!(
                        "Invalid value for parameter {member}, value: {n}, valid max value: {max}"
                    ));
                }
            }
            Rule::OneOf { member, values } => {
                let Some(s) = request.get(member).and_then(Value::as_str) else {
                    continue;
                };
                if !values.contains(&s) {
                    report.push(format!(
                        "Invalid value for parameter {member}, value: {s}, valid values: {}",
                        values.join(", ")
                    ));
                }
            }
            Rule::AnyOf { groups } => {
                let given = groups
                    .iter()
                    .any(|g| g.iter().all(|m| request.contains_key(*m)));
                if !given {
                    let options: Vec<String> = groups
                        .iter()
                        .map(|g| {
                            g.iter()
                                .map(|m| flag_of(m))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        })
                        .collect();
                    return Err(super::params::param_err(
                        &flag_of(groups.first().and_then(|g| g.first()).unwrap_or(&"")),
                        format!("give {}", options.join(", or ")),
                    ));
                }
            }
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(ParamError::Invalid(report))
    }
}

/// The clap definition of one verb (for its member list).
fn verb_command(verb: &KmsVerb) -> Option<clap::Command> {
    use clap::Subcommand;
    let all = KmsVerb::augment_subcommands(clap::Command::new("kms"));
    let name = flag_of(verb.operation());
    all.find_subcommand(name.trim_start_matches("--")).cloned()
}

/// The request members a verb accepts, in flag order.
pub fn input_members(verb: &KmsVerb) -> Vec<String> {
    let Some(cmd) = verb_command(verb) else {
        return Vec::new();
    };
    cmd.get_arguments()
        .map(|a| a.get_id().as_str())
        // `--no-x` is the off side of `--x`: one member.
        .filter(|id| !id.starts_with("no_"))
        .map(member_of)
        .collect()
}

/// `--generate-cli-skeleton input`: every member with a placeholder of its shape (an
/// enum's first value, as aws-cli v2 fills them).
pub fn input_skeleton(verb: &KmsVerb) -> Value {
    let mut m = Map::new();
    for member in input_members(verb) {
        let first_enum = verb.rules().iter().find_map(|r| match r {
            Rule::OneOf { member: n, values } if *n == member => values.first().copied(),
            _ => None,
        });
        let v = match (shape_of(&member), first_enum) {
            (_, Some(e)) => json!(e),
            (Shape::StringMap, _) => json!({"KeyName": ""}),
            (Shape::Tags, _) => json!([{"TagKey": "", "TagValue": ""}]),
            (Shape::Constraints, _) => json!({"EncryptionContextSubset": {"KeyName": ""},
                                              "EncryptionContextEquals": {"KeyName": ""}}),
            (Shape::Timestamp, _) => json!("1970-01-01T00:00:00"),
            (Shape::CommaList | Shape::List, _) => json!([""]),
            (Shape::Integer, _) => json!(0),
            (Shape::Boolean, _) => json!(true),
            _ => json!(""),
        };
        m.insert(member, v);
    }
    Value::Object(m)
}

/// Placeholders of the response members that are not plain strings.
const RESPONSE_SHAPES: &[(&str, &str)] = &[
    (
        "KeyMetadata",
        r#"{"AWSAccountId": "", "KeyId": "", "Arn": "", "CreationDate": "1970-01-01T00:00:00",
            "Enabled": true, "Description": "", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled",
            "DeletionDate": "1970-01-01T00:00:00", "ValidTo": "1970-01-01T00:00:00", "Origin": "AWS_KMS",
            "ExpirationModel": "KEY_MATERIAL_EXPIRES", "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT", "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "MultiRegion": true,
            "PendingDeletionWindowInDays": 0}"#,
    ),
    ("Keys", r#"[{"KeyId": "", "KeyArn": ""}]"#),
    (
        "Aliases",
        r#"[{"AliasName": "", "AliasArn": "", "TargetKeyId": "", "CreationDate": "1970-01-01T00:00:00",
             "LastUpdatedDate": "1970-01-01T00:00:00"}]"#,
    ),
    (
        "Grants",
        r#"[{"KeyId": "", "GrantId": "", "Name": "", "CreationDate": "1970-01-01T00:00:00",
             "GranteePrincipal": "", "RetiringPrincipal": "", "IssuingAccount": "", "Operations": [""],
             "Constraints": {"EncryptionContextSubset": {"KeyName": ""},
                             "EncryptionContextEquals": {"KeyName": ""}}}]"#,
    ),
    (
        "Rotations",
        r#"[{"KeyId": "", "RotationDate": "1970-01-01T00:00:00", "RotationType": "AUTOMATIC"}]"#,
    ),
    ("Tags", r#"[{"TagKey": "", "TagValue": ""}]"#),
    ("PolicyNames", r#"[""]"#),
    ("Truncated", "true"),
    ("KeyRotationEnabled", "true"),
    ("PendingWindowInDays", "0"),
    ("RotationPeriodInDays", "0"),
    ("DeletionDate", r#""1970-01-01T00:00:00""#),
    ("NextRotationDate", r#""1970-01-01T00:00:00""#),
    ("OnDemandRotationStartDate", r#""1970-01-01T00:00:00""#),
    ("ParametersValidTo", r#""1970-01-01T00:00:00""#),
];

/// `--generate-cli-skeleton output`: a sample response.
pub fn output_skeleton(verb: &KmsVerb) -> Value {
    let mut m = Map::new();
    for member in verb.returns() {
        let v = RESPONSE_SHAPES
            .iter()
            .find(|(n, _)| n == member)
            .and_then(|(_, text)| serde_json::from_str(text).ok())
            .unwrap_or_else(|| json!(""));
        m.insert((*member).to_string(), v);
    }
    Value::Object(m)
}

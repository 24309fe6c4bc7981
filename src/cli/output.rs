//! Every command's output, in aws-cli's four formats: `json` (4-space indent), `text`
//! (tab-separated lines), `table` (boxed) and `yaml` (the JSON as YAML), optionally
//! narrowed first by a JMESPath `--query`.
//!
//! Commands hand over a JSON document and never format it themselves; a command whose
//! text view predates aws-cli's layout passes that view in [`Doc::text`]. Never prints
//! anything the document does not contain.

use crate::cli::table::{is_scalar, scalar_text};
use serde_json::Value;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
    Table,
    Yaml,
}

/// What a command prints: its answer plus how aws-cli would frame it.
pub struct Doc<'a> {
    pub value: &'a Value,
    /// The table's title (aws-cli prints the operation name there).
    pub title: &'a str,
    /// The command's own text view, used for `--output text` instead of aws-cli's layout.
    pub text: Option<String>,
    /// JSON with 2-space indentation and `{}` printed: the shape kmsfs's own commands
    /// have always printed (aws-cli's verbs use 4 spaces and print nothing for `{}`).
    pub plain_json: bool,
}

impl<'a> Doc<'a> {
    /// A document rendered exactly as aws-cli renders a response.
    pub fn aws(value: &'a Value, title: &'a str) -> Self {
        Doc {
            value,
            title,
            text: None,
            plain_json: false,
        }
    }

    /// A kmsfs command's answer, with its own text view.
    pub fn own(value: &'a Value, title: &'a str, text: String) -> Self {
        Doc {
            value,
            title,
            text: Some(text),
            plain_json: true,
        }
    }
}

/// A `--query` that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Bad value for --query {expr}: {reason}")]
pub struct QueryError {
    pub expr: String,
    pub reason: String,
}

/// A compiled JMESPath expression (the full language: filters, functions, projections,
/// multi-selects, pipes), evaluated by the `jmespath` crate as aws-cli evaluates it.
pub struct Query {
    expr: jmespath::Expression<'static>,
}

impl Query {
    pub fn parse(expr: &str) -> Result<Query, QueryError> {
        let bad = |reason: String| QueryError {
            expr: expr.to_string(),
            reason,
        };
        if expr.trim().is_empty() {
            return Err(bad("empty expression".into()));
        }
        jmespath::compile(expr)
            .map(|expr| Query { expr })
            .map_err(|e| bad(e.to_string()))
    }

    /// Evaluates the expression. A runtime error (e.g. a function given the wrong type)
    /// is an error, as in aws-cli.
    pub fn apply(&self, v: &Value) -> Result<Value, QueryError> {
        let fail = |reason: String| QueryError {
            expr: self.expr.as_str().to_string(),
            reason,
        };
        let found = self.expr.search(v).map_err(|e| fail(e.to_string()))?;
        serde_json::to_value(&*found).map_err(|e| fail(e.to_string()))
    }
}

/// Renders a document (already narrowed by any query) in `format`. `queried` says the
/// value came out of a `--query`, after which aws-cli prints `{}` rather than nothing.
pub fn render(doc: &Doc<'_>, format: OutputFormat, queried: bool) -> String {
    let v = doc.value;
    match format {
        OutputFormat::Json if doc.plain_json => {
            let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
            s.push('\n');
            s
        }
        OutputFormat::Json => {
            // aws-cli prints nothing for an empty response ({}), e.g. EnableKey.
            if !queried && v.as_object().is_some_and(|m| m.is_empty()) {
                return String::new();
            }
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            // Serializing a Value into a Vec cannot fail.
            let _ = serde::Serialize::serialize(v, &mut ser);
            let mut s = String::from_utf8_lossy(&buf).into_owned();
            s.push('\n');
            s
        }
        OutputFormat::Text => match (&doc.text, queried) {
            (Some(own), false) => own.clone(),
            _ => {
                let mut s = String::new();
                text_format(v, None, &mut s);
                s
            }
        },
        OutputFormat::Yaml => {
            if !queried && v.as_object().is_some_and(|m| m.is_empty()) {
                return String::new();
            }
            serde_norway::to_string(v).unwrap_or_else(|e| format!("# {e}\n"))
        }
        OutputFormat::Table => crate::cli::table::render(v, doc.title),
    }
}

/// aws-cli's text format: an object prints its scalar members (sorted by name) on one
/// tab-separated line headed by its upper-cased name, then each nested member; a list of
/// scalars prints on one line; a list of objects prints one line per element.
fn text_format(v: &Value, identifier: Option<&str>, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let mut line: Vec<String> = members
                .iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(_, v)| scalar_text(v))
                .collect();
            if !line.is_empty() {
                if let Some(id) = identifier {
                    line.insert(0, id.to_uppercase());
                }
                out.push_str(&line.join("\t"));
                out.push('\n');
            }
            for (name, child) in members.into_iter().filter(|(_, v)| !is_scalar(v)) {
                text_format(child, Some(name), out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                return;
            }
            if items.iter().all(is_scalar) {
                let mut line: Vec<String> = items.iter().map(scalar_text).collect();
                if let Some(id) = identifier {
                    line.insert(0, id.to_uppercase());
                }
                out.push_str(&line.join("\t"));
                out.push('\n');
            } else {
                for item in items {
                    text_format(item, identifier, out);
                }
            }
        }
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

/// Prints a kmsfs command's own answer to stdout in the global `--output` format.
pub fn print_own(
    value: &Value,
    title: &str,
    text: String,
    format: OutputFormat,
) -> std::io::Result<()> {
    use std::io::Write;
    let rendered = render(&Doc::own(value, title, text), format, false);
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(rendered.as_bytes())?;
    lock.flush()
}

/// Response members that AWS's JSON protocol sends as epoch seconds and aws-cli v2
/// prints (and lets `--query` see) as ISO 8601.
const TIMESTAMP_MEMBERS: &[&str] = &[
    "CreationDate",
    "DeletionDate",
    "LastUpdatedDate",
    "ValidTo",
    "ParametersValidTo",
    "RotationDate",
    "NextRotationDate",
    "OnDemandRotationStartDate",
];

/// Rewrites epoch-second timestamps, at any depth, the way aws-cli v2 prints them:
/// `2026-11-23T09:30:00+00:00`, with microseconds when the value has a fraction.
pub fn iso_timestamps(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (name, child) in m.iter_mut() {
                if TIMESTAMP_MEMBERS.contains(&name.as_str()) {
                    if let Some(text) = child.as_f64().and_then(iso8601) {
                        *child = Value::String(text);
                        continue;
                    }
                }
                iso_timestamps(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iso_timestamps),
        _ => {}
    }
}

fn iso8601(epoch: f64) -> Option<String> {
    if !epoch.is_finite() {
        return None;
    }
    let secs = epoch.floor();
    // Whole microseconds, as Python's isoformat prints them.
    let micros = ((epoch - secs) * 1e6).round() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).ok()?;
    let date = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = t.format(&date).ok()?;
    Some(if micros > 0 {
        format!("{base}.{micros:06}+00:00")
    } else {
        format!("{base}+00:00")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aws(v: &Value, f: OutputFormat, queried: bool) -> String {
        render(&Doc::aws(v, "Op"), f, queried)
    }

    #[test]
    fn text_output_matches_aws_cli_layout() {
        let describe = json!({"KeyMetadata": {"KeyId": "k1", "Enabled": true, "Arn": "arn:k1",
                              "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "Description": ""}});
        assert_eq!(
            aws(&describe, OutputFormat::Text, false),
            "KEYMETADATA\tarn:k1\t\tTrue\tk1\nENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n"
        );
        let list = json!({"Keys": [{"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b", "KeyArn": "arn:b"}], "Truncated": false});
        assert_eq!(
            aws(&list, OutputFormat::Text, false),
            "False\nKEYS\tarn:a\ta\nKEYS\tarn:b\tb\n"
        );
        assert_eq!(aws(&json!("aGk="), OutputFormat::Text, true), "aGk=\n");
        assert_eq!(
            aws(&json!(["alias/a", "alias/b"]), OutputFormat::Text, true),
            "alias/a\talias/b\n"
        );
        assert_eq!(aws(&Value::Null, OutputFormat::Text, true), "None\n");
    }

    #[test]
    fn json_output_is_four_space_indented_and_empty_responses_print_nothing() {
        assert_eq!(
            aws(&json!({"KeyId": "k"}), OutputFormat::Json, false),
            "{\n    \"KeyId\": \"k\"\n}\n"
        );
        assert_eq!(aws(&json!({}), OutputFormat::Json, false), "");
        assert_eq!(aws(&json!("x"), OutputFormat::Json, true), "\"x\"\n");
    }

    #[test]
    fn yaml_output_is_the_json_as_yaml() {
        let v = json!({"KeyMetadata": {"KeyId": "k1", "Enabled": true}, "Tags": ["a", "b"]});
        let y = aws(&v, OutputFormat::Yaml, false);
        assert_eq!(
            y,
            "KeyMetadata:\n  KeyId: k1\n  Enabled: true\nTags:\n- a\n- b\n"
        );
        let back: Value = serde_norway::from_str(&y).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn own_text_views_are_kept_and_a_query_uses_aws_layout() {
        let v = json!({"Intact": true});
        let doc = Doc::own(&v, "Verify", "intact\n".into());
        assert_eq!(render(&doc, OutputFormat::Text, false), "intact\n");
        assert_eq!(render(&doc, OutputFormat::Text, true), "True\n");
        assert_eq!(
            render(&doc, OutputFormat::Json, false),
            "{\n  \"Intact\": true\n}\n"
        );
    }

    #[test]
    fn queries_are_full_jmespath() {
        let v = json!({
            "KeyMetadata": {"KeyId": "k1", "Enabled": true},
            "Aliases": [{"AliasName": "alias/a", "TargetKeyId": "k1"}, {"Other": 1},
                        {"AliasName": "alias/b", "TargetKeyId": "k2"}],
            "Plaintext": "aGk="
        });
        let cases: &[(&str, Value)] = &[
            ("Plaintext", json!("aGk=")),
            ("KeyMetadata.KeyId", json!("k1")),
            ("KeyMetadata.Missing", Value::Null),
            ("Aliases[].AliasName", json!(["alias/a", "alias/b"])),
            ("Aliases[0].AliasName", json!("alias/a")),
            ("Aliases[-1].AliasName", json!("alias/b")),
            // Filters, functions, multi-select and pipes: beyond the old subset.
            ("Aliases[?TargetKeyId=='k2'].AliasName", json!(["alias/b"])),
            ("length(Aliases)", json!(3)),
            (
                "sort_by(Aliases[?AliasName], &AliasName)[].AliasName | reverse(@)",
                json!(["alias/b", "alias/a"]),
            ),
            (
                "Aliases[?AliasName && starts_with(AliasName, 'alias/')].{N: AliasName, K: TargetKeyId}",
                json!([{"K": "k1", "N": "alias/a"}, {"K": "k2", "N": "alias/b"}]),
            ),
            ("KeyMetadata.[KeyId, Enabled]", json!(["k1", true])),
            ("Aliases[9]", Value::Null),
        ];
        for (q, want) in cases {
            assert_eq!(Query::parse(q).unwrap().apply(&v).unwrap(), *want, "{q}");
        }
        for bad in ["", "a.", "a[", "a b", "a]", "Keys[?"] {
            assert!(Query::parse(bad).is_err(), "{bad:?} must be refused");
        }
        // A function given the wrong type fails at run time, as in aws-cli.
        let q = Query::parse("length(KeyMetadata.Enabled)").unwrap();
        assert!(q.apply(&v).is_err());
    }

    #[test]
    fn epoch_timestamps_print_as_aws_cli_iso8601() {
        let mut v = json!({"KeyMetadata": {"CreationDate": 1795000000, "DeletionDate": 1795000000.25,
                                           "KeyId": "k", "Enabled": true},
                           "Rotations": [{"RotationDate": 0}], "NotATime": 5});
        iso_timestamps(&mut v);
        assert_eq!(
            v,
            json!({"KeyMetadata": {"CreationDate": "2026-11-18T11:06:40+00:00",
                                   "DeletionDate": "2026-11-18T11:06:40.250000+00:00", "KeyId": "k", "Enabled": true},
                   "Rotations": [{"RotationDate": "1970-01-01T00:00:00+00:00"}], "NotATime": 5})
        );
    }
}

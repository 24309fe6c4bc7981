//! `--output table`: aws-cli's boxed layout. A section has a title row, then its scalar
//! members as `name | value` rows (or, for a list of objects, one header row and one row
//! per element), then each nested member as a section boxed inside it.

use serde_json::Value;

/// One boxed section of the table.
#[derive(Default)]
struct Section {
    title: String,
    /// The first row is a header when `header` is set.
    rows: Vec<Vec<String>>,
    header: bool,
    children: Vec<Section>,
}

/// Renders `v` as aws-cli's table, headed by `title`.
pub fn render(v: &Value, title: &str) -> String {
    let section = build(title, v);
    let width = section.width().max(title.chars().count() + 4);
    let mut lines = vec!["-".repeat(width)];
    lines.extend(section.render(width));
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn build(title: &str, v: &Value) -> Section {
    let mut s = Section {
        title: title.to_string(),
        ..Section::default()
    };
    match v {
        Value::Object(m) => {
            for (name, child) in m {
                if is_scalar(child) {
                    s.rows.push(vec![name.clone(), scalar_text(child)]);
                } else {
                    s.children.push(build(name, child));
                }
            }
        }
        Value::Array(items) if items.iter().all(is_scalar) => {
            s.rows = items.iter().map(|i| vec![scalar_text(i)]).collect();
        }
        Value::Array(items) => {
            // Columns: the scalar members of the elements, in first-seen order.
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                if let Value::Object(m) = item {
                    for (k, v) in m {
                        if is_scalar(v) && !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
            }
            if !columns.is_empty() {
                s.header = true;
                s.rows.push(columns.clone());
            }
            for item in items {
                match item {
                    Value::Object(m) => {
                        if !columns.is_empty() {
                            s.rows.push(
                                columns
                                    .iter()
                                    .map(|c| m.get(c).map(scalar_text).unwrap_or_default())
                                    .collect(),
                            );
                        }
                        for (k, v) in m.iter().filter(|(_, v)| !is_scalar(v)) {
                            s.children.push(build(k, v));
                        }
                    }
                    other => s.children.push(build(title, other)),
                }
            }
        }
        scalar => s.rows.push(vec![scalar_text(scalar)]),
    }
    s
}

/// A scalar as aws-cli prints it in text and table output (Python's spelling of
/// booleans and null). Here, below `output`, so that both formats share it.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

pub(crate) fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn len(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(len(s))))
}

fn center(s: &str, width: usize) -> String {
    let free = width.saturating_sub(len(s));
    format!("{}{s}{}", " ".repeat(free / 2), " ".repeat(free - free / 2))
}

impl Section {
    /// Column widths, each cell padded by two spaces on the left and right.
    fn column_widths(&self) -> Vec<usize> {
        let n = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| len(c) + 4)
                    .max()
                    .unwrap_or(4)
            })
            .collect()
    }

    fn width(&self) -> usize {
        let cols = self.column_widths();
        let rows = cols.iter().sum::<usize>() + cols.len() + 1;
        let children = self.children.iter().map(|c| c.width() + 2).max();
        rows.max(len(&self.title) + 4).max(children.unwrap_or(0))
    }

    /// The section's lines, each exactly `width` characters.
    fn render(&self, width: usize) -> Vec<String> {
        let inner = width.saturating_sub(2);
        let mut out = vec![
            format!("|{}|", center(&self.title, inner)),
            format!("+{}+", "-".repeat(inner)),
        ];
        if !self.rows.is_empty() {
            let mut cols = self.column_widths();
            // The last column takes the space left over.
            let used = cols.iter().sum::<usize>() + cols.len() + 1;
            if let Some(last) = cols.last_mut() {
                *last += width.saturating_sub(used);
            }
            for (i, row) in self.rows.iter().enumerate() {
                let cells: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(j, w)| {
                        let text = row.get(j).map(String::as_str).unwrap_or("");
                        if self.header && i == 0 {
                            center(text, *w)
                        } else {
                            pad(&format!("  {text}"), *w)
                        }
                    })
                    .collect();
                out.push(format!("|{}|", cells.join("|")));
                if self.header && i == 0 {
                    let rule: Vec<String> = cols.iter().map(|w| "-".repeat(*w)).collect();
                    out.push(format!("+{}+", rule.join("+")));
                }
            }
        }
        for child in &self.children {
            out.extend(child.render(inner).into_iter().map(|l| format!("|{l}|")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_box_titles_members_and_lists() {
        let v = json!({"KeyMetadata": {"KeyId": "k1", "Enabled": true},
                       "Aliases": [{"AliasName": "alias/a", "TargetKeyId": "k1"},
                                   {"AliasName": "alias/bb", "TargetKeyId": "k2"}]});
        let t = render(&v, "DescribeKey");
        let lines: Vec<&str> = t.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines[0].chars().all(|c| c == '-'), "{t}");
        assert!(
            lines.iter().all(|l| l.chars().count() == width),
            "every line is as wide as the box:\n{t}"
        );
        assert!(lines[1].contains("DescribeKey"), "{t}");
        assert!(
            t.contains("||  KeyId") && t.contains("|  k1"),
            "members are name | value rows:\n{t}"
        );
        assert!(
            t.contains("AliasName") && t.contains("alias/bb") && t.contains("True"),
            "{t}"
        );
    }
}

//! Wildcard patterns (`*`, `?`) with policy variables (`${aws:username}`, `${*}`, ...)
//! as IAM writes them in Action, Resource and string/ARN condition values.
//! Owns matching only; never looks up a request (variables are resolved by the caller
//! through a lookup function).

use std::borrow::Cow;

/// One piece of a pattern. Literal text never acts as a wildcard, so the `${*}`
/// escape becomes `Lit("*")` while a bare `*` becomes `Star`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    Star,
    Question,
    /// A policy variable: lowercased key and optional default value.
    Var {
        key: String,
        default: Option<String>,
    },
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) parts: Vec<Part>,
    pub(crate) has_vars: bool,
    /// The text as written (for messages and ARN-segment matching).
    pub(crate) source: String,
}

impl Pattern {
    /// Parses `text`; `${...}` is a variable only when `variables` is true (Version
    /// 2012-10-17). Returns an error description for an unterminated or empty variable.
    pub(crate) fn parse(text: &str, variables: bool) -> Result<Pattern, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        let mut has_vars = false;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "policy variable in \"{text}\" is not closed; expected \"${{key}}\""
                    ));
                };
                let inner = &rest[2..end];
                rest = &rest[end + 1..];
                match inner {
                    "*" => lit.push('*'),
                    "?" => lit.push('?'),
                    "$" => lit.push('$'),
                    _ => {
                        let (key, default) = split_default(inner).ok_or_else(|| {
                            format!(
                                "policy variable \"${{{inner}}}\" in \"{text}\" is malformed; expected \"${{prefix:key}}\" or \"${{prefix:key, 'default'}}\""
                            )
                        })?;
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        parts.push(Part::Var { key, default });
                        has_vars = true;
                    }
                }
                continue;
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' | '?' => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(if c == '*' { Part::Star } else { Part::Question });
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Pattern {
            parts,
            has_vars,
            source: text.to_string(),
        })
    }

    /// True when the pattern is exactly `*`.
    pub(crate) fn is_star(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Star])
    }

    /// Resolves variables through `lookup` (lowercased key → single value). `None` when
    /// a variable has no value and no default: AWS then treats the value as not matching.
    pub(crate) fn resolve<'p, F>(&'p self, lookup: F) -> Option<Cow<'p, [Part]>>
    where
        F: Fn(&str) -> Option<String>,
    {
        if !self.has_vars {
            return Some(Cow::Borrowed(&self.parts));
        }
        let mut out = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            match p {
                Part::Var { key, default } => {
                    let v = lookup(key).or_else(|| default.clone())?;
                    out.push(Part::Lit(v));
                }
                other => out.push(other.clone()),
            }
        }
        Some(Cow::Owned(out))
    }
}

fn split_default(inner: &str) -> Option<(String, Option<String>)> {
    let (key, default) = match inner.split_once(',') {
        Some((k, d)) => {
            let d = d.trim();
            let d = d.strip_prefix('\'')?.strip_suffix('\'')?;
            (k.trim(), Some(d.to_string()))
        }
        None => (inner.trim(), None),
    };
    let (prefix, name) = key.split_once(':')?;
    if prefix.is_empty() || name.is_empty() || key.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    Some((key.to_ascii_lowercase(), default))
}

fn char_len_at(text: &[u8], pos: usize) -> usize {
    match text.get(pos) {
        Some(b) if *b < 0x80 => 1,
        Some(b) if *b >= 0xF0 => 4,
        Some(b) if *b >= 0xE0 => 3,
        Some(_) => 2,
        None => 1,
    }
}

fn lit_at(text: &[u8], pos: usize, lit: &[u8], ascii_ci: bool) -> bool {
    match text.get(pos..pos + lit.len()) {
        Some(window) if ascii_ci => window.eq_ignore_ascii_case(lit),
        Some(window) => window == lit,
        None => false,
    }
}

/// Glob match of resolved `parts` against `text`. `*` matches any run (also empty),
/// `?` exactly one character. Variables must be resolved first (an unresolved one never
/// matches). Iterative with single backtrack point: O(len(text) * len(parts)).
pub(crate) fn glob_match(parts: &[Part], text: &str, ascii_ci: bool) -> bool {
    let t = text.as_bytes();
    let (mut pi, mut pos) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if pos >= t.len() && pi >= parts.len() {
            return true;
        }
        let step = match parts.get(pi) {
            Some(Part::Star) => {
                backtrack = Some((pi + 1, pos));
                pi += 1;
                continue;
            }
            Some(Part::Question) if pos < t.len() => {
                pos += char_len_at(t, pos);
                pi += 1;
                true
            }
            Some(Part::Lit(l)) if lit_at(t, pos, l.as_bytes(), ascii_ci) => {
                pos += l.len();
                pi += 1;
                true
            }
            _ => false,
        };
        if step {
            continue;
        }
        match backtrack {
            Some((bp, bpos)) if bpos < t.len() => {
                let next = bpos + char_len_at(t, bpos);
                backtrack = Some((bp, next));
                pi = bp;
                pos = next;
            }
            _ => return false,
        }
    }
}

/// Exact comparison of resolved `parts` against `text`, where `*` and `?` are plain
/// characters (StringEquals, ArnEquals literal parts).
pub(crate) fn exact_match(parts: &[Part], text: &str) -> bool {
    let t = text.as_bytes();
    let mut pos = 0usize;
    for p in parts {
        let lit: &[u8] = match p {
            Part::Lit(l) => l.as_bytes(),
            Part::Star => b"*",
            Part::Question => b"?",
            Part::Var { .. } => return false,
        };
        if !lit_at(t, pos, lit, false) {
            return false;
        }
        pos += lit.len();
    }
    pos == t.len()
}

/// The resolved parts as plain text (wildcards written back as `*` / `?`).
pub(crate) fn to_text(parts: &[Part]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            Part::Lit(l) => s.push_str(l),
            Part::Star => s.push('*'),
            Part::Question => s.push('?'),
            Part::Var { key, .. } => {
                s.push_str("${");
                s.push_str(key);
                s.push('}');
            }
        }
    }
    s
}

/// ArnLike / ArnEquals: both sides split into six colon-separated segments and each
/// segment glob-matched, so a `*` never spans a `:` before the resource part.
pub(crate) fn arn_match(parts: &[Part], text: &str) -> bool {
    let pat = to_text(parts);
    let p: Vec<&str> = pat.splitn(6, ':').collect();
    let t: Vec<&str> = text.splitn(6, ':').collect();
    if p.len() != 6 || t.len() != 6 {
        return false;
    }
    p.iter()
        .zip(t.iter())
        .all(|(ps, ts)| match Pattern::parse(ps, false) {
            Ok(seg) => glob_match(&seg.parts, ts, false),
            Err(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, t: &str) -> bool {
        glob_match(&Pattern::parse(p, true).unwrap().parts, t, false)
    }

    #[test]
    fn glob_wildcards_match_like_iam() {
        assert!(g("*", ""));
        assert!(g("a*c", "abbbc"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*b*", "abc"));
        assert!(!g("a*d", "abc"));
        assert!(g("a*b*c", "aXbYbZc"));
        assert!(g("é?", "éü"));
    }

    #[test]
    fn question_mark_never_matches_past_the_end() {
        assert!(!g("?", ""));
        assert!(!g("a?", "a"));
        assert!(!g("*?", ""));
        assert!(!g("a*?", "a"));
        assert!(g("a*?", "ab"));
        assert!(!g("??", "a"));
        assert!(g("??", "ab"));
        assert!(!g("a?", "abc"));
    }

    #[test]
    fn question_mark_matches_one_whole_character_of_any_utf8_length() {
        // 2-byte (é), 3-byte lead E0 (U+0800), 3-byte (€), 4-byte lead F0 (U+1F600)
        // and 4-byte lead F4 (U+10FFFF).
        for ch in ["é", "\u{800}", "€", "😀", "\u{10FFFF}"] {
            assert!(g("?", ch), "? over {ch:?}");
            assert!(!g("??", ch), "?? over {ch:?}");
            assert!(g("a?b", &format!("a{ch}b")), "a?b over {ch:?}");
            assert!(g("*b", &format!("{ch}{ch}b")), "* backtracks over {ch:?}");
            assert!(!g("?b", &format!("{ch}{ch}b")), "?b over two {ch:?}");
            assert!(g(&format!("?{ch}"), &format!("{ch}{ch}")));
        }
        assert!(g("?x", "\u{7f}x"));
        assert!(!g("?", "\u{7f}\u{7f}"));
    }

    #[test]
    fn literals_compare_bytes_exactly_unless_ascii_case_is_ignored() {
        let p = Pattern::parse("KMS:Decrypt", false).unwrap();
        assert!(glob_match(&p.parts, "kms:decrypt", true));
        assert!(!glob_match(&p.parts, "kms:decrypt", false));
        assert!(!glob_match(&p.parts, "kms:Decryp", true));
        assert!(!glob_match(&p.parts, "kms:Decrypts", true));
        let p = Pattern::parse("É", false).unwrap();
        assert!(
            !glob_match(&p.parts, "é", true),
            "only ASCII case is ignored"
        );
    }

    #[test]
    fn exact_match_treats_wildcards_as_text() {
        let p = Pattern::parse("a*b?", false).unwrap();
        assert!(exact_match(&p.parts, "a*b?"));
        assert!(!exact_match(&p.parts, "axby"));
        assert!(!exact_match(&p.parts, "a*b?c"));
        assert!(!exact_match(&p.parts, "a*b"));
        let v = Pattern::parse("${aws:username}", true).unwrap();
        assert!(
            !exact_match(&v.parts, "${aws:username}"),
            "unresolved variables never match"
        );
        assert_eq!(to_text(&v.parts), "${aws:username}");
        assert_eq!(to_text(&p.parts), "a*b?");
    }

    #[test]
    fn policy_variable_syntax_is_checked() {
        assert!(Pattern::parse("${aws:username", true).is_err());
        assert!(Pattern::parse("${username}", true).is_err());
        assert!(Pattern::parse("${:x}", true).is_err());
        assert!(Pattern::parse("${aws:}", true).is_err());
        assert!(Pattern::parse("${aws :x}", true).is_err());
        assert!(Pattern::parse("${aws:x, nobody}", true).is_err());
        let p = Pattern::parse("${AWS:UserName, 'n b'}", true).unwrap();
        assert!(p.has_vars);
        assert_eq!(
            p.parts,
            vec![Part::Var {
                key: "aws:username".into(),
                default: Some("n b".into())
            }]
        );
        // In 2008-10-17 the same text is literal.
        let lit = Pattern::parse("${aws:x", false).unwrap();
        assert!(!lit.has_vars);
        assert!(g("${?}", "?") && !g("${?}", "x"));
        assert!(Pattern::parse("*", false).unwrap().is_star());
        assert!(!Pattern::parse("**", false).unwrap().is_star());
        assert!(!Pattern::parse("${*}", true).unwrap().is_star());
    }

    #[test]
    fn escaped_star_is_literal() {
        assert!(g("a${*}", "a*"));
        assert!(!g("a${*}", "ab"));
        assert!(g("${$}{x}", "${x}"));
    }

    #[test]
    fn action_match_ignores_ascii_case() {
        let p = Pattern::parse("kms:gen*", false).unwrap();
        assert!(glob_match(&p.parts, "kms:GenerateDataKey", true));
    }

    #[test]
    fn variables_with_default_resolve() {
        let p = Pattern::parse("home/${aws:username, 'nobody'}/*", true).unwrap();
        let r = p.resolve(|_| None).unwrap();
        assert!(glob_match(&r, "home/nobody/x", false));
        let p = Pattern::parse("home/${aws:username}", true).unwrap();
        assert!(p.resolve(|_| None).is_none());
    }

    #[test]
    fn arn_like_does_not_span_segments() {
        let p = Pattern::parse("arn:aws:iam::*:role/*", false).unwrap();
        assert!(arn_match(&p.parts, "arn:aws:iam::111122223333:role/x"));
        assert!(!arn_match(&p.parts, "arn:aws:iam::1:2:role/x"));
        // The resource part keeps its colons and may hold wildcards across them.
        let p = Pattern::parse("arn:aws:kms:*:*:key/*", false).unwrap();
        assert!(arn_match(&p.parts, "arn:aws:kms:local:1:key/a:b"));
        assert!(!arn_match(&p.parts, "arn:aws:kms:local:1"));
        let short = Pattern::parse("arn:aws:kms", false).unwrap();
        assert!(!arn_match(&short.parts, "arn:aws:kms"));
        let exact = Pattern::parse("arn:aws:iam::1:user/a", false).unwrap();
        assert!(!arn_match(&exact.parts, "arn:aws:iam::1:user/b"));
        assert!(!arn_match(&exact.parts, "arn:aws:sts::1:user/a"));
    }
}

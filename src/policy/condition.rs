//! Condition operators of the IAM policy language: their names, how their values are
//! parsed at validation time, and how they compare against request values. Owns no
//! request state: values come in through the evaluator's lookup.

use super::pattern::{arn_match, exact_match, glob_match, Pattern};
use base64::Engine as _;
use std::net::IpAddr;

/// The comparison family of an operator; `negated` and the qualifiers live on
/// [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    ArnEquals,
    ArnLike,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    /// No qualifier: a multi-valued request key matches when any value matches.
    Single,
    ForAnyValue,
    ForAllValues,
}

/// Every operator AWS accepts, without qualifiers: (name, family, negated).
pub(crate) const OPERATORS: &[(&str, Family, bool)] = &[
    ("StringEquals", Family::StringEquals, false),
    ("StringNotEquals", Family::StringEquals, true),
    (
        "StringEqualsIgnoreCase",
        Family::StringEqualsIgnoreCase,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Family::StringEqualsIgnoreCase,
        true,
    ),
    ("StringLike", Family::StringLike, false),
    ("StringNotLike", Family::StringLike, true),
    ("NumericEquals", Family::Numeric(Cmp::Eq), false),
    ("NumericNotEquals", Family::Numeric(Cmp::Eq), true),
    ("NumericLessThan", Family::Numeric(Cmp::Lt), false),
    ("NumericLessThanEquals", Family::Numeric(Cmp::Le), false),
    ("NumericGreaterThan", Family::Numeric(Cmp::Gt), false),
    ("NumericGreaterThanEquals", Family::Numeric(Cmp::Ge), false),
    ("DateEquals", Family::Date(Cmp::Eq), false),
    ("DateNotEquals", Family::Date(Cmp::Eq), true),
    ("DateLessThan", Family::Date(Cmp::Lt), false),
    ("DateLessThanEquals", Family::Date(Cmp::Le), false),
    ("DateGreaterThan", Family::Date(Cmp::Gt), false),
    ("DateGreaterThanEquals", Family::Date(Cmp::Ge), false),
    ("Bool", Family::Bool, false),
    ("BinaryEquals", Family::Binary, false),
    ("IpAddress", Family::Ip, false),
    ("NotIpAddress", Family::Ip, true),
    ("ArnEquals", Family::ArnEquals, false),
    ("ArnNotEquals", Family::ArnEquals, true),
    ("ArnLike", Family::ArnLike, false),
    ("ArnNotLike", Family::ArnLike, true),
    ("Null", Family::Null, false),
];

/// A parsed operator name such as `ForAllValues:StringLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operator {
    pub(crate) family: Family,
    pub(crate) negated: bool,
    pub(crate) if_exists: bool,
    pub(crate) set: SetOp,
}

impl Operator {
    /// Parses an operator name (case-sensitive, as AWS). The error is the sentence that
    /// follows `Condition operator "X" ` in the user's message.
    pub(crate) fn parse(name: &str) -> Result<Operator, String> {
        let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (SetOp::ForAnyValue, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (SetOp::ForAllValues, r)
        } else {
            (SetOp::Single, name)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let known = OPERATORS.iter().find(|(n, _, _)| *n == base);
        let Some(&(_, family, negated)) = known else {
            let hint = OPERATORS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(base))
                .map(|(n, _, _)| {
                    format!(" (operator names are case-sensitive: did you mean \"{n}\"?)")
                })
                .unwrap_or_default();
            let all: Vec<&str> = OPERATORS.iter().map(|(n, _, _)| *n).collect();
            return Err(format!(
                "is not a known operator{hint}; expected one of {}, optionally prefixed with ForAnyValue: or ForAllValues: and suffixed with IfExists",
                all.join(", ")
            ));
        };
        if family == Family::Null && if_exists {
            return Err("is not a known operator: Null cannot take the IfExists suffix".into());
        }
        Ok(Operator {
            family,
            negated,
            if_exists,
            set,
        })
    }
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub(crate) fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        fn masked(a: u128, prefix: u8, bits: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                a >> (bits - prefix)
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                masked(u32::from(n) as u128, self.prefix, 32)
                    == masked(u32::from(i) as u128, self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(i), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Parses an IAM date: ISO 8601 / RFC 3339 (`2026-01-01T00:00:00Z`, fractional seconds,
/// offsets, a bare date, or a time without zone meaning UTC) or epoch seconds.
/// Returns nanoseconds since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !s.contains("--") {
        if let Ok(secs) = s.parse::<i64>() {
            return Some(secs as i128 * 1_000_000_000);
        }
    }
    if let Ok(d) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(d.unix_timestamp_nanos());
    }
    let candidates = [format!("{s}T00:00:00Z"), format!("{s}Z")];
    candidates
        .iter()
        .find_map(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
        .map(|d| d.unix_timestamp_nanos())
}

pub(crate) fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The values of one condition key, typed at parse time so that evaluation never
/// re-validates the policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    Patterns(Vec<Pattern>),
    Numbers(Vec<f64>),
    Dates(Vec<i128>),
    Bools(Vec<bool>),
    Binary(Vec<Vec<u8>>),
    Ips(Vec<IpNet>),
    /// Null: true means "the key must be absent".
    Null(bool),
}

impl Values {
    /// Parses the raw strings for `family`. Errors describe the first bad value.
    pub(crate) fn parse(family: Family, raw: &[String], variables: bool) -> Result<Values, String> {
        fn all<T>(
            raw: &[String],
            f: impl Fn(&str) -> Option<T>,
            what: &str,
        ) -> Result<Vec<T>, String> {
            raw.iter()
                .map(|r| f(r).ok_or_else(|| format!("value \"{r}\" is not {what}")))
                .collect()
        }
        Ok(match family {
            Family::StringEquals | Family::StringEqualsIgnoreCase | Family::StringLike => {
                Values::Patterns(
                    raw.iter()
                        .map(|r| Pattern::parse(r, variables))
                        .collect::<Result<_, _>>()?,
                )
            }
            Family::ArnEquals | Family::ArnLike => {
                let pats: Vec<Pattern> = raw
                    .iter()
                    .map(|r| Pattern::parse(r, variables))
                    .collect::<Result<_, _>>()?;
                for p in &pats {
                    if !p.has_vars && p.source != "*" && p.source.splitn(6, ':').count() != 6 {
                        return Err(format!(
                            "value \"{}\" is not an ARN; expected arn:partition:service:region:account:resource",
                            p.source
                        ));
                    }
                }
                Values::Patterns(pats)
            }
            Family::Numeric(_) => Values::Numbers(all(raw, parse_number, "a number")?),
            Family::Date(_) => Values::Dates(all(
                raw,
                parse_date,
                "a date (ISO 8601 such as 2026-01-01T00:00:00Z, or epoch seconds)",
            )?),
            Family::Bool => {
                Values::Bools(all(raw, parse_bool, "a boolean (\"true\" or \"false\")")?)
            }
            Family::Binary => Values::Binary(all(
                raw,
                |s| {
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .ok()
                },
                "base64",
            )?),
            Family::Ip => Values::Ips(all(
                raw,
                IpNet::parse,
                "an IP address or CIDR range (such as 203.0.113.0/24)",
            )?),
            Family::Null => {
                let b = all(raw, parse_bool, "\"true\" or \"false\"")?;
                match b.as_slice() {
                    [one] => Values::Null(*one),
                    _ => return Err("Null takes exactly one value, \"true\" or \"false\"".into()),
                }
            }
        })
    }
}

/// One (operator, key) pair of a Condition block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) op: Operator,
    /// Lowercased condition key (names are case-insensitive).
    pub(crate) key: String,
    pub(crate) values: Values,
}

impl Condition {
    /// Evaluates against the request values of `key` (`None` = absent). `resolve`
    /// resolves policy variables in string/ARN patterns.
    pub(crate) fn holds<R>(&self, request: Option<&[String]>, resolve: R) -> bool
    where
        R: Fn(&Pattern) -> Option<std::borrow::Cow<'_, [super::pattern::Part]>>,
    {
        let request = request.filter(|v| !v.is_empty());
        if let Values::Null(must_be_absent) = self.values {
            return request.is_none() == must_be_absent;
        }
        let Some(req) = request else {
            // Absent key: IfExists and negated operators hold, ForAllValues holds
            // vacuously, everything else fails.
            return self.op.if_exists || self.op.negated || self.op.set == SetOp::ForAllValues;
        };
        // One request value against every policy value (OR): the positive match.
        let one = |v: &str| self.any_value_matches(v, &resolve);
        match (self.op.set, self.op.negated) {
            (SetOp::Single, false) => req.iter().any(|v| one(v)),
            (SetOp::Single, true) => !req.iter().any(|v| one(v)),
            (SetOp::ForAnyValue, neg) => req.iter().any(|v| one(v) != neg),
            (SetOp::ForAllValues, neg) => req.iter().all(|v| one(v) != neg),
        }
    }

    fn any_value_matches<R>(&self, v: &str, resolve: &R) -> bool
    where
        R: Fn(&Pattern) -> Option<std::borrow::Cow<'_, [super::pattern::Part]>>,
    {
        match &self.values {
            Values::Patterns(pats) => pats.iter().any(|p| {
                let Some(parts) = resolve(p) else {
                    return false;
                };
                match self.op.family {
                    Family::StringEquals => exact_match(&parts, v),
                    Family::StringEqualsIgnoreCase => {
                        super::pattern::to_text(&parts).to_lowercase() == v.to_lowercase()
                    }
                    Family::StringLike => glob_match(&parts, v, false),
                    Family::ArnEquals | Family::ArnLike => arn_match(&parts, v),
                    _ => false,
                }
            }),
            Values::Numbers(ns) => match (parse_number(v), self.op.family) {
                (Some(x), Family::Numeric(c)) => ns.iter().any(|n| cmp_f64(c, x, *n)),
                _ => false,
            },
            Values::Dates(ds) => match (parse_date(v), self.op.family) {
                (Some(x), Family::Date(c)) => ds.iter().any(|d| cmp_ord(c, x, *d)),
                _ => false,
            },
            Values::Bools(bs) => parse_bool(v).is_some_and(|x| bs.contains(&x)),
            Values::Binary(bins) => base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .is_ok_and(|x| bins.contains(&x)),
            Values::Ips(nets) => v
                .trim()
                .parse::<IpAddr>()
                .ok()
                .or_else(|| IpNet::parse(v).map(|n| n.addr))
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Values::Null(_) => false,
        }
    }
}

fn cmp_f64(c: Cmp, x: f64, n: f64) -> bool {
    match c {
        Cmp::Eq => x == n,
        Cmp::Lt => x < n,
        Cmp::Le => x <= n,
        Cmp::Gt => x > n,
        Cmp::Ge => x >= n,
    }
}

fn cmp_ord(c: Cmp, x: i128, n: i128) -> bool {
    match c {
        Cmp::Eq => x == n,
        Cmp::Lt => x < n,
        Cmp::Le => x <= n,
        Cmp::Gt => x > n,
        Cmp::Ge => x >= n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_parse_with_qualifiers() {
        let op = Operator::parse("ForAllValues:StringLikeIfExists").unwrap();
        assert_eq!(op.family, Family::StringLike);
        assert!(op.if_exists && !op.negated && op.set == SetOp::ForAllValues);
        assert!(Operator::parse("NullIfExists").is_err());
        let e = Operator::parse("stringequals").unwrap_err();
        assert!(e.contains("did you mean \"StringEquals\""), "{e}");
    }

    #[test]
    fn cidr_contains() {
        let n = IpNet::parse("203.0.113.0/24").unwrap();
        assert!(n.contains("203.0.113.9".parse().unwrap()));
        assert!(!n.contains("203.0.114.9".parse().unwrap()));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(IpNet::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn dates_parse_in_iam_forms() {
        let a = parse_date("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_date("2026-01-01").unwrap(), a);
        assert_eq!(parse_date("1767225600").unwrap(), a);
        assert!(parse_date("yesterday").is_none());
    }
}

//! aws-cli's pagination of list-* verbs: by default every page is fetched and merged;
//! `--max-items` stops after N items and prints a `NextToken`, which `--starting-token`
//! resumes from; `--page-size` sets each call's Limit.

use crate::control::Backend;
use crate::kms::operations::Pagination;
use crate::kms::{ErrorKind, KmsError};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// How an operation pages, from the key service's operation table (aws-cli's
/// paginator model: input/output tokens, limit key, result key).
pub fn pagination_of(operation: &str) -> Option<&'static Pagination> {
    crate::kms::operations::lookup(operation).and_then(|o| o.pagination())
}

/// Upper bound on pages fetched for one command: a service that keeps answering
/// `Truncated` must not keep the CLI looping forever.
const MAX_PAGES: usize = 100_000;

/// The pagination flags of one command.
#[derive(Debug, Clone, Default)]
pub struct PageOpts {
    pub max_items: Option<u64>,
    pub page_size: Option<i64>,
    pub starting_token: Option<String>,
}

/// Where a listing resumes: the service's marker for the page, and how many of that
/// page's items were already printed (botocore's `boto_truncate_amount`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resume {
    marker: Option<String>,
    skip: usize,
}

fn encode_token(r: &Resume) -> String {
    let mut m = Map::new();
    if let Some(marker) = &r.marker {
        m.insert("Marker".into(), json!(marker));
    }
    if r.skip > 0 {
        m.insert("boto_truncate_amount".into(), json!(r.skip));
    }
    base64::engine::general_purpose::STANDARD.encode(Value::Object(m).to_string())
}

fn decode_token(operation: &str, token: &str) -> Result<Resume, KmsError> {
    let bad = || {
        KmsError::new(
            ErrorKind::Validation,
            format!("{operation}: --starting-token {token:?} is not a NextToken this CLI printed"),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(Resume {
        marker: v.get("Marker").and_then(Value::as_str).map(str::to_string),
        skip: match v.get("boto_truncate_amount") {
            None => 0,
            Some(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(bad)?,
        },
    })
}

/// Fetches pages from where `opts` says until the list ends or `--max-items` is
/// reached, merging the `result_key` lists into the first page and dropping the
/// service's pagination members; a cut listing carries `NextToken`.
pub fn call_pages(
    backend: &dyn Backend,
    operation: &str,
    request: &Map<String, Value>,
    paging: &Pagination,
    opts: &PageOpts,
) -> Result<Value, KmsError> {
    let mut at = match &opts.starting_token {
        Some(t) => decode_token(operation, t)?,
        None => Resume::default(),
    };
    let max = opts.max_items.and_then(|n| usize::try_from(n).ok());
    let mut merged: Option<Map<String, Value>> = None;
    let mut items: Vec<Value> = Vec::new();
    let mut next_token = None;
    for pages in 1.. {
        let mut req = request.clone();
        if let Some(size) = opts.page_size {
            req.insert(paging.limit_key.into(), json!(size));
        }
        if let Some(marker) = &at.marker {
            req.insert(paging.input_token.into(), json!(marker));
        }
        let page = backend.call(operation, Value::Object(req))?;
        let Value::Object(mut page) = page else {
            return Err(KmsError::new(
                ErrorKind::KmsInternal,
                format!("{operation}: the response is not an object"),
            ));
        };
        let truncated = page.remove(paging.more_results).and_then(|v| v.as_bool()) == Some(true);
        let next_marker = page
            .remove(paging.output_token)
            .and_then(|v| v.as_str().map(str::to_string));
        let page_items = match page.remove(paging.result_key) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        merged.get_or_insert(page);
        for (i, item) in page_items.into_iter().enumerate().skip(at.skip) {
            if max.is_some_and(|m| items.len() >= m) {
                next_token = Some(Resume {
                    marker: at.marker.clone(),
                    skip: i,
                });
                break;
            }
            items.push(item);
        }
        if next_token.is_some() {
            break;
        }
        let (true, Some(next_marker)) = (truncated, next_marker) else {
            break;
        };
        if max.is_some_and(|m| items.len() >= m) {
            next_token = Some(Resume {
                marker: Some(next_marker),
                skip: 0,
            });
            break;
        }
        if at.marker.as_deref() == Some(next_marker.as_str()) {
            // The same marker again would loop forever.
            return Err(KmsError::new(
                ErrorKind::KmsInternal,
                format!("{operation}: the service returned the same NextMarker twice"),
            ));
        }
        if pages >= MAX_PAGES {
            return Err(KmsError::new(
                ErrorKind::KmsInternal,
                format!("{operation}: still truncated after {MAX_PAGES} pages; use --max-items"),
            ));
        }
        at = Resume {
            marker: Some(next_marker),
            skip: 0,
        };
    }
    let mut merged = merged.unwrap_or_default();
    merged.insert(paging.result_key.to_string(), Value::Array(items));
    if let Some(t) = next_token {
        merged.insert("NextToken".into(), json!(encode_token(&t)));
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let r = Resume {
            marker: Some("m".into()),
            skip: 3,
        };
        assert_eq!(decode_token("ListKeys", &encode_token(&r)).unwrap(), r);
        assert_eq!(
            decode_token("ListKeys", &encode_token(&Resume::default())).unwrap(),
            Resume::default()
        );
        for bad in ["%%", "bm90IGpzb24=", "eyJib3RvX3RydW5jYXRlX2Ftb3VudCI6LTF9"] {
            assert!(decode_token("ListKeys", bad).is_err(), "{bad}");
        }
    }
}

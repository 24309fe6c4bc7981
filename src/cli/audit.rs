//! `kmsfs audit`: list (and follow) the audit log with filters, and `kmsfs audit verify`.
//!
//! Read-only: never writes to the log.

use crate::audit::{verify, AuditError, DecisionFilter, Filter, Follower, Reader};
use crate::cli::output::{self, Doc};
use crate::cli::{GlobalOpts, OutputFormat};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Keep printing records as they are appended.
    #[arg(long)]
    pub follow: bool,
    /// Only records about this key (key id, key ARN or the alias named in the request).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Only records of this principal (ARN, its last part "alice", or a uid "1001").
    #[arg(long)]
    pub principal: Option<String>,
    /// Only allowed or only denied decisions.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// Only this operation ("Decrypt").
    #[arg(long)]
    pub event_name: Option<String>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain; exits 0 only if every record is intact.
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    Allowed,
    Denied,
}

/// Exit code of `verify` for a broken chain (and of listing for an unreadable log).
pub const EXIT_BROKEN: i32 = 1;

pub fn run(args: &AuditArgs, audit_path: &Path, global: &GlobalOpts) -> anyhow::Result<i32> {
    let stdout = std::io::stdout();
    run_with(
        args,
        audit_path,
        global.output,
        &mut stdout.lock(),
        &mut std::io::stderr(),
    )
}

/// [`run`] with explicit output streams (what tests drive).
pub fn run_with(
    args: &AuditArgs,
    audit_path: &Path,
    output: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    if !audit_path.exists() {
        writeln!(
            err,
            "kmsfs audit: no audit log at {} (is the store right?)",
            audit_path.display()
        )?;
        return Ok(EXIT_BROKEN);
    }
    match args.command {
        Some(AuditCommand::Verify) => run_verify(audit_path, output, out, err),
        None => run_list(args, audit_path, output, out, err),
    }
}

fn filter_of(args: &AuditArgs) -> Filter {
    Filter {
        key_id: args.key_id.clone(),
        principal: args.principal.clone(),
        decision: args.decision.map(|d| match d {
            DecisionArg::Allowed => DecisionFilter::Allowed,
            DecisionArg::Denied => DecisionFilter::Denied,
        }),
        event_name: args.event_name.clone(),
    }
}

fn run_verify(
    path: &Path,
    output: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    match verify(path) {
        Ok(report) => {
            let answer = serde_json::json!({"Intact": true, "Records": report.records,
                                            "LastSeq": report.last_seq, "LastHash": report.last_hash});
            let text = format!(
                "audit log {}: intact, {} records, last hash {}\n",
                path.display(),
                report.records,
                report.last_hash
            );
            out.write_all(render_answer(&answer, "Verify", text, output).as_bytes())?;
            Ok(0)
        }
        Err(AuditError::Corrupt { line, reason, .. }) => {
            let record = nth_line(path, line).unwrap_or_default();
            let answer = serde_json::json!({"Intact": false, "BrokenLine": line, "Reason": reason,
                                            "Record": record});
            let text = format!(
                "audit log {}: BROKEN at line {line}: {reason}\n{record}\n",
                path.display()
            );
            out.write_all(render_answer(&answer, "Verify", text, output).as_bytes())?;
            Ok(EXIT_BROKEN)
        }
        Err(e) => {
            writeln!(err, "kmsfs audit verify: {e}")?;
            Ok(EXIT_BROKEN)
        }
    }
}

/// The text of line `n` (1-based), cut to a readable length.
fn nth_line(path: &Path, n: u64) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let line = bytes
        .split(|b| *b == b'\n')
        .nth(usize::try_from(n.checked_sub(1)?).ok()?)?;
    let text = String::from_utf8_lossy(line);
    Some(if text.chars().count() > 4000 {
        format!("{}...", text.chars().take(4000).collect::<String>())
    } else {
        text.into_owned()
    })
}

fn run_list(
    args: &AuditArgs,
    path: &Path,
    output: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<i32> {
    let filter = filter_of(args);
    let mut damaged = false;
    let mut reader = Reader::open(path)?;
    for item in reader.by_ref() {
        match item {
            Ok((_, record)) => {
                if filter.matches(&record) && print_record(&record, output, out).is_err() {
                    return Ok(0); // stdout closed (e.g. `| head`)
                }
            }
            Err(e) => {
                damaged = true;
                writeln!(err, "kmsfs audit: skipping {e}")?;
            }
        }
    }
    if !args.follow {
        return Ok(if damaged { EXIT_BROKEN } else { 0 });
    }
    // Continue exactly where the listing stopped, so a record appended in between is
    // neither lost nor printed twice.
    let mut follower = Follower::open_at(path, reader.offset())?;
    loop {
        for record in follower.poll()? {
            if filter.matches(&record) && print_record(&record, output, out).is_err() {
                return Ok(0);
            }
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// `verify`'s answer. JSON stays on one line, as `verify` has always printed it.
fn render_answer(answer: &Value, title: &str, text: String, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => format!("{answer}\n"),
        other => output::render(&Doc::own(answer, title, text), other, false),
    }
}

/// JSON: the record as its one log line (so output can be piped to jq or another
/// CloudTrail tool). Text: one summary line per record. Table and YAML: one document
/// per record.
fn print_record(record: &Value, format: OutputFormat, out: &mut dyn Write) -> std::io::Result<()> {
    // One write per record, so a reader of our stdout never sees half a record.
    let line = match format {
        OutputFormat::Json => format!("{record}\n"),
        OutputFormat::Text => format!("{}\n", summary_line(record)),
        OutputFormat::Yaml => format!(
            "---\n{}",
            output::render(&Doc::aws(record, "AuditRecord"), format, true)
        ),
        OutputFormat::Table => output::render(&Doc::aws(record, "AuditRecord"), format, true),
    };
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// `time  seq  event  decision  principal  key  error`, tab-separated.
pub fn summary_line(r: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("-").to_string();
    let k = r.get("kmsfs");
    let decision = match k.and_then(|k| k.get("decision")) {
        Some(Value::Object(d)) => s(d.get("decision")),
        Some(Value::String(d)) => d.clone(),
        _ => "-".into(),
    };
    let principal = r
        .get("userIdentity")
        .and_then(|u| u.get("arn").or_else(|| u.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let key = r
        .get("resources")
        .and_then(|rs| rs.get(0))
        .and_then(|r| r.get("ARN"))
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let uid = k
        .and_then(|k| k.get("uid"))
        .and_then(Value::as_u64)
        .map_or("-".into(), |u| format!("uid={u}"));
    let seq = k
        .and_then(|k| k.get("seq"))
        .and_then(Value::as_u64)
        .map_or("-".into(), |n| n.to_string());
    [
        s(r.get("eventTime")),
        seq,
        s(r.get("eventName")),
        decision,
        principal,
        uid,
        key,
        s(r.get("errorCode")),
    ]
    .join("\t")
}

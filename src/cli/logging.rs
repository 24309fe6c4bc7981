//! Where a long-running command (`mount`, `serve`, `exec`) sends its `log` records, so
//! that every warning and error the library raises reaches something a person can read:
//! stderr in the foreground (journald picks it up under systemd), `--log-file FILE` or
//! syslog when daemonized. Every line names the mount point or socket it is about, since
//! one machine may run several kmsfs processes.
//!
//! The level is `--log-level` if given, else `RUST_LOG`, else `info` for kmsfs and
//! `warn` for the libraries under it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

/// The log options `mount`, `serve` and `exec` accept.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogOpts {
    /// Append the log to this file (default: stderr in the foreground, syslog when
    /// daemonized).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// error, warn, info, debug or trace, or a RUST_LOG-style filter
    /// (e.g. `kmsfs=debug,fuser=info`). Default: RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    File(PathBuf),
    Syslog,
}

/// The filter when neither `--log-level` nor `RUST_LOG` says otherwise: kmsfs's own
/// notices, and only problems from fuser (whose info lines repeat ours). fuser's mount
/// module warns when its own unmount finds the mount already detached by ours, which is
/// how every lazy unmount ends: only its errors are shown.
const DEFAULT_FILTER: &str = "info,fuser=warn,fuser::mnt=error";

impl LogOpts {
    /// The sink for a process that runs in the foreground or as a daemon.
    pub fn sink(&self, foreground: bool) -> Sink {
        match (&self.log_file, foreground) {
            (Some(f), _) => Sink::File(f.clone()),
            (None, true) => Sink::Stderr,
            (None, false) => Sink::Syslog,
        }
    }

    fn filter(&self, default: &str) -> String {
        if let Some(l) = self.log_level.as_deref().filter(|l| !l.is_empty()) {
            return l.to_string();
        }
        match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => v,
            _ => default.to_string(),
        }
    }

    /// Said before daemonizing, while the terminal is still there: a daemon whose log
    /// would go nowhere should not be a surprise.
    pub fn warn_if_unlogged(&self, foreground: bool) {
        if self.sink(foreground) == Sink::Syslog && !syslog_available() {
            eprintln!(
                "kmsfs: no syslog socket (/dev/log): this process will log nothing; \
                 give --log-file FILE to keep its log"
            );
        }
    }
}

fn syslog_available() -> bool {
    use std::os::unix::fs::FileTypeExt;
    // Sockets only: on Debian /var/run/log may be a plain directory.
    ["/dev/log", "/var/run/syslog", "/var/run/log"]
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
}

/// Installs the process's logger. `context` names what this process serves (e.g.
/// `mount /mnt/secret`) and prefixes every record. `default_filter` applies when neither
/// `--log-level` nor `RUST_LOG` is set. Call once, after daemonizing (a file or socket
/// opened before fork would be shared with the parent for nothing).
pub fn install(
    opts: &LogOpts,
    sink: Sink,
    context: &str,
    default_filter: Option<&str>,
) -> anyhow::Result<()> {
    let filter = opts.filter(default_filter.unwrap_or(DEFAULT_FILTER));
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter);
    let context = context.to_string();
    match sink {
        Sink::Stderr | Sink::File(_) => {
            if let Sink::File(path) = &sink {
                let file = open_log_file(path)?;
                builder.target(env_logger::Target::Pipe(Box::new(file)));
            } else {
                builder.target(env_logger::Target::Stderr);
            }
            builder.format(move |buf, record| {
                writeln!(
                    buf,
                    "{} kmsfs[{}] {}: {} {}: {}",
                    timestamp(),
                    std::process::id(),
                    context,
                    record.level(),
                    record.target(),
                    record.args()
                )
            });
            builder
                .try_init()
                .context("a logger is already installed in this process")?;
        }
        Sink::Syslog => {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "kmsfs".into(),
                pid: std::process::id(),
            };
            // No syslog daemon: the caller was told before daemonizing; log nothing.
            let Ok(writer) = syslog::unix(formatter) else {
                return Ok(());
            };
            let filter = builder.build();
            let max = filter.filter();
            let logger = SyslogLogger {
                filter,
                context,
                writer: Mutex::new(writer),
            };
            log::set_boxed_logger(Box::new(logger))
                .context("a logger is already installed in this process")?;
            log::set_max_level(max);
        }
    }
    Ok(())
}

/// Opens (creating, mode 0600: paths and principals may be in it) a log file for append.
fn open_log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("--log-file {}", path.display()))
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// env_logger's filter in front of a syslog connection: each record becomes one syslog
/// message at the matching severity, prefixed with what this process serves.
struct SyslogLogger {
    filter: env_logger::Logger,
    context: String,
    writer: Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>,
}

impl log::Log for SyslogLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let message = format!("{}: {}: {}", self.context, record.target(), record.args());
        // A poisoned lock only means another thread panicked mid-send: keep logging.
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nowhere to report a failure to log.
        let _ = match record.level() {
            log::Level::Error => w.err(message),
            log::Level::Warn => w.warning(message),
            log::Level::Info => w.info(message),
            log::Level::Debug | log::Level::Trace => w.debug(message),
        };
    }

    fn flush(&self) {}
}

//! The control socket's client, used by the CLI: one connection, reused for every call.

use super::protocol::{
    read_frame, write_frame, FrameError, RequestFrame, ResponseFrame, MAX_FRAME, PROTOCOL_VERSION,
};
use super::server::IDLE_TIMEOUT;
use super::ControlError;
use crate::kms::{ErrorKind, KmsError};
use serde_json::Value;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Something that answers AWS KMS operations in AWS's JSON shapes: the socket client,
/// or the key service itself when the CLI opens the store directly.
pub trait Backend {
    fn call(&self, operation: &str, request: Value) -> Result<Value, KmsError>;
}

/// How long a call waits for its answer before failing with DependencyTimeoutException.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to a key service's control socket.
pub struct SocketClient {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
    timeout: Duration,
}

struct Connection {
    stream: UnixStream,
    last_used: Instant,
}

impl SocketClient {
    /// Connects now, so "no service here" is reported before the first call.
    pub fn connect(path: &Path) -> Result<SocketClient, ControlError> {
        let stream = open_stream(path, CALL_TIMEOUT).map_err(|source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SocketClient {
            path: path.to_path_buf(),
            conn: Mutex::new(Some(Connection {
                stream,
                last_used: Instant::now(),
            })),
            timeout: CALL_TIMEOUT,
        })
    }

    /// Changes how long a call waits for its answer (default [`CALL_TIMEOUT`]).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        if let Ok(mut guard) = self.conn.lock() {
            if let Some(c) = guard.as_mut() {
                let _ = c.stream.set_read_timeout(Some(timeout));
            }
        }
        SocketClient { timeout, ..self }
    }

    /// Connects to the first of `paths` where a service answers.
    pub fn connect_first(paths: &[PathBuf]) -> Result<SocketClient, ControlError> {
        let mut last = None;
        for p in paths {
            match SocketClient::connect(p) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ControlError::Protocol("no control socket path to try".into())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn transport_error(&self, what: impl std::fmt::Display) -> KmsError {
        KmsError::new(
            ErrorKind::KmsInternal,
            format!("control socket {}: {what}", self.path.display()),
        )
    }

    fn exchange(&self, conn: &mut Connection, body: &[u8]) -> Result<Vec<u8>, (bool, KmsError)> {
        // `true`: nothing reached the server, so a retry on a fresh connection is safe.
        if let Err(e) = write_frame(&mut conn.stream, body) {
            // The server may have refused the connection with a parting frame (e.g.
            // LimitExceededException) before closing it: that is the answer to show.
            return match read_frame(&mut conn.stream, MAX_FRAME) {
                Ok(Some(parting)) => Ok(parting),
                _ => Err((true, self.transport_error(e))),
            };
        }
        conn.last_used = Instant::now();
        match read_frame(&mut conn.stream, MAX_FRAME) {
            Ok(Some(b)) => Ok(b),
            Ok(None) | Err(FrameError::Truncated) => Err((
                false,
                self.transport_error("the key service closed the connection before answering"),
            )),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err((
                    false,
                    KmsError::new(
                        ErrorKind::DependencyTimeout,
                        format!(
                            "the key service at {} did not answer within {:?}",
                            self.path.display(),
                            self.timeout
                        ),
                    ),
                ))
            }
            Err(e) => Err((false, self.transport_error(e))),
        }
    }
}

fn open_stream(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

impl Backend for SocketClient {
    fn call(&self, operation: &str, request: Value) -> Result<Value, KmsError> {
        let frame = RequestFrame {
            version: PROTOCOL_VERSION,
            operation: operation.to_string(),
            request,
        };
        let body = serde_json::to_vec(&frame).map_err(|e| self.transport_error(e))?;
        if body.len() > MAX_FRAME {
            return Err(KmsError::new(
                ErrorKind::Validation,
                format!("the request ({} bytes) exceeds the {MAX_FRAME}-byte limit of the control socket", body.len()),
            ));
        }
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // The server closes connections idle for IDLE_TIMEOUT; reconnect before that
        // rather than race it.
        if guard
            .as_ref()
            .is_some_and(|c| c.last_used.elapsed() >= IDLE_TIMEOUT / 2)
        {
            *guard = None;
        }
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            if guard.is_none() {
                let stream =
                    open_stream(&self.path, self.timeout).map_err(|e| self.transport_error(e))?;
                *guard = Some(Connection {
                    stream,
                    last_used: Instant::now(),
                });
            }
            let Some(conn) = guard.as_mut() else {
                return Err(self.transport_error("no connection"));
            };
            match self.exchange(conn, &body) {
                Ok(reply) => break reply,
                Err((retry_safe, e)) => {
                    *guard = None;
                    if !(retry_safe && attempts == 1) {
                        return Err(e);
                    }
                }
            }
        };
        drop(guard);
        match serde_json::from_slice::<ResponseFrame>(&reply) {
            Ok(ResponseFrame::Ok(v)) => Ok(v),
            Ok(ResponseFrame::Error(e)) => Err(match ErrorKind::from_aws_name(&e.kind) {
                Some(kind) => KmsError::new(kind, e.message),
                // A name this build does not know: keep it visible in the message.
                None => KmsError::new(ErrorKind::KmsInternal, format!("{}: {}", e.kind, e.message)),
            }),
            Err(e) => Err(self.transport_error(format!("malformed response: {e}"))),
        }
    }
}

//! The control socket's server: accepts connections, takes each caller's identity from
//! the kernel (SO_PEERCRED), and answers framed requests through a [`Handler`].
//!
//! Never trusts anything a client sends about who it is, and never lets one bad client
//! (garbage, oversized frames, a panic in the handler, a stalled connection) stop the
//! others from being served.

use super::protocol::{
    parse_request, read_frame, write_frame, FrameError, ResponseFrame, MAX_FRAME,
};
use super::ControlError;
use crate::kms::provider::Caller;
use crate::kms::KmsError;
use serde_json::Value;
use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Serves one operation for one caller. Implemented by the key service.
pub trait Handler: Send + Sync {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError>;
}

/// Connections served at once by default; each has a thread. Further connections get
/// a `LimitExceededException` frame and are closed.
pub const MAX_CONNECTIONS: usize = 128;

/// By default, a connection with no complete request for this long is closed, so idle
/// or stalled clients cannot hold the connection slots forever. The client reconnects
/// by itself.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the accept loop checks for shutdown even if nothing wakes it.
const SHUTDOWN_POLL_MS: i32 = 250;

/// A bound, not yet serving, control socket.
pub struct Server {
    path: PathBuf,
    listener: UnixListener,
    /// (dev, ino) of the socket we created: shutdown removes the path only if it is still
    /// ours, never a socket another server bound after us.
    identity: (u64, u64),
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
    max_connections: usize,
    idle_timeout: Duration,
}

struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Open connections, so shutdown can close them.
    conns: Mutex<HashMap<u64, UnixStream>>,
}

/// Stops a running server from another thread (or a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    path: PathBuf,
    shared: Arc<Shared>,
}

/// A server running on its own thread; dropping it shuts the server down.
pub struct RunningServer {
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<Result<(), ControlError>>>,
}

impl Server {
    /// Creates the parent directory (0755) if needed, replaces a stale socket (one no
    /// server answers on), binds, and makes the socket 0666: who may do what is decided
    /// by policy on the peer's credentials, not by file modes.
    pub fn bind(path: &Path, handler: Arc<dyn Handler>) -> Result<Server, ControlError> {
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io)?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(ControlError::AlreadyServing(path.to_path_buf())),
                Err(_) => std::fs::remove_file(path).map_err(io)?,
            },
            Ok(_) => return Err(ControlError::NotASocket(path.to_path_buf())),
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io)?;
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(Server {
            path: path.to_path_buf(),
            listener,
            identity: (meta.dev(), meta.ino()),
            handler,
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                conns: Mutex::new(HashMap::new()),
            }),
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        })
    }

    /// Caps the connections served at once (default [`MAX_CONNECTIONS`]).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Closes connections idle (or stalled mid-frame) this long (default [`IDLE_TIMEOUT`]).
    pub fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            path: self.path.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`], then closes every connection and removes
    /// the socket.
    pub fn run(self) -> Result<(), ControlError> {
        let result = self.accept_loop();
        self.close_connections();
        self.remove_socket();
        result
    }

    /// Serves on a new thread.
    pub fn spawn(self) -> Result<RunningServer, ControlError> {
        let shutdown = self.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("kmsfs-control".into())
            .spawn(move || self.run())
            .map_err(|source| ControlError::Io {
                path: shutdown.path.clone(),
                source,
            })?;
        Ok(RunningServer {
            shutdown,
            thread: Some(thread),
        })
    }

    /// Waits up to SHUTDOWN_POLL_MS for a connection to accept.
    fn wait_readable(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd whose descriptor the listener keeps open.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, SHUTDOWN_POLL_MS) };
        rc > 0
    }

    fn accept_loop(&self) -> Result<(), ControlError> {
        loop {
            // Polling (rather than blocking in accept) lets shutdown work even when the
            // wake-up connection cannot reach us, e.g. the socket file was removed.
            let ready = self.wait_readable();
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            if !ready {
                continue;
            }
            let accepted = self.listener.accept();
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // A client that gave up before we accepted, or a transient shortage:
                // keep serving the others.
                Err(e) => {
                    log::warn!("control socket {}: accept: {e}", self.path.display());
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    continue;
                }
            };
            self.start_connection(stream);
        }
    }

    fn start_connection(&self, mut stream: UnixStream) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            if conns.len() >= self.max_connections {
                drop(conns);
                // Never let a client that does not read stall the accept loop.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = send(
                    &mut stream,
                    &ResponseFrame::error(
                        "LimitExceededException",
                        format!(
                            "the key service is serving {} connections; retry later",
                            self.max_connections
                        ),
                    ),
                );
                return;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    conns.insert(id, clone);
                }
                Err(e) => {
                    log::warn!("control socket: cannot track connection: {e}");
                    return;
                }
            }
        }
        let handler = self.handler.clone();
        let shared = self.shared.clone();
        let idle = self.idle_timeout;
        let spawned = std::thread::Builder::new()
            .name(format!("kmsfs-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, handler.as_ref(), idle);
                shared
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        if let Err(e) = spawned {
            log::warn!("control socket: cannot start a connection thread: {e}");
            self.shared
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }

    fn close_connections(&self) {
        let conns =
            std::mem::take(&mut *self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for stream in conns.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn remove_socket(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl ShutdownHandle {
    /// Asks the server to stop; `run` returns soon after.
    pub fn shutdown(&self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            // Wake the blocking accept; the loop sees the flag and returns.
            let _ = UnixStream::connect(&self.path);
        }
    }
}

impl RunningServer {
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the server and waits for its accept thread (connection threads end as
    /// their sockets are shut down).
    pub fn stop(mut self) -> Result<(), ControlError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), ControlError> {
        self.shutdown.shutdown();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(ControlError::Protocol(
                    "the control server thread panicked".into(),
                ))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// The caller as the kernel recorded it when the peer connected.
fn peer_caller(stream: &UnixStream) -> std::io::Result<Caller> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: u32::try_from(cred.pid()).unwrap_or(0),
    })
}

fn send(stream: &mut UnixStream, response: &ResponseFrame) -> Result<(), FrameError> {
    let body = match serde_json::to_vec(response) {
        Ok(b) if b.len() <= MAX_FRAME => b,
        Ok(b) => serde_json::to_vec(&ResponseFrame::error(
            "LimitExceededException",
            format!("the response ({} bytes) exceeds the {MAX_FRAME}-byte frame limit; page with Limit/Marker", b.len()),
        ))
        .unwrap_or_default(),
        Err(e) => serde_json::to_vec(&ResponseFrame::error("KMSInternalException", format!("cannot encode response: {e}")))
            .unwrap_or_default(),
    };
    write_frame(stream, &body)
}

fn serve_connection(mut stream: UnixStream, handler: &dyn Handler, idle: Duration) {
    let caller = match peer_caller(&stream) {
        Ok(c) => c,
        Err(e) => {
            // Without the kernel's word on who this is, nothing can be authorized.
            let _ = send(
                &mut stream,
                &ResponseFrame::error("AccessDeniedException", format!("no peer credentials: {e}")),
            );
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(idle));
    let _ = stream.set_write_timeout(Some(idle));
    loop {
        let body = match read_frame(&mut stream, MAX_FRAME) {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(FrameError::TooLarge { len, max }) => {
                // The rest of the stream is unframed now: answer, then close.
                let _ = send(
                    &mut stream,
                    &ResponseFrame::error(
                        "ValidationException",
                        format!("frame of {len} bytes exceeds the {max}-byte limit"),
                    ),
                );
                return;
            }
            Err(_) => return,
        };
        let response = match parse_request(&body) {
            Ok(req) => dispatch(handler, &caller, &req.operation, req.request),
            Err(refusal) => refusal,
        };
        if send(&mut stream, &response).is_err() {
            return;
        }
    }
}

fn dispatch(
    handler: &dyn Handler,
    caller: &Caller,
    operation: &str,
    request: Value,
) -> ResponseFrame {
    // A panic in the handler is a bug, but it must cost one request, not the server.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.call(caller, operation, request)
    }));
    match result {
        Ok(Ok(value)) => ResponseFrame::Ok(value),
        Ok(Err(e)) => ResponseFrame::error(e.kind.aws_name(), e.message),
        Err(_) => ResponseFrame::error(
            "KMSInternalException",
            format!("internal error while serving {operation}"),
        ),
    }
}

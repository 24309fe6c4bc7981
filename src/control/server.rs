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
use std::time::{Duration, Instant};

/// Serves one operation for one caller. Implemented by the key service.
pub trait Handler: Send + Sync {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError>;
}

/// Connections served at once by default; each has a thread. Further connections get
/// a `LimitExceededException` frame and are closed.
pub const MAX_CONNECTIONS: usize = 128;

/// Connections one uid may hold at once by default (root and the store owner excepted),
/// so that one local user cannot take every slot.
pub const MAX_CONNECTIONS_PER_UID: usize = 16;

/// Slots kept free by default for root and the store owner: other uids are refused once
/// only these remain, so the owner can always reach (and administer) the service.
pub const RESERVED_CONNECTIONS: usize = 8;

/// By default, a connection with no request for this long is closed, so idle clients
/// cannot hold the connection slots forever. The client reconnects by itself.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// By default, a frame (request or response) must be complete this long after its first
/// byte, however the bytes trickle in: a client that sends one byte at a time cannot
/// hold its connection (and thread) longer than this per frame. Frames are at most
/// [`MAX_FRAME`] bytes over a local socket, which takes milliseconds.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

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
    limits: Limits,
}

/// What one connection, and one uid, may hold.
#[derive(Debug, Clone)]
struct Limits {
    max_connections: usize,
    max_per_uid: usize,
    reserved: usize,
    /// Besides root: uids the reserve is kept for and the per-uid cap spares.
    privileged: Vec<u32>,
    idle: Duration,
    frame: Duration,
}

impl Limits {
    fn is_privileged(&self, uid: u32) -> bool {
        uid == 0 || self.privileged.contains(&uid)
    }

    /// Why a new connection from `uid` is refused, if it is.
    fn refusal(&self, uid: u32, open: usize, open_by_uid: usize) -> Option<String> {
        if open >= self.max_connections {
            return Some(format!(
                "the key service is serving {} connections; retry later",
                self.max_connections
            ));
        }
        if self.is_privileged(uid) {
            return None;
        }
        if open_by_uid >= self.max_per_uid {
            return Some(format!(
                "uid {uid} already has {} connections to the key service (the limit per uid); close some or retry later",
                self.max_per_uid
            ));
        }
        if open.saturating_add(self.reserved) >= self.max_connections {
            return Some(format!(
                "the key service is serving {open} connections; the remaining {} are reserved for root and the store owner; retry later",
                self.max_connections - open
            ));
        }
        None
    }
}

struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Open connections with their peer uid, so shutdown can close them and the limits
    /// can be counted.
    conns: Mutex<HashMap<u64, (u32, UnixStream)>>,
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
            limits: Limits {
                max_connections: MAX_CONNECTIONS,
                max_per_uid: MAX_CONNECTIONS_PER_UID,
                reserved: RESERVED_CONNECTIONS,
                privileged: Vec::new(),
                idle: IDLE_TIMEOUT,
                frame: FRAME_TIMEOUT,
            },
        })
    }

    /// Caps the connections served at once (default [`MAX_CONNECTIONS`]).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// Caps the connections one uid other than root and the privileged uids may hold
    /// (default [`MAX_CONNECTIONS_PER_UID`]).
    pub fn with_max_connections_per_uid(mut self, n: usize) -> Self {
        self.limits.max_per_uid = n.max(1);
        self
    }

    /// Keeps this many slots for root and the privileged uids (default
    /// [`RESERVED_CONNECTIONS`]).
    pub fn with_reserved_connections(mut self, n: usize) -> Self {
        self.limits.reserved = n;
        self
    }

    /// Treats `uid` like root for the reserve and the per-uid cap: the store owner.
    pub fn with_privileged_uid(mut self, uid: u32) -> Self {
        if !self.limits.privileged.contains(&uid) {
            self.limits.privileged.push(uid);
        }
        self
    }

    /// Closes connections with no request for this long, and connections stalled this
    /// long in the middle of a frame (default [`IDLE_TIMEOUT`]).
    pub fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.limits.idle = t;
        self
    }

    /// Closes a connection whose frame is not complete this long after its first byte
    /// (default [`FRAME_TIMEOUT`]); also bounds writing each response.
    pub fn with_frame_timeout(mut self, t: Duration) -> Self {
        self.limits.frame = t;
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
        // Never let a client that does not read stall the accept loop.
        let refuse = |stream: &mut UnixStream, kind: &str, message: String| {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = send(stream, &ResponseFrame::error(kind, message), None);
        };
        let caller = match peer_caller(&stream) {
            Ok(c) => c,
            Err(e) => {
                // Without the kernel's word on who this is, nothing can be authorized
                // or counted.
                refuse(
                    &mut stream,
                    "AccessDeniedException",
                    format!("no peer credentials: {e}"),
                );
                return;
            }
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            let by_uid = conns.values().filter(|(u, _)| *u == caller.uid).count();
            if let Some(why) = self.limits.refusal(caller.uid, conns.len(), by_uid) {
                drop(conns);
                log::debug!("control socket: refusing uid {}: {why}", caller.uid);
                refuse(&mut stream, "LimitExceededException", why);
                return;
            }
            match stream.try_clone() {
                Ok(clone) => {
                    conns.insert(id, (caller.uid, clone));
                }
                Err(e) => {
                    log::warn!("control socket: cannot track connection: {e}");
                    return;
                }
            }
        }
        let handler = self.handler.clone();
        let shared = self.shared.clone();
        let limits = self.limits.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kmsfs-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, caller, handler.as_ref(), &limits);
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
        for (_, stream) in conns.values() {
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

/// Writes a response; with a deadline, the whole frame must be written by then (a
/// client that reads slowly cannot hold the thread).
fn send(
    stream: &mut UnixStream,
    response: &ResponseFrame,
    deadline: Option<Instant>,
) -> Result<(), FrameError> {
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
    match deadline {
        None => write_frame(stream, &body),
        Some(deadline) => {
            let mut w = DeadlineStream { stream, deadline };
            write_frame(&mut w, &body)
        }
    }
}

/// A stream whose every read or write must finish by `deadline`: each system call gets
/// the time that is left (at most `cap` for reads), so trickling bytes does not extend
/// it. Past the deadline, calls fail with `TimedOut`.
struct DeadlineStream<'s> {
    stream: &'s mut UnixStream,
    deadline: Instant,
}

impl DeadlineStream<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::Error::new(
                IoKind::TimedOut,
                "the frame was not complete in time",
            ))
        } else {
            Ok(left)
        }
    }
}

impl std::io::Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// Reads frames under the connection's limits: the first byte of a frame may take up
/// to the idle timeout; from then on the rest must arrive within the frame timeout, and
/// no single wait in the middle of a frame may exceed the idle timeout either.
struct FrameReader<'s> {
    stream: &'s mut UnixStream,
    idle: Duration,
    frame: Duration,
    /// Set once the current frame's first byte arrived.
    deadline: Option<Instant>,
}

impl std::io::Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = match self.deadline {
            None => self.idle,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        IoKind::TimedOut,
                        "the frame was not complete in time",
                    ));
                }
                left.min(self.idle)
            }
        };
        // A zero timeout means "block forever" to the socket API: never pass one.
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let n = self.stream.read(buf)?;
        if n > 0 && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.frame);
        }
        Ok(n)
    }
}

fn serve_connection(
    mut stream: UnixStream,
    caller: Caller,
    handler: &dyn Handler,
    limits: &Limits,
) {
    loop {
        let mut reader = FrameReader {
            stream: &mut stream,
            idle: limits.idle,
            frame: limits.frame,
            deadline: None,
        };
        let body = match read_frame(&mut reader, MAX_FRAME) {
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
                    Some(Instant::now() + limits.frame),
                );
                return;
            }
            // Idle too long, a frame not complete in time, a closed or broken stream.
            Err(_) => return,
        };
        let response = match parse_request(&body) {
            Ok(req) => dispatch(handler, &caller, &req.operation, req.request),
            Err(refusal) => refusal,
        };
        if send(&mut stream, &response, Some(Instant::now() + limits.frame)).is_err() {
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

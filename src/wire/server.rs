//! The HTTP/1.1 endpoint: hyper on a small tokio runtime of its own, plain or TLS
//! (rustls, ring provider), with a bounded number of connections, per-connection
//! deadlines ([`super::deadlines`]), a request body limit, and graceful shutdown.
//!
//! Key service calls block (store I/O, fsync), so each runs on tokio's bounded blocking
//! pool, never on a reactor thread: a slow call never delays another connection.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};

use super::deadlines::{DeadlineIo, Deadlines, Phase};
use super::protocol::{self, ApiError, WireRequest, JSON_CONTENT_TYPE};
use super::WireBackend;
use crate::kms::clock::Clock;

/// Largest request body accepted by default (KMS's largest inputs, a 4 KiB plaintext
/// or a policy of 32 KiB, base64-encoded, fit many times over).
pub const MAX_BODY: usize = 1 << 20;
/// Connections served at once by default; further ones are accepted and closed.
pub const MAX_CONNECTIONS: usize = 4096;
/// A request head must be complete this long after its first byte.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must be complete this long after its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A write that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// File descriptors kept for the store, the audit log, the control socket and FUSE.
const FDS_KEPT: u64 = 256;
/// Blocking threads for key service calls (the pool is bounded; excess calls queue).
const BLOCKING_THREADS: usize = 16;

/// The certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct WireConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub max_body: usize,
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl WireConfig {
    /// The defaults above, on `listen`, without TLS.
    pub fn new(listen: SocketAddr) -> Self {
        WireConfig {
            listen,
            tls: None,
            max_body: MAX_BODY,
            max_connections: MAX_CONNECTIONS,
            head_timeout: HEAD_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("refusing to serve plain HTTP on {0}, which is not a loopback address: responses carry plaintext data keys; give --tls-cert and --tls-key")]
    PlainNonLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS {what} {}: {message}", path.display())]
    Tls {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    #[error("cannot start the HTTP endpoint's runtime: {0}")]
    Runtime(std::io::Error),
}

/// What every connection task shares.
struct Shared {
    backend: Arc<dyn WireBackend>,
    clock: Arc<dyn Clock>,
    config: WireConfig,
}

/// A bound endpoint, not yet serving.
pub struct WireServer {
    runtime: tokio::runtime::Runtime,
    listener: StdListener,
    local: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
}

impl WireServer {
    /// Loads TLS (if asked), raises the descriptor limit, and binds. Refuses plain HTTP
    /// on a non-loopback address.
    pub fn bind(
        mut config: WireConfig,
        backend: Arc<dyn WireBackend>,
        clock: Arc<dyn Clock>,
    ) -> Result<WireServer, WireError> {
        if config.tls.is_none() && !config.listen.ip().is_loopback() {
            return Err(WireError::PlainNonLoopback(config.listen));
        }
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        config.max_connections = connection_cap(config.max_connections);
        let listener = StdListener::bind(config.listen).map_err(|source| WireError::Bind {
            addr: config.listen,
            source,
        })?;
        let bind_err = |source| WireError::Bind {
            addr: config.listen,
            source,
        };
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("kmsfs-http")
            .enable_all()
            .build()
            .map_err(WireError::Runtime)?;
        Ok(WireServer {
            runtime,
            listener,
            local,
            tls,
            shared: Arc::new(Shared {
                backend,
                clock,
                config,
            }),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `http://ADDR` or `https://ADDR`, for the start-up line.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local)
    }

    /// Starts serving on the endpoint's own threads.
    pub fn spawn(self) -> Result<Running, WireError> {
        let (stop, stopped) = watch::channel(false);
        let listener = {
            let _entered = self.runtime.enter();
            tokio::net::TcpListener::from_std(self.listener).map_err(WireError::Runtime)?
        };
        let done = self.runtime.spawn(accept_loop(
            listener,
            self.tls.map(Arc::new),
            self.shared,
            stopped,
        ));
        Ok(Running {
            runtime: Some(self.runtime),
            stop,
            done: Some(done),
        })
    }
}

/// A serving endpoint; [`Running::stop`] (or dropping it) shuts it down gracefully.
pub struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (bounded), and closes.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let (Some(rt), Some(done)) = (self.runtime.take(), self.done.take()) {
            let _ = rt.block_on(async {
                tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), done).await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Raises the soft descriptor limit to the hard one, and caps connections below it so
/// that accepting never exhausts descriptors the service itself needs.
fn connection_cap(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let room = usize::try_from(soft.saturating_sub(FDS_KEPT)).unwrap_or(usize::MAX);
    let cap = wanted.min(room).max(1);
    if cap < wanted {
        log::warn!(
            "serving at most {cap} HTTP connections: the descriptor limit is {soft} (raise it with ulimit -n)"
        );
    }
    cap
}

fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, WireError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |what, path: &Path, message: String| WireError::Tls {
        what,
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_err("certificate", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            &files.cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls_err("private key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WireError::TlsConfig(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            WireError::TlsConfig(format!(
                "the key {} does not fit the certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let max = shared.config.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Beyond the cap the connection is closed at once: the descriptor is
                    // released and the client sees a reset rather than a hang.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (shared, tls, stopped) = (shared.clone(), tls.clone(), stopped.clone());
                    tokio::spawn(async move {
                        serve_connection(stream, peer, tls, shared, stopped).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning on the error.
                    log::warn!("accepting an HTTP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    // Every slot back means every connection has finished.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    let phase = Arc::new(Phase::default());
    let cfg = &shared.config;
    let io = DeadlineIo::new(
        stream,
        phase.clone(),
        Deadlines {
            idle: cfg.idle_timeout,
            head: cfg.head_timeout,
            write: cfg.write_timeout,
        },
    );
    match tls {
        None => serve_http(io, peer, phase, shared, stopped).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(cfg.head_timeout, acceptor.accept(io)).await;
            match handshake {
                Ok(Ok(tls_stream)) => serve_http(tls_stream, peer, phase, shared, stopped).await,
                Ok(Err(e)) => log::debug!("TLS handshake with {peer}: {e}"),
                Err(_) => log::debug!("TLS handshake with {peer}: deadline passed"),
            }
        }
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    phase: Arc<Phase>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |req| {
            let (shared, phase) = (shared.clone(), phase.clone());
            async move {
                phase.busy();
                let response = answer(req, peer, &shared).await;
                phase.idle();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // Deadlines live in DeadlineIo; hyper's own would include the idle wait.
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                log::debug!("HTTP connection from {peer}: {e}");
            }
        }
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn json_response(status: u16, body: Vec<u8>, request_id: &str, close: bool) -> Answer {
    let mut builder = Response::builder()
        .status(status)
        .header("Content-Type", JSON_CONTENT_TYPE)
        .header("x-amzn-RequestId", request_id);
    if close {
        builder = builder.header("Connection", "close");
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error_response(e: &ApiError, request_id: &str, close: bool) -> Answer {
    json_response(e.status, e.body(), request_id, close)
}

/// Reads one request (bounded in size and time), runs it on the blocking pool, and
/// shapes the answer.
async fn answer(req: Request<Incoming>, peer: SocketAddr, shared: &Arc<Shared>) -> Answer {
    let request_id = protocol::new_request_id();
    let cfg = &shared.config;
    let too_large = || {
        ApiError::new(
            413,
            "RequestEntityTooLargeException",
            format!("the request body exceeds {} bytes", cfg.max_body),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body as u64) {
        // Answer before reading: the connection closes, the body is never buffered.
        return error_response(&too_large(), &request_id, true);
    }
    let (parts, body) = req.into_parts();
    let collected =
        tokio::time::timeout(cfg.body_timeout, Limited::new(body, cfg.max_body).collect()).await;
    let body = match collected {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(&too_large(), &request_id, true)
        }
        Ok(Err(_)) => {
            let e = ApiError::new(
                400,
                "SerializationException",
                "the request body could not be read",
            );
            return error_response(&e, &request_id, true);
        }
        Err(_) => {
            let e = ApiError::new(
                408,
                "RequestTimeoutException",
                format!(
                    "the request body was not complete within {} s",
                    cfg.body_timeout.as_secs()
                ),
            );
            return error_response(&e, &request_id, true);
        }
    };
    let wire = WireRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        source_ip: peer.ip().to_string(),
    };
    let shared = shared.clone();
    let rid = request_id.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        protocol::handle(shared.backend.as_ref(), shared.clock.now(), &wire, &rid)
    })
    .await;
    match outcome {
        Ok(Ok(value)) => json_response(200, value.to_string().into_bytes(), &request_id, false),
        Ok(Err(e)) => error_response(&e, &request_id, false),
        // The handler panicked: the endpoint goes on; the caller learns nothing more.
        Err(_) => error_response(
            &ApiError::new(500, "KMSInternalException", "internal error"),
            &request_id,
            false,
        ),
    }
}

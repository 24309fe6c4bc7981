//! The control socket end to end: a real Unix socket, a test handler that echoes the
//! caller the server saw, clients in this process and in a child process that switched
//! to another uid.

use kmsfs::control::protocol::{read_frame, write_frame, MAX_FRAME};
use kmsfs::control::{Backend, ControlError, Handler, Server, SocketClient};
use kmsfs::kms::provider::Caller;
use kmsfs::kms::{ErrorKind, KmsError};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Echoes who called and what; "Missing" fails like an unknown key, "Panic" panics.
struct EchoHandler;

impl Handler for EchoHandler {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError> {
        match operation {
            "Missing" => Err(KmsError::new(
                ErrorKind::NotFound,
                "Key 'arn:aws:kms:local:1:key/x' does not exist",
            )),
            "Panic" => panic!("handler bug"),
            "Big" => Ok(json!({"Blob": "x".repeat(MAX_FRAME)})),
            _ => Ok(
                json!({"Uid": caller.uid, "Gid": caller.gid, "Pid": caller.pid, "Operation": operation, "Request": request}),
            ),
        }
    }
}

fn socket_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // Other uids must reach the socket (the tempdir is 0700 by default).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("run").join("kmsfs").join("kms.sock");
    (dir, path)
}

fn start(path: &Path) -> kmsfs::control::RunningServer {
    Server::bind(path, Arc::new(EchoHandler))
        .unwrap()
        .spawn()
        .unwrap()
}

/// Sends a raw frame body and reads one raw response frame.
fn raw_exchange(stream: &mut UnixStream, body: &[u8]) -> Value {
    write_frame(stream, body).unwrap();
    let reply = read_frame(stream, MAX_FRAME)
        .unwrap()
        .expect("a response frame");
    serde_json::from_slice(&reply).unwrap()
}

fn error_type(v: &Value) -> &str {
    v["Error"]["__type"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error response: {v}"))
}

#[test]
fn bind_creates_a_world_writable_socket_in_a_0755_directory_and_shutdown_removes_it() {
    let (_dir, path) = socket_dir();
    let server = start(&path);
    let parent_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let sock_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!((parent_mode, sock_mode), (0o755, 0o666));
    server.stop().unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_or_a_regular_file_is_not() {
    let (_dir, path) = socket_dir();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a dead socket file
    let server = start(&path);
    assert!(matches!(
        Server::bind(&path, Arc::new(EchoHandler)),
        Err(ControlError::AlreadyServing(_))
    ));
    let client = SocketClient::connect(&path).unwrap();
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
    server.stop().unwrap();

    std::fs::write(&path, b"not a socket").unwrap();
    assert!(matches!(
        Server::bind(&path, Arc::new(EchoHandler)),
        Err(ControlError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

#[test]
fn caller_is_the_peer_credentials_of_this_process() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let client = SocketClient::connect(&path).unwrap();
    let reply = client
        .call("Echo", json!({"KeyId": "k", "Uid": 4321}))
        .unwrap();
    assert_eq!(reply["Uid"], nix::unistd::getuid().as_raw());
    assert_eq!(reply["Gid"], nix::unistd::getgid().as_raw());
    assert_eq!(reply["Pid"], std::process::id());
    assert_eq!(reply["Request"], json!({"KeyId": "k", "Uid": 4321}));
}

#[test]
fn caller_is_the_real_uid_of_a_child_that_switched_uid() {
    if !nix::unistd::geteuid().is_root() {
        // Switching uid needs root; this environment (CI, the dev box) runs as root.
        // Without it the test still exercises this process's identity below.
        let (_dir, path) = socket_dir();
        let _server = start(&path);
        let reply = SocketClient::connect(&path)
            .unwrap()
            .call("Echo", json!({}))
            .unwrap();
        assert_eq!(reply["Uid"], nix::unistd::getuid().as_raw());
        return;
    }
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only switches ids, talks to the socket, writes to a pipe and
    // calls _exit; it never returns into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let id = 1234;
            let switched = nix::unistd::setgroups(&[]).is_ok()
                && nix::unistd::setresgid(id.into(), id.into(), id.into()).is_ok()
                && nix::unistd::setresuid(id.into(), id.into(), id.into()).is_ok();
            let out = if !switched {
                "setresuid failed".to_string()
            } else {
                // The child claims to be root in every way a request could.
                match SocketClient::connect(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        c.call("Echo", json!({"Uid": 0, "Caller": {"uid": 0, "gid": 0}}))
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(v) => v.to_string(),
                    Err(e) => e,
                }
            };
            let mut w = std::fs::File::from(write_end);
            let _ = w.write_all(out.as_bytes());
            drop(w);
            // SAFETY: leaves without running the harness's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            let mut out = String::new();
            std::fs::File::from(read_end)
                .read_to_string(&mut out)
                .unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();
            let reply: Value =
                serde_json::from_str(&out).unwrap_or_else(|_| panic!("child said: {out}"));
            assert_eq!(reply["Uid"], 1234);
            assert_eq!(reply["Gid"], 1234);
            assert_eq!(reply["Pid"], child.as_raw());
        }
    }
}

#[test]
fn malformed_requests_get_errors_and_the_connection_keeps_serving() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"not json", "ValidationException"),
        (b"", "ValidationException"),
        (b"\xff\xfe\x00garbage", "ValidationException"),
        (
            br#"{"Version":2,"Operation":"Decrypt","Request":{}}"#,
            "UnsupportedOperationException",
        ),
        (br#"{"Version":1,"Request":{}}"#, "ValidationException"),
        (
            br#"{"Version":1,"Operation":"Decrypt","Request":"x"}"#,
            "ValidationException",
        ),
        (
            br#"{"Version":1,"Operation":"Missing","Request":{}}"#,
            "NotFoundException",
        ),
        (
            br#"{"Version":1,"Operation":"Panic","Request":{}}"#,
            "KMSInternalException",
        ),
        (
            br#"{"Version":1,"Operation":"Big","Request":{}}"#,
            "LimitExceededException",
        ),
    ];
    for (body, want) in cases {
        let reply = raw_exchange(&mut s, body);
        assert_eq!(
            error_type(&reply),
            *want,
            "{}",
            String::from_utf8_lossy(body)
        );
        // The same connection still answers a good request.
        let ok = raw_exchange(&mut s, br#"{"Version":1,"Operation":"Ping","Request":{}}"#);
        assert_eq!(ok["Ok"]["Operation"], "Ping");
    }
}

#[test]
fn oversized_frame_gets_an_error_and_closes_only_that_connection() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let bystander = SocketClient::connect(&path).unwrap();
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
        .unwrap();
    let reply: Value =
        serde_json::from_slice(&read_frame(&mut s, MAX_FRAME).unwrap().unwrap()).unwrap();
    assert_eq!(error_type(&reply), "ValidationException");
    assert!(reply["Error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds"));
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap_or(0),
        0,
        "connection closed after the error"
    );
    assert_eq!(
        bystander.call("Ping", json!({})).unwrap()["Operation"],
        "Ping"
    );

    // The client refuses to send an oversized request at all.
    let err = bystander
        .call("Echo", json!({"Plaintext": "x".repeat(MAX_FRAME)}))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation);
}

#[test]
fn half_sent_frames_and_hung_clients_do_not_block_others() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    // A client that sends half a length and hangs, and one that sends half a body and
    // leaves.
    let mut hung = UnixStream::connect(&path).unwrap();
    hung.write_all(&[0, 0]).unwrap();
    let mut quitter = UnixStream::connect(&path).unwrap();
    quitter.write_all(&[0, 0, 0, 50, b'{']).unwrap();
    drop(quitter);
    let client = SocketClient::connect(&path).unwrap();
    for i in 0..10 {
        assert_eq!(
            client.call("Echo", json!({"N": i})).unwrap()["Request"]["N"],
            i
        );
    }
    drop(hung);
}

#[test]
fn handler_errors_reach_the_client_with_their_aws_names() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let client = SocketClient::connect(&path).unwrap();
    let err = client.call("Missing", json!({})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("does not exist"));
}

#[test]
fn eight_concurrent_clients_each_get_their_own_answers() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let client = SocketClient::connect(&path).unwrap();
                for i in 0..300 {
                    let reply = client.call("Echo", json!({"T": t, "I": i})).unwrap();
                    assert_eq!(reply["Request"], json!({"T": t, "I": i}));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn client_reconnects_after_the_service_restarts() {
    let (_dir, path) = socket_dir();
    let server = start(&path);
    let client = SocketClient::connect(&path).unwrap();
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
    server.stop().unwrap();
    let err = client.call("Ping", json!({})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::KmsInternal, "no service: {err}");
    let _server = start(&path);
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Figures for the report: `cargo test --release --test control_socket roundtrip -- --nocapture`.
#[test]
fn roundtrip_latency_and_throughput() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    let client = SocketClient::connect(&path).unwrap();
    let request =
        json!({"KeyId": "alias/kmsfs/default", "EncryptionContext": {"kmsfs:volume": "v"}});
    for _ in 0..200 {
        client.call("Echo", request.clone()).unwrap();
    }
    let n = 5000;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        client.call("Echo", request.clone()).unwrap();
        lat.push(t.elapsed());
    }
    let one_client_rate = n as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));

    let per_client = 2000;
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let client = SocketClient::connect(&path).unwrap();
                for _ in 0..per_client {
                    client.call("Echo", request.clone()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let eight_rate = (8 * per_client) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "control round trip: 1 client p50 {:.1}us p99 {:.1}us {:.0} ops/s; 8 clients {:.0} ops/s",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        one_client_rate,
        eight_rate
    );
    // Loose bound for an unoptimized build on a busy 2-core machine: a round trip that
    // takes milliseconds would mean a stall (Nagle-like batching, a sleep, a lock).
    assert!(p50 < Duration::from_millis(5), "p50 {p50:?}");
}

/// Blocks in "Slow" until told to go, so tests can hold a request in flight.
struct SlowHandler(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

impl Handler for SlowHandler {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError> {
        if operation == "Slow" {
            let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
        EchoHandler.call(caller, operation, request)
    }
}

#[test]
fn connections_beyond_the_cap_are_refused_with_limit_exceeded_and_slots_free_up() {
    let (_dir, path) = socket_dir();
    let _server = Server::bind(&path, Arc::new(EchoHandler))
        .unwrap()
        .with_max_connections(2)
        .spawn()
        .unwrap();
    let a = SocketClient::connect(&path).unwrap();
    let b = SocketClient::connect(&path).unwrap();
    // Both are served (the call proves the server registered the connection).
    a.call("Ping", json!({})).unwrap();
    b.call("Ping", json!({})).unwrap();
    let mut third = UnixStream::connect(&path).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reply: Value =
        serde_json::from_slice(&read_frame(&mut third, MAX_FRAME).unwrap().unwrap()).unwrap();
    assert_eq!(error_type(&reply), "LimitExceededException");
    drop(a);
    // The slot frees once the server notices the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = SocketClient::connect(&path).unwrap();
        match c.call("Ping", json!({})) {
            Ok(_) => break,
            Err(e) if e.kind == ErrorKind::LimitExceeded && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
}

#[test]
fn stalled_connections_are_closed_after_the_idle_timeout_and_clients_reconnect() {
    let (_dir, path) = socket_dir();
    let _server = Server::bind(&path, Arc::new(EchoHandler))
        .unwrap()
        .with_idle_timeout(Duration::from_millis(200))
        .spawn()
        .unwrap();
    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.write_all(&[0, 0, 0, 9, b'{']).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(stalled.read_to_end(&mut rest).unwrap_or(0), 0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed by the server's idle timeout"
    );

    let client = SocketClient::connect(&path).unwrap();
    client.call("Ping", json!({})).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The server closed the idle connection; the client reconnects transparently.
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
}

#[test]
fn a_call_without_an_answer_times_out_as_dependency_timeout() {
    let (_dir, path) = socket_dir();
    let (go, wait) = std::sync::mpsc::channel();
    let _server = Server::bind(&path, Arc::new(SlowHandler(std::sync::Mutex::new(wait))))
        .unwrap()
        .spawn()
        .unwrap();
    let client = SocketClient::connect(&path)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let err = client.call("Slow", json!({})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DependencyTimeout, "{err}");
    go.send(()).unwrap();
    // The late answer went to the abandoned connection; the next call gets its own.
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
}

#[test]
fn shutdown_works_even_if_the_socket_file_was_removed() {
    let (_dir, path) = socket_dir();
    let server = start(&path);
    std::fs::remove_file(&path).unwrap();
    let start = Instant::now();
    server.stop().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn random_garbage_on_many_connections_leaves_the_server_serving() {
    let (_dir, path) = socket_dir();
    let _server = start(&path);
    // A fixed xorshift stream: reproducible garbage without a dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..50 {
        let mut s = UnixStream::connect(&path).unwrap();
        let len = (next() % 64) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = s.write_all(&garbage);
        drop(s);
    }
    let client = SocketClient::connect(&path).unwrap();
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
}

/// How a child's connection attempt ended.
const SERVED: u8 = 0;
const REFUSED_PER_UID: u8 = 1;
const REFUSED_OTHER: u8 = 2;

/// A child process that switched to `uid`, opened connections and sent a Ping on each;
/// it keeps the served ones open (idle) until dropped.
struct Holder {
    child: nix::unistd::Pid,
    /// How each connection attempt ended: SERVED, REFUSED_PER_UID or REFUSED_OTHER.
    outcomes: Vec<u8>,
}

impl Holder {
    fn count(&self, outcome: u8) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Its connections close as it dies. (A release pipe would not do: children
        // forked later inherit its write end.)
        let _ = nix::sys::signal::kill(self.child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.child, None);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Forks a child that becomes `uid` and opens `n` connections to `path`.
fn hold_connections(path: &Path, uid: u32, n: usize) -> Holder {
    // Everything the child needs is allocated before the fork: the child of a
    // multithreaded process must not allocate.
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        br#"{"Version":1,"Operation":"Ping","Request":{}}"#,
    )
    .unwrap();
    let mut streams: Vec<UnixStream> = Vec::with_capacity(n);
    let mut outcomes = vec![REFUSED_OTHER; n];
    let (result_r, result_w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only makes system calls on memory allocated above and leaves
    // with _exit; it never returns into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(result_r);
            let switched = nix::unistd::setgroups(&[]).is_ok()
                && nix::unistd::setresgid(uid.into(), uid.into(), uid.into()).is_ok()
                && nix::unistd::setresuid(uid.into(), uid.into(), uid.into()).is_ok();
            if switched {
                for outcome in outcomes.iter_mut() {
                    let Ok(mut s) = UnixStream::connect(path) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    // A refused connection may be closed before the request is written;
                    // its refusal is still there to read.
                    let _ = s.write_all(&frame);
                    let mut reply = [0u8; 1024];
                    let mut got = 0;
                    while got < reply.len() {
                        match s.read(&mut reply[got..]) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => got += k,
                        }
                        if got >= 4 {
                            let len = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
                            if got >= 4 + len as usize {
                                break;
                            }
                        }
                    }
                    let reply = &reply[..got];
                    *outcome = if find(reply, b"\"Ok\"") {
                        streams.push(s);
                        SERVED
                    } else if find(reply, b"limit per uid") {
                        REFUSED_PER_UID
                    } else {
                        REFUSED_OTHER
                    };
                }
            }
            let _ = nix::unistd::write(&result_w, &outcomes);
            drop(result_w);
            // Hold the served connections, idle, until the parent kills us.
            loop {
                nix::unistd::pause();
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(result_w);
            let mut out = Vec::new();
            std::fs::File::from(result_r).read_to_end(&mut out).unwrap();
            let holder = Holder {
                child,
                outcomes: out,
            };
            assert_eq!(
                holder.outcomes.len(),
                n,
                "child as uid {uid} reported {:?}",
                holder.outcomes
            );
            holder
        }
    }
}

#[test]
fn one_uid_with_many_idle_connections_locks_out_neither_other_uids_nor_the_owner_or_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching uids needs root");
        return;
    }
    let (_dir, path) = socket_dir();
    let owner = 4000;
    let _server = Server::bind(&path, Arc::new(EchoHandler))
        .unwrap()
        .with_max_connections(12)
        .with_max_connections_per_uid(4)
        .with_reserved_connections(2)
        .with_privileged_uid(owner)
        .spawn()
        .unwrap();
    // uid A opens 10 idle connections: 4 are served, the rest refused per uid.
    let a = hold_connections(&path, 1234, 10);
    assert_eq!(
        (a.count(SERVED), a.count(REFUSED_PER_UID)),
        (4, 6),
        "{:?}",
        a.outcomes
    );
    // Another uid and root are still served.
    let b = hold_connections(&path, 1235, 1);
    assert_eq!(b.outcomes, [SERVED]);
    let root = SocketClient::connect(&path).unwrap();
    assert_eq!(root.call("Ping", json!({})).unwrap()["Uid"], 0);
    // Others fill what is left but the reserve (4 + 1 + 1 + 4 = 10 of 12 slots)...
    let c = hold_connections(&path, 1236, 4);
    assert_eq!(c.count(SERVED), 4, "{:?}", c.outcomes);
    // ...so a fifth uid is refused, while the owner and root still get the reserve.
    let d = hold_connections(&path, 1237, 1);
    assert_eq!(d.outcomes, [REFUSED_OTHER]);
    let o = hold_connections(&path, owner, 1);
    assert_eq!(o.outcomes, [SERVED], "the store owner uses the reserve");
    let root2 = SocketClient::connect(&path).unwrap();
    assert_eq!(root2.call("Ping", json!({})).unwrap()["Uid"], 0);
    // Once uid A lets go, others are served again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = hold_connections(&path, 1237, 1);
        if e.outcomes == [SERVED] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots never freed: {:?}",
            e.outcomes
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_trickling_a_frame_byte_by_byte_is_disconnected_at_the_frame_deadline() {
    let (_dir, path) = socket_dir();
    let _server = Server::bind(&path, Arc::new(EchoHandler))
        .unwrap()
        // Each byte arrives well within the idle timeout: only the frame deadline can
        // end this connection.
        .with_idle_timeout(Duration::from_secs(60))
        .with_frame_timeout(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let mut slow = UnixStream::connect(&path).unwrap();
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        format!(
            r#"{{"Version":1,"Operation":"Ping","Request":{{"Pad":"{}"}}}}"#,
            "x".repeat(2000)
        )
        .as_bytes(),
    )
    .unwrap();
    let mut closed = false;
    for byte in &frame {
        if slow.write_all(std::slice::from_ref(byte)).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closed, "a frame trickled over 40 s was still being read");
    let mut rest = Vec::new();
    assert_eq!(
        slow.read_to_end(&mut rest).unwrap_or(0),
        0,
        "closed without an answer"
    );
    // The same request sent at once is answered.
    let client = SocketClient::connect(&path).unwrap();
    assert_eq!(client.call("Ping", json!({})).unwrap()["Operation"], "Ping");
}

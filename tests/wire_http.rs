//! The HTTP endpoint (AWS JSON 1.1 + SigV4) over real TCP: an in-process endpoint with a
//! fake key service for the protocol and its limits, and the real `kmsfs serve --listen`
//! for the command line, start-up line and refusals. The client is written here, raw,
//! and signs with the crate's SigV4 signer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kmsfs::kms::{ErrorKind, KmsError, SystemClock};
use kmsfs::wire::sigv4::{authorization_header, format_amz_date, SignableRequest};
use kmsfs::wire::{AccessKey, RemoteCaller, WireBackend, WireConfig, WireServer};
use serde_json::{json, Value};
use support::cli::{KillOnDrop, Served, KMSFS};

const AKID: &str = "AKIAKMSFSTEST0000001";
const SECRET: &str = "test/secret+value";
const REGION: &str = "local";

/// One access key; a few operations with canned answers and errors.
struct FakeService;

impl WireBackend for FakeService {
    fn region(&self) -> String {
        REGION.into()
    }
    fn access_key(&self, id: &str) -> Result<Option<AccessKey>, KmsError> {
        Ok((id == AKID).then(|| AccessKey {
            access_key_id: AKID.into(),
            principal_arn: support::arn("alice"),
            secret: zeroize::Zeroizing::new(SECRET.into()),
        }))
    }
    fn call(&self, who: &RemoteCaller, op: &str, req: Value) -> Result<Value, KmsError> {
        match (op, req.get("KeyId").and_then(Value::as_str)) {
            ("DescribeKey", Some("missing")) => {
                Err(KmsError::new(ErrorKind::NotFound, "Key 'missing' does not exist"))
            }
            ("DescribeKey", Some("broken")) => {
                Err(KmsError::new(ErrorKind::KmsInternal, "the store is unreadable"))
            }
            ("DescribeKey", None) => Err(KmsError::new(
                ErrorKind::Validation,
                "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null",
            )),
            _ => Ok(json!({
                "Operation": op,
                "Request": req,
                "AccessKeyId": who.access_key_id,
                "SourceIp": who.source_ip,
                "UserAgent": who.user_agent,
                "RequestId": who.request_id,
            })),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A serialised HTTP/1.1 request for `op`, signed (unless `secret` is None) with the
/// crate's signer.
fn request(addr: SocketAddr, op: &str, body: &str, secret: Option<(&str, &str)>) -> Vec<u8> {
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), addr.to_string()),
        ("x-amz-date".into(), format_amz_date(now())),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
        ("x-amz-target".into(), format!("TrentService.{op}")),
    ];
    if let Some((akid, secret)) = secret {
        let req = SignableRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let auth = authorization_header(&req, akid, secret, REGION, "kms");
        headers.push(("authorization".into(), auth));
    }
    headers.push(("user-agent".into(), "wire-test/1".into()));
    headers.push(("content-length".into(), body.len().to_string()));
    let mut out = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in &headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn signed(addr: SocketAddr, op: &str, body: &str) -> Vec<u8> {
    request(addr, op, body, Some((AKID, SECRET)))
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    #[track_caller]
    fn error(&self, status: u16, name: &str) {
        assert_eq!(
            (self.status, self.body["__type"].as_str()),
            (status, Some(name)),
            "{self:?}"
        );
        assert!(self.body["message"].is_string(), "{self:?}");
        assert!(self.header("x-amzn-RequestId").is_some(), "{self:?}");
    }
}

/// Reads one response (status, headers, Content-Length body) from a kept-alive stream.
fn read_answer(r: &mut BufReader<TcpStream>) -> Answer {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    // A safety net against a hung test, not an assertion on timing.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    BufReader::new(s)
}

fn send(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut c = connect(addr);
    c.get_mut().write_all(bytes).unwrap();
    read_answer(&mut c)
}

/// Whether the server closed `c` (EOF or reset) rather than answering.
fn closed_by_server(c: &mut BufReader<TcpStream>) -> bool {
    let mut buf = [0u8; 1];
    matches!(c.read(&mut buf), Ok(0) | Err(_))
}

fn endpoint(tweak: impl FnOnce(&mut WireConfig)) -> (kmsfs::wire::Running, SocketAddr) {
    let mut cfg = WireConfig::new("127.0.0.1:0".parse().unwrap());
    tweak(&mut cfg);
    let server = WireServer::bind(cfg, Arc::new(FakeService), Arc::new(SystemClock)).unwrap();
    let addr = server.local_addr();
    (server.spawn().unwrap(), addr)
}

#[test]
fn a_signed_call_answers_200_with_aws_headers_and_the_callers_identity() {
    let (_srv, addr) = endpoint(|_| {});
    let a = send(
        addr,
        &signed(addr, "Encrypt", r#"{"KeyId":"alias/a","Plaintext":"aGk="}"#),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/x-amz-json-1.1"));
    let rid = a.header("x-amzn-RequestId").unwrap();
    assert_eq!(rid.len(), 36, "{rid}");
    assert_eq!(
        a.body["RequestId"], rid,
        "the same id reaches the service (audit)"
    );
    assert_eq!(a.body["Operation"], "Encrypt");
    assert_eq!(a.body["Request"]["KeyId"], "alias/a");
    assert_eq!(a.body["AccessKeyId"], AKID);
    assert_eq!(a.body["SourceIp"], "127.0.0.1");
    assert_eq!(a.body["UserAgent"], "wire-test/1");
}

#[test]
fn two_requests_share_one_kept_alive_connection() {
    let (_srv, addr) = endpoint(|_| {});
    let mut c = connect(addr);
    for key in ["alias/one", "alias/two"] {
        let body = json!({"KeyId": key}).to_string();
        c.get_mut()
            .write_all(&signed(addr, "Encrypt", &body))
            .unwrap();
        let a = read_answer(&mut c);
        assert_eq!((a.status, &a.body["Request"]["KeyId"]), (200, &json!(key)));
    }
}

#[test]
fn each_protocol_error_has_its_aws_type_and_status() {
    let (_srv, addr) = endpoint(|_| {});
    send(addr, &request(addr, "Encrypt", "{}", None))
        .error(400, "MissingAuthenticationTokenException");
    send(
        addr,
        &request(addr, "Encrypt", "{}", Some(("AKIAUNKNOWN", SECRET))),
    )
    .error(400, "UnrecognizedClientException");
    send(addr, &request(addr, "Encrypt", "{}", Some((AKID, "wrong"))))
        .error(400, "InvalidSignatureException");
    send(addr, &signed(addr, "FlyToTheMoon", "{}")).error(400, "UnknownOperationException");
    send(addr, &signed(addr, "Encrypt", "{not json")).error(400, "SerializationException");
    send(addr, &signed(addr, "Encrypt", "[1,2]")).error(400, "SerializationException");
    send(addr, &signed(addr, "DescribeKey", "{}")).error(400, "ValidationException");
    send(addr, &signed(addr, "DescribeKey", r#"{"KeyId":"missing"}"#))
        .error(400, "NotFoundException");
    send(addr, &signed(addr, "DescribeKey", r#"{"KeyId":"broken"}"#))
        .error(500, "KMSInternalException");
    // A body changed after signing.
    let tampered = String::from_utf8(signed(addr, "Encrypt", r#"{"KeyId":"alias/a"}"#))
        .unwrap()
        .replace("alias/a", "alias/b");
    send(addr, tampered.as_bytes()).error(400, "InvalidSignatureException");
    // The wrong media type, signed correctly.
    let wrong_type = String::from_utf8(signed(addr, "Encrypt", "{}")).unwrap();
    assert!(wrong_type.contains("application/x-amz-json-1.1"));
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), addr.to_string()),
        ("x-amz-date".into(), format_amz_date(now())),
        ("content-type".into(), "application/json".into()),
        ("x-amz-target".into(), "TrentService.Encrypt".into()),
    ];
    let req = SignableRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: b"{}",
    };
    let auth = authorization_header(&req, AKID, SECRET, REGION, "kms");
    headers.push(("authorization".into(), auth));
    let mut raw = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in &headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("content-length: 2\r\n\r\n{}");
    send(addr, raw.as_bytes()).error(400, "SerializationException");
    // Twenty minutes old.
    let old = String::from_utf8(signed(addr, "Encrypt", "{}")).unwrap();
    let stamp = format_amz_date(now());
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), addr.to_string()),
        ("x-amz-date".into(), format_amz_date(now() - 20 * 60)),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
        ("x-amz-target".into(), "TrentService.Encrypt".into()),
    ];
    assert!(old.contains(&stamp[..8]));
    let req = SignableRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: b"{}",
    };
    let auth = authorization_header(&req, AKID, SECRET, REGION, "kms");
    headers.push(("authorization".into(), auth));
    let mut raw = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in &headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("content-length: 2\r\n\r\n{}");
    let a = send(addr, raw.as_bytes());
    a.error(400, "InvalidSignatureException");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired: "),
        "{a:?}"
    );
}

#[test]
fn an_oversized_body_is_refused_with_413_before_it_is_read() {
    let (_srv, addr) = endpoint(|c| c.max_body = 1024);
    let mut c = connect(addr);
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: TrentService.Encrypt\r\ncontent-length: {}\r\n\r\n",
        1 << 20
    );
    c.get_mut().write_all(head.as_bytes()).unwrap();
    let a = read_answer(&mut c);
    a.error(413, "RequestEntityTooLargeException");
    // A chunked body that grows past the limit is cut off too.
    let mut c = connect(addr);
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: TrentService.Encrypt\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    c.get_mut().write_all(head.as_bytes()).unwrap();
    let chunk = format!("800\r\n{}\r\n", "x".repeat(0x800));
    c.get_mut().write_all(chunk.as_bytes()).unwrap();
    read_answer(&mut c).error(413, "RequestEntityTooLargeException");
}

#[test]
fn a_trickled_request_head_is_cut_off_and_others_are_still_served() {
    let (_srv, addr) = endpoint(|c| c.head_timeout = Duration::from_millis(300));
    let mut slow = connect(addr);
    slow.get_mut()
        .write_all(format!("POST / HTTP/1.1\r\nhost: {addr}\r\n").as_bytes())
        .unwrap();
    // Meanwhile a normal call is answered.
    let a = send(addr, &signed(addr, "Encrypt", "{}"));
    assert_eq!(a.status, 200);
    // The trickler never completes its head: the server closes the connection.
    assert!(closed_by_server(&mut slow));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let (_srv, addr) = endpoint(|c| c.idle_timeout = Duration::from_millis(300));
    let mut c = connect(addr);
    c.get_mut()
        .write_all(&signed(addr, "Encrypt", "{}"))
        .unwrap();
    assert_eq!(read_answer(&mut c).status, 200);
    // No second request: the server ends the connection instead of holding it forever.
    assert!(closed_by_server(&mut c));
    // A connection that never sends a byte is closed as well.
    assert!(closed_by_server(&mut connect(addr)));
}

#[test]
fn a_body_that_never_arrives_is_answered_408() {
    let (_srv, addr) = endpoint(|c| c.body_timeout = Duration::from_millis(300));
    let mut c = connect(addr);
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: TrentService.Encrypt\r\ncontent-length: 100\r\n\r\n{{"
    );
    c.get_mut().write_all(head.as_bytes()).unwrap();
    read_answer(&mut c).error(408, "RequestTimeoutException");
}

#[test]
fn connections_beyond_the_cap_are_closed_and_slots_come_back() {
    let (_srv, addr) = endpoint(|c| c.max_connections = 2);
    // Two idle connections hold both slots; prove each is being served.
    let mut held: Vec<_> = (0..2).map(|_| connect(addr)).collect();
    for c in &mut held {
        c.get_mut()
            .write_all(&signed(addr, "Encrypt", "{}"))
            .unwrap();
        assert_eq!(read_answer(c).status, 200);
    }
    let mut third = connect(addr);
    assert!(
        closed_by_server(&mut third),
        "a third connection must be refused"
    );
    drop(held.pop());
    // The freed slot is reusable (the server may take a moment to notice the close).
    let mut answered = false;
    for _ in 0..200 {
        let mut c = connect(addr);
        if c.get_mut()
            .write_all(&signed(addr, "Encrypt", "{}"))
            .is_ok()
        {
            let mut line = String::new();
            if c.read_line(&mut line).is_ok() && line.starts_with("HTTP/1.1 200") {
                answered = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered, "the freed slot never served a call");
}

#[test]
fn tls_serves_the_same_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let (_srv, addr) = endpoint(|c| {
        c.tls = Some(kmsfs::wire::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
    });
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut req = signed(addr, "Encrypt", r#"{"KeyId":"alias/tls"}"#);
    // Ask the server to close after answering, so s_client ends.
    let text =
        String::from_utf8(req.clone())
            .unwrap()
            .replacen("\r\n", "\r\nconnection: close\r\n", 1);
    req = text.into_bytes();
    client.stdin.take().unwrap().write_all(&req).unwrap();
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"alias/tls\""), "{text}");
    // A missing key file is named in the error.
    let mut cfg = WireConfig::new("127.0.0.1:0".parse().unwrap());
    let absent = dir.path().join("absent.pem");
    cfg.tls = Some(kmsfs::wire::TlsFiles {
        cert: cert.clone(),
        key: absent.clone(),
    });
    let e = WireServer::bind(cfg, Arc::new(FakeService), Arc::new(SystemClock))
        .err()
        .unwrap();
    assert!(e.to_string().contains(&absent.display().to_string()), "{e}");
}

#[test]
fn plain_http_on_a_non_loopback_address_is_refused() {
    let cfg = WireConfig::new("0.0.0.0:0".parse().unwrap());
    let e = WireServer::bind(cfg, Arc::new(FakeService), Arc::new(SystemClock))
        .err()
        .unwrap();
    assert!(e.to_string().contains("--tls-cert"), "{e}");
}

/// `kmsfs serve --listen 127.0.0.1:0`: prints the bound address, answers AWS's errors.
#[test]
fn kmsfs_serve_listen_prints_its_address_and_answers() {
    let s = Served::init("wire-serve");
    let mut child = Command::new(KMSFS)
        .args(s.globals())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut guard = KillOnDrop(child);
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("kmsfs serve exited before listening")
            .unwrap();
        if let Some(u) = line.strip_prefix("kmsfs: listening on ") {
            break u.to_string();
        }
    };
    let addr: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    send(addr, &request(addr, "ListKeys", "{}", None))
        .error(400, "MissingAuthenticationTokenException");
    send(
        addr,
        &request(addr, "ListKeys", "{}", Some(("AKIANOSUCHKEY", "x"))),
    )
    .error(400, "UnrecognizedClientException");
    // Plain HTTP off loopback is refused at start, naming the way out.
    let mut globals = s.globals();
    let at = globals.iter().position(|g| g == "--socket").unwrap() + 1;
    globals[at] = s.dir.join("other.sock").display().to_string();
    let out = Command::new(KMSFS)
        .args(globals)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{out:?}"
    );
    // SIGTERM stops the endpoint with the rest of the service, cleanly.
    let pid = nix::unistd::Pid::from_raw(guard.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(guard.0.wait().unwrap().success());
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after SIGTERM"
    );
}

/// `kmsfs mount --listen`: the mount process's own key service answers HTTP too, and
/// stops answering once unmounted.
#[test]
fn kmsfs_mount_listen_serves_http_from_the_mount_process() {
    use support::cli::Mounted;
    let s = Served::init("wire-mount");
    let backing = s.dir.join("backing");
    let mnt = s.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    support::ok(&s.root(&["init", &backing.display().to_string()]));
    let out = s.root(&[
        "mount",
        &backing.display().to_string(),
        &mnt.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let _guard = Mounted(mnt.clone());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{out:?}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(mounts.contains(&mnt.display().to_string()), "not mounted");
    let url = stderr
        .lines()
        .find_map(|l| l.strip_prefix("kmsfs: listening on http://"))
        .unwrap_or_else(|| panic!("no listening line: {stderr}"));
    let addr: SocketAddr = url.trim().parse().unwrap();
    send(addr, &request(addr, "ListKeys", "{}", None))
        .error(400, "MissingAuthenticationTokenException");
    support::ok(
        &Command::new(KMSFS)
            .arg("umount")
            .arg(&mnt)
            .output()
            .unwrap(),
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after umount"
    );
}

/// `kmsfs serve --listen 127.0.0.1:0` on `s`'s store and socket; returns the process
/// (killed on drop) and the endpoint's address, read from the start-up line.
fn serve_listening(s: &Served) -> (KillOnDrop, SocketAddr) {
    let _ = std::fs::remove_file(s.socket());
    let mut child = Command::new(KMSFS)
        .args(s.globals())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let guard = KillOnDrop(child);
    let url = loop {
        let line = lines
            .next()
            .expect("kmsfs serve exited before listening")
            .unwrap();
        if let Some(u) = line.strip_prefix("kmsfs: listening on ") {
            break u.to_string();
        }
    };
    // Keep draining stderr so the service never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (guard, url.strip_prefix("http://").unwrap().parse().unwrap())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The real key service: a signed request acts as its access key's principal, with that
/// principal's policies, and the response's request id is the audit record's.
#[test]
fn signed_calls_act_as_the_access_keys_principal() {
    use support::cli::{arn, json as out_json, BOB};
    let s = Served::init("wire-e2e");
    let (_serve, addr) = serve_listening(&s);
    let key_id = s.create_key();
    let creds = |user: &str| {
        let v = out_json(&s.root(&["credentials", "create", "--principal", &arn(user)]));
        (
            v["AccessKeyId"].as_str().unwrap().to_string(),
            v["SecretAccessKey"].as_str().unwrap().to_string(),
        )
    };
    let (alice_id, alice_secret) = creds("alice");
    let (bob_id, bob_secret) = creds("bob");
    let call = |who: (&str, &str), op: &str, body: Value| {
        send(addr, &request(addr, op, &body.to_string(), Some(who)))
    };
    let alice = (alice_id.as_str(), alice_secret.as_str());
    let enc = call(
        alice,
        "Encrypt",
        json!({"KeyId": key_id, "Plaintext": b64(b"over http")}),
    );
    assert_eq!(enc.status, 200, "{enc:?}");
    let blob = enc.body["CiphertextBlob"].as_str().unwrap().to_string();
    let dec = call(alice, "Decrypt", json!({"CiphertextBlob": blob}));
    assert_eq!(
        (dec.status, dec.body["Plaintext"].as_str()),
        (200, Some(b64(b"over http").as_str()))
    );
    // The key administrator may not decrypt, over HTTP as over the socket.
    let denied = call(
        (bob_id.as_str(), bob_secret.as_str()),
        "Decrypt",
        json!({"CiphertextBlob": blob}),
    );
    denied.error(400, "AccessDeniedException");
    let _ = BOB;
    // Each answer's request id is in the audit log.
    let audit = ok_text(&s.root(&["audit"]));
    for a in [&enc, &dec, &denied] {
        let rid = a.header("x-amzn-RequestId").unwrap();
        assert!(audit.contains(rid), "request id {rid} not audited");
    }
    assert!(audit.contains(&alice_id));
    // A wrong secret for a real key, and a key unknown to the service.
    call((alice_id.as_str(), "not-the-secret"), "ListKeys", json!({}))
        .error(400, "InvalidSignatureException");
    call(("AKIANOSUCHKEY0000000", "x"), "ListKeys", json!({}))
        .error(400, "UnrecognizedClientException");
    call(alice, "DescribeKey", json!({"KeyId": 5})).error(400, "SerializationException");
}

fn ok_text(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

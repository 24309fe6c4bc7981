//! Decrypt over HTTP, as an AWS SDK calls it: a real `kmsfs serve --listen 127.0.0.1:0`
//! process (the binary this bench was built with), an access key made by `kmsfs
//! credentials create`, and clients that each keep one HTTP/1.1 connection alive and
//! sign every request with SigV4 (`kmsfs::wire::sigv4`), as SDKs do. Prints p50/p99
//! latency and calls/s for 1 and 8 concurrent clients. The store lives on /dev/shm when it
//! exists, so that the disk's noise stays out of the figure (Decrypt's audit record is
//! still written). Run: `cargo bench --bench wire_decrypt` (add `-- --seconds N`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const KMSFS: &str = env!("CARGO_BIN_EXE_kmsfs");
const ACCOUNT: &str = "111122223333";
const REGION: &str = "local";

fn main() {
    let secs: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("kmsfs-bench-wire-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let server = Server::start(&dir);
    let principal = format!("arn:aws:iam::{ACCOUNT}:user/bench");
    let created = server.kmsfs(&["credentials", "create", "--principal", &principal]);
    let creds: Value = serde_json::from_str(&created).expect("credentials JSON");
    let creds = Credentials {
        id: creds["AccessKeyId"].as_str().expect("AccessKeyId").into(),
        secret: creds["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .into(),
    };

    // The key and the blob, over HTTP as the bench principal.
    let mut setup = Client::connect(&server.addr, creds.clone());
    let key = setup.call("CreateKey", &json!({"Description": "bench"}))["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyId")
        .to_string();
    let blob = setup.call(
        "Encrypt",
        &json!({"KeyId": key, "Plaintext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
    )["CiphertextBlob"]
        .clone();
    let request = json!({"CiphertextBlob": blob});

    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>12}",
        "operation", "clients", "p50 µs", "p99 µs", "ops/s"
    );
    for clients in [1usize, 8] {
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let (addr, creds, request) = (server.addr.clone(), creds.clone(), request.clone());
                std::thread::spawn(move || {
                    let mut client = Client::connect(&addr, creds);
                    let mut lat = Vec::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        client.call("Decrypt", &request);
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("client thread"))
            .collect();
        let elapsed = start.elapsed();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
        println!(
            "{:<18} {clients:>8} {:>10.1} {:>10.1} {:>12.0}",
            "Decrypt (HTTP)",
            pct(0.50),
            pct(0.99),
            lat.len() as f64 / elapsed.as_secs_f64()
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kmsfs serve --listen 127.0.0.1:0` on a fresh store, killed when dropped.
struct Server {
    dir: PathBuf,
    addr: String,
    child: Child,
}

impl Server {
    fn start(dir: &Path) -> Server {
        // The bench principal has no uid; its identity policy allows every KMS action,
        // and a key created without a policy gets the default one (the account root's
        // statement delegates to identity policies).
        std::fs::write(
            dir.join("principals.toml"),
            format!(
                "account = \"{ACCOUNT}\"\nregion = \"{REGION}\"\n\n[[principal]]\n\
                 arn = \"arn:aws:iam::{ACCOUNT}:user/bench\"\n\
                 policy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}}]}}'''\n"
            ),
        )
        .expect("principals file");
        let mut s = Server {
            dir: dir.to_path_buf(),
            addr: String::new(),
            child: Command::new("true").spawn().expect("spawn"),
        };
        s.kmsfs(&["init"]);
        let mut child = Command::new(KMSFS)
            .args(s.globals())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kmsfs serve");
        let stderr = child.stderr.take().expect("stderr");
        let _ = s.child.wait();
        s.child = child;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on http://".len()..];
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or(rest).to_string());
                }
            }
        });
        s.addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("kmsfs serve --listen printed its address")
            .trim_end_matches('/')
            .to_string();
        s
    }

    fn globals(&self) -> Vec<String> {
        let p = |name: &str| self.dir.join(name).display().to_string();
        vec![
            "--store".into(),
            p("store"),
            "--principals".into(),
            p("principals.toml"),
            "--socket".into(),
            p("kms.sock"),
        ]
    }

    /// `kmsfs <args>` as the store's owner; its stdout.
    fn kmsfs(&self, args: &[&str]) -> String {
        let out = Command::new(KMSFS)
            .args(self.globals())
            .args(args)
            .output()
            .expect("kmsfs runs");
        assert!(
            out.status.success(),
            "kmsfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Credentials {
    id: String,
    secret: String,
}

/// One kept-alive HTTP/1.1 connection speaking AWS JSON 1.1.
struct Client {
    host: String,
    creds: Credentials,
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str, creds: Credentials) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            host: addr.to_string(),
            creds,
            stream: BufReader::new(stream),
        }
    }

    /// One signed request; panics unless the answer is 200.
    fn call(&mut self, operation: &str, input: &Value) -> Value {
        let body = input.to_string();
        let target = format!("TrentService.{operation}");
        let headers = sign(&self.host, &target, body.as_bytes(), &self.creds);
        let mut req = format!(
            "POST / HTTP/1.1\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            req += &format!("{name}: {value}\r\n");
        }
        req += "\r\n";
        req += &body;
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let (status, body) = self.read_response();
        assert_eq!(
            status,
            200,
            "{operation}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("JSON response")
    }

    fn read_response(&mut self) -> (u16, Vec<u8>) {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("HTTP status");
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("Content-Length");
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).expect("body");
        (status, body)
    }
}

/// The headers of a signed request: `host`, `x-amz-date`, `x-amz-target` and
/// `Authorization` (SigV4 over all but the last, and `content-type`, as SDKs sign).
fn sign(host: &str, target: &str, body: &[u8], creds: &Credentials) -> Vec<(String, String)> {
    use kmsfs::wire::sigv4::{authorization_header, format_amz_date, SignableRequest};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let signed = vec![
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), format_amz_date(now)),
        ("x-amz-target".to_string(), target.to_string()),
    ];
    let auth = authorization_header(
        &SignableRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &signed,
            body,
        },
        &creds.id,
        &creds.secret,
        REGION,
        "kms",
    );
    let mut headers: Vec<_> = signed.into_iter().skip(1).collect();
    headers.push(("Authorization".to_string(), auth));
    headers
}

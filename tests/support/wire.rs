//! The wire tests' fixture (`wire_*.rs`): a store whose principals have no uid and reach
//! the key service only through access keys, a real `kmsfs serve --listen 127.0.0.1:0`
//! child process, one access key per principal (`kmsfs credentials create`), and the
//! real AWS clients from the pinned virtualenv (`scripts/python-env`): aws-cli, and boto3
//! driven by the scenarios in `tests/python/kms_wire.py`. Everything started here is
//! killed and removed by Drop guards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

pub use super::cli::{key_policy, KMSFS};
pub use super::{arn, ok, ACCOUNT};

/// The principals, all without a uid: bob administers keys, alice uses them, carol and
/// dave are in no key policy (only grants give them anything).
pub const PRINCIPALS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Every principal has an access key and nothing else; bob's identity policy lets him
/// create and list keys (as the CLI fixture's bob).
pub fn principals_toml() -> String {
    let mut s = format!("account = \"{ACCOUNT}\"\nregion = \"local\"\n");
    for name in PRINCIPALS {
        s += &format!("\n[[principal]]\narn = \"{}\"\n", arn(name));
        if name == "bob" {
            s += "policy = '''{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\
                  \"Action\":[\"kms:CreateKey\",\"kms:List*\"],\"Resource\":\"*\"}]}'''\n";
        }
    }
    s
}

/// The pinned virtualenv's directory (`scripts/python-env`, which reuses `KMSFS_PYENV`
/// when set), once per test binary.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python-env");
        let out = Command::new(script)
            .output()
            .expect("scripts/python-env runs");
        let dir = ok(&out);
        let dir = PathBuf::from(dir.lines().last().unwrap_or_default());
        assert!(
            dir.join("bin/aws").exists() && dir.join("bin/python").exists(),
            "no aws-cli/python in {}",
            dir.display()
        );
        dir
    })
}

/// An access key pair as `kmsfs credentials create` printed it.
#[derive(Clone, Debug)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// A store, `kmsfs serve --listen` on a free loopback port, and an access key for each of
/// [`PRINCIPALS`].
pub struct WireServer {
    pub dir: PathBuf,
    pub endpoint: String,
    pub keys: BTreeMap<&'static str, AccessKey>,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    tmpfs: Option<super::Tmpfs>,
}

impl WireServer {
    pub fn start(name: &str) -> WireServer {
        let dir = std::env::temp_dir().join(format!("kmsfs-wire-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A private tmpfs: these tests are about the protocol and the decisions, and the
        // store's fsyncs on a disk shared with other builds would make them slow.
        let tmpfs = super::Tmpfs::mount(&dir, "64m");
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(dir.join("principals.toml"), principals_toml()).unwrap();
        let mut s = WireServer {
            dir,
            endpoint: String::new(),
            keys: BTreeMap::new(),
            child: None,
            stderr: Arc::default(),
            tmpfs: Some(tmpfs),
        };
        ok(&s.kmsfs(&["init"]));
        // Most keys are made before the server starts (on the store directly), dave's
        // while it serves (through its socket): a server must find both at once.
        let (before, after) = PRINCIPALS.split_at(PRINCIPALS.len() - 1);
        for &name in before {
            s.create_access_key(name);
        }
        s.serve();
        for &name in after {
            s.create_access_key(name);
        }
        s
    }

    /// `kmsfs credentials create --principal ARN` for `name`, kept in `keys`.
    fn create_access_key(&mut self, name: &'static str) {
        let out = self.kmsfs(&["credentials", "create", "--principal", &arn(name)]);
        let v: Value = serde_json::from_str(&ok(&out)).expect("credentials create prints JSON");
        let key = AccessKey {
            id: v["AccessKeyId"].as_str().expect("AccessKeyId").to_string(),
            secret: v["SecretAccessKey"]
                .as_str()
                .expect("SecretAccessKey")
                .to_string(),
        };
        self.keys.insert(name, key);
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn globals(&self) -> Vec<String> {
        vec![
            "--store".into(),
            self.store().display().to_string(),
            "--principals".into(),
            self.dir.join("principals.toml").display().to_string(),
            "--socket".into(),
            self.dir.join("kms.sock").display().to_string(),
        ]
    }

    /// `kmsfs <args>` as root (the store's owner, the account root).
    pub fn kmsfs(&self, args: &[&str]) -> Output {
        Command::new(KMSFS)
            .args(self.globals())
            .args(args)
            .env_remove("KMSFS_PASSPHRASE")
            .output()
            .unwrap()
    }

    /// Starts `kmsfs serve --listen 127.0.0.1:0` and reads the bound address from its
    /// stderr line `listening on http://HOST:PORT`. Its stderr is kept (and shown when a
    /// test fails through [`WireServer::log`]); draining it also keeps the server from
    /// ever blocking on a full pipe.
    fn serve(&mut self) {
        self.serve_on("127.0.0.1:0");
    }

    /// Kills the server (as a crash or a network cut would look to its clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the address it had.
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.addr().to_string();
        self.serve_on(&addr);
    }

    fn serve_on(&mut self, addr: &str) {
        let mut child = Command::new(KMSFS)
            .args(self.globals())
            .args(["serve", "--listen", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        let log = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on ".len()..];
                    let url = rest.split_whitespace().next().unwrap_or(rest);
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        // A start-up bound, not a timed assertion: a server that never says where it
        // listens fails the test instead of hanging it.
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => self.endpoint = url,
            Err(_) => panic!(
                "kmsfs serve --listen never printed its address:\n{}",
                self.log()
            ),
        }
    }

    /// What the server printed on stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `HOST:PORT` of the endpoint.
    pub fn addr(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    pub fn is_serving(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The environment of an AWS client acting as `who`: nothing of the host's AWS
    /// configuration (files, profiles, instance metadata) can leak in.
    fn client_env(&self, cmd: &mut Command, key: &AccessKey) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.join("home"))
            .env("LANG", "C.UTF-8")
            .env("AWS_ACCESS_KEY_ID", &key.id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_DEFAULT_REGION", "local");
    }

    /// The access key of `who`, one of [`PRINCIPALS`].
    pub fn key(&self, who: &str) -> &AccessKey {
        self.keys
            .get(who)
            .unwrap_or_else(|| panic!("no access key for {who}"))
    }

    /// `aws --endpoint-url ENDPOINT --region local kms <args>` as `who`.
    pub fn aws(&self, who: &str, args: &[&str]) -> Output {
        self.aws_with(self.key(who), args)
    }

    /// `aws ... kms <args>` signing with `key` (which may be a wrong one).
    pub fn aws_with(&self, key: &AccessKey, args: &[&str]) -> Output {
        let mut cmd = Command::new(venv().join("bin/aws"));
        self.client_env(&mut cmd, key);
        cmd.args(["--endpoint-url", &self.endpoint, "--region", "local", "kms"])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `tests/python/kms_wire.py SCENARIO` with every principal's access key, their
    /// ARNs, [`key_policy`] (bob administers, alice uses) and `extra` (which may replace
    /// any of those) as its config; returns its output (see the script's doc).
    pub fn boto3(&self, scenario: &str, extra: Value) -> Scenario {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kms_wire.py");
        let mut config = json!({
            "endpoint": self.endpoint,
            "region": "local",
            "key_policy": key_policy(),
            "creds": self.keys.iter().map(|(n, k)| (n.to_string(), json!([k.id, k.secret]))).collect::<serde_json::Map<_, _>>(),
            "arns": PRINCIPALS.iter().map(|n| (n.to_string(), json!(arn(n)))).collect::<serde_json::Map<_, _>>(),
        });
        if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
            c.extend(extra);
        }
        let mut cmd = Command::new(venv().join("bin/python"));
        self.client_env(&mut cmd, self.key("bob"));
        let mut child = cmd
            .arg(script)
            .arg(scenario)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kms_wire.py {scenario} failed: {:?}\n--- stderr\n{}\n--- server\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "kms_wire.py {scenario} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        Scenario(v)
    }

    /// One request signed with `key` (SigV4 by `kmsfs::wire::sigv4`, as an SDK signs) on a
    /// fresh connection; returns the HTTP status and the JSON body. For what the AWS
    /// clients cannot be made to do at an exact moment.
    pub fn signed_call(&self, key: &AccessKey, operation: &str, input: &Value) -> (u16, Value) {
        use kmsfs::wire::sigv4::{authorization_header, format_amz_date, SignableRequest};
        let body = input.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("host".to_string(), self.addr().to_string()),
            ("x-amz-date".to_string(), format_amz_date(now)),
            (
                "x-amz-target".to_string(),
                format!("TrentService.{operation}"),
            ),
        ];
        let auth = authorization_header(
            &SignableRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: body.as_bytes(),
            },
            &key.id,
            &key.secret,
            "local",
            "kms",
        );
        let mut req = String::from("POST / HTTP/1.1\r\n");
        for (name, value) in &headers {
            req += &format!("{name}: {value}\r\n");
        }
        req += &format!(
            "authorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(self.addr()).unwrap();
        stream.write_all(req.as_bytes()).unwrap();
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
        let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (status, body)
    }

    /// Writes `bytes` to a file in the fixture's directory (for `fileb://`).
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(self.tmpfs.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A boto3 scenario's output: `steps` by name, plus what the scenario added.
#[derive(Debug)]
pub struct Scenario(pub Value);

impl Scenario {
    /// The outcome of `step`; fails naming the whole transcript if the step never ran.
    #[track_caller]
    pub fn step(&self, step: &str) -> &Value {
        let v = &self.0["steps"][step];
        assert!(!v.is_null(), "no step `{step}` in {:#}", self.0);
        v
    }

    /// Asserts `step` succeeded; returns its response.
    #[track_caller]
    pub fn ok(&self, step: &str) -> &Value {
        let v = self.step(step);
        assert!(
            v.get("ok").is_some(),
            "`{step}` failed: {v}\n--- transcript\n{:#}",
            self.0
        );
        assert!(
            v["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "`{step}`: no x-amzn-RequestId: {v}"
        );
        &v["ok"]
    }

    /// Asserts `step` failed with `code` as boto3's `ClientError` reports it, with HTTP
    /// status 400; returns the message.
    #[track_caller]
    pub fn error(&self, step: &str, code: &str) -> String {
        let v = self.step(step);
        assert_eq!(
            v["error"].as_str(),
            Some(code),
            "`{step}`: expected {code}, got {v}\n--- transcript\n{:#}",
            self.0
        );
        assert_eq!(v["status"], 400, "`{step}`: {v}");
        v["message"].as_str().unwrap_or_default().to_string()
    }

    pub fn get(&self, field: &str) -> &Value {
        &self.0[field]
    }
}

/// Asserts aws-cli's shape of a service error: its one-line message on stderr, nothing on
/// stdout, and exit status 255. The pinned aws-cli (scripts/python-requirements.txt) is
/// version 1, which exits 255 for any error; version 2 (and `kmsfs kms`, which follows
/// it) exits 254 for a service error.
#[track_caller]
pub fn aws_service_error(o: &Output, exception: &str, operation: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(255), "stderr: {err}");
    let line = format!("An error occurred ({exception}) when calling the {operation} operation: ");
    assert!(err.contains(&line), "expected `{line}`, got: {err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Base64 text, as boto3's output (through the script) and aws-cli's `--output text` give it.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

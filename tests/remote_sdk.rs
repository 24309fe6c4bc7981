//! `SdkRemote` (the AWS SDK client of remote keys) against a central
//! `kmsfs serve --listen` on loopback: real SigV4 from the SDK, real decisions by the
//! central store's key policy, identities only from shared-config profiles (static keys
//! in a credentials file, `credential_process`), and the failure modes the filesystem
//! maps to errnos (denied, disabled, unknown key, wrong context, timeout, refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use kmsfs::kms::ErrorKind;
use kmsfs::remote::{Context, Profile, RemoteKeys, RemoteSettings, SdkRemote, Target};
use serde_json::Value;
use support::remote::{central_key, credentials, ok, WireServer};

/// Writes the shared config and credentials files of the test's profiles: `alice` and
/// `bob` with static keys, `proc` whose keys come from a `credential_process` script
/// (alice's key, printed by the script).
fn profiles(s: &WireServer) -> (PathBuf, PathBuf) {
    let a = s.key("alice");
    let creds = s.dir.join("aws-credentials");
    std::fs::write(&creds, credentials(s, &["alice", "bob"])).unwrap();
    let script = s.dir.join("creds-process.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' '{{\"Version\":1,\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\"}}'\n",
            a.id, a.secret
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = s.dir.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile proc]\ncredential_process = {}\n\n\
             [profile envsrc]\nrole_arn = arn:aws:iam::{}:role/r\n\
             credential_source = Environment\n\n\
             [profile slow]\ncredential_process = sleep 5\n",
            script.display(),
            support::ACCOUNT
        ),
    )
    .unwrap();
    (config, creds)
}

fn profile(name: &str, files: &(PathBuf, PathBuf)) -> Profile {
    Profile {
        name: name.into(),
        config_file: Some(files.0.clone()),
        credentials_file: Some(files.1.clone()),
    }
}

fn target(arn: &str, endpoint: &str) -> Target {
    Target {
        key_arn: arn.into(),
        endpoint: Some(endpoint.into()),
    }
}

fn context(file: &str) -> Context {
    BTreeMap::from([
        ("kmsfs:volume".to_string(), "vol-1".to_string()),
        ("kmsfs:file".to_string(), file.to_string()),
    ])
}

#[track_caller]
fn assert_request_id(id: &Option<String>) {
    assert!(
        id.as_deref().is_some_and(|i| !i.is_empty()),
        "no request id: {id:?}"
    );
}

#[test]
fn remote_calls_are_signed_as_the_profile_and_decided_by_the_central_kms() {
    let s = WireServer::start("remote-sdk");
    let files = profiles(&s);
    let arn = central_key(&s);
    let remote = SdkRemote::new(RemoteSettings::default()).unwrap();
    let (alice, bob) = (profile("alice", &files), profile("bob", &files));
    let t = target(&arn, &s.endpoint);

    // The key user: a data key, and the same key back from its blob.
    let dk = remote
        .generate_data_key(&alice, &t, &context("f1"))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    assert_eq!(dk.key_arn, arn);
    assert!(!dk.wrapped.is_empty());
    assert_request_id(&dk.receipt.request_id);
    let (back, receipt) = remote
        .decrypt(&alice, &t, &dk.wrapped, &context("f1"))
        .unwrap();
    assert_eq!(back.expose(), dk.key.expose());
    assert_request_id(&receipt.request_id);

    // Re-wrapping an existing data key (rewrap's Encrypt) decrypts to the same key.
    let (wrapped2, _) = remote.encrypt(&alice, &t, &dk.key, &context("f2")).unwrap();
    let (back2, _) = remote
        .decrypt(&alice, &t, &wrapped2, &context("f2"))
        .unwrap();
    assert_eq!(back2.expose(), dk.key.expose());

    // The key user may encrypt (a dry run); DescribeKey in AWS's member names.
    assert_request_id(
        &remote
            .encrypt_allowed(&alice, &t, &context("f3"))
            .unwrap()
            .request_id,
    );
    let (meta, _) = remote.describe_key(&alice, &t).unwrap();
    assert_eq!(meta["Arn"], arn.as_str());
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(meta["Enabled"], true);
    assert_request_id(
        &remote
            .decrypt_dry_run(&alice, &t, &dk.wrapped, &context("f1"))
            .unwrap()
            .request_id,
    );

    // The key administrator is refused by the key policy, with the refusal's request id.
    let e = remote
        .generate_data_key(&bob, &t, &context("f1"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    assert_request_id(&e.receipt.request_id);
    let e = remote
        .decrypt(&bob, &t, &dk.wrapped, &context("f1"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    let e = remote
        .decrypt_dry_run(&bob, &t, &dk.wrapped, &context("f1"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");

    // Another file's context does not open this file's key.
    let e = remote
        .decrypt(&alice, &t, &dk.wrapped, &context("other"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::InvalidCiphertext, "{e:?}");
    assert_request_id(&e.receipt.request_id);

    // An unknown key.
    let (prefix, _) = arn.rsplit_once('/').unwrap();
    let unknown = target(
        &format!("{prefix}/00000000-0000-4000-8000-000000000000"),
        &s.endpoint,
    );
    let e = remote
        .generate_data_key(&alice, &unknown, &context("f1"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::NotFound, "{e:?}");

    // credential_process: the same identity as alice, from a program.
    let proc = profile("proc", &files);
    let dk2 = remote
        .generate_data_key(&proc, &t, &context("p"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (back, _) = remote
        .decrypt(&alice, &t, &dk2.wrapped, &context("p"))
        .unwrap();
    assert_eq!(back.expose(), dk2.key.expose());

    // A disabled key.
    ok(&s.kmsfs(&["kms", "disable-key", "--key-id", &arn]));
    let e = remote
        .decrypt(&alice, &t, &dk.wrapped, &context("f1"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::Disabled, "{e:?}");
    assert_request_id(&e.receipt.request_id);
    let (meta, _) = remote.describe_key(&alice, &t).unwrap();
    assert_eq!(meta["KeyState"], "Disabled");
}

#[test]
fn only_the_named_profile_signs_never_the_process_environment() {
    let s = WireServer::start("remote-sdk-env");
    let files = profiles(&s);
    let arn = central_key(&s);
    let t = target(&arn, &s.endpoint);
    // The process has alice's valid keys in its environment: the default chain would
    // sign with them. A profile the files do not define must still be refused. (There is
    // no profile-less call at all: every RemoteKeys method takes a Profile.)
    let a = s.key("alice");
    std::env::set_var("AWS_ACCESS_KEY_ID", &a.id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &a.secret);
    std::env::set_var("AWS_PROFILE", "alice");
    let remote = SdkRemote::new(RemoteSettings::default()).unwrap();
    let missing = profile("nobody", &files);
    let e = remote
        .generate_data_key(&missing, &t, &context("f"))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    assert!(
        e.error.message.contains("\"nobody\""),
        "{}",
        e.error.message
    );
    assert!(
        e.error.message.contains(&files.1.display().to_string()),
        "names the files: {}",
        e.error.message
    );
    // A profile may not borrow the process's environment as its source either.
    let e = remote
        .describe_key(&profile("envsrc", &files), &t)
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    assert!(
        e.error.message.contains("credential_source = Environment"),
        "{}",
        e.error.message
    );
    // The administrator adds the missing profile: the same SdkRemote picks it up.
    let mut creds = std::fs::read_to_string(&files.1).unwrap();
    creds += &format!(
        "\n[nobody]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        a.id, a.secret
    );
    std::fs::write(&files.1, creds).unwrap();
    remote
        .generate_data_key(&missing, &t, &context("f"))
        .unwrap_or_else(|e| panic!("the new profile is not used: {e:?}"));
    // No files at all.
    let absent = Profile {
        name: "alice".into(),
        config_file: Some(s.dir.join("no-config")),
        credentials_file: Some(s.dir.join("no-credentials")),
    };
    let e = remote.describe_key(&absent, &t).unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    assert!(e.error.message.contains("\"alice\""), "{}", e.error.message);
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::remove_var("AWS_PROFILE");
    // A key ARN without a region cannot be routed.
    let e = remote
        .describe_key(&profile("alice", &files), &target("alias/x", &s.endpoint))
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::InvalidArn, "{e:?}");
}

/// What the [`Relay`] does with a connection.
const HANG: u8 = 0;
const FORWARD: u8 = 1;
const REFUSE: u8 = 2;

/// A loopback endpoint that either never answers (accepts and holds the connection),
/// forwards to the live central kmsfs, or closes at once: the remote going away and
/// coming back on one address.
struct Relay {
    addr: String,
    mode: Arc<AtomicU8>,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mode = Arc::new(AtomicU8::new(HANG));
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (m, a, h, up) = (
            mode.clone(),
            accepted.clone(),
            held.clone(),
            upstream.to_string(),
        );
        // The thread ends with the test process (a test binary exits after its tests).
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                match m.load(Ordering::SeqCst) {
                    HANG => h.lock().unwrap().push(conn),
                    REFUSE => drop(conn),
                    _ => {
                        let Ok(server) = TcpStream::connect(&up) else {
                            continue;
                        };
                        pipe(conn.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, conn);
                    }
                }
            }
        });
        Relay {
            addr,
            mode,
            accepted,
            held,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Closes the connections held so far (their clients see the remote go away).
    fn release(&self) {
        self.held.lock().unwrap().clear();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// Runs `f` on a thread; panics if it has not returned after a generous bound (a hung
/// call fails the test instead of hanging it).
fn within_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the remote call never returned")
}

#[test]
fn a_silent_remote_times_out_and_the_same_client_recovers() {
    let s = WireServer::start("remote-sdk-timeout");
    let files = profiles(&s);
    let arn = central_key(&s);
    let relay = Relay::start(s.addr());
    let remote = Arc::new(
        SdkRemote::new(RemoteSettings {
            timeout: Duration::from_secs(1),
            ..RemoteSettings::default()
        })
        .unwrap(),
    );
    let alice = profile("alice", &files);
    let t = target(&arn, &relay.endpoint());

    // Accepts TCP, never answers: a timeout, not a hang.
    let (r, p, tt) = (remote.clone(), alice.clone(), t.clone());
    let e = within_watchdog(move || r.generate_data_key(&p, &tt, &context("f")).unwrap_err());
    assert_eq!(e.error.kind, ErrorKind::DependencyTimeout, "{e:?}");
    assert!(relay.accepted.load(Ordering::SeqCst) >= 1);

    // Credential resolution is inside the bound too: a credential_process that does
    // not answer in time is a timeout as well.
    let (r, p, tt) = (
        remote.clone(),
        profile("slow", &files),
        target(&arn, &s.endpoint),
    );
    let e = within_watchdog(move || r.describe_key(&p, &tt).unwrap_err());
    assert_eq!(e.error.kind, ErrorKind::DependencyTimeout, "{e:?}");

    // Closes every connection: a network failure (EIO in the filesystem).
    relay.set(REFUSE);
    relay.release();
    let (r, p, tt) = (remote.clone(), alice.clone(), t.clone());
    let e = within_watchdog(move || r.describe_key(&p, &tt).unwrap_err());
    assert!(
        matches!(
            e.error.kind,
            ErrorKind::KmsInternal | ErrorKind::DependencyTimeout
        ),
        "{e:?}"
    );

    // The remote is back on the same address: the same client works again.
    relay.set(FORWARD);
    let (r, p, tt) = (remote.clone(), alice.clone(), t.clone());
    let dk = within_watchdog(move || r.generate_data_key(&p, &tt, &context("f")))
        .unwrap_or_else(|e| panic!("no recovery: {e:?}"));
    let (back, _) = remote
        .decrypt(&alice, &t, &dk.wrapped, &context("f"))
        .unwrap();
    assert_eq!(back.expose(), dk.key.expose());
}

#[test]
fn a_hung_call_does_not_block_a_call_to_a_live_remote() {
    let s = WireServer::start("remote-sdk-concurrent");
    let files = profiles(&s);
    let arn = central_key(&s);
    let relay = Relay::start(s.addr());
    // A long timeout: the hung call stays in flight until the test releases it.
    let remote = Arc::new(
        SdkRemote::new(RemoteSettings {
            timeout: Duration::from_secs(60),
            ..RemoteSettings::default()
        })
        .unwrap(),
    );
    let alice = profile("alice", &files);
    let (r, p, hung) = (
        remote.clone(),
        alice.clone(),
        target(&arn, &relay.endpoint()),
    );
    let in_flight = std::thread::spawn(move || r.describe_key(&p, &hung));
    while relay.accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            !in_flight.is_finished(),
            "the call ended without connecting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The same SdkRemote, the same profile, another endpoint: answered while the first
    // call still waits.
    let live = target(&arn, &s.endpoint);
    let (meta, _) = remote.describe_key(&alice, &live).unwrap();
    assert_eq!(meta["Arn"], arn.as_str());
    assert!(
        !in_flight.is_finished(),
        "the hung call should still be waiting"
    );

    // Let it go: the relay now forwards, and the held connection closes.
    relay.set(FORWARD);
    relay.release();
    let _ = within_watchdog(move || in_flight.join().unwrap());
}

/// `kmsfs whoami` on a client machine whose principals map uids to profiles: for the
/// volume's remote key, each principal's profile and what the central KMS answers for
/// it (DescribeKey, and a Decrypt dry run of a real file's wrapped key).
#[test]
fn whoami_shows_each_principals_profile_and_the_remote_answers() {
    use kmsfs::format::{encryption_context, FileHeader, VolumeConfig};
    let s = WireServer::start("remote-sdk-whoami");
    let files = profiles(&s);
    let arn = central_key(&s);
    let client = s.dir.join("client");
    std::fs::create_dir_all(&client).unwrap();
    let principals = client.join("principals.toml");
    std::fs::write(
        &principals,
        format!(
            "account = \"{acct}\"\naws_config_file = \"../aws-config\"\n\
             aws_credentials_file = \"../aws-credentials\"\n\n\
             [[principal]]\narn = \"{a}\"\nuid = 1001\naws_profile = \"alice\"\n\n\
             [[principal]]\narn = \"{b}\"\nuid = 1002\naws_profile = \"bob\"\n\n\
             [[principal]]\narn = \"{c}\"\nuid = 1003\n",
            acct = support::ACCOUNT,
            a = support::arn("alice"),
            b = support::arn("bob"),
            c = support::arn("carol"),
        ),
    )
    .unwrap();
    let globals = [
        "--store".to_string(),
        client.join("store").display().to_string(),
        "--principals".to_string(),
        principals.display().to_string(),
        // Nothing listens there: the client opens its own store directly.
        "--socket".to_string(),
        client.join("none.sock").display().to_string(),
    ];
    let kmsfs = |args: &[&str]| {
        std::process::Command::new(support::wire::KMSFS)
            .args(&globals)
            .args(args)
            .env_remove("KMSFS_PASSPHRASE")
            .output()
            .unwrap()
    };
    ok(&kmsfs(&["init"]));

    // A volume whose default key is the remote one, with one file under it (its header
    // written as the filesystem writes it, the data key from the central KMS as alice).
    let backing = client.join("vol");
    ok(&kmsfs(&[
        "init",
        backing.to_str().unwrap(),
        "--key",
        &arn,
        "--kms-endpoint",
        &s.endpoint,
    ]));
    let volume = VolumeConfig::load(&backing).unwrap();
    assert_eq!(volume.kms_endpoint.as_deref(), Some(s.endpoint.as_str()));
    let remote = SdkRemote::new(RemoteSettings::default()).unwrap();
    let file_id = FileHeader::generate_file_id().unwrap();
    let dk = remote
        .generate_data_key(
            &profile("alice", &files),
            &target(&arn, &s.endpoint),
            &encryption_context(&volume.volume_id, &file_id),
        )
        .unwrap();
    let header = FileHeader::new(file_id, arn.clone(), dk.wrapped, &dk.key).unwrap();
    std::fs::write(backing.join("sample"), header.encode()).unwrap();

    // The endpoint is the volume's own.
    let out = ok(&kmsfs(&["whoami", "--volume", backing.to_str().unwrap()]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let key = &v["Keys"][0];
    assert_eq!(key["KeyId"], arn.as_str(), "{v:#}");
    assert_eq!(key["Remote"]["Endpoint"], s.endpoint.as_str());
    let rows = key["Remote"]["Principals"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["Arn"] == support::arn(name).as_str())
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
    };
    let alice = row("alice");
    assert_eq!(alice["AwsProfile"], "alice");
    assert_eq!(alice["Uids"], serde_json::json!([1001]));
    assert_eq!(
        alice["DescribeKey"]["KeyMetadata"]["KeyState"], "Enabled",
        "{v:#}"
    );
    assert_eq!(alice["DecryptDryRun"]["Allowed"], true, "{v:#}");
    assert!(alice["DecryptDryRun"]["RequestId"].is_string(), "{v:#}");
    // bob administers the key (DescribeKey) but may not decrypt.
    let bob = row("bob");
    assert_eq!(
        bob["DescribeKey"]["KeyMetadata"]["KeyState"], "Enabled",
        "{v:#}"
    );
    assert_eq!(
        bob["DecryptDryRun"]["Error"], "AccessDeniedException",
        "{v:#}"
    );
    assert!(bob["DecryptDryRun"]["RequestId"].is_string(), "{v:#}");
    let carol = row("carol");
    assert!(carol["AwsProfile"].is_null(), "{v:#}");
    assert!(carol["DescribeKey"]["Error"]
        .as_str()
        .is_some_and(|e| e.contains("no aws_profile")));

    // By key id, no volume: no file to test; the text output names each profile.
    let out = ok(&kmsfs(&[
        "--output",
        "text",
        "whoami",
        "--key-id",
        &arn,
        "--kms-endpoint",
        &s.endpoint,
    ]));
    let alice_line = out
        .lines()
        .find(|l| l.contains(&support::arn("alice")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(alice_line.contains("profile=alice"), "{out}");
    assert!(alice_line.contains("DescribeKey=Enabled"), "{out}");
    assert!(alice_line.contains("no file to test"), "{out}");
    assert!(out.contains("profile=none"), "{out}");
}

/// A central kmsfs on `https://` with a certificate of a private CA: trusted through
/// `RemoteSettings::ca_bundle`, refused (a failure, not a silent downgrade) without it.
#[test]
fn an_https_central_with_a_private_ca_is_trusted_through_the_ca_bundle() {
    use std::io::BufRead;
    let mut s = WireServer::start("remote-sdk-tls");
    let files = profiles(&s);
    let arn = central_key(&s);
    // A private CA, and a server certificate for 127.0.0.1 signed by it.
    let (ca, cert, key) = (
        s.dir.join("ca.pem"),
        s.dir.join("tls-cert.pem"),
        s.dir.join("tls-key.pem"),
    );
    std::fs::write(
        s.dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let script = "set -e\n\
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
          -subj '/CN=kmsfs test CA' -keyout ca-key.pem -out ca.pem\n\
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
          -subj '/CN=127.0.0.1' -keyout tls-key.pem -out tls.csr\n\
        openssl x509 -req -in tls.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
          -days 1 -extfile leaf.ext -out tls-cert.pem\n";
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(&s.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {out:?}");

    // The same store, now served over TLS only.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    while s.is_serving() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = std::process::Command::new(support::wire::KMSFS)
        .args(s.globals())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let guard = support::cli::KillOnDrop(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("kmsfs serve exited before listening")
            .unwrap();
        if let Some(at) = line.find("listening on https://") {
            let url = &line[at + "listening on ".len()..];
            break url.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    let t = target(&arn, &endpoint);
    let alice = profile("alice", &files);
    let trusted = SdkRemote::new(RemoteSettings {
        ca_bundle: Some(ca),
        ..RemoteSettings::default()
    })
    .unwrap();
    let dk = trusted
        .generate_data_key(&alice, &t, &context("tls"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (back, _) = trusted
        .decrypt(&alice, &t, &dk.wrapped, &context("tls"))
        .unwrap();
    assert_eq!(back.expose(), dk.key.expose());

    let untrusted = SdkRemote::new(RemoteSettings {
        timeout: Duration::from_secs(5),
        ..RemoteSettings::default()
    })
    .unwrap();
    let e = within_watchdog(move || untrusted.describe_key(&alice, &t).unwrap_err());
    assert_eq!(e.error.kind, ErrorKind::KmsInternal, "{e:?}");
    assert!(e.receipt.request_id.is_none(), "{e:?}");
    drop(guard);
}

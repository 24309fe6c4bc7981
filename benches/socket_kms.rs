//! GenerateDataKey and Decrypt round trips through the control socket, as `kmsfs kms`
//! clients make them: the real service (policy evaluation, key-state checks, audit log)
//! behind the real socket server. Prints p50/p99 latency and ops/s for 1 and 8
//! concurrent clients. Run: `cargo bench --bench socket_kms` (add `-- --seconds N`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kmsfs::control::{Backend, Server, SocketClient};
use kmsfs::kms::provider::Caller;
use kmsfs::kms::{init_store, Service, ServiceConfig};
use serde_json::{json, Value};

fn main() {
    let secs: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("kmsfs-bench-sock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = dir.join("store");
    let cfg = ServiceConfig::new(&store);
    init_store(&cfg).expect("init store");
    let service = Service::open(cfg).expect("open store");
    let me = Caller {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        pid: std::process::id(),
    };
    let key = service
        .call(&me, "CreateKey", json!({"Description": "bench"}))
        .expect("create key")["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("key id")
        .to_string();
    let sock = dir.join("kms.sock");
    let server = Server::bind(&sock, service.clone())
        .expect("bind")
        .spawn()
        .expect("serve");
    let blob = service
        .call(
            &me,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
        )
        .expect("encrypt")["CiphertextBlob"]
        .clone();

    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>12}",
        "operation", "clients", "p50 µs", "p99 µs", "ops/s"
    );
    for (name, op, req) in [
        ("Decrypt", "Decrypt", json!({"CiphertextBlob": blob})),
        (
            "GenerateDataKey",
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256"}),
        ),
    ] {
        for clients in [1usize, 8] {
            let (mut lat, total, elapsed) =
                run(&sock, op, &req, clients, Duration::from_secs(secs));
            lat.sort_unstable();
            let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
            println!(
                "{name:<18} {clients:>8} {:>10.1} {:>10.1} {:>12.0}",
                pct(0.50),
                pct(0.99),
                total as f64 / elapsed.as_secs_f64()
            );
        }
    }
    // Where the time goes: the service alone (no socket), and the socket alone (a
    // handler that answers at once), each with the same client counts.
    let direct = |clients: usize| {
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (service, me, blob) = (service.clone(), me, blob.clone());
                std::thread::spawn(move || {
                    let mut n = 0usize;
                    while Instant::now() < until {
                        let req = json!({"CiphertextBlob": blob});
                        service.call(&me, "Decrypt", req).expect("decrypt");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let n: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        n as f64 / start.elapsed().as_secs_f64()
    };
    let noop_sock = dir.join("noop.sock");
    let noop = Server::bind(&noop_sock, Arc::new(Noop))
        .expect("bind")
        .spawn()
        .expect("serve");
    for clients in [1usize, 8] {
        println!(
            "{:<18} {clients:>8} {:>10} {:>10} {:>12.0}",
            "Decrypt (no sock)",
            "-",
            "-",
            direct(clients)
        );
    }
    for clients in [1usize, 8] {
        let (mut lat, total, elapsed) = run(
            &noop_sock,
            "Decrypt",
            &json!({"CiphertextBlob": blob}),
            clients,
            Duration::from_secs(secs),
        );
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
        println!(
            "{:<18} {clients:>8} {:>10.1} {:>10.1} {:>12.0}",
            "socket only",
            pct(0.50),
            pct(0.99),
            total as f64 / elapsed.as_secs_f64()
        );
    }
    let _ = noop.stop();
    let _ = server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Answers every request at once: the cost of the socket, framing and JSON alone.
struct Noop;

impl kmsfs::control::Handler for Noop {
    fn call(&self, _: &Caller, _: &str, _: Value) -> Result<Value, kmsfs::kms::error::KmsError> {
        Ok(json!({"Plaintext": "AAAA", "KeyId": "k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}))
    }
}

fn run(
    sock: &std::path::Path,
    op: &'static str,
    req: &Value,
    clients: usize,
    length: Duration,
) -> (Vec<Duration>, usize, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let sock = sock.to_path_buf();
            let req = req.clone();
            std::thread::spawn(move || {
                let client = SocketClient::connect(&sock).expect("connect");
                let mut lat = Vec::new();
                let until = Instant::now() + length;
                while Instant::now() < until {
                    let t = Instant::now();
                    client.call(op, req.clone()).expect("call");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("client thread"));
    }
    let n = all.len();
    (all, n, start.elapsed())
}

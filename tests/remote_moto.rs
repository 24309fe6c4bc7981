//! `SdkRemote` against `moto_server` (PyPI `moto[server]`, from the pinned virtualenv)
//! on loopback: the AWS KMS protocol as another implementation speaks it. moto enforces
//! no policies, so this checks the protocol and the credential chains only: static keys,
//! and `role_arn` + `source_profile` (AssumeRole through moto's STS, reached by the
//! profile's own `endpoint_url`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kmsfs::kms::ErrorKind;
use kmsfs::remote::{Context, Profile, RemoteKeys, RemoteSettings, SdkRemote, Target};
use serde_json::Value;
use support::wire::{ok, venv};

const REGION: &str = "us-east-1";

/// A `moto_server` child on a free loopback port, killed and reaped on drop, with a
/// scratch directory for the profile files.
struct Moto {
    child: Child,
    endpoint: String,
    dir: PathBuf,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("kmsfs-moto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        };
        // A start-up bound, not a timed assertion: a server that never listens fails
        // the test instead of hanging it.
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                moto.child.try_wait().unwrap().is_none(),
                "moto_server exited at start-up"
            );
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "moto_server never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `aws kms <args>` against moto with throwaway keys (moto accepts any).
    fn aws(&self, args: &[&str]) -> Value {
        let out = Command::new(venv().join("bin/aws"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.dir)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["--endpoint-url", &self.endpoint, "--region", REGION, "kms"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        serde_json::from_str(&ok(&out)).unwrap()
    }

    /// Profiles: `static` (keys in the credentials file), `role` (assumes a role with
    /// `static` as its source, STS at moto), `orphan` (a role whose source is missing).
    fn profiles(&self) -> (PathBuf, PathBuf) {
        let creds = self.dir.join("credentials");
        std::fs::write(
            &creds,
            "[static]\naws_access_key_id = AKIAMOTOTEST00000001\n\
             aws_secret_access_key = moto/secret\n",
        )
        .unwrap();
        let config = self.dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/kmsfs-user\n\
                 source_profile = static\nendpoint_url = {0}\n\n\
                 [profile orphan]\nrole_arn = arn:aws:iam::123456789012:role/kmsfs-user\n\
                 source_profile = missing\nendpoint_url = {0}\n",
                self.endpoint
            ),
        )
        .unwrap();
        (config, creds)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn profile(name: &str, files: &(PathBuf, PathBuf)) -> Profile {
    Profile {
        name: name.into(),
        config_file: Some(files.0.clone()),
        credentials_file: Some(files.1.clone()),
    }
}

#[test]
fn data_keys_round_trip_through_moto_with_static_keys_and_an_assumed_role() {
    let moto = Moto::start();
    let files = moto.profiles();
    let created = moto.aws(&["create-key", "--description", "kmsfs remote test"]);
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    assert!(arn.starts_with(&format!("arn:aws:kms:{REGION}:")), "{arn}");
    let target = Target {
        key_arn: arn.clone(),
        endpoint: Some(moto.endpoint.clone()),
    };
    let context: Context = BTreeMap::from([
        ("kmsfs:volume".to_string(), "vol-moto".to_string()),
        ("kmsfs:file".to_string(), "1".to_string()),
    ]);
    let remote = SdkRemote::new(RemoteSettings::default()).unwrap();

    for name in ["static", "role"] {
        let p = profile(name, &files);
        let dk = remote
            .generate_data_key(&p, &target, &context)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            dk.key_arn.contains(arn.rsplit('/').next().unwrap()),
            "{dk:?}"
        );
        let (back, receipt) = remote
            .decrypt(&p, &target, &dk.wrapped, &context)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(back.expose(), dk.key.expose(), "{name}");
        assert!(receipt.request_id.is_some(), "{name}: no request id");
        let (meta, _) = remote.describe_key(&p, &target).unwrap();
        assert_eq!(meta["Arn"], arn.as_str());
        assert_eq!(meta["KeyState"], "Enabled");
        assert_eq!(meta["Description"], "kmsfs remote test");
    }

    // A role whose source profile does not exist: no identity at all.
    let e = remote
        .generate_data_key(&profile("orphan", &files), &target, &context)
        .unwrap_err();
    assert_eq!(e.error.kind, ErrorKind::AccessDenied, "{e:?}");
    assert!(e.error.message.contains("orphan"), "{}", e.error.message);
}

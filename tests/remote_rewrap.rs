//! `kmsfs rewrap` between a local key and a remote one: a central
//! `kmsfs serve --listen` on loopback (its own store, an access key per principal) is the
//! remote KMS; the client's account root signs as the central's key user `alice`
//! (`aws_profile` in principals.toml, static keys in a credentials file beside it).
//! Real mounts read the files after each move; an interrupted move is rerun. Needs root.

mod support;

use std::collections::BTreeMap;

use support::remote::{
    assert_rewrap_counts, central_key, client_files, header_key, ok, ClientPrincipal, Served,
    Volume, WireServer, ACCOUNT,
};

/// Remote calls are bounded and never cached here: each step asks the central again.
const MOUNT_ARGS: &[&str] = &["-o", "kms_cache_ttl=0,kms_timeout=5"];

/// The client's principals: the account root (who runs mount and rewrap here) signs
/// remote calls as the central's `alice`.
fn client_principals(s: &Served, c: &WireServer) {
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let who = [ClientPrincipal {
        arn: &root,
        uid: 0,
        profile: "alice",
    }];
    client_files(&s.dir, &s.principals(), c, &["alice"], ACCOUNT, &who);
}

#[test]
fn a_local_key_volume_moves_to_a_central_kms_and_back() {
    let central = WireServer::start("rewrap-central");
    let remote = central_key(&central);
    let s = Served::init("rewrap-client");
    client_principals(&s, &central);
    let local = ok(&s.root(&[
        "kms",
        "create-key",
        "--query",
        "KeyMetadata.Arn",
        "--output",
        "text",
    ]));
    let c = Volume::init(&s, "vol", &local, MOUNT_ARGS);
    let mut rng = support::Rng(0x00ce_47a1);
    let files = BTreeMap::from([
        ("a.txt", b"to the central and back".to_vec()),
        ("d/big", rng.bytes(2 * 4096 + 99)),
        ("d/e/empty", Vec::new()),
    ]);
    c.populate(&files);
    let paths = c.backing_files();
    let content: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap()[1024..].to_vec())
        .collect();

    // Local → remote: every header now names the central's key and holds its blob.
    let n = files.len() as u64;
    assert_rewrap_counts(
        &c.rewrap(&["--to-key", &remote, "--kms-endpoint", &central.endpoint]),
        n,
        0,
    );
    for p in &paths {
        assert_eq!(header_key(p), remote, "{}", p.display());
    }
    let volume = std::fs::read_to_string(c.backing.join("kmsfs.volume")).unwrap();
    assert!(
        volume.contains(&format!("default_key = \"{remote}\"")),
        "{volume}"
    );
    assert!(volume.contains(&central.endpoint), "{volume}");
    c.assert_readable(&files);
    // A central kmsfs's blobs name their material version, as local ones do: nothing to
    // do until the central rotates the key (AWS's blobs are opaque: always re-wrapped).
    assert_rewrap_counts(&c.rewrap(&[]), 0, n);
    ok(&central.kmsfs(&["kms", "rotate-key-on-demand", "--key-id", &remote]));
    assert_rewrap_counts(&c.rewrap(&[]), n, 0);
    c.assert_readable(&files);

    // Remote → local, killed once with one header written, then rerun.
    c.rewrap_killed_at("rewrap-header-written", &["--to-key", &local]);
    assert!(c.backing.join("kmsfs.rewrap").exists());
    assert_rewrap_counts(&c.rewrap(&["--to-key", &local]), n - 1, 1);
    assert!(!c.backing.join("kmsfs.rewrap").exists());
    for (p, bytes) in paths.iter().zip(&content) {
        assert_eq!(header_key(p), local, "{}", p.display());
        assert!(
            std::fs::read(p).unwrap()[1024..] == bytes[..],
            "content changed"
        );
    }
    c.assert_readable(&files);
    let fsck = s.root(&["fsck", &c.backing.display().to_string()]);
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

//! `kmsfs rewrap`: re-wraps data keys by replacing headers only. Real store, real
//! `kmsfs mount` (daemonized, serving the control socket), real `kmsfs rewrap`, real
//! kill -9 at its durable steps. Needs root (FUSE).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;
use support::cli::*;
use support::remote::{assert_rewrap_counts, header_key, rewrap_summary, Volume};

const HEADER: usize = 1024;

/// `kmsfs fsck` of the volume is clean and could check every file.
fn fsck_clean(v: &Volume) {
    let out = v.s.root(&["fsck", &v.backing.display().to_string()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "fsck: {report}");
    assert!(
        !report.contains("\"unchecked\""),
        "fsck could not check every file: {report}"
    );
}

fn create_key(s: &Served) -> String {
    ok(&s.root(&[
        "kms",
        "create-key",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]))
}

fn key_arn(id: &str) -> String {
    format!("arn:aws:kms:local:{ACCOUNT}:key/{id}")
}

fn files() -> BTreeMap<&'static str, Vec<u8>> {
    let mut rng = support::Rng(0x5eed_7e57);
    BTreeMap::from([
        ("empty", Vec::new()),
        ("small.txt", b"hello rewrap".to_vec()),
        ("dir/blocks.bin", rng.bytes(3 * 4096 + 17)),
        ("dir/deeper/one", rng.bytes(5000)),
    ])
}

#[test]
fn rotation_then_rewrap_counts_unchanged_and_rewrapped() {
    let s = Served::init("rewrap-rotate");
    let k1 = create_key(&s);
    let v = Volume::init(&s, "vol", &k1, &[]);
    let files = files();
    v.populate(&files);

    // Current material already: nothing to write.
    let before: Vec<Vec<u8>> = v
        .backing_files()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_rewrap_counts(&v.rewrap(&[]), 0, files.len() as u64);
    let after: Vec<Vec<u8>> = v
        .backing_files()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before == after, "an Unchanged file was written");

    ok(&s.root(&["kms", "rotate-key-on-demand", "--key-id", &k1]));
    assert_rewrap_counts(&v.rewrap(&[]), files.len() as u64, 0);
    assert_rewrap_counts(&v.rewrap(&[]), 0, files.len() as u64);
    // --path limits the walk to a subtree.
    ok(&s.root(&["kms", "rotate-key-on-demand", "--key-id", &k1]));
    assert_rewrap_counts(&v.rewrap(&["--path", "/dir"]), 2, 0);
    assert_rewrap_counts(&v.rewrap(&[]), 2, 2);
    let missing = v.rewrap(&["--path", "nowhere"]);
    assert_ne!(missing.status.code(), Some(0));
    v.assert_readable(&files);
    fsck_clean(&v);
}

#[test]
fn to_key_on_a_mounted_volume_changes_headers_only() {
    let s = Served::init("rewrap-to-key");
    let (k1, k2) = (create_key(&s), create_key(&s));
    let v = Volume::init(&s, "vol", &k1, &[]);
    let files = files();
    v.populate(&files);
    let m = v.mount();
    // A hard link made through the mount: one inode, re-wrapped once.
    std::fs::hard_link(v.mnt.join("small.txt"), v.mnt.join("dir/link")).unwrap();
    let held = std::fs::File::open(v.mnt.join("dir/blocks.bin")).unwrap();

    let paths = v.backing_files();
    let before: Vec<(Vec<u8>, std::fs::Metadata)> = paths
        .iter()
        .map(|p| (std::fs::read(p).unwrap(), std::fs::metadata(p).unwrap()))
        .collect();
    for p in &paths {
        assert_eq!(header_key(p), key_arn(&k1));
    }

    // Through the mount's control socket (the mount serves it on --socket).
    assert!(s.socket().exists(), "the mount serves no control socket");
    assert_rewrap_counts(&v.rewrap(&["--to-key", &k2]), files.len() as u64, 0);

    for (p, (bytes, meta)) in paths.iter().zip(&before) {
        let now = std::fs::read(p).unwrap();
        let st = std::fs::metadata(p).unwrap();
        assert_eq!(header_key(p), key_arn(&k2), "{}", p.display());
        assert_eq!(now.len(), bytes.len());
        assert!(now[HEADER..] == bytes[HEADER..], "content bytes changed");
        assert!(now[..HEADER] != bytes[..HEADER], "header not rewritten");
        // Same file id (bytes 12..28), same version (0..12).
        assert_eq!(now[..28], bytes[..28]);
        assert_eq!((st.ino(), st.nlink()), (meta.ino(), meta.nlink()));
        assert_eq!(
            (st.mtime(), st.mtime_nsec()),
            (meta.mtime(), meta.mtime_nsec())
        );
        assert_eq!((st.uid(), st.mode()), (meta.uid(), meta.mode()));
    }
    // The handle opened before the rewrap keeps working: the data key did not change.
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut got).unwrap();
    assert!(got == files["dir/blocks.bin"]);
    drop(held);
    assert_eq!(
        std::fs::read(v.mnt.join("dir/link")).unwrap(),
        files["small.txt"]
    );
    v.umount(m);

    // The whole volume moved: so did its default key.
    let volume = std::fs::read_to_string(v.backing.join("kmsfs.volume")).unwrap();
    assert!(
        volume.contains(&format!("default_key = \"{k2}\"")),
        "{volume}"
    );
    v.assert_readable(&files);
    let m = v.mount();
    std::fs::write(v.mnt.join("new"), b"after the move").unwrap();
    v.umount(m);
    let new = v
        .backing_files()
        .into_iter()
        .find(|p| !paths.contains(p))
        .unwrap();
    assert_eq!(header_key(&new), key_arn(&k2));
    // Rotating k1 now changes nothing: no file uses it.
    ok(&s.root(&["kms", "rotate-key-on-demand", "--key-id", &k1]));
    assert_rewrap_counts(&v.rewrap(&[]), 0, files.len() as u64 + 1);
    fsck_clean(&v);
}

#[test]
fn a_file_the_caller_may_not_encrypt_under_the_destination_fails_alone() {
    let s = Served::init("rewrap-denied");
    let k1 = create_key(&s);
    let v = Volume::init(&s, "vol", &k1, &[]);
    let files = files();
    v.populate(&files);
    let victim = v
        .backing_files()
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 10_000)
        .unwrap();
    let victim_bytes = std::fs::read(&victim).unwrap();
    let file_id = hex(&victim_bytes[12..28]);

    // The destination key allows the caller (the account root) everything but
    // kms:Encrypt for that one file's encryption context.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow",
             "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoEncryptForOneFile", "Effect": "Deny",
             "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
             "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:kmsfs:file": file_id}}}
        ]
    });
    let policy_file = s.public_file("deny-one.json", policy.to_string().as_bytes());
    let k2 = ok(&s.root(&[
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", policy_file.display()),
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]));

    let out = v.rewrap(&["--to-key", &k2]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = rewrap_summary(&out);
    assert_eq!(sum["Rewrapped"], files.len() as u64 - 1, "{sum}");
    let failed = sum["Failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{sum}");
    assert_eq!(failed[0]["Path"], "dir/blocks.bin");
    assert!(
        failed[0]["Error"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{sum}"
    );
    // The refused file is intact, under its old key; the default key did not move.
    assert!(std::fs::read(&victim).unwrap() == victim_bytes);
    let volume = std::fs::read_to_string(v.backing.join("kmsfs.volume")).unwrap();
    assert!(
        volume.contains(&format!("default_key = \"{k1}\"")),
        "{volume}"
    );
    v.assert_readable(&files);
    fsck_clean(&v);
}

/// A volume under a first key holding [`files`], whose `kmsfs rewrap --to-key` to a
/// second key was killed with the journal written and the old header still in place;
/// `then` gets the volume, the second key and the files.
fn killed_after_the_journal(
    name: &str,
    then: impl FnOnce(&Volume<'_>, &str, &BTreeMap<&'static str, Vec<u8>>),
) {
    let s = Served::init(name);
    let (k1, k2) = (create_key(&s), create_key(&s));
    let v = Volume::init(&s, "vol", &k1, &[]);
    let files = files();
    v.populate(&files);
    v.rewrap_killed_at("rewrap-journal-written", &["--to-key", &k2]);
    then(&v, &k2, &files);
}

#[test]
fn an_interrupted_rewrap_reruns_to_completion() {
    killed_after_the_journal("rewrap-crash", |v, k2, files| {
        let journal = v.backing.join("kmsfs.rewrap");
        assert!(journal.exists());
        let fsck = v.s.root(&["fsck", &v.backing.display().to_string()]);
        assert!(
            String::from_utf8_lossy(&fsck.stdout).contains("interrupted kmsfs rewrap"),
            "fsck does not report the journal"
        );
        v.assert_readable(files);
        assert!(!journal.exists(), "the mount did not clear a stale journal");

        // Killed with the new header written and the journal not yet removed.
        v.rewrap_killed_at("rewrap-header-written", &["--to-key", k2]);
        assert!(journal.exists());
        let moved = v
            .backing_files()
            .iter()
            .filter(|p| header_key(p) == key_arn(k2))
            .count();
        assert_eq!(moved, 1, "exactly one file has its new header");

        // The rerun completes: the moved file is already wrapped under k2's material.
        assert_rewrap_counts(&v.rewrap(&["--to-key", k2]), files.len() as u64 - 1, 1);
        assert!(!journal.exists());
        v.assert_readable(files);
        fsck_clean(v);
    });
}

#[test]
fn a_torn_header_is_completed_from_the_journal_by_the_next_mount() {
    killed_after_the_journal("rewrap-torn", |v, k2, files| {
        let journal = v.backing.join("kmsfs.rewrap");
        // What a power loss in the middle of the header write could leave: the first
        // sector of the new header over the old one.
        let j: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
        let target = v.backing.join(j["path"].as_str().unwrap());
        let new = unhex(j["new"].as_str().unwrap());
        let mut torn = std::fs::read(&target).unwrap();
        torn[..512].copy_from_slice(&new[..512]);
        std::fs::write(&target, &torn).unwrap();

        v.assert_readable(files);
        assert!(!journal.exists());
        assert!(std::fs::read(&target).unwrap()[..HEADER] == new[..]);
        assert_eq!(header_key(&target), key_arn(k2));
        fsck_clean(v);
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rewrap_and_the_mounts_rekey_never_break_a_file_between_them() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let s = Served::init("rewrap-race");
    let (k1, k2) = (create_key(&s), create_key(&s));
    let v = Volume::init(&s, "vol", &k1, &[]);
    let m = v.mount();
    let hot = v.mnt.join("hot");
    let content = |i: u64| -> Vec<u8> {
        let mut rng = support::Rng(i + 1);
        rng.bytes(2 * 4096 + 7)
    };
    std::fs::write(&hot, content(0)).unwrap();
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    std::thread::scope(|scope| {
        // Every O_TRUNC re-keys the file through the mount: a new file id, key, header.
        let writer = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                std::fs::write(&hot, content(i)).expect("write through the mount");
                let back = std::fs::read(&hot).expect("read through the mount");
                assert!(back == content(i), "round {i} reads back other bytes");
                written.store(i, Ordering::Relaxed);
            }
        });
        for round in 0..6 {
            let key = if round % 2 == 0 { &k2 } else { &k1 };
            let out = v.rewrap(&["--to-key", key]);
            let sum = rewrap_summary(&out);
            // The only acceptable failure: the header kept changing under the rewrap.
            for f in sum["Failed"].as_array().unwrap() {
                assert!(
                    f["Error"].as_str().unwrap().contains("changed while"),
                    "{sum}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    });
    let last = written.load(Ordering::Relaxed);
    assert!(std::fs::read(&hot).unwrap() == content(last));
    v.umount(m);
    let files = BTreeMap::from([("hot", content(last))]);
    v.assert_readable(&files);
    fsck_clean(&v);
}

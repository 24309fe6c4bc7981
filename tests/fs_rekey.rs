//! Re-keying on a real mount (issue 8, "file-id poisoning", gocryptfs audit §2.2):
//! truncation to zero and the first write into a header-only file give the file a new
//! file id and data key under its directory's current key rule, so a header-only
//! envelope copied over a file by someone who can write the backing directory never
//! protects the user's next content. Also: open handles follow a re-key, and version-1
//! files stay readable and writable until a re-key makes them version 2. Needs root.

mod support;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kmsfs::crypto::DataKey;
use kmsfs::format::{
    encryption_context, ContentCipher, DirMeta, EnvelopeVersion, FileHeader, MetadataKey,
    NameCipher, VolumeConfig, HEADER_LEN,
};
use kmsfs::kms::provider::{Caller, DataAction, DataKeys};
use support::fs::*;

const KEY_P: &str = "arn:aws:kms:local:111122223333:key/p-attackers-choice";
const KEY_S: &str = "arn:aws:kms:local:111122223333:key/s-victims-dir";
const ALL: &[Op] = &[Op::Generate, Op::Decrypt, Op::Encrypt];
const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 0,
};

fn set_key_rule(dir: &Path, key: &str) {
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    let name = CString::new(kmsfs::fs::KEY_RULE_XATTR).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let ret = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            key.as_ptr().cast(),
            key.len(),
            0,
        )
    };
    assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
}

/// Runs `make` and returns the one backing file it created.
fn new_backing(m: &Mounted, make: impl FnOnce()) -> PathBuf {
    let before = m.backing_files();
    make();
    let mut new: Vec<_> = m
        .backing_files()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.remove(0)
}

fn header_of(backing: &Path) -> FileHeader {
    let bytes = fs::read(backing).unwrap();
    FileHeader::decode(&bytes[..HEADER_LEN]).unwrap()
}

fn volume_id(m: &Mounted) -> String {
    VolumeConfig::load(&m.backing).unwrap().volume_id
}

/// The data key of `header`, unwrapped by the test key service as root.
fn data_key(m: &Mounted, header: &FileHeader) -> DataKey {
    let context = encryption_context(&volume_id(m), &header.file_id);
    m.keys
        .open_data_key(
            &ROOT,
            &header.key_arn,
            &header.wrapped_key,
            &context,
            &[DataAction::Decrypt],
        )
        .unwrap()
}

/// Two directories with key rules: `p` under the attacker's key, `s` under the victim's.
/// Returns the backing paths of the header-only file `p/P` and of `s/S` (with content).
fn poisoned_volume() -> (Mounted, PathBuf, PathBuf) {
    let m = Mounted::new(&[]);
    for key in [KEY_P, KEY_S] {
        m.keys.add_key(key);
        m.keys.allow(0, key, ALL);
    }
    for (dir, key) in [("p", KEY_P), ("s", KEY_S)] {
        fs::create_dir(m.path(dir)).unwrap();
        set_key_rule(&m.path(dir), key);
    }
    let p = new_backing(&m, || fs::write(m.path("p/P"), b"").unwrap());
    let s = new_backing(&m, || fs::write(m.path("s/S"), b"old secret of S").unwrap());
    assert_eq!(header_of(&p).key_arn, KEY_P);
    assert_eq!(header_of(&s).key_arn, KEY_S);
    (m, p, s)
}

/// The attack, then the victim's overwrite (with or without O_TRUNC), then the checks.
fn victim_overwrites_a_poisoned_file(trunc: bool) {
    let (mut m, p, s) = poisoned_volume();
    let p_header = header_of(&p);
    let old_s = header_of(&s);
    // The attacker (root on the backing directory) copies P's header-only envelope over
    // S in place; the next mount sees S as an empty file under P's key and file id.
    fs::write(&s, fs::read(&p).unwrap()).unwrap();
    m.remount(&[]);
    assert_eq!(fs::metadata(m.path("s/S")).unwrap().len(), 0);

    let mut f = OpenOptions::new()
        .write(true)
        .truncate(trunc)
        .open(m.path("s/S"))
        .unwrap();
    f.write_all(b"new secret of S").unwrap();
    drop(f);

    let new = header_of(&s);
    assert_ne!(new.file_id, p_header.file_id, "S must not keep P's file id");
    assert_ne!(new.file_id, old_s.file_id);
    assert_eq!(new.key_arn, KEY_S, "S's directory key rule, not P's key");
    assert_ne!(new.wrapped_key, p_header.wrapped_key);
    assert_eq!(new.version, EnvelopeVersion::V2);
    // Authorized as a create is: GenerateDataKey under S's key, in the new context.
    let decisions = m.keys.decisions.lock().unwrap().clone();
    let generated = decisions
        .iter()
        .rev()
        .find(|d| d.op == Op::Generate)
        .unwrap();
    assert!(generated.allowed && generated.key == KEY_S);
    assert_eq!(
        generated.context,
        encryption_context(&volume_id(&m), &new.file_id)
    );

    // S's block does not open under P's header and key, and does under S's new one.
    let bytes = fs::read(&s).unwrap();
    let block = &bytes[HEADER_LEN..];
    let p_cipher = ContentCipher::new(&data_key(&m, &p_header), &p_header).unwrap();
    assert!(p_cipher.open_block(0, block, &mut Vec::new()).is_err());
    let s_cipher = ContentCipher::new(&data_key(&m, &new), &new).unwrap();
    let mut plain = Vec::new();
    s_cipher.open_block(0, block, &mut plain).unwrap();
    assert_eq!(plain, b"new secret of S");
    m.remount(&[]);
    assert_eq!(fs::read(m.path("s/S")).unwrap(), b"new secret of S");
}

#[test]
fn a_header_only_envelope_copied_over_a_file_is_replaced_when_opened_with_o_trunc() {
    victim_overwrites_a_poisoned_file(true);
}

#[test]
fn a_header_only_envelope_copied_over_a_file_is_replaced_by_the_first_write() {
    victim_overwrites_a_poisoned_file(false);
}

#[test]
fn a_refused_rekey_is_eacces_audited_and_leaves_the_file_as_it_was() {
    let (mut m, p, s) = poisoned_volume();
    fs::write(&s, fs::read(&p).unwrap()).unwrap();
    let poisoned = fs::read(&s).unwrap();
    m.remount(&[]);
    // Root may still use both keys, but no longer create files under S's key.
    m.keys.allow(0, KEY_S, &[Op::Decrypt, Op::Encrypt]);
    let err = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("s/S"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    let mut f = OpenOptions::new().write(true).open(m.path("s/S")).unwrap();
    let err = f.write_all(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    drop(f);
    assert_eq!(
        fs::read(&s).unwrap(),
        poisoned,
        "nothing written under P's key"
    );
    let decisions = m.keys.decisions.lock().unwrap();
    let refused: Vec<_> = decisions
        .iter()
        .filter(|d| d.op == Op::Generate && !d.allowed)
        .collect();
    assert_eq!(refused.len(), 2, "{decisions:?}");
    assert!(refused.iter().all(|d| d.key == KEY_S));
}

#[test]
fn truncation_to_zero_draws_a_new_file_id_and_key_under_the_current_rule() {
    let m = Mounted::new(&[]);
    let k2 = "arn:aws:kms:local:111122223333:key/k2";
    m.keys.add_key(k2);
    m.keys.allow(0, k2, ALL);
    fs::create_dir(m.path("d")).unwrap();
    let path = m.path("d/f");
    let backing = new_backing(&m, || fs::write(&path, vec![7u8; 10_000]).unwrap());
    let mut ids = vec![header_of(&backing).file_id];
    assert_eq!(header_of(&backing).key_arn, DEFAULT_KEY);
    // The rule changes after the file was created: a re-key follows the current rule.
    set_key_rule(&m.path("d"), k2);

    // Truncation to a non-zero size keeps the key.
    assert_ok(&sh_as(0, &format!("truncate -s 5000 {}", q(&path))));
    assert_eq!(header_of(&backing).file_id, ids[0]);

    // `truncate -s 0`: coreutils opens without O_TRUNC, then ftruncate(fd, 0).
    assert_ok(&sh_as(0, &format!("truncate -s 0 {}", q(&path))));
    let h = header_of(&backing);
    assert_eq!((h.key_arn.as_str(), h.version), (k2, EnvelopeVersion::V2));
    assert_eq!(fs::metadata(&backing).unwrap().len(), HEADER_LEN as u64);
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    ids.push(h.file_id);

    // truncate(2) by path: no handle, so the daemon checks Encrypt, then re-keys.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(b"abc", 0)
        .unwrap();
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 0) }, 0);
    ids.push(header_of(&backing).file_id);

    // O_TRUNC of a non-empty file (the shell's `>`), then the content reads back.
    fs::write(&path, b"one").unwrap();
    fs::write(&path, b"two").unwrap();
    ids.push(header_of(&backing).file_id);
    assert_eq!(fs::read(&path).unwrap(), b"two");

    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "every truncation to zero drew a new id"
    );
    assert_eq!(header_of(&backing).key_arn, k2);
}

/// Opens `path` for reading (and writing, truncating) with O_DIRECT: every read and
/// write of the handle goes to the daemon, not the page cache.
fn open_direct(path: &Path, write: bool, trunc: bool) -> fs::File {
    OpenOptions::new()
        .read(true)
        .write(write)
        .truncate(trunc)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap()
}

/// A file `f` holding `old` (at least 8 KiB) made through a mount, remounted, then a
/// reader and a writer opened on it with O_DIRECT, the reader checked against `old`:
/// (mount, path, backing file, the file id before any re-key, reader, writer).
fn two_handles_on(old: Vec<u8>) -> (Mounted, PathBuf, PathBuf, [u8; 16], fs::File, fs::File) {
    let mut m = Mounted::new(&[]);
    let path = m.path("f");
    let backing = new_backing(&m, || fs::write(&path, &old).unwrap());
    let old_id = header_of(&backing).file_id;
    m.remount(&[]);
    let reader = open_direct(&path, false, false);
    let writer = open_direct(&path, true, false);
    let mut buf = vec![0u8; 8192];
    assert_eq!(reader.read_at(&mut buf, 0).unwrap(), 8192);
    assert_eq!(buf, old[..8192]);
    (m, path, backing, old_id, reader, writer)
}

#[test]
fn open_handles_follow_a_rekey_through_another_handle() {
    let (mut m, path, backing, old_id, reader, writer) =
        two_handles_on(Rng(3).bytes(3 * 4096 + 10));
    let open = |write: bool, trunc: bool| open_direct(&path, write, trunc);
    let mut buf = vec![0u8; 8192];

    // A third open truncates (re-keys) and writes under the new key.
    let truncating = open(true, true);
    truncating.write_all_at(b"new head", 0).unwrap();
    assert_ne!(header_of(&backing).file_id, old_id);
    // The older handles read and write with the new key: their old one would fail to
    // authenticate (EIO) or seal blocks no later open could read.
    let n = reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"new head");
    writer.write_all_at(b"+tail", 8).unwrap();
    let n = reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"new head+tail");
    drop((reader, writer, truncating));
    m.remount(&[]);
    assert_eq!(fs::read(&path).unwrap(), b"new head+tail");
}

#[test]
fn open_handles_follow_a_rekey_after_the_rekeying_handle_is_closed() {
    // The node keeps the newer key only while something is open: here the re-keying
    // handle is gone before the older handles next use the file, and they still must
    // seal and open under the key in the header, not their own.
    let (mut m, path, backing, old_id, reader, writer) = two_handles_on(Rng(5).bytes(2 * 4096 + 3));
    let open = |write: bool, trunc: bool| open_direct(&path, write, trunc);
    let mut buf = vec![0u8; 8192];
    {
        let truncating = open(true, true);
        truncating.write_all_at(b"fresh", 0).unwrap();
    }
    assert_ne!(header_of(&backing).file_id, old_id);
    writer.write_all_at(b"+more", 5).unwrap();
    let n = reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"fresh+more");
    drop((reader, writer));
    // Everything closed (the node's copy of the key is dropped): a new open reads the
    // key from the header and sees the same bytes, also after a remount.
    assert_eq!(fs::read(&path).unwrap(), b"fresh+more");
    m.remount(&[]);
    assert_eq!(fs::read(&path).unwrap(), b"fresh+more");
}

#[test]
fn a_file_created_here_and_closed_empty_keeps_its_key_on_the_first_write() {
    // The mount remembers which key it generated even after the file's last handle
    // closed (by file id, not by keeping the cipher): the first write into the empty
    // file needs no re-key, while an empty file it did not create gets one.
    let m = Mounted::new(&[]);
    let path = m.path("empty");
    let backing = new_backing(&m, || drop(fs::File::create(&path).unwrap()));
    let id = header_of(&backing).file_id;
    for _ in 0..3 {
        // Other files' opens and closes in between.
        fs::write(m.path("other"), b"x").unwrap();
    }
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"first", 0).unwrap();
    drop(f);
    assert_eq!(
        header_of(&backing).file_id,
        id,
        "no re-key of a key made here"
    );
    assert_eq!(fs::read(&path).unwrap(), b"first");
}

/// Makes the volume one made before the volume file's `envelopes` field: each file's
/// header says its version, and version 1 is accepted. Unmounted while the volume file
/// is rewritten (with its MAC, as an older kmsfs would have saved it).
fn make_pre_envelopes_volume(m: &mut Mounted) {
    m.unmount();
    let mut cfg = VolumeConfig::load(&m.backing).unwrap();
    assert_eq!(cfg.envelopes, Some(EnvelopeVersion::V2));
    cfg.envelopes = None;
    let secret = m.keys.volume_secret(&cfg.volume_id).unwrap();
    cfg.save(&m.backing, &MetadataKey::new(&secret)).unwrap();
    m.mount(&[]);
}

/// Places a version-1 file `name` holding `content` in the backing root, as an older
/// kmsfs wrote it (authorized to root under the default key), and remounts. Returns its
/// header and backing path.
fn plant_version_1(m: &mut Mounted, name: &str, content: &[u8]) -> (FileHeader, PathBuf) {
    let vol = volume_id(m);
    let secret = m.keys.volume_secret(&vol).unwrap();
    let root_dir = DirMeta::load(&m.backing, &MetadataKey::new(&secret)).unwrap();
    let name = NameCipher::new(&secret)
        .encrypt(&root_dir.dir_id, name.as_bytes())
        .unwrap();
    let id = FileHeader::generate_file_id().unwrap();
    let fresh = m
        .keys
        .generate_data_key(&ROOT, DEFAULT_ALIAS, &encryption_context(&vol, &id))
        .unwrap();
    let header = FileHeader::with_version(
        EnvelopeVersion::V1,
        id,
        fresh.key_arn,
        fresh.wrapped,
        &fresh.key,
    )
    .unwrap();
    let mut bytes = header.encode();
    ContentCipher::new(&fresh.key, &header)
        .unwrap()
        .seal_blocks(0, content, &mut bytes)
        .unwrap();
    let backing = m.backing.join(name.name());
    fs::write(&backing, &bytes).unwrap();
    m.remount(&[]);
    (header, backing)
}

#[test]
fn version_1_files_stay_version_1_until_truncated_to_zero() {
    let mut m = Mounted::new(&[]);
    make_pre_envelopes_volume(&mut m);
    let content: Vec<u8> = Rng(9).bytes(5000);
    let (header, backing) = plant_version_1(&mut m, "old.txt", &content);
    let id = header.file_id;

    // Read (its size from version 1's arithmetic) and appended to, it stays version 1.
    let path = m.path("old.txt");
    assert_eq!(fs::metadata(&path).unwrap().len(), 5000);
    assert_eq!(fs::read(&path).unwrap(), content);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"appended").unwrap();
    drop(f);
    assert_eq!(header_of(&backing), header);
    assert_eq!(
        fs::metadata(&backing).unwrap().len(),
        EnvelopeVersion::V1.backing_len(5008)
    );
    m.remount(&[]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 5008);
    assert_eq!(
        fs::read(&path).unwrap(),
        [&content[..], b"appended"].concat()
    );

    // Truncated to zero, it is re-keyed into version 2.
    fs::write(&path, b"now version 2").unwrap();
    let h = header_of(&backing);
    assert_eq!(h.version, EnvelopeVersion::V2);
    assert_ne!(h.file_id, id);
    m.remount(&[]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 13);
    assert_eq!(fs::read(&path).unwrap(), b"now version 2");
}

#[test]
fn a_version_1_file_in_a_version_2_volume_is_refused_and_its_stat_reads_no_header() {
    // `kmsfs init` makes volumes whose files are all version 2.
    let mut m = Mounted::new(&[]);
    let content: Vec<u8> = Rng(10).bytes(5000);
    let (_, backing) = plant_version_1(&mut m, "planted.txt", &content);
    m.assert_live();
    let path = m.path("planted.txt");

    // The size comes from version 2's arithmetic without reading the header: read,
    // the header would have given version 1's (5000).
    let backing_len = fs::metadata(&backing).unwrap().len();
    let v2_size = EnvelopeVersion::V2.plaintext_size(backing_len).unwrap();
    assert_ne!(v2_size, 5000);
    assert_eq!(fs::metadata(&path).unwrap().len(), v2_size);

    // Every open refuses it with EIO, before the key service is asked.
    let opens = m.keys.opens();
    for write in [false, true] {
        let err = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "write={write}");
    }
    // A truncation without a handle reads the header too.
    assert_eq!(
        nix::unistd::truncate(&path, 10),
        Err(nix::errno::Errno::EIO)
    );
    assert_eq!(m.keys.opens(), opens);
    assert_eq!(fs::read(&backing).unwrap().len() as u64, backing_len);

    // fsck reports it as damage.
    m.unmount();
    let secret = m.keys.volume_secret(&volume_id(&m)).unwrap();
    let mut findings = Vec::new();
    kmsfs::format::check_volume(
        &m.backing,
        &secret,
        &mut |_| kmsfs::format::KeyLookup::Unavailable("not asked".into()),
        &mut |f| findings.push(f),
    )
    .unwrap();
    let planted = findings
        .iter()
        .find_map(|f| match f {
            kmsfs::format::VolumeFinding::File {
                backing: b,
                outcome,
                ..
            } if *b == backing => Some(outcome),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(
            planted,
            kmsfs::format::FileOutcome::HeaderDamaged {
                error: kmsfs::format::FormatError::EnvelopeNotAllowed {
                    found: 1,
                    required: 2
                }
            }
        ),
        "{planted:?}"
    );
}

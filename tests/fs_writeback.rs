//! The kernel's writeback cache (`-o writeback_cache`): write(2) lands in the page cache
//! and the kernel writes dirty pages back later, in large requests, through any writable
//! handle of the file. Each test mounts with the option, checks that the kernel granted
//! it, and checks one semantic the mode changes: reads through write-only handles,
//! O_APPEND positioned by the kernel, close writing everything back, truncates and holes
//! with dirty pages, shared mappings, two principals on one file, tampering, and the
//! re-key of a foreign empty file. Needs root. (kill -9: tests/fs_writeback_crash.rs.)

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Stdio};

use support::fs::*;

const ALICE: u32 = 1001;
const BOB: u32 = 1002;

/// The options of every mount here.
const WRITEBACK: &[&str] = &["allow_other", "default_permissions", "writeback_cache"];

/// A live mount with the writeback cache granted, and a directory `d` anyone may write.
fn mounted() -> Mounted {
    let m = Mounted::new(WRITEBACK);
    m.assert_live();
    assert!(
        m.session().writeback_cache(),
        "the kernel did not grant FUSE_WRITEBACK_CACHE"
    );
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    set_mode(&d, 0o777);
    m
}

fn remount(m: &mut Mounted) {
    m.remount(WRITEBACK);
    m.assert_live();
    assert!(m.session().writeback_cache());
}

/// `len` bytes that differ from page to page and inside pages.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

/// Runs `perl -e code args...` as `uid`.
fn perl_as(uid: u32, code: &str, args: &[&Path]) -> std::process::Output {
    as_user(uid, uid, "perl")
        .arg("-e")
        .arg(code)
        .args(args)
        .output()
        .unwrap()
}

/// A root-owned file of `len` pattern bytes that anyone may write, written and closed.
fn shared_file(p: &Path, len: usize) -> Vec<u8> {
    let data = pattern(len, 7);
    fs::write(p, &data).unwrap();
    set_mode(p, 0o666);
    data
}

#[test]
fn a_partial_page_write_through_a_write_only_handle_keeps_the_rest_of_the_page() {
    let m = mounted();
    // ALICE may only encrypt: she opens write-only, and cannot read.
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Encrypt]);
    let p = m.path("d/f");
    let mut want = shared_file(&p, 10_000);
    // Three bytes inside page 0, and a few across the boundary of pages 1 and 2: the
    // kernel reads both pages' other bytes through ALICE's write-only handle first.
    let out = perl_as(
        ALICE,
        "use Fcntl; sysopen(my $f, $ARGV[0], O_WRONLY) or die \"open: $!\\n\"; \
         sysseek($f, 100, 0); syswrite($f, 'XYZ') == 3 or die \"write: $!\\n\"; \
         sysseek($f, 8190, 0); syswrite($f, 'abcd') == 4 or die \"write: $!\\n\"; \
         close($f) or die \"close: $!\\n\";",
        &[&p],
    );
    assert_ok(&out);
    want[100..103].copy_from_slice(b"XYZ");
    want[8190..8194].copy_from_slice(b"abcd");
    assert_eq!(fs::read(&p).unwrap(), want);
    // Her own descriptor never reads, and a read open is refused by the key service.
    let out = perl_as(
        ALICE,
        "use Fcntl; sysopen(my $f, $ARGV[0], O_WRONLY) or die \"open: $!\\n\"; \
         defined(sysread($f, my $b, 10)) and die \"read on a write-only handle\\n\"; \
         print \"$!\";",
        &[&p],
    );
    assert_eq!(assert_ok(&out), strerror(libc::EBADF));
    assert_failed_with(&sh_as(ALICE, &format!("cat {}", q(&p))), libc::EACCES);
    drop(m);
}

/// The same steps with O_APPEND through two handles, in `dir`; returns the content.
fn append_steps(dir: &Path) -> Vec<u8> {
    let p = dir.join("log");
    fs::write(&p, b"abc").unwrap();
    let mut other = OpenOptions::new().write(true).open(&p).unwrap();
    // Opened last: the handle the kernel prefers for writing pages back.
    let mut log = OpenOptions::new().append(true).open(&p).unwrap();
    log.write_all(b"1").unwrap();
    other.write_all_at(b"X", 0).unwrap();
    log.write_all(b"2").unwrap();
    // Past the first page, then across it.
    log.write_all(&pattern(5000, 1)).unwrap();
    other.write_all_at(b"Y", 4096).unwrap();
    log.write_all(b"end").unwrap();
    other.seek(SeekFrom::Start(1)).unwrap();
    other.write_all(b"b").unwrap();
    drop(other);
    drop(log);
    fs::read(&p).unwrap()
}

#[test]
fn o_append_lands_where_the_kernel_puts_it() {
    let mut m = mounted();
    let plain = tempfile::tempdir().unwrap();
    let want = append_steps(plain.path());
    assert_eq!(append_steps(&m.path("d")), want);
    remount(&mut m);
    assert_eq!(fs::read(m.path("d/log")).unwrap(), want);
}

/// The backing length of `plain` bytes of content in the current envelope.
fn sealed_len(m: &Mounted, plain: u64) -> u64 {
    // Measured, not computed: a file of one full block tells the block overhead.
    let probe = m.path("probe");
    fs::write(&probe, vec![1u8; 4096]).unwrap();
    let before: Vec<_> = m.backing_files();
    let one = before
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .find(|&l| l > 4096 && l < 4096 + 1024 + 64)
        .expect("the probe's backing file");
    fs::remove_file(&probe).unwrap();
    let header = 1024;
    let block = one - header;
    let full = plain / 4096;
    let rest = plain % 4096;
    header + full * block + if rest > 0 { rest + block - 4096 } else { 0 }
}

#[test]
fn close_writes_everything_back_before_it_returns_and_revocation_still_holds() {
    let mut m = mounted();
    m.keys.allow(
        ALICE,
        DEFAULT_KEY,
        &[Op::Generate, Op::Encrypt, Op::Decrypt],
    );
    let len: u64 = 3 * 1024 * 1024 + 123;
    let expected_backing = sealed_len(&m, len);
    let data = pattern(len as usize, 3);
    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), &data).unwrap();
    set_mode(src.path(), 0o644);
    let p = m.path("d/big");
    // No fsync: only the close.
    assert_ok(&sh_as(ALICE, &format!("cat {} > {}", q(src.path()), q(&p))));
    // Before anything else reaches the mount: the backing file is complete.
    let backing: Vec<_> = m
        .backing_files()
        .into_iter()
        .filter(|f| fs::metadata(f).unwrap().len() == expected_backing)
        .collect();
    assert_eq!(backing.len(), 1, "no complete backing file after close");
    // Revoked: her next open is refused, whatever the page cache holds.
    m.keys.allow(ALICE, DEFAULT_KEY, &[]);
    assert_failed_with(&sh_as(ALICE, &format!("cat {}", q(&p))), libc::EACCES);
    assert_failed_with(
        &sh_as(ALICE, &format!("echo more >> {}", q(&p))),
        libc::EACCES,
    );
    remount(&mut m);
    assert_eq!(fs::read(&p).unwrap(), data);
}

/// One step of the model: write, truncate (shrink or grow) or a write far past the end.
fn apply(f: &File, model: &mut Vec<u8>, rng: &mut Rng, round: usize) {
    match rng.below(4) {
        0 | 1 => {
            let len = 1 + rng.below(9000) as usize;
            let off = rng.below(model.len() as u64 + 4096) as usize;
            let bytes = rng.bytes(len);
            f.write_all_at(&bytes, off as u64).unwrap();
            if model.len() < off + len {
                model.resize(off + len, 0);
            }
            model[off..off + len].copy_from_slice(&bytes);
        }
        2 => {
            let size = rng.below(model.len() as u64 + 8192) as usize;
            f.set_len(size as u64).unwrap();
            model.resize(size, 0);
        }
        _ => {
            // A hole of up to 100 KiB, then a few bytes.
            let off = model.len() + rng.below(100_000) as usize;
            let bytes = format!("round {round}").into_bytes();
            f.write_all_at(&bytes, off as u64).unwrap();
            model.resize(off + bytes.len(), 0);
            model[off..].copy_from_slice(&bytes);
        }
    }
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn truncates_extensions_and_holes_with_dirty_pages_match_a_model() {
    let mut m = mounted();
    let mut rng = Rng(0x5eed_0b5e);
    for file in 0..4 {
        let p = m.path(&format!("d/m{file}"));
        let mut model = Vec::new();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        for round in 0..60 {
            apply(&f, &mut model, &mut rng, round);
            assert_eq!(f.metadata().unwrap().len(), model.len() as u64, "{round}");
            if round % 10 == 9 {
                // Through the page cache, and through a second handle.
                assert_eq!(read_all(&mut f), model, "file {file} round {round}");
                assert_eq!(fs::read(&p).unwrap(), model, "file {file} round {round}");
            }
            if round % 20 == 19 {
                f.sync_all().unwrap();
            }
        }
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), model, "file {file} after close");
        remount(&mut m);
        assert_eq!(
            fs::metadata(&p).unwrap().len(),
            model.len() as u64,
            "file {file} size after remount"
        );
        assert_eq!(fs::read(&p).unwrap(), model, "file {file} after remount");
    }
}

#[test]
fn shared_mapping_writes_reach_the_backing_file() {
    let mut m = mounted();
    let p = m.path("d/mapped");
    let mut want = shared_file(&p, 3 * 4096 + 100);
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = want.len();
    // SAFETY: a fresh shared mapping of `len` bytes of an open file, unmapped below;
    // nothing else maps it.
    unsafe {
        use std::os::fd::AsRawFd;
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        let bytes = std::slice::from_raw_parts_mut(addr.cast::<u8>(), len);
        assert_eq!(&bytes[..], &want[..]);
        for off in [5usize, 4096 + 17, 3 * 4096 + 99] {
            bytes[off] = b'M';
            want[off] = b'M';
        }
        assert_eq!(libc::munmap(addr, len), 0);
    }
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), want);
    remount(&mut m);
    assert_eq!(fs::read(&p).unwrap(), want);
}

/// A perl process as `uid` that opens `p` with `mode` ("w" write-only, "rw"), then for
/// each line "OFFSET TEXT" on its stdin writes TEXT at OFFSET and answers "ok", and on
/// "close" closes (answering "closed", or the error).
fn writer(uid: u32, p: &Path, mode: &str) -> Child {
    let code = "use Fcntl; $| = 1; \
        my $m = $ARGV[1] eq 'rw' ? O_RDWR : O_WRONLY; \
        sysopen(my $f, $ARGV[0], $m) or die \"open: $!\\n\"; print \"open\\n\"; \
        while (my $l = <STDIN>) { chomp $l; \
          if ($l eq 'close') { close($f) or die \"close: $!\\n\"; print \"closed\\n\"; exit 0 } \
          my ($o, $t) = split / /, $l, 2; sysseek($f, $o, 0); \
          syswrite($f, $t) == length($t) or die \"write: $!\\n\"; print \"ok\\n\"; }";
    let mut c = as_user(uid, uid, "perl")
        .arg("-e")
        .arg(code)
        .arg(p)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    expect_line(&mut c, "open");
    c
}

fn expect_line(c: &mut Child, want: &str) {
    use std::io::BufRead;
    let mut line = String::new();
    let out = c.stdout.as_mut().unwrap();
    // One byte at a time: a BufReader here would swallow later answers.
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    if line != want {
        let mut err = String::new();
        let _ = std::io::BufReader::new(c.stderr.as_mut().unwrap()).read_line(&mut err);
        panic!("expected {want:?}, got {line:?} ({err})");
    }
}

fn send(c: &mut Child, line: &str, answer: &str) {
    writeln!(c.stdin.as_mut().unwrap(), "{line}").unwrap();
    expect_line(c, answer);
}

#[test]
fn two_principals_write_one_file_through_their_own_handles() {
    let mut m = mounted();
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Encrypt]);
    m.keys.allow(BOB, DEFAULT_KEY, &[Op::Encrypt, Op::Decrypt]);
    let p = m.path("d/shared");
    let mut want = shared_file(&p, 5 * 4096);
    let mut alice = writer(ALICE, &p, "w");
    let mut bob = writer(BOB, &p, "rw");
    // Interleaved, some in the same page: the kernel may write ALICE's pages back
    // through BOB's handle (the last writable one opened) and the other way round.
    for (who, off, text) in [
        (0, 10, "alice-0"),
        (1, 4096 + 10, "bob-1"),
        (0, 4096 + 100, "alice-1"),
        (1, 20, "bob-0"),
        (0, 4 * 4096 - 3, "alice-3/4"),
        (1, 5 * 4096 + 50, "bob-past-the-end"),
    ] {
        let c = if who == 0 { &mut alice } else { &mut bob };
        send(c, &format!("{off} {text}"), "ok");
        if want.len() < off + text.len() {
            want.resize(off + text.len(), 0);
        }
        want[off..off + text.len()].copy_from_slice(text.as_bytes());
    }
    send(&mut alice, "close", "closed");
    send(&mut bob, "close", "closed");
    assert!(alice.wait().unwrap().success());
    assert!(bob.wait().unwrap().success());
    assert_eq!(fs::read(&p).unwrap(), want);
    // Each open was decided for its own principal, for what it asked.
    let decisions = m.keys.decisions.lock().unwrap().clone();
    let of = |uid| {
        decisions
            .iter()
            .filter(|d| d.uid == uid)
            .map(|d| (d.op, d.allowed))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(ALICE), [(Op::Encrypt, true)]);
    assert_eq!(of(BOB), [(Op::Decrypt, true), (Op::Encrypt, true)]);
    remount(&mut m);
    assert_eq!(fs::read(&p).unwrap(), want);
}

#[test]
fn a_tampered_block_is_eio_after_a_remount() {
    let mut m = mounted();
    let data = pattern(20_000, 9);
    fs::write(m.path("t"), &data).unwrap();
    remount(&mut m);
    assert_eq!(fs::read(m.path("t")).unwrap(), data);
    m.unmount();
    let backing = m.backing_files();
    assert_eq!(backing.len(), 1);
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(&backing[0])
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 1024 + 4096 + 500).unwrap();
    f.write_all_at(&[b[0] ^ 1], 1024 + 4096 + 500).unwrap();
    drop(f);
    m.mount(WRITEBACK);
    m.assert_live();
    let err = fs::read(m.path("t")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
}

#[test]
fn a_write_open_of_a_foreign_empty_file_rekeys_as_the_opener() {
    let mut m = mounted();
    for name in ["granted", "refused"] {
        let p = m.path(&format!("d/{name}"));
        File::create(&p).unwrap();
        set_mode(&p, 0o666);
    }
    // After a remount the empty files' keys are no longer ones this mount generated:
    // the first write gives each a new key, asked as whoever opens it for writing.
    remount(&mut m);
    m.keys
        .allow(ALICE, DEFAULT_KEY, &[Op::Generate, Op::Encrypt]);
    m.keys.allow(BOB, DEFAULT_KEY, &[Op::Encrypt]);
    m.keys.decisions.lock().unwrap().clear();
    let write = "use Fcntl; sysopen(my $f, $ARGV[0], O_WRONLY) or die \"open: $!\\n\"; \
                 syswrite($f, 'hello') == 5 or die \"write: $!\\n\"; \
                 close($f) or die \"close: $!\\n\";";
    assert_ok(&perl_as(ALICE, write, &[&m.path("d/granted")]));
    // BOB may encrypt but not generate: refused at the open (not later, as EIO at close
    // once the kernel writes the page back).
    let out = perl_as(BOB, write, &[&m.path("d/refused")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("open: {}", strerror(libc::EACCES))),
        "{out:?}"
    );
    let generates: Vec<_> = m
        .keys
        .decisions
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.op == Op::Generate)
        .map(|d| (d.uid, d.allowed))
        .collect();
    assert_eq!(generates, [(ALICE, true), (BOB, false)]);
    assert_eq!(fs::read(m.path("d/granted")).unwrap(), b"hello");
    assert_eq!(fs::read(m.path("d/refused")).unwrap(), b"");
    remount(&mut m);
    assert_eq!(fs::read(m.path("d/granted")).unwrap(), b"hello");
}

#[test]
fn without_the_option_the_cache_stays_off() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    assert!(!m.session().writeback_cache());
    // And a write-only handle is still never read through.
    let p = m.path("f");
    let mut want = shared_file(&p, 10_000);
    m.keys.allow(ALICE, DEFAULT_KEY, &[Op::Encrypt]);
    let out = perl_as(
        ALICE,
        "use Fcntl; sysopen(my $f, $ARGV[0], O_WRONLY) or die \"open: $!\\n\"; \
         sysseek($f, 100, 0); syswrite($f, 'XYZ') == 3 or die \"write: $!\\n\"; \
         close($f) or die \"close: $!\\n\";",
        &[&p],
    );
    assert_ok(&out);
    want[100..103].copy_from_slice(b"XYZ");
    assert_eq!(fs::read(&p).unwrap(), want);
}

#[test]
fn the_kernels_mtime_reaches_the_backing_file() {
    use std::os::unix::fs::MetadataExt;
    let mut m = mounted();
    let mtime = |p: &Path| {
        let md = fs::metadata(p).unwrap();
        (md.mtime(), md.mtime_nsec(), md.len())
    };
    // Written and closed: the kernel stamped the time when the write(2) happened and
    // sends it after writing the pages back, so the backing file keeps the kernel's
    // time, not the later one of the daemon's pwrite.
    let a = m.path("d/a");
    fs::write(&a, pattern(50_000, 4)).unwrap();
    let after_close = mtime(&a);
    // syncfs(2) before the close: its first pass sends the pages and then the times
    // without waiting for the pages, so the daemon may see the time first.
    let mut synced = Vec::new();
    for i in 0..20u8 {
        let c = m.path(&format!("d/c{i}"));
        let mut f = File::create(&c).unwrap();
        f.write_all(&pattern(300_000, i)).unwrap();
        // SAFETY: syncfs on a descriptor this function owns.
        assert_eq!(
            unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) },
            0
        );
        drop(f);
        synced.push((c.clone(), mtime(&c)));
    }
    // An explicit time set while pages are dirty outlives their write-back.
    let b = m.path("d/b");
    let mut f = File::create(&b).unwrap();
    f.write_all(&pattern(9000, 5)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    f.set_times(fs::FileTimes::new().set_modified(when))
        .unwrap();
    drop(f);
    assert_eq!(mtime(&b), (1_500_000_000, 123_456_789, 9000));
    remount(&mut m);
    assert_eq!(mtime(&a), after_close);
    for (c, before) in &synced {
        assert_eq!(mtime(c), *before, "{}", c.display());
    }
    assert_eq!(mtime(&b), (1_500_000_000, 123_456_789, 9000));
}

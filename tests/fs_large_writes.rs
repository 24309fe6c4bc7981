//! Large writes (split into runs of blocks that several threads seal and write in file
//! order): concurrent writers read back exactly, and a write that fails part-way (a
//! full disk) is answered with its error, never a count, and leaves the file with the
//! bytes that were acknowledged. Real mounts (tmpfs-backed where the disk must fill
//! up). Needs root.

mod support;

use std::fs;
use std::os::unix::fs::FileExt;

use support::fs::*;

const MIB: usize = 1024 * 1024;

/// Bytes that differ per file, per write and per position.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) ^ (i >> 12) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

#[test]
fn many_threads_writing_large_requests_at_once_read_back_exactly() {
    let mut m = Mounted::new(&[]);
    m.assert_live();
    let shared = fs::File::create(m.path("shared")).unwrap();
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for t in 0..4usize {
            let (m, shared) = (&m, &shared);
            writers.push(scope.spawn(move || {
                let name = format!("file{t}");
                let f = fs::File::create(m.path(&name)).unwrap();
                let mut model = Vec::new();
                // 1 MiB requests on block boundaries (sealed straight from the request),
                // then ones that start and end inside blocks (edge blocks read back).
                let writes = [
                    (0, MIB),
                    (MIB, MIB),
                    (2 * MIB, MIB),
                    (MIB / 2 + 333, 600 * 1024 + t),
                    (3 * MIB - 5, 700 * 1024),
                ];
                for (n, (at, len)) in writes.into_iter().enumerate() {
                    let data = pattern(len, t * 10 + n);
                    assert_eq!(f.write_at(&data, at as u64).unwrap(), len, "{name} {n}");
                    if model.len() < at + len {
                        model.resize(at + len, 0);
                    }
                    model[at..at + len].copy_from_slice(&data);
                    // Each thread's own MiB of the shared file, at the same time as the
                    // others'.
                    let mine = pattern(MIB, 100 + t * 10 + n);
                    let at = (t * 5 + n) * MIB;
                    assert_eq!(shared.write_at(&mine, at as u64).unwrap(), MIB);
                }
                (name, model)
            }));
        }
        for w in writers {
            expected.push(w.join().unwrap());
        }
    });
    let mut shared_model = vec![0u8; 20 * MIB];
    for t in 0..4 {
        for n in 0..5 {
            let at = (t * 5 + n) * MIB;
            shared_model[at..at + MIB].copy_from_slice(&pattern(MIB, 100 + t * 10 + n));
        }
    }
    drop(shared);
    expected.push(("shared".into(), shared_model));

    // From the backing files, not from the kernel's page cache.
    m.remount(&[]);
    m.assert_live();
    for (name, model) in &expected {
        let got = fs::read(m.path(name)).unwrap();
        assert_eq!(got.len(), model.len(), "{name}");
        assert!(got == *model, "{name}: bytes differ");
    }
}

/// Writes `chunk`-byte requests into a new file, each `stride` bytes after the last
/// (a multiple of the page size: the kernel sends each as one request), until the disk
/// is full. Every write is either acknowledged whole or fails with ENOSPC (no count of
/// part of a request); the file then holds exactly the acknowledged bytes, also after a
/// remount (from the backing file).
fn fill_with_requests_of(m: &mut Mounted, name: &str, chunk: usize, stride: usize) {
    m.assert_live();
    let f = fs::File::create(m.path(name)).unwrap();
    let mut model = Vec::new();
    let mut at = 0;
    let err = loop {
        let data = pattern(chunk, at);
        match f.write_at(&data, at as u64) {
            Ok(n) => {
                assert_eq!(n, chunk, "{name}: a part of a request was acknowledged");
                model.resize(at, 0);
                model.extend_from_slice(&data);
                at += stride;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{name}: {err}");
    assert!(at >= 2 * stride, "{name}: the disk filled too early");
    assert_eq!(f.metadata().unwrap().len(), model.len() as u64, "{name}");
    drop(f);
    m.remount(&[]);
    m.assert_live();
    let got = fs::read(m.path(name)).unwrap();
    assert_eq!(got.len(), model.len(), "{name}");
    assert!(got == model, "{name}: bytes differ");
    fs::remove_file(m.path(name)).unwrap();
}

#[test]
fn a_large_write_that_fills_the_disk_is_enospc_and_the_file_keeps_what_was_acknowledged() {
    let mut m = Mounted::on_tmpfs("8m", &[]);
    // 1 MiB requests back to back; then 600 KiB + 77 with a hole after each, so that
    // each request first pads the file's partial last block, which a failed one must
    // cut back.
    fill_with_requests_of(&mut m, "aligned", MIB, MIB);
    fill_with_requests_of(&mut m, "partial", 600 * 1024 + 77, 612 * 1024);
    // The space is usable again.
    fs::write(m.path("after"), pattern(MIB, 1)).unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), pattern(MIB, 1));
}

#[test]
fn small_appends_that_fill_the_disk_never_tear_the_last_block() {
    // Each append rewrites the file's partial last block, longer, in place: on a full
    // disk it must fail before that block changes, not leave it torn (EIO from then
    // on). The kernel may send an append that crosses a page as two requests, so a
    // short count is fine here; what was acknowledged must read back.
    let mut m = Mounted::on_tmpfs("2m", &[]);
    m.assert_live();
    let mut f = fs::File::create(m.path("log")).unwrap();
    let mut model = Vec::new();
    let err = loop {
        let data = pattern(1000, model.len());
        match std::io::Write::write(&mut f, &data) {
            Ok(n) => model.extend_from_slice(&data[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(model.len() > MIB, "the disk filled too early");
    drop(f);
    m.remount(&[]);
    m.assert_live();
    let got = fs::read(m.path("log")).unwrap();
    assert_eq!(got.len(), model.len());
    assert!(got == model, "bytes differ");
}

#[test]
fn a_daemon_forked_after_large_writes_still_writes_large_requests() {
    // A large write through an in-process mount starts this process's helper threads;
    // a daemon forked afterwards (as the crash tests fork theirs) has none of them, and
    // must seal its large requests itself instead of waiting for them.
    use support::fs::crash::{spawn_daemon, Detach};
    let mut m = Mounted::new(&[]);
    m.assert_live();
    fs::write(m.path("before"), pattern(MIB, 1)).unwrap();
    m.unmount();
    let _detach = Detach(m.mnt.clone());
    let reap = spawn_daemon(&m.backing, &m.mnt, &[], |_| true);
    let (done, wait) = std::sync::mpsc::channel();
    let path = m.path("after");
    std::thread::spawn(move || {
        let res = fs::write(&path, pattern(2 * MIB, 2)).and_then(|()| fs::read(&path));
        let _ = done.send(res);
    });
    // The bound only keeps a hung daemon from hanging the suite.
    let got = wait
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the forked daemon never answered a large write")
        .unwrap();
    assert!(got == pattern(2 * MIB, 2), "bytes differ");
    assert_eq!(fs::read(m.path("before")).unwrap(), pattern(MIB, 1));
    drop(reap);
}

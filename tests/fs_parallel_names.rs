//! Creates, unlinks, lookups and reads of the same few names from several threads at
//! once, through a real mount: no entry lost or invented against a model, no content
//! torn, and once everything is removed and the kernel drops its inodes, the daemon holds
//! no node and no descriptor more than before (a FORGET closes its node's descriptor
//! outside the inode table's lock, so that close must still happen exactly once).
//! Needs root and /dev/fuse.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};

use support::fs::*;

const THREADS: usize = 4;
const NAMES: usize = 12;
const ROUNDS: usize = 150;

/// Per modelled name: who wrote the file that has it now (`writer`, `round`), if any.
type Model = Vec<Mutex<Option<(usize, usize)>>>;

/// Descriptors open in this process (the daemon runs in it).
fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

fn drop_kernel_inodes() {
    assert!(std::process::Command::new("sync")
        .status()
        .unwrap()
        .success());
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

/// A file body that says who wrote it and whether it is whole: `writer round` then
/// filler up to a length that depends on both, so a mix of two writers shows.
fn body(writer: usize, round: usize) -> Vec<u8> {
    let mut b = format!("{writer} {round}\n").into_bytes();
    let len = 100 + (writer * 977 + round * 131) % 9000;
    b.resize(len, b'a' + (writer as u8));
    b
}

fn check_body(bytes: &[u8], name: &str) {
    let text = String::from_utf8_lossy(bytes);
    let head = text.lines().next().unwrap_or_default();
    let mut it = head.split(' ').map(|n| n.parse::<usize>());
    let (Some(Ok(w)), Some(Ok(r))) = (it.next(), it.next()) else {
        panic!(
            "{name}: not a whole body: {:?}",
            &text[..text.len().min(40)]
        );
    };
    assert_eq!(bytes, body(w, r).as_slice(), "{name}: torn content");
}

/// Lookups, creates, reads and unlinks of one name: the outcome checked against the
/// model, each name's operations kept in order by a lock of the test (names differ
/// between concurrent operations, the directory and the daemon's tables are shared).
fn modelled_op(dir: &Path, model: &Model, t: usize, round: usize) {
    let i = (t * 7 + round * 5) % NAMES;
    let name = format!("n{i}");
    let p = dir.join(&name);
    let mut state = model[i].lock().unwrap();
    match (round + t) % 4 {
        0 | 1 => {
            let res = fs::OpenOptions::new().write(true).create_new(true).open(&p);
            match (&*state, res) {
                (None, Ok(mut f)) => {
                    f.write_all(&body(t, round)).unwrap();
                    *state = Some((t, round));
                }
                (Some(_), Err(e)) if e.kind() == ErrorKind::AlreadyExists => {}
                (s, r) => panic!("{name}: create with model {s:?} gave {r:?}"),
            }
        }
        2 => match (&*state, fs::read(&p)) {
            (Some((w, r)), Ok(bytes)) => assert_eq!(bytes, body(*w, *r), "{name}"),
            (None, Err(e)) if e.kind() == ErrorKind::NotFound => {}
            (s, r) => panic!(
                "{name}: read with model {s:?} gave {:?}",
                r.map(|b| b.len())
            ),
        },
        _ => match (&*state, fs::remove_file(&p)) {
            (Some(_), Ok(())) => *state = None,
            (None, Err(e)) if e.kind() == ErrorKind::NotFound => {}
            (s, r) => panic!("{name}: unlink with model {s:?} gave {r:?}"),
        },
    }
}

/// The same operations on the same names with no order between threads: every answer
/// must be one a sequence of them could give, and any content read must be whole.
fn racing_op(dir: &Path, t: usize, round: usize) {
    let name = format!("r{}", (t + round) % 3);
    let p = dir.join(&name);
    match (round * 3 + t) % 4 {
        0 => match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            // The name may be unlinked by another thread before or during the write:
            // the descriptor stays valid either way.
            Ok(mut f) => f.write_all(&body(t, round)).unwrap(),
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{name}: {e}"),
        },
        1 => match fs::File::open(&p) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).unwrap();
                // Empty: created, not yet written.
                if !bytes.is_empty() {
                    // Possibly still being written: only a whole prefix can be checked,
                    // so compare once the writer has closed (the lengths then agree).
                    let text = String::from_utf8_lossy(&bytes);
                    assert!(
                        text.split(' ')
                            .next()
                            .unwrap_or("x")
                            .parse::<usize>()
                            .is_ok(),
                        "{name}: unreadable content"
                    );
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}"),
        },
        2 => match fs::symlink_metadata(&p) {
            Ok(md) => assert!(md.is_file(), "{name}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}"),
        },
        _ => match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}"),
        },
    }
}

#[test]
fn parallel_creates_unlinks_and_lookups_of_the_same_names_lose_nothing_and_leak_nothing() {
    let m = Mounted::new(MULTI_USER);
    m.assert_live();
    fs::create_dir(m.path("d")).unwrap();
    let dir = m.path("d");
    // Held open for the whole test, so the kernel keeps the directory's inode when it
    // drops the others below (the baseline includes it).
    let _pin_dir = fs::File::open(&dir).unwrap();
    let nodes_before = m.session().known_nodes();
    let fds_before = open_fds();

    let model: Arc<Model> = Arc::new((0..NAMES).map(|_| Mutex::new(None)).collect());
    let start = Arc::new(Barrier::new(THREADS));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (dir, model, start) = (dir.clone(), model.clone(), start.clone());
            s.spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    modelled_op(&dir, &model, t, round);
                    racing_op(&dir, t, round);
                }
            });
        }
    });

    // The listing holds exactly the model's names plus whichever racing names remain,
    // and every file reads back whole.
    let listed: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = (0..NAMES)
        .filter(|&i| model[i].lock().unwrap().is_some())
        .map(|i| format!("n{i}"))
        .collect();
    let modelled: BTreeSet<String> = listed
        .iter()
        .filter(|n| n.starts_with('n'))
        .cloned()
        .collect();
    assert_eq!(modelled, expected);
    for name in &listed {
        assert!(name.starts_with('n') || name.starts_with('r'), "{name}");
        let bytes = fs::read(dir.join(name)).unwrap();
        if name.starts_with('n') || !bytes.is_empty() {
            check_body(&bytes, name);
        }
    }
    // The backing directory agrees: one backing file per listed name.
    let backing_dirs: Vec<_> = fs::read_dir(&m.backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(backing_dirs.len(), 1, "one backing directory for d");
    let backing_files = fs::read_dir(&backing_dirs[0])
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains('.')
        })
        .count();
    assert_eq!(backing_files, listed.len());

    for name in &listed {
        fs::remove_file(dir.join(name)).unwrap();
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);

    // Once the kernel drops its inodes, each comes back as a FORGET, which closes the
    // node's descriptor. FORGETs are queued, so wait for them: no time limit is
    // asserted, only that the counts reach the baseline.
    drop_kernel_inodes();
    let mut tries = 0;
    while m.session().known_nodes() != nodes_before || open_fds() != fds_before {
        tries += 1;
        assert!(
            tries < 6000,
            "not back to the baseline: {} nodes (before {nodes_before}), {} descriptors \
             (before {fds_before})",
            m.session().known_nodes(),
            open_fds()
        );
        if tries % 500 == 0 {
            drop_kernel_inodes();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // And the mount still serves the directory.
    m.assert_live();
    fs::write(dir.join("after"), b"x").unwrap();
    assert_eq!(fs::read(dir.join("after")).unwrap(), b"x");
}

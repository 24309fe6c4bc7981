//! Small appends on a journaled ext4 that fills up: every append rewrites the file's
//! partial last block, longer, in place, and reserves only the backing file system's
//! blocks the growth reaches that the file does not have yet (`content.rs`,
//! `reserve_last_block_growth`). On a full disk an append fails with ENOSPC before the
//! block changes, never tearing it; an append that stays inside the backing block the
//! file already has needs no new space and succeeds. Real mount on a loop-mounted ext4
//! image. Needs root, mkfs.ext4 and losetup (else the test says so and does nothing).

mod support;

use std::fs;
use std::io::Write;

use support::fs::*;

/// Bytes that differ per write and per position.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) ^ (i >> 12) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

/// The only regular file in `dir` other than the volume's own files.
fn backing_file_len(dir: &std::path::Path) -> u64 {
    let lens: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with("kmsfs."))
        .map(|e| e.metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .collect();
    assert_eq!(lens.len(), 1, "{lens:?}");
    lens[0]
}

#[test]
fn small_appends_on_a_full_ext4_never_tear_the_last_block() {
    let Some(image) = Ext4Image::new(16, &["-b", "4096", "-m", "0"]) else {
        eprintln!("SKIPPED: mkfs.ext4 or losetup missing");
        return;
    };
    let keys = TestKeys::new();
    let spec = image_volume(&image, &keys);
    let (backing, mnt) = (spec.backing.clone(), spec.mountpoint.clone());
    let session = mount_live(&spec, &keys);

    let mut f = fs::File::create(mnt.join("log")).unwrap();
    let mut model = Vec::new();
    let err = loop {
        let data = pattern(1000, model.len());
        match f.write(&data) {
            Ok(n) => model.extend_from_slice(&data[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(model.len() > 4 << 20, "the disk filled too early");

    // The disk is full. An append that stays inside the backing block holding the
    // file's last byte (and inside its last content block) takes no new space.
    let len = backing_file_len(&backing);
    let room_backing = (4096 - len % 4096) % 4096;
    let room_content = (4096 - model.len() as u64 % 4096) % 4096;
    let room = room_backing.min(room_content).min(100) as usize;
    if room > 0 {
        let data = pattern(room, model.len());
        f.write_all(&data)
            .expect("an append inside the file's last backing block");
        model.extend_from_slice(&data);
    }
    drop(f);
    session.umount().unwrap();

    let session = mount_live(&spec, &keys);
    let got = fs::read(mnt.join("log")).unwrap();
    assert_eq!(got.len(), model.len());
    assert!(got == model, "bytes differ");
    session.umount().unwrap();
}

//! Large writes start the backing file's write-out as they go (`content.rs`,
//! `WriteOut`), so that a writer's final `fsync` does not find the whole file
//! still dirty in the page cache. Observed on a journaled ext4, where a dirty page not
//! yet written out has no disk block (a delayed allocation, FIEMAP's `delalloc` flag)
//! and starting its write-out allocates one. Real mount on a loop-mounted ext4 image.
//! Needs root, mkfs.ext4, losetup and filefrag (else the test says so and does nothing).

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;

use support::fs::*;

/// The backing file of the one regular file in the volume.
fn backing_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<std::path::PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with("kmsfs."))
        .filter(|e| e.metadata().unwrap().is_file())
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Blocks of `path` in delayed-allocation extents (dirty, write-out not started), from
/// `filefrag -v`; `None` without filefrag.
fn delalloc_blocks(path: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .ok()?;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut blocks = 0;
    for line in text.lines().filter(|l| l.contains("delalloc")) {
        // "   0:        0..    2047:          0..         0:      0:   last,delalloc,eof"
        let logical = line.split(':').nth(1).unwrap();
        let (from, to) = logical.split_once("..").unwrap();
        let from: u64 = from.trim().parse().unwrap();
        let to: u64 = to.trim().parse().unwrap();
        blocks += to - from + 1;
    }
    Some(blocks)
}

#[test]
fn large_writes_start_their_write_out_before_any_fsync() {
    let Some(image) = Ext4Image::new(64, &["-b", "4096"]) else {
        eprintln!("SKIPPED: mkfs.ext4 or losetup missing");
        return;
    };
    let keys = TestKeys::new();
    let spec = image_volume(&image, &keys);
    let (backing, mnt) = (spec.backing.clone(), spec.mountpoint.clone());
    let session = mount_live(&spec, &keys);

    // Small writes leave the write-out to the kernel: still delayed allocations.
    let mut small = fs::File::create(mnt.join("small")).unwrap();
    for n in 0..64u8 {
        small.write_all(&[n; 4096]).unwrap();
    }
    let small_backing = backing_file(&backing);
    let Some(before) = delalloc_blocks(&small_backing) else {
        eprintln!("SKIPPED: filefrag missing");
        return;
    };
    assert!(
        before > 1,
        "the small writes were written out already: {before}"
    );
    drop(small);
    fs::remove_file(mnt.join("small")).unwrap();

    // 8 MiB in writes of 1 MiB, no fsync: all written out but the partial last page.
    let data: Vec<u8> = (0..1 << 20)
        .map(|i: usize| (i * 7 + i / 4096) as u8)
        .collect();
    let mut f = fs::File::create(mnt.join("big")).unwrap();
    for _ in 0..8 {
        f.write_all(&data).unwrap();
    }
    // A write's write-out starts after its answer, before the next write to the file
    // seals anything: so one more write, of a block already written out (no delayed
    // allocation of its own), orders this check after the last one's write-out.
    f.write_all_at(&data[..4096], 0).unwrap();
    let path = backing_file(&backing);
    assert!(fs::metadata(&path).unwrap().len() > 8 << 20);
    let left = delalloc_blocks(&path).unwrap();
    assert!(left <= 1, "{left} blocks of 4 KiB not written out");

    // The content is what was written, after an fsync and from a fresh mount.
    f.sync_all().unwrap();
    drop(f);
    session.umount().unwrap();
    let session = mount_live(&spec, &keys);
    let back = fs::read(mnt.join("big")).unwrap();
    assert_eq!(back.len(), 8 << 20);
    assert!(back.chunks(1 << 20).all(|c| c == data.as_slice()));
    session.umount().unwrap();
}

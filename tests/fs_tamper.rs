//! Damaged or tampered backing files read as EIO, never as wrong bytes: a flipped byte
//! anywhere, truncation, blocks swapped within or between files, a header copied from
//! another file, an altered symlink target. Each case remounts so that nothing is served
//! from the kernel's page cache. Needs root.

mod support;

use std::fs;
use std::path::PathBuf;

use support::fs::*;

const B: usize = 4096;
const HEADER: usize = 1024;
/// New files are written in the current envelope version.
const SEALED: usize = kmsfs::format::EnvelopeVersion::CURRENT.sealed_block_size();

/// Reads `name` through a fresh mount; Ok(bytes) or the errno.
fn read_fresh(m: &mut Mounted, name: &str) -> Result<Vec<u8>, i32> {
    m.remount(&[]);
    fs::read(m.path(name)).map_err(|e| e.raw_os_error().unwrap())
}

/// A volume with two files of 3.5 blocks each; returns their backing paths.
fn two_files(m: &Mounted) -> (PathBuf, PathBuf) {
    let mut rng = Rng(99);
    fs::write(m.path("one"), rng.bytes(3 * B + B / 2)).unwrap();
    let first = m.backing_files();
    fs::write(m.path("two"), rng.bytes(3 * B + B / 2)).unwrap();
    let both = m.backing_files();
    let one = first[0].clone();
    let two = both.into_iter().find(|p| *p != one).unwrap();
    (one, two)
}

#[test]
fn a_flipped_byte_anywhere_is_eio() {
    let mut m = Mounted::new(&[]);
    let (one, _) = two_files(&m);
    let original = fs::read(&one).unwrap();
    let intact = fs::read(m.path("one")).unwrap();
    let len = original.len();
    let positions = [
        0,                         // magic
        9,                         // version
        20,                        // file id
        40,                        // key ARN
        300,                       // wrapped key
        900,                       // padding
        1000,                      // commitment
        HEADER,                    // block 0 nonce
        HEADER + 24 + 100,         // block 0 ciphertext
        HEADER + SEALED - 1,       // block 0 tag
        HEADER + 2 * SEALED + 500, // block 2
        len - 1,                   // last block's tag
    ];
    for pos in positions {
        let mut bad = original.clone();
        bad[pos] ^= 0x01;
        fs::write(&one, &bad).unwrap();
        assert_eq!(read_fresh(&mut m, "one"), Err(libc::EIO), "byte {pos}");
    }
    fs::write(&one, &original).unwrap();
    assert_eq!(read_fresh(&mut m, "one"), Ok(intact));
}

#[test]
fn flipping_any_single_bit_of_a_small_file_is_eio() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let m = Mounted::new(&[]);
    fs::write(m.path("small"), Rng(5).bytes(B + 100)).unwrap();
    let backing = m.backing_files()[0].clone();
    let original = fs::read(&backing).unwrap();
    // O_DIRECT: each read goes to the daemon, so no remount is needed per position.
    let read = || -> Result<Vec<u8>, i32> {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(m.path("small"))
            .map_err(|e| e.raw_os_error().unwrap())?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| e.raw_os_error().unwrap())?;
        Ok(buf)
    };
    let file = fs::OpenOptions::new().write(true).open(&backing).unwrap();
    // The wrapped data key is opaque to the filesystem: a flip inside it that renames
    // the key to one that does not exist is the key service's ENOKEY. Still never data.
    let arn_len = u16::from_be_bytes([original[28], original[29]]) as usize;
    let wrapped_len = u16::from_be_bytes([original[30 + arn_len], original[31 + arn_len]]);
    let wrapped = 32 + arn_len..32 + arn_len + wrapped_len as usize;
    for (pos, &byte) in original.iter().enumerate() {
        let bit = 1u8 << (pos % 8);
        std::os::unix::fs::FileExt::write_all_at(&file, &[byte ^ bit], pos as u64).unwrap();
        match read() {
            Err(libc::EIO) => {}
            Err(libc::ENOKEY) if wrapped.contains(&pos) => {}
            other => panic!("byte {pos}: {other:?}"),
        }
        std::os::unix::fs::FileExt::write_all_at(&file, &[byte], pos as u64).unwrap();
    }
    assert_eq!(read().unwrap().len(), B + 100);
}

#[test]
fn a_truncated_backing_file_is_eio() {
    let mut m = Mounted::new(&[]);
    let (one, _) = two_files(&m);
    let original = fs::read(&one).unwrap();
    for cut in [
        original.len() - 1,
        original.len() - 100,
        HEADER + SEALED + 10,
        HEADER + 5,
        1000,
        0,
    ] {
        fs::write(&one, &original[..cut]).unwrap();
        assert_eq!(read_fresh(&mut m, "one"), Err(libc::EIO), "cut at {cut}");
    }
}

#[test]
fn swapped_blocks_within_or_between_files_are_eio() {
    let mut m = Mounted::new(&[]);
    let (one, two) = two_files(&m);
    let a = fs::read(&one).unwrap();
    let b = fs::read(&two).unwrap();
    let block =
        |bytes: &[u8], i: usize| bytes[HEADER + i * SEALED..HEADER + (i + 1) * SEALED].to_vec();

    // Blocks 0 and 1 of the same file trade places.
    let mut swapped = a.clone();
    swapped[HEADER..HEADER + SEALED].copy_from_slice(&block(&a, 1));
    swapped[HEADER + SEALED..HEADER + 2 * SEALED].copy_from_slice(&block(&a, 0));
    fs::write(&one, &swapped).unwrap();
    assert_eq!(read_fresh(&mut m, "one"), Err(libc::EIO));

    // Block 1 of another file, at the same index.
    let mut foreign = a.clone();
    foreign[HEADER + SEALED..HEADER + 2 * SEALED].copy_from_slice(&block(&b, 1));
    fs::write(&one, &foreign).unwrap();
    assert_eq!(read_fresh(&mut m, "one"), Err(libc::EIO));
}

#[test]
fn a_header_copied_from_another_file_is_eio() {
    let mut m = Mounted::new(&[]);
    let (one, two) = two_files(&m);
    let mut a = fs::read(&one).unwrap();
    let b = fs::read(&two).unwrap();
    a[..HEADER].copy_from_slice(&b[..HEADER]);
    fs::write(&one, &a).unwrap();
    // The header opens (it is a genuine header), the blocks do not: never two's data
    // under one's name, never one's data decrypted under the wrong key.
    assert_eq!(read_fresh(&mut m, "one"), Err(libc::EIO));
}

#[test]
fn a_whole_file_swapped_with_another_reads_as_that_file_not_garbage() {
    // Whole-file substitution is indistinguishable from a rename done in the backing
    // directory (names are not bound to contents); it yields the other file's genuine
    // bytes, authorized by the other file's key. Pinned here so a change is deliberate.
    let mut m = Mounted::new(&[]);
    let (one, two) = two_files(&m);
    let want = fs::read(m.path("two")).unwrap();
    fs::copy(&two, &one).unwrap();
    assert_eq!(read_fresh(&mut m, "one"), Ok(want));
}

#[test]
fn an_altered_symlink_target_is_eio() {
    let mut m = Mounted::new(&[]);
    std::os::unix::fs::symlink("somewhere/else", m.path("link")).unwrap();
    m.unmount();
    let link = fs::read_dir(&m.backing)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_symlink())
        .unwrap();
    let mut stored = fs::read_link(&link)
        .unwrap()
        .into_os_string()
        .into_string()
        .unwrap();
    let last = stored.pop().unwrap();
    stored.push(if last == 'A' { 'B' } else { 'A' });
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&stored, &link).unwrap();
    m.mount(&[]);
    let err = fs::read_link(m.path("link")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
}

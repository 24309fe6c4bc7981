//! Plain file-system behaviour through a real mount: contents, sizes, holes, names,
//! directories, links, attributes, concurrency, unmount. Needs root and /dev/fuse.

mod fs_support;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use fs_support::*;

#[test]
fn small_write_read_round_trip() {
    let m = Mounted::new(&[]);
    let p = m.path("hello.txt");
    fs::write(&p, b"hello, world").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello, world");
    assert_eq!(fs::metadata(&p).unwrap().len(), 12);
}

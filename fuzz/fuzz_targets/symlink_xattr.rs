#![no_main]
//! Fuzz target `symlink_xattr`: see `kmsfs::fuzzing::symlink_xattr`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::symlink_xattr(data) {
        panic!("{violation}");
    }
});

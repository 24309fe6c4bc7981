#![no_main]
//! Fuzz target `dir_meta`: see `kmsfs::fuzzing::dir_meta`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::dir_meta(data) {
        panic!("{violation}");
    }
});

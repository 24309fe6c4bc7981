#![no_main]
//! Fuzz target `policy`: see `kmsfs::fuzzing::policy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::policy(data) {
        panic!("{violation}");
    }
});

#![no_main]
//! Fuzz target `principals`: see `kmsfs::fuzzing::principals`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::principals(data) {
        panic!("{violation}");
    }
});

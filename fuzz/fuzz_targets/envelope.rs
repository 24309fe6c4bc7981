#![no_main]
//! Fuzz target `envelope`: see `kmsfs::fuzzing::envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::envelope(data) {
        panic!("{violation}");
    }
});

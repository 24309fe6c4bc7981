#![no_main]
//! Fuzz target `names`: see `kmsfs::fuzzing::names`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::names(data) {
        panic!("{violation}");
    }
});

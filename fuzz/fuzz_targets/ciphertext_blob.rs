#![no_main]
//! Fuzz target `ciphertext_blob`: see `kmsfs::fuzzing::ciphertext_blob`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::ciphertext_blob(data) {
        panic!("{violation}");
    }
});

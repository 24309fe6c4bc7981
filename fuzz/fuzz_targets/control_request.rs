#![no_main]
//! Fuzz target `control_request`: see `kmsfs::fuzzing::control_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::control_request(data) {
        panic!("{violation}");
    }
});

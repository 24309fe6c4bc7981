#![no_main]
//! Fuzz target `control_frames`: see `kmsfs::fuzzing::control_frames`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::control_frames(data) {
        panic!("{violation}");
    }
});

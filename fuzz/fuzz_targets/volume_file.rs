#![no_main]
//! Fuzz target `volume_file`: see `kmsfs::fuzzing::volume_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = kmsfs::fuzzing::volume_file(data) {
        panic!("{violation}");
    }
});

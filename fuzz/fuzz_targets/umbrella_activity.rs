//! Arbitrary bytes as Umbrella activity pages, token answers and error bodies; what must hold is
//! `socbridge_fuzz_checks::umbrella_activity`, which `cargo test` also runs over the seeds and
//! regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::umbrella_activity(data));

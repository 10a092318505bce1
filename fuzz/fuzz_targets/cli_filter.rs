//! Arbitrary bytes as `--severity` / `--status` comma lists; what must hold is
//! `socbridge_fuzz_checks::cli_filter`, which `cargo test` also runs over the seeds and
//! regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::cli_filter(data));

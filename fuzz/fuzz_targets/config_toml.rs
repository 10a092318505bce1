//! Arbitrary bytes as the TOML config file; what must hold is `socbridge_fuzz_checks::config_toml`,
//! which `cargo test` also runs over the seeds and regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::config_toml(data));

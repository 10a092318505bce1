//! Arbitrary bytes as `--since` expressions (a duration back from now, or an RFC 3339 time); what
//! must hold is `socbridge_fuzz_checks::cli_time`, which `cargo test` also runs over the seeds and
//! regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::cli_time(data));

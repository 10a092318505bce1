//! Arbitrary bytes as Symantec MSS SOAP answers; what must hold is
//! `socbridge_fuzz_checks::symantec_soap`, which `cargo test` also runs over the seeds and
//! regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::symantec_soap(data));

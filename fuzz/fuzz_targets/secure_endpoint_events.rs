//! Arbitrary bytes as Secure Endpoint `GET /v1/events` pages, single events and error bodies; what
//! must hold is `socbridge_fuzz_checks::secure_endpoint_events`, which `cargo test` also runs over
//! the seeds and regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::secure_endpoint_events(data));

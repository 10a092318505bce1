//! Arbitrary bytes as ServiceNow Table API answers (tickets, journal entries), their times and
//! error bodies; what must hold is `socbridge_fuzz_checks::servicenow_records`, which `cargo test`
//! also runs over the seeds and regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::servicenow_records(data));

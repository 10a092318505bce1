//! Arbitrary bytes as ServiceNow webhook bodies (`POST /hooks/servicenow`); what must hold is
//! `socbridge_fuzz_checks::servicenow_webhook`, which `cargo test` also runs over the seeds and
//! regressions.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socbridge_fuzz_checks::servicenow_webhook(data));

//! Arbitrary bytes into every Symantec MSS SOAP answer parser, and whatever parses through the
//! mapping: none may panic, overflow the stack or hang, whatever the service (or something in
//! the middle) sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use socbridge_connectors::symantec_mss::{
    WorkflowUpdate, map_incident, map_list, merge_workflow_update, parse_fault,
    parse_incident_get_list, parse_incident_query, parse_incident_workflow_query,
    parse_update_incident_workflow, summary_change_time,
};

fuzz_target!(|data: &[u8]| {
    let list = parse_incident_get_list(data);
    let detail = parse_incident_workflow_query(data);
    if let Ok(list) = &list {
        let (findings, quarantined) = map_list(list);
        assert_eq!(findings.len(), list.incidents.len());
        assert_eq!(quarantined.len(), list.quarantined.len());
        for s in &list.incidents {
            assert!(summary_change_time(s) >= s.time_created);
            if let Ok(Some(d)) = &detail {
                let f = map_incident(s, Some(d));
                assert_eq!(f.vendor_key, s.incident_number);
            }
        }
    }
    if let Ok(Some(d)) = &detail {
        let asked = WorkflowUpdate {
            number: d.incident_number.clone(),
            ..WorkflowUpdate::default()
        };
        let _ = merge_workflow_update(&asked, d);
    }
    let _ = parse_incident_query(data);
    let _ = parse_update_incident_workflow(data);
    let _ = parse_fault(data);
});

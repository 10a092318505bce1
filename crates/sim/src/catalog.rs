//! The Secure Endpoint event types the emulator generates: id, name, description, and the
//! shape of the record each one carries (which optional members are present), copied from
//! the recorded payloads under `fixtures/secure_endpoint/`.
//!
//! The shapes matter more than the names: real events of some types have no `file`, no
//! `severity` or no `detection`, and a client that assumes otherwise must fail here, not in
//! production.

/// The default filter of the MSSP workflows (VENDOR-APIS.md section 2, "High-priority event
/// types"): what socbridge pulls by default, and what the emulator's `*_high_priority`
/// counters count.
pub const HIGH_PRIORITY_EVENT_TYPES: [u64; 36] = [
    1090519054, // Threat Detected
    2164260880, // Quarantine Failure
    2164260893, // Cloud Recall Quarantine Attempt Failed
    1090524040, // APK Threat Detected
    1090524041, // APK Custom Threat Detected
    1090519084, // DFC Threat Detected
    1107296257, // Potential Dropper Infection
    1107296258, // Multiple Infected Files
    1107296261, // Adobe Reader compromise
    1107296262, // Microsoft Word compromise
    1107296263, // Microsoft Excel compromise
    1107296264, // Microsoft PowerPoint compromise
    1107296266, // Adobe Reader launched a shell
    1107296267, // Microsoft Word launched a shell
    1107296268, // Microsoft Excel launched a shell
    1107296269, // Microsoft PowerPoint launched a shell
    1107296270, // Apple QuickTime compromise
    1107296271, // Apple QuickTime launched a shell
    1107296272, // Executed malware
    1107296273, // Suspected botnet connection
    1107296274, // Cloud IOC
    1107296275, // Microsoft Calculator compromise
    1107296276, // Microsoft Notepad compromise
    1091567670, // Endpoint IOC Scan Completed With Detections
    1107296277, // Connection to suspicious domain
    1107296278, // Threat Detected in Low Prevalence Executable
    1107296280, // Suspicious Download
    1107296281, // Microsoft CHM Compromise
    1107296282, // Suspicious Cscript Launch
    1107296284, // Potential Ransomware
    1107296283, // Possible Webshell
    2164260931, // Critical Fault Raised
    1090519081, // Rootkit Detection
    1090519105, // Malicious Activity Detection
    1090519102, // iOS Network Detection
    553648215,  // Endpoint Isolation Unlock Limit Reached
];

/// Which optional members a record of a type carries, after the recorded payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Threat Detected and kin: `detection`, `detection_id`, a full `file` with `parent`,
    /// `computer.user`.
    FileDetection,
    /// Retrospective Detection: `detection`, `detection_id`, a `file` with all hashes, no parent.
    Retrospective,
    /// Threat Quarantined, Retrospective Quarantine: `detection_id` and a bare `file`.
    Quarantine,
    /// Quarantine Failure and kin: `detection_id`, `error{error_code, description}`, bare `file`.
    QuarantineFailure,
    /// The "compromise"/"launched a shell"/"Executed malware" family: `detection`,
    /// `start_timestamp`/`start_date`, `file` with a parent identified by hash only.
    Compromise,
    /// Cloud IOC: `cloud_ioc{description, short_description}`, `start_*`, `tactics`, and only
    /// sometimes a `file` (and a `detection`).
    CloudIoc,
    /// Threat Detected in Low Prevalence Executable: a `file` without path, no detection.
    LowPrevalence,
    /// Network detections: `network_info{...}` instead of a `file`.
    Network,
    /// Endpoint IOC scan with detections: a `scan` summary, no file.
    IocScan,
    /// Critical Fault Raised: severity only, no file, no detection.
    Fault,
    /// Endpoint Isolation Unlock Limit Reached: `isolation{error_code}`.
    IsolationNotice,
    /// Endpoint isolation start/stop failures: `error{error_code, description}`.
    IsolationFailure,
    /// Policy Update, isolation successes: computer and group only.
    Bare,
    /// Scan Started: `scan{description}`.
    ScanStarted,
    /// Scan Completed, No Detections: a full clean `scan`.
    ScanClean,
    /// File Fetch Completed: a full `file`, no severity.
    FileFetch,
    /// Vulnerable Application Detected: `vulnerabilities[]`, `start_*`, a `file`.
    Vulnerability,
}

/// One event type the emulator can generate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventType {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
    pub shape: Shape,
    /// Severities drawn from; empty when the type carries no `severity` member.
    pub severities: &'static [&'static str],
}

const MED_HIGH: &[&str] = &["Medium", "Medium", "High"];
const HIGH_CRIT: &[&str] = &["High", "High", "Critical"];
const LOW_TO_HIGH: &[&str] = &["Low", "Medium", "Medium", "High"];
const HIGH: &[&str] = &["High"];
const MEDIUM: &[&str] = &["Medium"];
const LOW: &[&str] = &["Low"];
const CRITICAL: &[&str] = &["Critical"];
const NONE: &[&str] = &[];

macro_rules! ty {
    ($id:expr, $name:expr, $desc:expr, $shape:ident, $sev:expr) => {
        EventType {
            id: $id,
            name: $name,
            description: $desc,
            shape: Shape::$shape,
            severities: $sev,
        }
    };
}

/// Every type the emulator generates, high-priority first (in the order of
/// [`HIGH_PRIORITY_EVENT_TYPES`]), then the low-priority ones that make filtering matter.
pub(crate) const EVENT_TYPES: &[EventType] = &[
    ty!(
        1090519054,
        "Threat Detected",
        "A file was detected as malicious.",
        FileDetection,
        MED_HIGH
    ),
    ty!(
        2164260880,
        "Quarantine Failure",
        "A malicious file could not be quarantined.",
        QuarantineFailure,
        MEDIUM
    ),
    ty!(
        2164260893,
        "Cloud Recall Quarantine Attempt Failed",
        "A file convicted retrospectively could not be quarantined.",
        QuarantineFailure,
        HIGH
    ),
    ty!(
        1090524040,
        "APK Threat Detected",
        "A malicious Android package was detected.",
        FileDetection,
        MED_HIGH
    ),
    ty!(
        1090524041,
        "APK Custom Threat Detected",
        "An Android package on a custom detection list was detected.",
        FileDetection,
        MED_HIGH
    ),
    ty!(
        1090519084,
        "DFC Threat Detected",
        "A connection to an address on a Device Flow Correlation list was detected.",
        Network,
        HIGH
    ),
    ty!(
        1107296257,
        "Potential Dropper Infection",
        "A file dropped other files that were later convicted.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296258,
        "Multiple Infected Files",
        "Several infected files were seen on one computer.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296261,
        "Adobe Reader compromise",
        "Adobe Reader behaved like an exploited process.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296262,
        "Microsoft Word compromise",
        "Microsoft Word behaved like an exploited process.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296263,
        "Microsoft Excel compromise",
        "Microsoft Excel behaved like an exploited process.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296264,
        "Microsoft PowerPoint compromise",
        "Microsoft PowerPoint behaved like an exploited process.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296266,
        "Adobe Reader launched a shell",
        "Adobe Reader started a command shell.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296267,
        "Microsoft Word launched a shell",
        "Microsoft Word started a command shell.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296268,
        "Microsoft Excel launched a shell",
        "Microsoft Excel started a command shell.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296269,
        "Microsoft PowerPoint launched a shell",
        "Microsoft PowerPoint started a command shell.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1107296270,
        "Apple QuickTime compromise",
        "Apple QuickTime behaved like an exploited process.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296271,
        "Apple QuickTime launched a shell",
        "Apple QuickTime started a command shell.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296272,
        "Executed malware",
        "A known malicious file was executed.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296273,
        "Suspected botnet connection",
        "A connection to a suspected botnet command-and-control server was seen.",
        Network,
        HIGH
    ),
    ty!(
        1107296274,
        "Cloud IOC",
        "A cloud indicator of compromise matched activity on the computer.",
        CloudIoc,
        LOW_TO_HIGH
    ),
    ty!(
        1107296275,
        "Microsoft Calculator compromise",
        "Microsoft Calculator behaved like an exploited process.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296276,
        "Microsoft Notepad compromise",
        "Microsoft Notepad behaved like an exploited process.",
        Compromise,
        HIGH
    ),
    ty!(
        1091567670,
        "Endpoint IOC Scan Completed With Detections",
        "An endpoint IOC scan finished and found matches.",
        IocScan,
        HIGH
    ),
    ty!(
        1107296277,
        "Connection to suspicious domain",
        "A process connected to a domain with a poor reputation.",
        Network,
        MED_HIGH
    ),
    ty!(
        1107296278,
        "Threat Detected in Low Prevalence Executable",
        "A rarely seen executable was convicted after analysis.",
        LowPrevalence,
        HIGH
    ),
    ty!(
        1107296280,
        "Suspicious Download",
        "A suspicious file was downloaded.",
        Compromise,
        MED_HIGH
    ),
    ty!(
        1107296281,
        "Microsoft CHM Compromise",
        "A compiled HTML help file behaved maliciously.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296282,
        "Suspicious Cscript Launch",
        "The Windows script host was started suspiciously.",
        Compromise,
        HIGH
    ),
    ty!(
        1107296284,
        "Potential Ransomware",
        "Behaviour consistent with ransomware was seen.",
        Compromise,
        CRITICAL
    ),
    ty!(
        1107296283,
        "Possible Webshell",
        "A web server process started a command shell.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        2164260931,
        "Critical Fault Raised",
        "The connector raised a critical fault.",
        Fault,
        CRITICAL
    ),
    ty!(
        1090519081,
        "Rootkit Detection",
        "A rootkit was detected.",
        FileDetection,
        HIGH_CRIT
    ),
    ty!(
        1090519105,
        "Malicious Activity Detection",
        "Malicious Activity Protection stopped a process.",
        Compromise,
        HIGH_CRIT
    ),
    ty!(
        1090519102,
        "iOS Network Detection",
        "An iOS device connected to a malicious address.",
        Network,
        MED_HIGH
    ),
    ty!(
        553648215,
        "Endpoint Isolation Unlock Limit Reached",
        "Too many attempts were made to unlock an isolated computer.",
        IsolationNotice,
        MEDIUM
    ),
    // Low priority: what the default filter must leave out.
    ty!(
        553648130,
        "Policy Update",
        "The connector received a policy update.",
        Bare,
        NONE
    ),
    ty!(
        554696714,
        "Scan Started",
        "A scan started.",
        ScanStarted,
        NONE
    ),
    ty!(
        554696715,
        "Scan Completed, No Detections",
        "A scan finished without detections.",
        ScanClean,
        NONE
    ),
    ty!(
        553648143,
        "Threat Quarantined",
        "A malicious file was quarantined.",
        Quarantine,
        MEDIUM
    ),
    ty!(
        553648147,
        "Retrospective Detection",
        "A file seen earlier was convicted.",
        Retrospective,
        HIGH
    ),
    ty!(
        553648155,
        "Retrospective Quarantine",
        "A file convicted retrospectively was quarantined.",
        Quarantine,
        HIGH
    ),
    ty!(
        553648173,
        "File Fetch Completed",
        "A file requested from the computer was fetched.",
        FileFetch,
        NONE
    ),
    ty!(
        1107296279,
        "Vulnerable Application Detected",
        "An application with known vulnerabilities was run.",
        Vulnerability,
        LOW
    ),
    ty!(
        553648202,
        "Endpoint Isolation Start Success",
        "The computer was isolated.",
        Bare,
        NONE
    ),
    ty!(
        2164260939,
        "Endpoint Isolation Start Failure",
        "The computer could not be isolated.",
        IsolationFailure,
        NONE
    ),
    ty!(
        553648204,
        "Endpoint Isolation Stop Success",
        "Isolation of the computer was stopped.",
        Bare,
        NONE
    ),
    ty!(
        2164260941,
        "Endpoint Isolation Stop Failure",
        "Isolation of the computer could not be stopped.",
        IsolationFailure,
        NONE
    ),
];

/// Looks a type up by id.
pub(crate) fn event_type(id: u64) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|t| t.id == id)
}

/// Whether an id is in the high-priority list.
pub(crate) fn is_high_priority(id: u64) -> bool {
    HIGH_PRIORITY_EVENT_TYPES.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_high_priority_list_has_36_distinct_ids_all_generated() {
        let set: BTreeSet<u64> = HIGH_PRIORITY_EVENT_TYPES.iter().copied().collect();
        assert_eq!(set.len(), 36);
        for id in HIGH_PRIORITY_EVENT_TYPES {
            assert!(event_type(id).is_some(), "{id} has a catalogue entry");
        }
        let ids: BTreeSet<u64> = EVENT_TYPES.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), EVENT_TYPES.len(), "no id listed twice");
        assert!(
            EVENT_TYPES.iter().any(|t| !is_high_priority(t.id)),
            "low-priority types exist"
        );
    }
}

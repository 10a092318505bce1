//! The pure mapping of Symantec MSS incidents to socbridge findings (no I/O, no clock).
//!
//! One MSS incident is one socbridge incident: the finding's subject is
//! `vendor_incident:<IncidentNumber>` (see the model's correlation rules), and its
//! `vendor_key` is the `IncidentNumber`, because `IncidentGetList` returns the same incident
//! again whenever it changes, and it must be recognised, not counted twice.

use super::soap::{IncidentList, IncidentSummary, MssSeverity, SecurityIncident};
use socbridge_model::{
    Finding, Observable, ObservableKind, Quarantined, Severity, SourceKind, Subject, Timestamp,
    normalise_observables,
};

/// Words the vendor puts where it has no value.
fn meaningful(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty()
        && !["n/a", "na", "none", "null", "unknown", "not available", "-"]
            .iter()
            .any(|w| t.eq_ignore_ascii_case(w))
}

/// socbridge's severity of a vendor label; an unknown or missing label is `medium` (the
/// middle of the scale, rather than losing an incident over a word).
pub fn severity_of(label: Option<&str>) -> Severity {
    label
        .and_then(MssSeverity::parse)
        .map_or(Severity::Medium, MssSeverity::to_model)
}

/// Maps an incident to a finding: its summary, and its detail (`IncidentWorkflowQuery`) when
/// the caller fetched it. A detail of another incident number is ignored.
///
/// * `observed_at`: `TimeCreated`;
/// * `severity`: the detail's `Severity` (fresher), else the summary's;
/// * `title`: `Classification`, else `Category`; `event_type`: `Category`, else
///   `Classification`;
/// * `observables`: source IPs, host names and users of the summary, and of the detail's
///   signatures their source IPs, hosts, users and files (name, URL, MD5, SHA-256);
/// * `raw`: the detail's `SecurityIncident` XML when given (it holds more), else the
///   summary's `SecurityIncidentSummary` XML, verbatim.
pub fn map_incident(summary: &IncidentSummary, detail: Option<&SecurityIncident>) -> Finding {
    let detail = detail.filter(|d| d.incident_number == summary.incident_number);
    let pick = |s: &Option<String>, d: Option<&Option<String>>| {
        d.and_then(|d| d.as_deref())
            .or(s.as_deref())
            .filter(|v| meaningful(v))
            .map(str::to_string)
    };
    let classification = pick(&summary.classification, detail.map(|d| &d.classification));
    let category = summary.category.clone().filter(|c| meaningful(c));
    let number = &summary.incident_number;
    let title = classification
        .clone()
        .or_else(|| category.clone())
        .unwrap_or_else(|| format!("Symantec MSS incident {number}"));
    let event_type = category
        .or(classification)
        .unwrap_or_else(|| "incident".to_string());
    let severity = severity_of(
        detail
            .and_then(|d| d.severity.as_deref())
            .or(summary.severity.as_deref()),
    );

    let mut obs = Vec::new();
    let mut push = |kind: ObservableKind, v: Option<&str>| {
        if let Some(v) = v.filter(|v| meaningful(v)) {
            obs.push(Observable::new(kind, v.trim()));
        }
    };
    for ip in &summary.source_ips {
        push(ObservableKind::Ip, Some(ip));
    }
    for h in &summary.host_names {
        push(ObservableKind::Hostname, Some(h));
    }
    for u in &summary.users {
        push(ObservableKind::User, Some(u));
    }
    if let Some(d) = detail {
        for s in &d.signatures {
            for ip in &s.source_ips {
                push(ObservableKind::Ip, Some(ip));
            }
            for h in &s.source_hosts {
                push(ObservableKind::Hostname, h.host_name.as_deref());
                push(ObservableKind::User, h.user_name.as_deref());
            }
            for f in &s.files {
                push(ObservableKind::FileName, f.file_name.as_deref());
                push(ObservableKind::Url, f.url.as_deref());
                push(
                    ObservableKind::Md5,
                    f.md5
                        .as_deref()
                        .map(str::trim)
                        .map(|h| h.to_ascii_lowercase())
                        .as_deref(),
                );
                push(
                    ObservableKind::Sha256,
                    f.sha256
                        .as_deref()
                        .map(str::trim)
                        .map(|h| h.to_ascii_lowercase())
                        .as_deref(),
                );
            }
        }
    }
    normalise_observables(&mut obs);

    Finding {
        source_kind: SourceKind::SymantecMss,
        vendor_key: number.clone(),
        observed_at: summary.time_created,
        severity,
        title: title.clone(),
        event_type,
        subject: Some(Subject {
            kind: "vendor_incident".to_string(),
            id: number.clone(),
            label: Some(title),
        }),
        observables: obs,
        raw: detail.map_or_else(|| summary.raw.clone(), |d| d.raw.clone()),
    }
}

/// Maps a whole `IncidentGetList` answer: findings oldest first, and every record that could
/// not be read, quarantined with its reason and XML. One bad record never stops the rest.
pub fn map_list(list: &IncidentList) -> (Vec<Finding>, Vec<Quarantined>) {
    let mut findings: Vec<Finding> = list
        .incidents
        .iter()
        .map(|s| map_incident(s, None))
        .collect();
    findings.sort_by_key(|f| f.observed_at);
    (findings, list.quarantined.clone())
}

/// When an incident last changed, as far as its summary tells: the latest of `TimeCreated`,
/// `UpdateTimestampGMT` and `LatestKeyEvent` (when that is a time). The poll cursor advances
/// on this, since `IncidentGetList` returns incidents created or updated since its start.
pub fn summary_change_time(summary: &IncidentSummary) -> Timestamp {
    [
        Some(summary.time_created),
        summary.update_timestamp,
        summary.latest_key_event_time(),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(summary.time_created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> IncidentSummary {
        IncidentSummary {
            incident_number: "565656".into(),
            time_created: Timestamp::parse_lenient_utc("2017-12-20T10:04:35.437").expect("t"),
            severity: Some("Emergency".into()),
            category: None,
            country_of_origin: None,
            days_seen_globally: None,
            source_ips: vec!["10.0.0.1".into(), "N/A".into()],
            correlation: None,
            host_names: vec![],
            is_internal_external: None,
            global_lookback_days: None,
            latest_key_event: Some("2017-12-21T00:00:00Z".into()),
            customer_severity: None,
            country_code: None,
            first_seen_in_last_30_days: None,
            days_seen_in_last_30_days: None,
            dest_organization_name: None,
            source_organization_name: None,
            first_seen_globally: None,
            country_name: None,
            users: vec![],
            classification: Some("Scan for Web Servers".into()),
            update_timestamp: Some(Timestamp::parse_lenient_utc("2017-12-20T11:00:00").expect("t")),
            prevalence_globally: None,
            raw: "<SecurityIncidentSummary/>".into(),
        }
    }

    #[test]
    fn maps_summary() {
        let f = map_incident(&summary(), None);
        assert_eq!(f.vendor_key, "565656");
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.title, "Scan for Web Servers");
        assert_eq!(f.event_type, "Scan for Web Servers");
        assert_eq!(
            f.observables,
            vec![Observable::new(ObservableKind::Ip, "10.0.0.1")]
        );
        assert_eq!(
            f.subject.as_ref().map(|s| s.kind.as_str()),
            Some("vendor_incident")
        );
        assert_eq!(
            socbridge_model::correlation_key(&f).0,
            "symantec_mss:vendor_incident:565656"
        );
    }

    #[test]
    fn change_time_is_the_latest() {
        let mut s = summary();
        assert_eq!(
            summary_change_time(&s).to_rfc3339(),
            "2017-12-21T00:00:00.000000Z"
        );
        s.latest_key_event = Some("Port scan".into());
        assert_eq!(
            summary_change_time(&s).to_rfc3339(),
            "2017-12-20T11:00:00.000000Z"
        );
    }

    #[test]
    fn severity_labels() {
        assert_eq!(severity_of(Some("Critical")), Severity::High);
        assert_eq!(severity_of(Some("Warning")), Severity::Medium);
        assert_eq!(severity_of(Some("Informational")), Severity::Informational);
        assert_eq!(severity_of(None), Severity::Medium);
    }
}

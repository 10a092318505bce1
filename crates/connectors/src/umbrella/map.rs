//! The pure mapping of Umbrella activity records (DNS, proxy, firewall, intrusion, IP) to
//! findings. No I/O, no clock: tested on recorded answers and benchmarked.
//!
//! # The finding key
//!
//! Activity records carry no id, so the key is derived from what identifies the event. Its
//! canonical form is the JSON array (JSON string escaping keeps the members unambiguous)
//!
//! ```text
//! ["umbrella-activity/v1", org, type, timestamp_ms, identities, destination, categories,
//!  querytype, verdict, sourceip, sourceport, destinationip, destinationport, protocol,
//!  signature]
//! ```
//!
//! every member a string (`""` when the record lacks it):
//!
//! * `org`: the organisation the record was fetched for (the child org an MSSP key acted for,
//!   or the key's own org id as configured);
//! * `type`: the record's `type` (`dns`, `proxy`, `firewall`, `intrusion`, `ip`);
//! * `timestamp_ms`: `timestamp` (epoch milliseconds), or `date`+`time` read as UTC converted
//!   to epoch milliseconds when `timestamp` is missing;
//! * `identities`: every identity's `id` (or `label:<label>` when it has no id), sorted and
//!   joined by `,`;
//! * `destination`: `url`, else `domain`: the name reached (empty for firewall, IP and
//!   intrusion records, which are told apart by their addresses and ports below);
//! * `categories`: the category ids, sorted, deduplicated, joined by `,`;
//! * `querytype` (DNS: `A` and `AAAA` lookups of one name in the same second are two events),
//!   `verdict`, `sourceip`, `sourceport`, `destinationip`, `destinationport`, `protocol` (its
//!   `id` or `label` when an object), `signature` (intrusion: `generatorid:id`), as the record
//!   gives them.
//!
//! The key is the lowercase hex SHA-256 of that text. It depends only on member values, never
//! on the order of the record's JSON members nor on the order of its `identities` and
//! `categories` arrays, so a record fetched twice (overlapping windows, offset paging across
//! an unstable second) gets the same key, and records differing in any member above differ.
//!
//! # Severity
//!
//! | verdict | categories | severity |
//! | --- | --- | --- |
//! | `blocked` | Command and Control (65) | high |
//! | `blocked` | Cryptomining (150) | medium |
//! | `blocked` | another security category (`type` `security`, or a known security id) | medium |
//! | `blocked` | content categories only (a policy block) | low |
//! | `allowed`, `proxied`, other | any | low |
//!
//! Allowed traffic is low because Umbrella's MSSP polling exists for what it blocked; an
//! allowed record is context for an analyst, not an alert.
//!
//! # Subject
//!
//! Findings are grouped per identity: `Subject { kind: "identity", id: "<org>:<identity id>",
//! label: <identity label> }`, the identity being the first computer among the record's
//! identities (roaming computer, AD computer, AnyConnect, Chromebook...), else the first
//! identity of any kind.

use super::VENDOR;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use socbridge_model::{
    Finding, Observable, ObservableKind, Quarantined, Severity, SourceKind, Subject, Timestamp,
    normalise_observables,
};

/// Category id of Command and Control.
pub const CATEGORY_COMMAND_AND_CONTROL: u32 = 65;
/// Category id of Cryptomining.
pub const CATEGORY_CRYPTOMINING: u32 = 150;

/// Security categories known by id, for records whose categories lack a `type`: Dynamic DNS,
/// Command and Control, Malware, Phishing, Newly Seen Domains, Potentially Harmful,
/// Cryptomining.
const SECURITY_CATEGORY_IDS: &[u32] = &[61, 65, 67, 68, 108, 109, 150];

/// The version tag of the key's canonical form: changing the form means changing the tag.
const KEY_TAG: &str = "umbrella-activity/v1";

/// Why a record could not be mapped; the record is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("unreadable record: {0}")]
    Shape(String),
    #[error("the record is not a JSON object")]
    NotAnObject,
    #[error("the record has neither a usable `timestamp` nor a valid `date` and `time` ({0})")]
    NoTime(String),
}

/// One category of a record.
#[derive(Debug, Clone)]
struct Category<'a> {
    id: Option<u32>,
    label: Option<&'a str>,
    security: bool,
    /// `type` `application`: the generic "Application" label, the least telling.
    application: bool,
    deprecated: bool,
}

/// One identity of a record. `type` is an object (`{"id":9,"type":"roaming","label":"Roaming
/// Computers"}`); a plain string is accepted too.
#[derive(Debug, Clone)]
struct Identity<'a> {
    id: Option<String>,
    label: Option<&'a str>,
    type_name: Option<&'a str>,
    type_label: Option<&'a str>,
}

impl Identity<'_> {
    /// The identity as the key and the subject name it: its id, or its label when it has none.
    fn key(&self) -> Option<String> {
        match (&self.id, self.label) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(label)) => Some(format!("label:{label}")),
            (None, None) => None,
        }
    }

    fn is_computer(&self) -> bool {
        let name = self.type_name.unwrap_or("").to_ascii_lowercase();
        let label = self.type_label.unwrap_or("").to_ascii_lowercase();
        matches!(
            name.as_str(),
            "roaming" | "directory_computer" | "anyconnect" | "chromebook" | "mobile_device"
        ) || label.contains("computer")
    }

    fn is_user(&self) -> bool {
        let name = self.type_name.unwrap_or("").to_ascii_lowercase();
        let label = self.type_label.unwrap_or("").to_ascii_lowercase();
        name == "directory_user" || name.ends_with("_user") || label.contains("user")
    }
}

/// Words (and values) the vendor puts where it has nothing.
fn meaningful(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && !t.eq_ignore_ascii_case("unknown") && !t.eq_ignore_ascii_case("n/a")
}

fn text<'a>(rec: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    rec.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| meaningful(s))
}

/// A scalar member as text: strings as they are, numbers and booleans printed; an object by
/// its `id` (else `label`), which is how Umbrella nests enumerations such as `protocol`.
fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Object(o)) => {
            let id = scalar(o.get("id"));
            if id.is_empty() {
                scalar(o.get("label"))
            } else {
                id
            }
        }
        _ => String::new(),
    }
}

fn as_u32(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn categories(rec: &Map<String, Value>) -> Vec<Category<'_>> {
    let Some(list) = rec.get("categories").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| match c {
            Value::Object(o) => {
                let id = as_u32(o.get("id"));
                let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
                Some(Category {
                    id,
                    label: o
                        .get("label")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|s| meaningful(s)),
                    security: ty.eq_ignore_ascii_case("security")
                        || id.is_some_and(|i| SECURITY_CATEGORY_IDS.contains(&i)),
                    application: ty.eq_ignore_ascii_case("application"),
                    deprecated: o
                        .get("deprecated")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            }
            // A bare id.
            other => as_u32(Some(other)).map(|id| Category {
                id: Some(id),
                label: None,
                security: SECURITY_CATEGORY_IDS.contains(&id),
                application: false,
                deprecated: false,
            }),
        })
        .collect()
}

fn identities(rec: &Map<String, Value>) -> Vec<Identity<'_>> {
    let Some(list) = rec.get("identities").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Value::as_object)
        .map(|o| {
            let (type_name, type_label) = match o.get("type") {
                Some(Value::Object(t)) => (
                    t.get("type").and_then(Value::as_str),
                    t.get("label").and_then(Value::as_str),
                ),
                Some(Value::String(s)) => (Some(s.as_str()), None),
                _ => (None, None),
            };
            let id = scalar(o.get("id"));
            Identity {
                id: Some(id).filter(|s| !s.is_empty()),
                label: o
                    .get("label")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| meaningful(s)),
                type_name,
                type_label,
            }
        })
        .collect()
}

/// Priority of a category for the title: Command and Control first, then Cryptomining, then
/// other security categories, then content categories (current before deprecated), then the
/// generic application category.
fn rank(c: &Category<'_>) -> u8 {
    match c.id {
        Some(CATEGORY_COMMAND_AND_CONTROL) => 0,
        Some(CATEGORY_CRYPTOMINING) => 1,
        _ if c.security => 2,
        _ if c.application => 5,
        _ if !c.deprecated => 3,
        _ => 4,
    }
}

/// When the record says the event happened: `timestamp` (epoch ms), else `date` and `time`
/// read as UTC (the API's default `timezone`).
fn observed_at(rec: &Map<String, Value>) -> Result<(Timestamp, i64), MapError> {
    match rec.get("timestamp") {
        Some(Value::Number(n)) => {
            let ms = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.fract() == 0.0)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| MapError::NoTime(format!("`timestamp` {n} is not an integer")))?;
            return Timestamp::from_unix_millis(ms)
                .map(|t| (t, ms))
                .ok_or_else(|| MapError::NoTime(format!("`timestamp` {ms} is out of range")));
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let parsed = s.trim().parse::<i64>().ok();
            if let Some(ms) = parsed {
                return Timestamp::from_unix_millis(ms)
                    .map(|t| (t, ms))
                    .ok_or_else(|| MapError::NoTime(format!("`timestamp` {ms} is out of range")));
            }
            if rec.get("date").is_none() {
                return Err(MapError::NoTime(format!(
                    "`timestamp` {s:?} is not epoch milliseconds"
                )));
            }
        }
        Some(Value::Null) | Some(Value::String(_)) | None => {}
        Some(other) => {
            // Not a number: fall back to date and time, but say why if they fail too.
            if rec.get("date").is_none() {
                return Err(MapError::NoTime(format!(
                    "`timestamp` {other} is not epoch milliseconds"
                )));
            }
        }
    }
    let date = rec.get("date").and_then(Value::as_str).map(str::trim);
    let time = rec.get("time").and_then(Value::as_str).map(str::trim);
    match (date, time) {
        (Some(d), Some(t)) if !d.is_empty() && !t.is_empty() => {
            let at = Timestamp::parse_lenient_utc(&format!("{d}T{t}"))
                .map_err(|e| MapError::NoTime(format!("`date` {d:?} and `time` {t:?}: {e}")))?;
            Ok((at, at.as_micros().div_euclid(1_000)))
        }
        (Some(_), _) => Err(MapError::NoTime(
            "`timestamp` is missing and so is `time`".into(),
        )),
        _ => Err(MapError::NoTime(
            "`timestamp` is missing and so is `date`".into(),
        )),
    }
}

/// The members of a record that identify it, in the documented order (see the module
/// documentation). Public so that the key's definition can be checked and explained.
pub fn canonical_key(org_id: &str, raw: &str) -> Result<String, MapError> {
    let rec = parse_object(raw)?;
    let (_, ms) = observed_at(&rec)?;
    Ok(canonical_key_of(
        org_id,
        &rec,
        ms,
        &identities(&rec),
        &categories(&rec),
    ))
}

fn canonical_key_of(
    org_id: &str,
    rec: &Map<String, Value>,
    ms: i64,
    idents: &[Identity<'_>],
    categories: &[Category<'_>],
) -> String {
    let mut ids: Vec<String> = idents.iter().filter_map(Identity::key).collect();
    ids.sort();
    ids.dedup();
    let mut cats: Vec<u32> = categories.iter().filter_map(|c| c.id).collect();
    cats.sort_unstable();
    cats.dedup();
    let destination = ["url", "domain"]
        .iter()
        .map(|m| scalar(rec.get(*m)))
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let signature = match rec.get("signature") {
        Some(Value::Object(o)) => {
            format!("{}:{}", scalar(o.get("generatorid")), scalar(o.get("id")))
        }
        other => scalar(other),
    };
    let members: [String; 15] = [
        KEY_TAG.to_string(),
        org_id.trim().to_string(),
        scalar(rec.get("type")),
        ms.to_string(),
        ids.join(","),
        destination,
        cats.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        scalar(rec.get("querytype")),
        scalar(rec.get("verdict")),
        scalar(rec.get("sourceip")),
        scalar(rec.get("sourceport")),
        scalar(rec.get("destinationip")),
        scalar(rec.get("destinationport")),
        scalar(rec.get("protocol")),
        signature,
    ];
    // Serialising an array of strings cannot fail.
    serde_json::to_string(&members).unwrap_or_else(|_| members.join("\u{1f}"))
}

/// The finding key of a record: the lowercase hex SHA-256 of [`canonical_key`].
pub fn vendor_key(org_id: &str, raw: &str) -> Result<String, MapError> {
    canonical_key(org_id, raw).map(|c| hex::encode(Sha256::digest(c.as_bytes())))
}

fn parse_object(raw: &str) -> Result<Map<String, Value>, MapError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(MapError::NotAnObject),
        Err(e) => Err(MapError::Shape(e.to_string())),
    }
}

fn severity_of(verdict: &str, cats: &[Category<'_>]) -> Severity {
    if !verdict.eq_ignore_ascii_case("blocked") {
        return Severity::Low;
    }
    let has = |id: u32| cats.iter().any(|c| c.id == Some(id));
    if has(CATEGORY_COMMAND_AND_CONTROL) {
        Severity::High
    } else if has(CATEGORY_CRYPTOMINING) || cats.iter().any(|c| c.security) {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// `dns` → `DNS`, `proxy` → `Proxy`...: the record type as a word for titles.
fn type_word(ty: &str) -> String {
    match ty.to_ascii_lowercase().as_str() {
        "dns" => "DNS".into(),
        "ip" => "IP".into(),
        "" => "Umbrella".into(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// Maps one activity record (its exact JSON text) fetched for `org_id` to a finding. Pure.
pub fn map_record(org_id: &str, raw: &str) -> Result<Finding, MapError> {
    let rec = parse_object(raw)?;
    let (observed_at, ms) = observed_at(&rec)?;
    let org = org_id.trim();
    let org_or_dash = if org.is_empty() { "-" } else { org };

    let ty = scalar(rec.get("type"));
    let verdict = scalar(rec.get("verdict")).to_ascii_lowercase();
    let mut cats = categories(&rec);
    cats.sort_by_key(rank);
    let idents = identities(&rec);

    let destination = text(&rec, "domain")
        .or_else(|| text(&rec, "url"))
        .or_else(|| text(&rec, "destinationip"))
        .map(str::to_string);

    // Labels of the security categories (best first), else of the leading category.
    let mut labels: Vec<&str> = cats
        .iter()
        .filter(|c| c.security)
        .filter_map(|c| c.label)
        .collect();
    labels.dedup();
    let event_type = if !labels.is_empty() {
        labels.join(", ")
    } else if let Some(label) = cats.iter().find_map(|c| c.label) {
        label.to_string()
    } else {
        format!("{} activity", type_word(&ty))
    };
    let lead = cats
        .iter()
        .find_map(|c| c.label)
        .map_or_else(|| format!("{} activity", type_word(&ty)), str::to_string);
    let verdict_word = match verdict.as_str() {
        "blocked" => "Blocked",
        "allowed" => "Allowed",
        "proxied" => "Proxied",
        _ => "",
    };
    let mut title = if verdict_word.is_empty() {
        lead
    } else {
        format!("{verdict_word} {lead}")
    };
    if let Some(d) = &destination {
        title.push_str(": ");
        title.push_str(d);
    }

    let subject_identity = idents
        .iter()
        .find(|i| i.is_computer())
        .or_else(|| idents.first());
    let subject = subject_identity.and_then(|i| {
        i.key().map(|k| Subject {
            kind: "identity".to_string(),
            id: format!("{org_or_dash}:{k}"),
            label: i.label.map(str::to_string),
        })
    });

    let mut obs = Vec::new();
    let mut push = |kind: ObservableKind, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| meaningful(v)) {
            obs.push(Observable::new(kind, v));
        }
    };
    push(ObservableKind::Domain, text(&rec, "domain"));
    push(ObservableKind::Url, text(&rec, "url"));
    for ip in ["internalip", "externalip", "sourceip", "destinationip"] {
        push(ObservableKind::Ip, text(&rec, ip));
    }
    push(ObservableKind::Sha256, text(&rec, "sha256"));
    for i in &idents {
        if i.is_computer() {
            push(ObservableKind::Hostname, i.label);
        } else if i.is_user() {
            push(ObservableKind::User, i.label);
        }
    }
    normalise_observables(&mut obs);

    Ok(Finding {
        source_kind: SourceKind::Umbrella,
        vendor_key: hex::encode(Sha256::digest(
            canonical_key_of(org, &rec, ms, &idents, &cats).as_bytes(),
        )),
        observed_at,
        severity: severity_of(&verdict, &cats),
        title,
        event_type,
        subject,
        observables: obs,
        raw: raw.to_string(),
    })
}

/// Maps a page of records fetched for `org_id`: findings oldest first, and the records that
/// could not be mapped, quarantined with their reason and exact bytes. One bad record never
/// stops the rest of its page.
pub fn map_page(org_id: &str, records: &[Box<RawValue>]) -> (Vec<Finding>, Vec<Quarantined>) {
    let mut findings = Vec::with_capacity(records.len());
    let mut quarantined = Vec::new();
    for raw in records {
        match map_record(org_id, raw.get()) {
            Ok(f) => findings.push(f),
            Err(e) => quarantined.push(Quarantined {
                reason: format!("{VENDOR}: {e}"),
                raw: raw.get().as_bytes().to_vec(),
            }),
        }
    }
    // Stable: records of the same millisecond keep the vendor's order.
    findings.sort_by_key(|f| f.observed_at);
    (findings, quarantined)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C2: &str = r#"{"type":"dns","domain":"evil.example","externalip":"1.1.1.1","internalip":"10.10.10.162","timestamp":1662978435000,"date":"2022-09-12","time":"10:27:15","querytype":"A","returncode":0,"verdict":"blocked","categories":[{"id":65,"type":"security","label":"Command and Control","integration":false,"deprecated":false}],"policycategories":[],"threats":[{"label":"Wannacry","type":"Ransomware"}],"identities":[{"id":7,"type":{"id":4,"type":"directory_user","label":"AD Users"},"label":"alice"},{"id":589064228,"type":{"id":9,"type":"roaming","label":"Roaming Computers"},"label":"DESKTOP-IIQVPJ7","deleted":false}],"allapplications":[],"allowedapplications":[],"blockedapplications":[]}"#;

    #[test]
    fn blocked_c2_is_high_and_grouped_by_the_computer() {
        let f = map_record("2001", C2).expect("maps");
        assert_eq!(f.source_kind, SourceKind::Umbrella);
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.title, "Blocked Command and Control: evil.example");
        assert_eq!(f.event_type, "Command and Control");
        let s = f.subject.as_ref().expect("subject");
        assert_eq!(s.kind, "identity");
        assert_eq!(s.id, "2001:589064228");
        assert_eq!(s.label.as_deref(), Some("DESKTOP-IIQVPJ7"));
        assert!(
            f.observables
                .contains(&Observable::new(ObservableKind::User, "alice"))
        );
        assert!(f.observables.contains(&Observable::new(
            ObservableKind::Hostname,
            "DESKTOP-IIQVPJ7"
        )));
        assert_eq!(f.raw, C2);
        assert_eq!(
            f.observed_at.to_rfc3339_seconds(),
            "2022-09-12T10:27:15+00:00"
        );
        assert_eq!(f.vendor_key.len(), 64);
    }

    #[test]
    fn severities() {
        let crypto = C2.replace(r#""id":65,"#, r#""id":150,"#);
        assert_eq!(
            map_record("1", &crypto).expect("maps").severity,
            Severity::Medium
        );
        let malware = C2.replace(r#""id":65,"#, r#""id":67,"#);
        assert_eq!(
            map_record("1", &malware).expect("maps").severity,
            Severity::Medium
        );
        let allowed = C2.replace("blocked", "allowed");
        assert_eq!(
            map_record("1", &allowed).expect("maps").severity,
            Severity::Low
        );
    }

    #[test]
    fn date_and_time_stand_in_for_a_missing_timestamp() {
        let no_ts = C2.replace(r#""timestamp":1662978435000,"#, "");
        let f = map_record("1", &no_ts).expect("maps");
        assert_eq!(
            f.observed_at.to_rfc3339_seconds(),
            "2022-09-12T10:27:15+00:00"
        );
        // The same instant either way: the same key.
        assert_eq!(f.vendor_key, map_record("1", C2).expect("maps").vendor_key);
    }

    #[test]
    fn bad_records_are_named() {
        assert_eq!(map_record("1", "[1]"), Err(MapError::NotAnObject));
        assert!(matches!(map_record("1", "{"), Err(MapError::Shape(_))));
        let err = map_record("1", r#"{"type":"dns","domain":"x"}"#).expect_err("no time");
        assert!(err.to_string().contains("`date`"), "{err}");
        let err =
            map_record("1", r#"{"date":"2022-09-12","time":"25:99:00"}"#).expect_err("bad time");
        assert!(matches!(err, MapError::NoTime(_)), "{err}");
    }
}

//! What an MSS customer's incidents look like: classifications, countries, attacker and
//! victim addresses, hosts, users, signatures and file hashes, drawn from a generator fixed
//! by (seed, tenant), so two emulators with one seed hold the same incidents (only absolute
//! times follow the start time).

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The four severities, most severe first (the service's spelling).
pub(crate) const SEVERITIES: [&str; 4] = ["Emergency", "Critical", "Warning", "Informational"];

/// The canonical spelling of a severity, matched case-insensitively.
pub(crate) fn severity(name: &str) -> Option<&'static str> {
    SEVERITIES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name.trim()))
        .copied()
}

/// One kind of incident: its classification, category and the signatures that raise it.
struct Kind {
    classification: &'static str,
    category: &'static str,
    /// Weights of Emergency, Critical, Warning, Informational.
    severity_weights: [u32; 4],
    /// Attacks from inside (an infected host calling out) rather than from the Internet.
    internal: bool,
    signatures: &'static [(&'static str, &'static str)],
    with_files: bool,
}

const KINDS: &[Kind] = &[
    Kind {
        classification: "Scan for Web Servers",
        category: "Reconnaissance",
        severity_weights: [0, 1, 4, 6],
        internal: false,
        signatures: &[
            ("HTTP Nikto Web Scanner Activity", "SID 1:2002677"),
            ("HTTP Directory Traversal Attempt", "SID 1:1113"),
        ],
        with_files: false,
    },
    Kind {
        classification: "Brute Force Login Attempt",
        category: "Attempted Access",
        severity_weights: [0, 3, 5, 2],
        internal: false,
        signatures: &[
            ("SSH Brute Force Login Attempt", "SID 1:19559"),
            ("RDP Brute Force Login Attempt", "SID 1:2023753"),
        ],
        with_files: false,
    },
    Kind {
        classification: "Malicious Code Infection",
        category: "Malicious Code",
        severity_weights: [3, 6, 1, 0],
        internal: true,
        signatures: &[
            (
                "Trojan.Emotet Command and Control Activity",
                "Symantec 30854",
            ),
            ("W32.Qakbot Beacon", "Symantec 32771"),
        ],
        with_files: true,
    },
    Kind {
        classification: "Outbound Connection to Known Malicious Host",
        category: "Malicious Code",
        severity_weights: [2, 6, 2, 0],
        internal: true,
        signatures: &[
            ("Cobalt Strike Beacon Outbound Connection", "SID 1:2027082"),
            ("Known Malicious IP Outbound Connection", "DeepSight 4401"),
        ],
        with_files: true,
    },
    Kind {
        classification: "SQL Injection Attempt",
        category: "Attempted Exploit",
        severity_weights: [0, 3, 6, 1],
        internal: false,
        signatures: &[
            ("SQL Injection UNION SELECT Attempt", "SID 1:2006446"),
            ("SQL Injection OR 1=1 Attempt", "SID 1:2010963"),
        ],
        with_files: false,
    },
    Kind {
        classification: "Ransomware Activity Detected",
        category: "Malicious Code",
        severity_weights: [8, 2, 0, 0],
        internal: true,
        signatures: &[
            ("Ransom.WannaCry SMB Propagation", "Symantec 30010"),
            ("Ransomware File Encryption Behaviour", "SEP 1001"),
        ],
        with_files: true,
    },
    Kind {
        classification: "Phishing URL Access",
        category: "Policy Violation",
        severity_weights: [0, 2, 6, 2],
        internal: true,
        signatures: &[("Access to Known Phishing Site", "Web Gateway 210")],
        with_files: true,
    },
    Kind {
        classification: "Suspicious PowerShell Execution",
        category: "Suspicious Activity",
        severity_weights: [1, 6, 3, 0],
        internal: true,
        signatures: &[
            ("PowerShell Encoded Command Execution", "SEP 4418"),
            ("PowerShell Download Cradle", "SEP 4419"),
        ],
        with_files: true,
    },
    Kind {
        classification: "Denial of Service Attempt",
        category: "Denial of Service",
        severity_weights: [1, 2, 5, 2],
        internal: false,
        signatures: &[("TCP SYN Flood", "SID 1:2000345")],
        with_files: false,
    },
    Kind {
        classification: "Peer-to-Peer Traffic",
        category: "Policy Violation",
        severity_weights: [0, 0, 2, 8],
        internal: true,
        signatures: &[("BitTorrent Protocol Traffic", "SID 1:2000334")],
        with_files: false,
    },
];

/// (code, name, an organisation announcing addresses there, first octets used).
const COUNTRIES: &[(&str, &str, &str, &[u8])] = &[
    ("CN", "China", "CHINANET-BACKBONE", &[61, 218, 222]),
    ("RU", "Russian Federation", "Rostelecom", &[5, 91, 95]),
    ("US", "United States", "DigitalOcean, LLC", &[104, 138, 159]),
    ("NL", "Netherlands", "LeaseWeb Netherlands B.V.", &[37, 185]),
    ("DE", "Germany", "Hetzner Online GmbH", &[88, 136, 176]),
    ("BR", "Brazil", "Telefonica Brasil S.A.", &[177, 189]),
    ("VN", "Viet Nam", "VNPT Corp", &[14, 113]),
    (
        "IR",
        "Iran, Islamic Republic of",
        "Iran Telecommunication Company",
        &[2, 5],
    ),
    ("RO", "Romania", "M247 Europe SRL", &[45, 89]),
    ("KR", "Korea, Republic of", "Korea Telecom", &[121, 211]),
];

const FIRST: [&str; 10] = [
    "john", "maria", "li", "ahmed", "sofia", "peter", "anna", "kenji", "olga", "diego",
];
const LAST: [&str; 10] = [
    "doe", "garcia", "wei", "khan", "rossi", "novak", "berg", "sato", "ivanova", "lopez",
];
const FILES: [&str; 8] = [
    "invoice_0423.exe",
    "update.js",
    "payload.dll",
    "svch0st.exe",
    "report.docm",
    "tasksche.exe",
    "setup_x64.msi",
    "Document_Scan.pdf.exe",
];
const ANALYSTS: [&str; 4] = [
    "MSS Analyst - J. Meyer",
    "MSS Analyst - R. Patel",
    "MSS Analyst - C. Dubois",
    "MSS Analyst - S. Tanaka",
];

/// A tenant as the MSS knows it.
#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub name: String,
    pub organization: String,
    /// The Windows domain of its hosts.
    pub domain: String,
    /// Who `UpdateIncidentWorkflow` comments are attributed to (`CommentedBy`).
    pub web_service_user: String,
}

impl Customer {
    pub fn new(name: &str) -> Customer {
        let mut org = String::new();
        for (n, part) in name.split('-').enumerate() {
            if n > 0 {
                org.push(' ');
            }
            let mut cs = part.chars();
            if let Some(c) = cs.next() {
                org.extend(c.to_uppercase());
                org.push_str(cs.as_str());
            }
        }
        org.push_str(" Corporation");
        Customer {
            name: name.to_string(),
            organization: org,
            domain: format!("{}.corp", name.replace('-', "")),
            web_service_user: format!("{name}-sws-api"),
        }
    }
}

/// A host seen in a signature.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SourceHost {
    pub user_name: String,
    pub host_name: String,
    pub host_domain: String,
}

/// A file seen in a signature.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FileDetail {
    pub file_name: String,
    pub url: String,
    pub trusted_or_unknown: String,
    pub prevalence: String,
    pub first_seen: DateTime<Utc>,
    pub md5: String,
    pub sha256: String,
}

/// One signature (IDS/AV event type) of an incident.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Signature {
    pub source_ip: String,
    pub name: String,
    pub vendor_signature: String,
    pub blocked: u32,
    pub not_blocked: u32,
    pub is_key: bool,
    pub time_created: DateTime<Utc>,
    pub hosts: Vec<SourceHost>,
    pub files: Vec<FileDetail>,
}

/// A comment on an incident.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comment {
    pub time: DateTime<Utc>,
    pub text: String,
    pub by: String,
}

/// One security incident as the service stores it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Incident {
    pub number: u64,
    pub created: DateTime<Utc>,
    /// The last change (creation, a workflow update, an analyst's change).
    pub updated: DateTime<Utc>,
    /// Times written without offset and with milliseconds (`2017-12-20T10:04:35.437`) rather
    /// than with seven digits and `+00:00`: every other incident, so both formats are served.
    pub plain_times: bool,
    pub severity: String,
    /// Null (an empty element) unless the customer set one.
    pub customer_severity: String,
    pub category: String,
    pub classification: String,
    pub description: String,
    pub analyst_assessment: String,
    pub correlation: String,
    pub country_code: String,
    pub country_name: String,
    pub source_ips: Vec<String>,
    pub source_organization: String,
    pub destination_organization: String,
    pub host_names: Vec<String>,
    pub users: Vec<String>,
    pub internal_external: String,
    pub days_seen_globally: Option<u32>,
    pub days_seen_in_last_30_days: Option<u32>,
    pub global_lookback_days: u32,
    pub first_seen_globally: Option<DateTime<Utc>>,
    pub first_seen_in_last_30_days: Option<DateTime<Utc>>,
    pub latest_key_event: DateTime<Utc>,
    pub prevalence_globally: String,
    pub signatures: Vec<Signature>,
    pub status: String,
    pub resolution: String,
    pub assigned_person: String,
    pub assigned_organization: String,
    pub comments: Vec<Comment>,
    /// `Reference` values given with workflow updates (ticket numbers), comma-separated.
    pub related_tickets: String,
    pub related_incidents: Vec<u64>,
}

/// .NET's `DateTime` resolution: 100 ns ticks.
pub(crate) fn ticks(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(7)
}

/// `2017-12-20T10:04:35.4355923+00:00`.
pub(crate) fn time_offset(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}+00:00",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// `2017-12-20T10:04:35.437` (GMT, no offset).
pub(crate) fn time_plain(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

impl Incident {
    /// A time of this incident in its format.
    pub fn time(&self, t: DateTime<Utc>) -> String {
        if self.plain_times {
            time_plain(t)
        } else {
            time_offset(t)
        }
    }

    /// Sets the workflow members given (already checked against the accepted values).
    pub fn set_workflow(
        &mut self,
        status: Option<String>,
        resolution: Option<String>,
        severity: Option<&str>,
    ) {
        if let Some(s) = status {
            self.status = s;
        }
        if let Some(r) = resolution {
            self.resolution = r;
        }
        if let Some(s) = severity {
            self.severity = s.to_string();
        }
    }
}

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    let mut b = vec![0u8; n];
    rng.fill(&mut b[..]);
    hex::encode(b)
}

fn public_ip(rng: &mut ChaCha8Rng, firsts: &[u8]) -> String {
    let a = *firsts.choose(rng).unwrap_or(&45);
    format!(
        "{a}.{}.{}.{}",
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8),
        rng.random_range(1..=254u8)
    )
}

fn weighted(rng: &mut ChaCha8Rng, weights: &[u32; 4]) -> &'static str {
    let total: u32 = weights.iter().sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (w, s) in weights.iter().zip(SEVERITIES) {
        if pick < *w {
            return s;
        }
        pick -= w;
    }
    SEVERITIES[2]
}

/// Parameters of one new incident.
pub(crate) struct Spec<'a> {
    pub number: u64,
    pub created: DateTime<Utc>,
    pub plain_times: bool,
    pub severity: Option<&'static str>,
    pub customer: &'a Customer,
    /// Earlier incidents of the tenant (a few new ones name one as related).
    pub earlier: &'a [u64],
}

/// Draws one incident.
pub(crate) fn generate(rng: &mut ChaCha8Rng, s: Spec<'_>) -> Incident {
    let kind = KINDS.choose(rng).unwrap_or(&KINDS[0]);
    let severity = s
        .severity
        .unwrap_or_else(|| weighted(rng, &kind.severity_weights));
    let country = COUNTRIES.choose(rng).unwrap_or(&COUNTRIES[0]);
    let attacker = public_ip(rng, country.3);
    let victim_hosts: Vec<String> = (0..rng.random_range(1..=2))
        .map(|_| {
            let prefix = if kind.internal { "WS" } else { "WEB" };
            format!(
                "{prefix}-{}-{:03}",
                s.customer.name.to_uppercase().replace('-', ""),
                rng.random_range(1..=250)
            )
        })
        .collect();
    let users: Vec<String> = if kind.internal {
        vec![format!(
            "{}.{}",
            FIRST.choose(rng).unwrap_or(&FIRST[0]),
            LAST.choose(rng).unwrap_or(&LAST[0])
        )]
    } else {
        Vec::new()
    };
    let internal_ip = format!(
        "10.{}.{}.{}",
        rng.random_range(0..=40u8),
        rng.random_range(0..=255u8),
        rng.random_range(2..=254u8)
    );
    let (source_ips, internal_external) = if kind.internal {
        (vec![internal_ip], "Internal")
    } else if rng.random_bool(0.2) {
        (
            vec![attacker.clone(), public_ip(rng, country.3)],
            "External",
        )
    } else {
        (vec![attacker.clone()], "External")
    };
    let created = ticks(s.created);
    let n_sigs = rng.random_range(1..=kind.signatures.len().min(3));
    let mut signatures = Vec::with_capacity(n_sigs);
    for i in 0..n_sigs {
        let (name, vendor) = kind.signatures[i % kind.signatures.len()];
        let blocked = rng.random_range(0..40);
        let hosts = victim_hosts
            .iter()
            .map(|h| SourceHost {
                user_name: users.first().cloned().unwrap_or_default(),
                host_name: h.clone(),
                host_domain: s.customer.domain.clone(),
            })
            .collect();
        let files = if kind.with_files {
            (0..rng.random_range(1..=2))
                .map(|_| {
                    let file = *FILES.choose(rng).unwrap_or(&FILES[0]);
                    FileDetail {
                        file_name: file.to_string(),
                        url: format!("http://{attacker}/{}/{file}", hex(rng, 4)),
                        trusted_or_unknown: "Unknown".into(),
                        prevalence: ["Very Low", "Low", "Moderate"]
                            .choose(rng)
                            .unwrap_or(&"Low")
                            .to_string(),
                        first_seen: created - ChronoDuration::hours(rng.random_range(1..24 * 30)),
                        md5: hex(rng, 16),
                        sha256: hex(rng, 32),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        signatures.push(Signature {
            source_ip: source_ips.first().cloned().unwrap_or_default(),
            name: name.to_string(),
            vendor_signature: vendor.to_string(),
            blocked,
            not_blocked: rng.random_range(0..20) + u32::from(blocked == 0),
            is_key: i == 0,
            time_created: created - ChronoDuration::seconds(rng.random_range(0..600)),
            hosts,
            files,
        });
    }
    let days_seen = rng.random_range(0..4u32);
    let related = if !s.earlier.is_empty() && rng.random_bool(0.15) {
        s.earlier.choose(rng).copied().into_iter().collect()
    } else {
        Vec::new()
    };
    let first_seen_globally =
        (days_seen > 0).then(|| created - ChronoDuration::days(rng.random_range(1..400)));
    Incident {
        number: s.number,
        created,
        updated: created,
        plain_times: s.plain_times,
        severity: severity.to_string(),
        customer_severity: String::new(),
        category: kind.category.to_string(),
        classification: kind.classification.to_string(),
        description: format!(
            "{} from {} ({}) against {} of {}. {} signature(s) analysed.",
            kind.classification,
            source_ips.join(", "),
            country.1,
            victim_hosts.join(", "),
            s.customer.organization,
            n_sigs
        ),
        analyst_assessment: format!(
            "Activity consistent with {}. Recommend reviewing the affected host(s) and blocking {} at the perimeter.",
            kind.classification.to_lowercase(),
            attacker
        ),
        correlation: if n_sigs > 1 {
            "Correlated".into()
        } else {
            "Single Signature".into()
        },
        country_code: if kind.internal {
            String::new()
        } else {
            country.0.into()
        },
        country_name: if kind.internal {
            String::new()
        } else {
            country.1.into()
        },
        source_ips,
        source_organization: if kind.internal {
            s.customer.organization.clone()
        } else {
            country.2.to_string()
        },
        destination_organization: s.customer.organization.clone(),
        host_names: victim_hosts,
        users,
        internal_external: internal_external.into(),
        days_seen_globally: (days_seen > 0).then(|| rng.random_range(1..200)),
        days_seen_in_last_30_days: (days_seen > 0).then_some(days_seen),
        global_lookback_days: 30,
        first_seen_globally,
        first_seen_in_last_30_days: (days_seen > 0)
            .then(|| created - ChronoDuration::days(i64::from(days_seen))),
        latest_key_event: created,
        prevalence_globally: ["Very Low", "Low", "Moderate", "High"]
            .choose(rng)
            .unwrap_or(&"Low")
            .to_string(),
        signatures,
        status: "New".into(),
        resolution: String::new(),
        assigned_person: String::new(),
        assigned_organization: "Symantec MSS SOC".into(),
        comments: Vec::new(),
        related_tickets: String::new(),
        related_incidents: related,
    }
}

/// A comment an MSS analyst would leave, for initial incidents that already moved.
pub(crate) fn analyst_comment(rng: &mut ChaCha8Rng, time: DateTime<Utc>) -> Comment {
    let texts = [
        "Escalated to customer: please confirm whether this host is expected to reach the destination.",
        "Source address added to the global watch list.",
        "Customer notified by phone; awaiting confirmation.",
        "Signature tuned; further events will be suppressed for 24 hours.",
    ];
    Comment {
        time: ticks(time),
        text: texts.choose(rng).unwrap_or(&texts[0]).to_string(),
        by: analyst(rng),
    }
}

/// The name of an MSS analyst.
pub(crate) fn analyst(rng: &mut ChaCha8Rng) -> String {
    ANALYSTS.choose(rng).unwrap_or(&ANALYSTS[0]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn both_time_formats() {
        let t = Utc.with_ymd_and_hms(2017, 12, 20, 10, 4, 35).unwrap()
            + ChronoDuration::nanoseconds(435_592_399);
        let t = ticks(t);
        assert_eq!(time_offset(t), "2017-12-20T10:04:35.4355923+00:00");
        assert_eq!(time_plain(t), "2017-12-20T10:04:35.435");
    }

    #[test]
    fn customer_names() {
        let c = Customer::new("umbrella-corp");
        assert_eq!(c.organization, "Umbrella Corp Corporation");
        assert_eq!(c.web_service_user, "umbrella-corp-sws-api");
    }
}

//! What a tenant's Secure Endpoint organisation contains (credentials, computers, groups,
//! the files and processes its events talk about) and how one event record is synthesised.
//!
//! Everything here is drawn from a `ChaCha8Rng` seeded from (seed, tenant index, purpose), so
//! two emulators started with the same seed hold the same ids, hosts, types and hashes; only
//! absolute times move with the start time. Separate streams per purpose keep the
//! credentials and hosts stable when, say, the number of initial events changes.

use crate::catalog::{EVENT_TYPES, EventType, HIGH_PRIORITY_EVENT_TYPES, Shape};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The first tenant names; later tenants are `tenant-11`, `tenant-12`, ...
const TENANT_NAMES: [&str; 10] = [
    "acme",
    "globex",
    "initech",
    "umbrella-corp",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
];

/// Windows workstations per tenant (hostnames `WIN-<TENANT>-0001`...).
const WORKSTATIONS: usize = 6;
/// Servers per tenant (hostnames `SRV-<TENANT>-0001`...); isolation is not available on them,
/// so clients meet the "not supported by policy" path.
const SERVERS: usize = 2;

/// Independent random streams of one tenant.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    /// Credentials, computers, groups, file samples.
    Identity = 1,
    /// The initial data set.
    Initial = 2,
    /// Everything drawn after start: events added over time or on request, unlock codes.
    Later = 3,
}

/// The random generator of one (seed, purpose, stream): the emulators' own draws (keys,
/// data, faults), each purpose a fixed eight-byte tag.
pub(crate) fn purpose_rng(seed: u64, purpose: &[u8; 8], stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(purpose);
    let mut r = ChaCha8Rng::from_seed(key);
    r.set_stream(stream);
    r
}

/// The random generator of one (seed, tenant, purpose).
pub(crate) fn tenant_rng(seed: u64, tenant: usize, stream: Stream) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(tenant as u64).to_le_bytes());
    key[16..24].copy_from_slice(b"sbsim-se");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream as u64);
    rng
}

/// The name of tenant `index` (0-based).
pub(crate) fn tenant_name(index: usize) -> String {
    TENANT_NAMES
        .get(index)
        .map(|s| (*s).to_string())
        .unwrap_or_else(|| format!("tenant-{}", index + 1))
}

/// Lower-case hex of `n` random bytes.
pub(crate) fn hex_string(rng: &mut ChaCha8Rng, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// A random version-4-looking UUID, as Secure Endpoint uses for connector and group guids.
pub(crate) fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A group of computers, with the policy it applies.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub guid: String,
    pub name: &'static str,
    pub description: &'static str,
    pub policy_guid: String,
    pub policy_name: String,
    /// Days before start the group was created (for `created_at`).
    pub created_days_ago: i64,
}

/// Isolation state of one computer, as the vendor names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IsolationStatus {
    NotIsolated,
    PendingStart,
    Isolated,
    PendingStop,
}

impl IsolationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotIsolated => "not_isolated",
            Self::PendingStart => "pending_start",
            Self::Isolated => "isolated",
            Self::PendingStop => "pending_stop",
        }
    }
}

/// One computer (connector) of a tenant.
#[derive(Clone, Debug)]
pub(crate) struct Computer {
    pub connector_guid: String,
    pub hostname: String,
    pub user: String,
    pub internal_ip: String,
    pub external_ip: String,
    pub mac: String,
    pub operating_system: &'static str,
    pub os_version: &'static str,
    pub connector_version: &'static str,
    pub install_days_ago: i64,
    /// Index into the tenant's groups: moves change it.
    pub group: usize,
    /// Servers run a policy without isolation: OPTIONS answers 405.
    pub isolation_available: bool,
    pub isolation: IsolationStatus,
    /// When the current pending state began; it settles after [`crate::state::SETTLE_AFTER`].
    pub isolation_since: Option<std::time::Instant>,
    pub unlock_code: Option<String>,
    pub isolation_comment: Option<String>,
}

/// A file that events name (malware samples and the processes that ran them).
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub name: &'static str,
    pub dir: &'static str,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
}

/// The whole generated organisation of a tenant.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub name: String,
    pub client_id: String,
    pub api_key: String,
    pub groups: Vec<Group>,
    pub computers: Vec<Computer>,
    pub malware: Vec<Sample>,
    pub processes: Vec<Sample>,
}

/// Index of the default group (`Protect`) in [`World::groups`].
pub(crate) const GROUP_PROTECT: usize = 0;
/// Index of the `Servers` group.
const GROUP_SERVERS: usize = 2;

const FIRST: [&str; 10] = [
    "john", "maria", "li", "ahmed", "sofia", "peter", "anna", "kenji", "olga", "diego",
];
const LAST: [&str; 10] = [
    "doe", "garcia", "wei", "khan", "rossi", "novak", "berg", "sato", "ivanova", "lopez",
];
const MALWARE_NAMES: [(&str, &str); 12] = [
    ("tasksche.exe", r"\\?\C:\ProgramData\qzkbplcgew884"),
    ("BIT657.tmp", r"\\?\C:"),
    ("resume.exe", r"\\?\C:\Users\{user}\Desktop"),
    (
        "MspthrdHash.exe",
        r"\\?\C:\Users\{user}\AppData\Local\MspthrdHash",
    ),
    ("invoice_0423.exe", r"\\?\C:\Users\{user}\Downloads"),
    ("update.js", r"\\?\C:\Users\{user}\AppData\Local\Temp"),
    ("payload.dll", r"\\?\C:\Windows\Temp"),
    ("svch0st.exe", r"\\?\C:\Users\{user}\AppData\Roaming"),
    ("ekjrngjker.exe", "file:///C%3A"),
    ("setup_x64.msi", r"\\?\C:\Users\{user}\Downloads"),
    ("mimikatz.exe", r"\\?\C:\Users\Public"),
    ("report.docm", r"\\?\C:\Users\{user}\Documents"),
];
const PROCESS_NAMES: [(&str, &str); 8] = [
    ("svchost.exe", r"\\?\C:\Windows\System32"),
    ("explorer.exe", r"\\?\C:\Windows"),
    (
        "WINWORD.EXE",
        r"\\?\C:\Program Files\Microsoft Office\root\Office16",
    ),
    (
        "EXCEL.EXE",
        r"\\?\C:\Program Files\Microsoft Office\root\Office16",
    ),
    (
        "powershell.exe",
        r"\\?\C:\Windows\System32\WindowsPowerShell\v1.0",
    ),
    ("cmd.exe", r"\\?\C:\Windows\System32"),
    ("wscript.exe", r"\\?\C:\Windows\System32"),
    (
        "chrome.exe",
        r"\\?\C:\Program Files\Google\Chrome\Application",
    ),
];

fn sample(rng: &mut ChaCha8Rng, name: &'static str, dir: &'static str) -> Sample {
    Sample {
        name,
        dir,
        sha256: hex_string(rng, 32),
        sha1: hex_string(rng, 20),
        md5: hex_string(rng, 16),
    }
}

impl World {
    /// Generates tenant `index` from the seed.
    pub fn generate(seed: u64, index: usize) -> World {
        let mut rng = tenant_rng(seed, index, Stream::Identity);
        let name = tenant_name(index);
        let client_id = uuid(&mut rng);
        let api_key = hex_string(&mut rng, 20);
        let group_defs: [(&str, &str); 3] = [
            (
                "Protect",
                "Default group: protection policy for workstations",
            ),
            ("Triage", "Computers held for investigation"),
            ("Servers", "Servers (isolation not enabled by policy)"),
        ];
        let groups: Vec<Group> = group_defs
            .iter()
            .map(|(gname, desc)| Group {
                guid: uuid(&mut rng),
                name: gname,
                description: desc,
                policy_guid: uuid(&mut rng),
                policy_name: format!("{gname} Policy"),
                created_days_ago: rng.random_range(200..900),
            })
            .collect();
        let host_part = name.to_uppercase();
        let octet = index % 250 + 1;
        let external: Vec<String> = (0..2)
            .map(|_| format!("203.0.113.{}", rng.random_range(1..255u8)))
            .collect();
        let mut computers = Vec::with_capacity(WORKSTATIONS + SERVERS);
        for i in 0..WORKSTATIONS + SERVERS {
            let server = i >= WORKSTATIONS;
            let hostname = if server {
                format!("SRV-{host_part}-{:04}", i - WORKSTATIONS + 1)
            } else {
                format!("WIN-{host_part}-{:04}", i + 1)
            };
            let first = FIRST.choose(&mut rng).expect("a non-empty name list");
            let last = LAST.choose(&mut rng).expect("a non-empty name list");
            let mut mac = [0u8; 6];
            rng.fill(&mut mac);
            mac[0] &= 0xfe;
            let (os, os_version) = if server {
                ("Windows Server 2022 Datacenter", "10.0.20348.2340")
            } else if rng.random_bool(0.5) {
                ("Windows 11 Pro", "10.0.22631.3447")
            } else {
                ("Windows 10 Enterprise", "10.0.19045.4291")
            };
            computers.push(Computer {
                connector_guid: uuid(&mut rng),
                hostname,
                user: if server {
                    "Administrator".to_string()
                } else {
                    format!("{first}.{last}@{name}.example")
                },
                internal_ip: format!(
                    "10.{octet}.{}.{}",
                    rng.random_range(0..16u8),
                    rng.random_range(2..254u8)
                ),
                external_ip: external[usize::from(server)].clone(),
                mac: mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                operating_system: os,
                os_version,
                connector_version: if rng.random_bool(0.7) {
                    "8.2.3.30119"
                } else {
                    "8.1.7.21585"
                },
                install_days_ago: rng.random_range(30..700),
                group: if server { GROUP_SERVERS } else { GROUP_PROTECT },
                isolation_available: !server,
                isolation: IsolationStatus::NotIsolated,
                isolation_since: None,
                unlock_code: None,
                isolation_comment: None,
            });
        }
        let malware = MALWARE_NAMES
            .iter()
            .map(|(n, d)| sample(&mut rng, n, d))
            .collect();
        let processes = PROCESS_NAMES
            .iter()
            .map(|(n, d)| sample(&mut rng, n, d))
            .collect();
        World {
            name,
            client_id,
            api_key,
            groups,
            computers,
            malware,
            processes,
        }
    }

    /// Index of the group with this guid.
    pub fn group_index(&self, guid: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.guid == guid)
    }

    /// Index of the computer with this connector guid.
    pub fn computer_index(&self, guid: &str) -> Option<usize> {
        self.computers.iter().position(|c| c.connector_guid == guid)
    }
}

/// Draws an event type: about 80% from the high-priority list (Threat Detected and Cloud IOC
/// most often, as in real dumps), the rest low-priority, so that a client's filter matters.
pub(crate) fn draw_event_type(rng: &mut ChaCha8Rng) -> &'static EventType {
    let id = if rng.random_bool(0.8) {
        let roll: f64 = rng.random();
        if roll < 0.25 {
            1090519054
        } else if roll < 0.45 {
            1107296274
        } else {
            *HIGH_PRIORITY_EVENT_TYPES
                .choose(rng)
                .expect("a non-empty list")
        }
    } else {
        let low: Vec<&EventType> = EVENT_TYPES
            .iter()
            .filter(|t| !crate::catalog::is_high_priority(t.id))
            .collect();
        return low.choose(rng).expect("low-priority types exist");
    };
    crate::catalog::event_type(id).expect("every high-priority id has a catalogue entry")
}

/// The `id` member: a JSON integer, or for a malformed record the string it carries instead.
#[derive(Serialize)]
#[serde(untagged)]
enum WireId {
    Number(u64),
    Text(&'static str),
}

#[derive(Serialize)]
struct WireLinks {
    computer: String,
    trajectory: String,
    group: String,
}

#[derive(Serialize)]
struct WireAddress<'a> {
    ip: &'a str,
    mac: &'a str,
}

#[derive(Serialize)]
struct WireComputer<'a> {
    connector_guid: &'a str,
    hostname: &'a str,
    external_ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    active: bool,
    network_addresses: [WireAddress<'a>; 1],
    links: WireLinks,
}

#[derive(Serialize)]
struct WireIdentity<'a> {
    sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha1: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<&'a str>,
}

#[derive(Serialize)]
struct WireParent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    process_id: Option<u32>,
    disposition: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<&'a str>,
    identity: WireIdentity<'a>,
}

#[derive(Serialize)]
struct WireFile<'a> {
    disposition: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_path: Option<String>,
    identity: WireIdentity<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<WireParent<'a>>,
}

#[derive(Serialize)]
struct WireError {
    error_code: u64,
    description: &'static str,
}

#[derive(Serialize)]
struct WireCloudIoc {
    description: &'static str,
    short_description: &'static str,
}

#[derive(Serialize)]
struct WireNfm {
    direction: &'static str,
    protocol: &'static str,
}

#[derive(Serialize)]
struct WireNetworkInfo<'a> {
    remote_ip: String,
    remote_port: u16,
    local_ip: &'a str,
    local_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_url: Option<String>,
    nfm: WireNfm,
    parent: WireParent<'a>,
}

#[derive(Serialize)]
struct WireScan {
    description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    clean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_files: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_processes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_paths: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    malicious_detections: Option<u32>,
}

#[derive(Serialize)]
struct WireIsolation {
    error_code: u64,
}

#[derive(Serialize)]
struct WireCommandLine {
    arguments: String,
}

#[derive(Serialize)]
struct WireVulnerability {
    name: &'static str,
    version: &'static str,
    cve: &'static str,
    score: &'static str,
    url: String,
}

/// One event on the wire, members in the order the recorded payloads use.
#[derive(Serialize)]
struct WireEvent<'a> {
    id: WireId,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    timestamp_nanoseconds: u32,
    date: String,
    event_type: &'static str,
    event_type_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection_id: Option<String>,
    connector_guid: &'a str,
    group_guids: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<WireError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    isolation: Option<WireIsolation>,
    computer: WireComputer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_ioc: Option<WireCloudIoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<WireFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_info: Option<WireNetworkInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<WireScan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<WireCommandLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vulnerabilities: Option<Vec<WireVulnerability>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tactics: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    techniques: Option<Vec<&'static str>>,
}

/// What the emulator needs to know about an event besides its JSON, for filtering.
#[derive(Clone, Debug)]
pub(crate) struct Synthesised {
    pub json: String,
    pub event_type_id: u64,
    pub connector_guid: String,
    pub group_guid: String,
    pub file_sha256: Option<String>,
    pub parent_sha256: Option<String>,
}

/// Inputs of one event beyond the tenant: what, where, when.
pub(crate) struct EventSpec<'a> {
    pub kind: &'static EventType,
    pub computer: usize,
    pub id: u64,
    pub timestamp: i64,
    pub nanos: u32,
    /// `detection_id` to reuse (a Threat Quarantined following its Threat Detected).
    pub detection_id: Option<String>,
    /// Malware sample to reuse, for the same reason.
    pub sample: Option<usize>,
    pub malformed: bool,
    /// Base URL of the emulator, for the `links` of the computer.
    pub base_url: &'a str,
}

const CLOUD_IOCS: [(&str, &str, &str, &str); 5] = [
    (
        "W32.WScriptExecuteFakeExtension.ioc",
        "The Windows Scripting Host (WScript.exe) was used to execute a file with a fake benign extension prior to a scripting extension. This is indicative of an attempt to conceal the malicious intent of the file and to trick the user into opening it.",
        "TA0002",
        "T1059",
    ),
    (
        "ExecutedMalware.ioc",
        "A known malicious file was executed. This increases the likelihood of a successful breach and this event should be promptly investigated.",
        "TA0002",
        "T1204",
    ),
    (
        "W32.ClearEventLogs.ioc",
        "An attempt was made to delete the system event logs. This can be an indication of an attacker trying to cover their tracks.",
        "TA0005",
        "T1070",
    ),
    (
        "W32.PowershellDownloadedExecutable.ioc",
        "PowerShell downloaded an executable file. Attackers use PowerShell to fetch further stages of an attack.",
        "TA0011",
        "T1105",
    ),
    (
        "W32.EncodedPowerShell.ioc",
        "PowerShell was started with an encoded command, a common way to hide what a script does.",
        "TA0005",
        "T1027",
    ),
];

/// A `detection` name in the vendor's styles.
fn detection_name(rng: &mut ChaCha8Rng, sample: &Sample) -> String {
    match rng.random_range(0..5) {
        0 => "W32.Overdrive.RET".to_string(),
        1 => "W32.File.MalParent".to_string(),
        2 => format!("W32.{}-95.SBX.TG", sample.sha256[..10].to_uppercase()),
        3 => "Win.Ransomware.Wannacry::1201".to_string(),
        _ => format!("W32.Auto:{}.in03.Talos", &sample.sha256[..10]),
    }
}

/// RFC 3339 with `+00:00`, seconds precision, as the vendor writes `date`.
pub(crate) fn vendor_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// Builds one event record of `world` as the vendor would send it.
pub(crate) fn synthesise(rng: &mut ChaCha8Rng, world: &World, spec: EventSpec<'_>) -> Synthesised {
    let c = &world.computers[spec.computer];
    let group = &world.groups[c.group];
    let kind = spec.kind;
    let shape = kind.shape;
    let sample_idx = spec
        .sample
        .unwrap_or_else(|| rng.random_range(0..world.malware.len()));
    let sample = &world.malware[sample_idx];
    let parent = &world.processes[rng.random_range(0..world.processes.len())];
    let user_dir = c.user.split('@').next().unwrap_or("user").to_string();
    let path = |s: &Sample| format!("{}\\{}", s.dir.replace("{user}", &user_dir), s.name);

    let severity = kind.severities.choose(rng).copied();
    let detection_id = || {
        spec.detection_id
            .clone()
            .unwrap_or_else(|| spec.id.wrapping_add(251).to_string())
    };
    let mut ev = WireEvent {
        id: if spec.malformed {
            WireId::Text("not-a-number")
        } else {
            WireId::Number(spec.id)
        },
        timestamp: if spec.malformed {
            None
        } else {
            Some(spec.timestamp)
        },
        timestamp_nanoseconds: spec.nanos,
        date: if spec.malformed {
            "not-a-date".to_string()
        } else {
            vendor_date(spec.timestamp)
        },
        event_type: kind.name,
        event_type_id: kind.id,
        detection: None,
        detection_id: None,
        connector_guid: &c.connector_guid,
        group_guids: [&group.guid],
        severity,
        start_timestamp: None,
        start_date: None,
        error: None,
        isolation: None,
        computer: WireComputer {
            connector_guid: &c.connector_guid,
            hostname: &c.hostname,
            external_ip: &c.external_ip,
            user: None,
            active: true,
            network_addresses: [WireAddress {
                ip: &c.internal_ip,
                mac: &c.mac,
            }],
            links: WireLinks {
                computer: format!("{}/v1/computers/{}", spec.base_url, c.connector_guid),
                trajectory: format!(
                    "{}/v1/computers/{}/trajectory",
                    spec.base_url, c.connector_guid
                ),
                group: format!("{}/v1/groups/{}", spec.base_url, group.guid),
            },
        },
        cloud_ioc: None,
        file: None,
        network_info: None,
        scan: None,
        command_line: None,
        vulnerabilities: None,
        tactics: None,
        techniques: None,
    };
    let started = spec.timestamp - rng.random_range(0..3);
    let mut file_sha = None;
    let mut parent_sha = None;
    fn full(s: &Sample) -> WireIdentity<'_> {
        WireIdentity {
            sha256: &s.sha256,
            sha1: Some(&s.sha1),
            md5: Some(&s.md5),
        }
    }
    fn bare(s: &Sample) -> WireIdentity<'_> {
        WireIdentity {
            sha256: &s.sha256,
            sha1: None,
            md5: None,
        }
    }
    match shape {
        Shape::FileDetection => {
            ev.detection = Some(detection_name(rng, sample));
            ev.detection_id = Some(detection_id());
            if rng.random_bool(0.8) {
                ev.computer.user = Some(&c.user);
            }
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: Some(sample.name),
                file_path: Some(path(sample)),
                identity: full(sample),
                parent: rng.random_bool(0.7).then(|| WireParent {
                    process_id: Some(rng.random_range(200..9000)),
                    disposition: "Clean",
                    file_name: Some(parent.name),
                    identity: full(parent),
                }),
            });
        }
        Shape::Retrospective => {
            ev.detection = Some(detection_name(rng, sample));
            ev.detection_id = Some(detection_id());
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: Some(sample.name),
                file_path: Some(path(sample)),
                identity: full(sample),
                parent: None,
            });
        }
        Shape::Quarantine | Shape::QuarantineFailure => {
            ev.detection_id = Some(detection_id());
            if shape == Shape::QuarantineFailure {
                ev.error = Some(WireError {
                    error_code: 3221225524,
                    description: "Object name not found",
                });
            }
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: None,
                file_path: None,
                identity: bare(sample),
                parent: None,
            });
        }
        Shape::Compromise => {
            ev.detection = Some(detection_name(rng, sample));
            ev.start_timestamp = Some(started);
            ev.start_date = Some(vendor_date(started));
            let named = rng.random_bool(0.7);
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: named.then_some(sample.name),
                file_path: named.then(|| path(sample)),
                identity: bare(sample),
                parent: Some(WireParent {
                    process_id: None,
                    disposition: "Clean",
                    file_name: None,
                    identity: bare(parent),
                }),
            });
        }
        Shape::CloudIoc => {
            let (short, desc, tactic, technique) =
                *CLOUD_IOCS.choose(rng).expect("a non-empty list");
            if rng.random_bool(0.3) {
                ev.detection = Some(detection_name(rng, sample));
            }
            ev.start_timestamp = Some(started);
            ev.start_date = Some(vendor_date(started));
            ev.cloud_ioc = Some(WireCloudIoc {
                description: desc,
                short_description: short,
            });
            // Some Cloud IOC events carry no file at all: clients must not assume one.
            if rng.random_bool(0.75) {
                let proc_file = &world.processes[rng.random_range(0..world.processes.len())];
                ev.file = Some(WireFile {
                    disposition: if rng.random_bool(0.5) {
                        "Clean"
                    } else {
                        "Unknown"
                    },
                    file_name: Some(proc_file.name),
                    file_path: Some(path(proc_file)),
                    identity: bare(proc_file),
                    parent: Some(WireParent {
                        process_id: None,
                        disposition: "Clean",
                        file_name: None,
                        identity: bare(parent),
                    }),
                });
                ev.command_line = Some(WireCommandLine {
                    arguments: format!("{} /c {}", path(proc_file), sample.name),
                });
            }
            ev.tactics = Some(vec![tactic]);
            if rng.random_bool(0.7) {
                ev.techniques = Some(vec![technique]);
            }
        }
        Shape::LowPrevalence => {
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: Some(sample.name),
                file_path: None,
                identity: bare(sample),
                parent: None,
            });
        }
        Shape::Network => {
            if kind.id == 1090519084 {
                ev.detection = Some("DFC.CustomIPList".to_string());
                ev.detection_id = Some(detection_id());
            }
            if rng.random_bool(0.6) {
                ev.computer.user = Some(&c.user);
            }
            let remote = format!("192.0.2.{}", rng.random_range(1..255u8));
            ev.network_info = Some(WireNetworkInfo {
                dirty_url: (kind.id == 1107296277)
                    .then(|| format!("http://cdn-{}.badupdate.example/gate.php", &sample.md5[..6])),
                remote_ip: remote,
                remote_port: *[443u16, 80, 8080, 4444]
                    .choose(rng)
                    .expect("a non-empty list"),
                local_ip: &c.internal_ip,
                local_port: rng.random_range(49152..65535),
                nfm: WireNfm {
                    direction: "Outgoing connection from",
                    protocol: "TCP",
                },
                parent: WireParent {
                    process_id: Some(rng.random_range(200..9000)),
                    disposition: "Clean",
                    file_name: Some(parent.name),
                    identity: full(parent),
                },
            });
        }
        Shape::IocScan => {
            ev.detection = Some(format!("{} IOC match", sample.name));
            ev.scan = Some(WireScan {
                description: "Endpoint IOC Full Scan",
                clean: Some(false),
                scanned_files: Some(rng.random_range(20_000..200_000)),
                scanned_processes: Some(rng.random_range(40..300)),
                scanned_paths: Some(rng.random_range(0..50)),
                malicious_detections: Some(rng.random_range(1..6)),
            });
        }
        Shape::Fault => {}
        Shape::IsolationNotice => {
            ev.isolation = Some(WireIsolation {
                error_code: 2164261038,
            });
        }
        Shape::IsolationFailure => {
            ev.error = Some(WireError {
                error_code: 2164261040,
                description: "Isolation could not be changed",
            });
        }
        Shape::Bare => {}
        Shape::ScanStarted => {
            ev.scan = Some(WireScan {
                description: "Flash Scan",
                clean: None,
                scanned_files: None,
                scanned_processes: None,
                scanned_paths: None,
                malicious_detections: None,
            });
        }
        Shape::ScanClean => {
            ev.scan = Some(WireScan {
                description: "Flash Scan",
                clean: Some(true),
                scanned_files: Some(rng.random_range(1000..5000)),
                scanned_processes: Some(rng.random_range(30..90)),
                scanned_paths: Some(0),
                malicious_detections: Some(0),
            });
        }
        Shape::FileFetch => {
            ev.file = Some(WireFile {
                disposition: "Malicious",
                file_name: Some(sample.name),
                file_path: Some(path(sample)),
                identity: full(sample),
                parent: None,
            });
        }
        Shape::Vulnerability => {
            ev.start_timestamp = Some(spec.timestamp);
            ev.start_date = Some(vendor_date(spec.timestamp));
            let app = &world.processes[2];
            ev.file = Some(WireFile {
                disposition: "Clean",
                file_name: Some(app.name),
                file_path: None,
                identity: bare(app),
                parent: Some(WireParent {
                    process_id: None,
                    disposition: "Clean",
                    file_name: None,
                    identity: bare(parent),
                }),
            });
            let cves = ["CVE-2014-0260", "CVE-2015-1641", "CVE-2017-11882"];
            ev.vulnerabilities = Some(
                cves.iter()
                    .map(|cve| WireVulnerability {
                        name: "Microsoft Office",
                        version: "2013",
                        cve,
                        score: "9.3",
                        url: format!("https://web.nvd.nist.gov/view/vuln/detail?vulnId={cve}"),
                    })
                    .collect(),
            );
        }
    }
    if let Some(f) = &ev.file {
        file_sha = Some(f.identity.sha256.to_string());
        parent_sha = f.parent.as_ref().map(|p| p.identity.sha256.to_string());
    }
    Synthesised {
        json: serde_json::to_string(&ev).expect("an event of plain strings and numbers serialises"),
        event_type_id: kind.id,
        connector_guid: c.connector_guid.clone(),
        group_guid: group.guid.clone(),
        file_sha256: file_sha,
        parent_sha256: parent_sha,
    }
}

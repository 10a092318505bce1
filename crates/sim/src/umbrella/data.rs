//! Umbrella's reporting data: the category catalogue, each organisation's identities, and
//! the activity records (DNS, proxy, firewall, intrusion, IP) in the shape of
//! `VENDOR-APIS.md` section 3 and the recorded answers in `fixtures/umbrella/`.
//!
//! A record is kept typed, with an emulator-internal sequence number that never reaches the
//! wire, and rendered per request: `date` and `time` follow the request's `timezone`.
//! Within one organisation no two records render alike (time, kind, identity and target
//! differ), so a client's derived key can tell every record apart.

use chrono::{DateTime, FixedOffset};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Command and Control: what the MSSP workflows fetch, with [`CRYPTOMINING`].
pub(crate) const COMMAND_AND_CONTROL: u32 = 65;
/// Cryptomining.
pub(crate) const CRYPTOMINING: u32 = 150;

/// One entry of the category catalogue.
#[derive(Debug)]
pub(crate) struct Category {
    pub id: u32,
    /// `security`, `content` or `application`.
    pub kind: &'static str,
    pub label: &'static str,
    pub deprecated: bool,
}

const fn cat(id: u32, kind: &'static str, label: &'static str, deprecated: bool) -> Category {
    Category {
        id,
        kind,
        label,
        deprecated,
    }
}

/// The categories records carry: the documented security ones and the content ones seen
/// in the recorded answers (deprecated ones included, as the service still sends them).
pub(crate) const CATEGORIES: &[Category] = &[
    cat(61, "security", "Dynamic DNS", false),
    cat(65, "security", "Command and Control", false),
    cat(67, "security", "Malware", false),
    cat(68, "security", "Phishing", false),
    cat(108, "security", "Newly Seen Domains", false),
    cat(109, "security", "Potentially Harmful", false),
    cat(150, "security", "Cryptomining", false),
    cat(4, "content", "Chat", true),
    cat(15, "content", "Instant Messaging", true),
    cat(23, "content", "Search Engines", true),
    cat(25, "content", "Software/Technology", true),
    cat(31, "content", "Webmail", true),
    cat(32, "content", "Business Services", true),
    cat(113, "content", "Computer Security", false),
    cat(
        123,
        "content",
        "Infrastructure and Content Delivery Networks",
        false,
    ),
    cat(141, "content", "Organizational Email", false),
    cat(148, "application", "Application", false),
    cat(162, "content", "Web-based Email", false),
    cat(163, "content", "Business and Industry", false),
    cat(164, "content", "Chat and Instant Messaging", false),
    cat(167, "content", "Computers and Internet", false),
    cat(190, "content", "Search Engines and Portals", false),
    cat(198, "content", "Cloud and Data Centers", false),
    cat(
        205,
        "content",
        "Online Document Sharing and Collaboration",
        false,
    ),
];

/// The catalogue entry of a category id.
pub(crate) fn category(id: u32) -> Option<&'static Category> {
    CATEGORIES.iter().find(|c| c.id == id)
}

fn category_json(id: u32) -> Value {
    match category(id) {
        Some(c) => json!({
            "id": c.id,
            "type": c.kind,
            "label": c.label,
            "integration": false,
            "deprecated": c.deprecated,
        }),
        None => {
            json!({"id": id, "type": "content", "label": "Unknown", "integration": false, "deprecated": false})
        }
    }
}

/// An identity type: `identities[].type` is this object, not a string.
#[derive(Debug)]
pub(crate) struct IdentityType {
    pub id: u32,
    pub kind: &'static str,
    pub label: &'static str,
}

pub(crate) const NETWORK: IdentityType = IdentityType {
    id: 1,
    kind: "network",
    label: "Networks",
};
pub(crate) const AD_USER: IdentityType = IdentityType {
    id: 7,
    kind: "directory_user",
    label: "AD Users",
};
pub(crate) const ROAMING: IdentityType = IdentityType {
    id: 9,
    kind: "roaming",
    label: "Roaming Computers",
};

/// Who made a request, as the service names it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub id: u64,
    pub ty: &'static IdentityType,
    pub label: String,
    /// The address records of this identity come from (a computer's, a network's gateway).
    pub internal_ip: String,
    /// For an AD user: the roaming computer they use.
    pub computer: Option<usize>,
}

impl Identity {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": {"id": self.ty.id, "type": self.ty.kind, "label": self.ty.label},
            "label": self.label,
            "deleted": false,
        })
    }
}

/// An application the service recognised in the traffic.
struct App {
    id: u64,
    label: &'static str,
    category_id: u32,
    category_label: &'static str,
}

const APPS: &[App] = &[
    App {
        id: 315463,
        label: "Slack",
        category_id: 7,
        category_label: "Collaboration",
    },
    App {
        id: 986340,
        label: "Google Hangouts",
        category_id: 7,
        category_label: "Collaboration",
    },
    App {
        id: 301372,
        label: "Microsoft Outlook",
        category_id: 9,
        category_label: "Email",
    },
];

/// A well-known destination: domain, categories, and the application it belongs to.
struct Benign {
    domain: &'static str,
    categories: &'static [u32],
    app: Option<usize>,
}

const BENIGN: &[Benign] = &[
    Benign {
        domain: "www.google.com",
        categories: &[23, 190],
        app: None,
    },
    Benign {
        domain: "time.windows.com",
        categories: &[25, 32, 163, 167],
        app: None,
    },
    Benign {
        domain: "plugins.cmdm.comodo.com",
        categories: &[25, 32, 113, 198],
        app: None,
    },
    Benign {
        domain: "x1.c.lencr.org",
        categories: &[123],
        app: None,
    },
    Benign {
        domain: "slack.com",
        categories: &[4, 15, 148, 164],
        app: Some(0),
    },
    Benign {
        domain: "slack-imgs.com",
        categories: &[123, 148],
        app: Some(0),
    },
    Benign {
        domain: "hangouts.google.com",
        categories: &[4, 148, 164],
        app: Some(1),
    },
    Benign {
        domain: "outlook.office365.com",
        categories: &[162, 205, 167, 31, 148, 141, 25, 32],
        app: Some(2),
    },
    Benign {
        domain: "login.microsoftonline.com",
        categories: &[167, 198],
        app: None,
    },
    Benign {
        domain: "update.googleapis.com",
        categories: &[123, 167],
        app: None,
    },
    Benign {
        domain: "ocsp.digicert.com",
        categories: &[113, 123],
        app: None,
    },
    Benign {
        domain: "docs.google.com",
        categories: &[205, 167],
        app: None,
    },
];

/// Parent domains of each security category (a record's domain is a random host under
/// one, as generated malicious infrastructure looks).
fn security_parents(category: u32) -> &'static [&'static str] {
    match category {
        61 => &["ddns.net", "duckdns.org", "hopto.org"],
        65 => &[
            "update-cdn-sync.com",
            "telemetry-srv.net",
            "cdn-static-edge.biz",
        ],
        67 => &["fileshare-dl.xyz", "invoice-docs.top", "get-update.click"],
        68 => &[
            "secure-login-verify.com",
            "account-review.info",
            "m1crosoft-auth.net",
        ],
        108 => &["kq7vz.shop", "newsite-promo.online", "rtx-deals.store"],
        109 => &[
            "adtrack-metrics.io",
            "free-vpn-proxy.club",
            "clicksurf.link",
        ],
        150 => &[
            "supportxmr.com",
            "nanopool.org",
            "moneroocean.stream",
            "minexmr.com",
        ],
        _ => &["example.net"],
    }
}

/// Threats the service attaches to some security records: (label, type).
const THREATS: &[(&str, &str)] = &[
    ("Wannacry", "Ransomware"),
    ("Emotet", "Trojan"),
    ("Cobalt Strike", "Backdoor"),
    ("XMRig", "Cryptominer"),
    ("Qakbot", "Trojan"),
];

/// The kinds of activity, each with its own path (`/activity/{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Dns,
    Proxy,
    Firewall,
    Intrusion,
    Ip,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Proxy => "proxy",
            Kind::Firewall => "firewall",
            Kind::Intrusion => "intrusion",
            Kind::Ip => "ip",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "dns" => Kind::Dns,
            "proxy" => Kind::Proxy,
            "firewall" => Kind::Firewall,
            "intrusion" => Kind::Intrusion,
            "ip" => Kind::Ip,
            _ => return None,
        })
    }
}

/// The verdicts the service writes.
pub(crate) const VERDICTS: [&str; 3] = ["allowed", "blocked", "proxied"];

/// One organisation's identities and egress addresses, fixed by the seed.
pub(crate) struct OrgWorld {
    pub identities: Vec<Identity>,
    pub external_ips: Vec<String>,
    used_identity_ids: HashSet<u64>,
}

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ines", "Jonas",
];
const LAST_NAMES: &[&str] = &[
    "Martin", "Okafor", "Nguyen", "Schmidt", "Rossi", "Haddad", "Silva", "Novak",
];
const SITES: &[&str] = &[
    "HQ",
    "Branch-Lyon",
    "Branch-Austin",
    "Warehouse",
    "Guest-WiFi",
];

/// A `DESKTOP-XXXXXXX` name as Windows generates.
fn desktop_name(rng: &mut ChaCha8Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tail: String = (0..7)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect();
    format!("DESKTOP-{tail}")
}

impl OrgWorld {
    /// Identities of an organisation: roaming computers, a few networks and AD users.
    pub fn generate(rng: &mut ChaCha8Rng, domain: &str) -> OrgWorld {
        let mut w = OrgWorld {
            identities: Vec::new(),
            external_ips: (0..3)
                .map(|i| {
                    let net = if i % 2 == 0 {
                        "198.51.100"
                    } else {
                        "203.0.113"
                    };
                    format!("{net}.{}", rng.random_range(2..250u8))
                })
                .collect(),
            used_identity_ids: HashSet::new(),
        };
        for _ in 0..rng.random_range(6..=10) {
            let label = desktop_name(rng);
            w.push(rng, &ROAMING, label, None);
        }
        let sites = rng.random_range(2..=3);
        for site in SITES.iter().take(sites) {
            w.push(rng, &NETWORK, (*site).to_string(), None);
        }
        let computers = w
            .identities
            .iter()
            .filter(|i| i.ty.id == ROAMING.id)
            .count();
        for k in 0..rng.random_range(3..=5usize) {
            let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
            let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
            let label = format!(
                "{first} {last} ({}.{}@{domain})",
                first.to_lowercase(),
                last.to_lowercase()
            );
            w.push(rng, &AD_USER, label, Some(k % computers.max(1)));
        }
        w
    }

    /// Adds an identity; returns its index.
    pub fn push(
        &mut self,
        rng: &mut ChaCha8Rng,
        ty: &'static IdentityType,
        label: String,
        computer: Option<usize>,
    ) -> usize {
        let id = loop {
            let id = rng.random_range(100_000_000..700_000_000u64);
            if self.used_identity_ids.insert(id) {
                break id;
            }
        };
        let internal_ip = match computer {
            Some(c) => self.identities[c].internal_ip.clone(),
            None if ty.id == NETWORK.id => self.external_ips[0].clone(),
            None => format!(
                "10.{}.{}.{}",
                rng.random_range(0..=20u8),
                rng.random_range(0..=255u8),
                rng.random_range(2..=254u8)
            ),
        };
        self.identities.push(Identity {
            id,
            ty,
            label,
            internal_ip,
            computer,
        });
        self.identities.len() - 1
    }

    /// The index of the identity with this label, creating a roaming computer so named if
    /// there is none.
    pub fn identity_named(&mut self, rng: &mut ChaCha8Rng, label: &str) -> usize {
        match self.identities.iter().position(|i| i.label == label) {
            Some(i) => i,
            None => self.push(rng, &ROAMING, label.to_string(), None),
        }
    }
}

/// What a caller fixes about new records (the rest is drawn).
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    pub kind: Option<Kind>,
    pub category: Option<u32>,
    pub verdict: Option<&'static str>,
    pub identity: Option<usize>,
}

/// Kind-specific members, fixed when the record is made.
#[derive(Clone, Debug)]
pub(crate) enum Detail {
    Dns {
        querytype: &'static str,
        returncode: u32,
    },
    Proxy {
        url: String,
        useragent: &'static str,
        statuscode: u16,
        requestsize: u64,
        responsesize: u64,
        sha256: String,
        contenttype: &'static str,
        port: u16,
    },
    Firewall {
        source_port: u16,
        destination_port: u16,
        protocol: (u32, &'static str),
        packetsize: u64,
        rule_id: u64,
    },
    Intrusion {
        source_port: u16,
        destination_port: u16,
        protocol: (u32, &'static str),
        signature: (u64, &'static str, &'static str),
        severity: &'static str,
        session_id: u64,
    },
    Ip {
        source_port: u16,
        destination_port: u16,
    },
}

/// One stored record.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// Emulator-internal identity (never on the wire: the service has no event id).
    pub seq: u64,
    /// Epoch milliseconds.
    pub ts_ms: i64,
    pub kind: Kind,
    pub verdict: &'static str,
    pub categories: Vec<u32>,
    pub policycategories: Vec<u32>,
    pub threats: Vec<(&'static str, &'static str)>,
    /// Indexes into the organisation's identities.
    pub identities: Vec<usize>,
    /// The domain (DNS) or the URL's host (proxy); empty for the other kinds.
    pub domain: String,
    pub external_ip: String,
    /// `internalip` (DNS, proxy) or `sourceip` (firewall, intrusion, IP).
    pub internal_ip: String,
    /// `destinationip` (firewall, intrusion, IP); empty otherwise.
    pub destination_ip: String,
    pub apps: Vec<usize>,
    pub detail: Detail,
}

/// A random DNS label, as generated malicious hosts look.
fn random_label(rng: &mut ChaCha8Rng, n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn public_ip(rng: &mut ChaCha8Rng) -> String {
    // Outside private, loopback, multicast and documentation ranges.
    let first = [23u8, 45, 52, 64, 91, 104, 151, 185, 194][rng.random_range(0..9)];
    format!(
        "{first}.{}.{}.{}",
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8),
        rng.random_range(1..=254u8)
    )
}

/// The destination of a DNS or proxy record: domain, categories, verdict, threats, apps.
struct Destination {
    domain: String,
    categories: Vec<u32>,
    verdict: &'static str,
    threats: Vec<(&'static str, &'static str)>,
    apps: Vec<usize>,
}

/// A destination of security category `category` (a random host under one of its parents).
fn security_destination(rng: &mut ChaCha8Rng, category: u32, verdict: &'static str) -> Destination {
    let parents = security_parents(category);
    let parent = parents[rng.random_range(0..parents.len())];
    let host = match category {
        150 => format!(
            "{}{}.{parent}",
            ["pool", "xmr", "gulf", "eu"][rng.random_range(0..4)],
            rng.random_range(1..=99u8)
        ),
        _ => {
            let n = rng.random_range(6..=12);
            format!("{}.{parent}", random_label(rng, n))
        }
    };
    let mut categories = vec![category];
    if rng.random_bool(0.3) {
        categories.push(167);
    }
    let threats = if matches!(category, 65 | 67 | 150) && rng.random_bool(0.5) {
        let t = match category {
            150 => THREATS[3],
            _ => THREATS[rng.random_range(0..THREATS.len())],
        };
        vec![t]
    } else {
        Vec::new()
    };
    Destination {
        domain: host,
        categories,
        verdict,
        threats,
        apps: Vec::new(),
    }
}

fn benign_destination(rng: &mut ChaCha8Rng, verdict: &'static str) -> Destination {
    let b = &BENIGN[rng.random_range(0..BENIGN.len())];
    Destination {
        domain: b.domain.to_string(),
        categories: b.categories.to_vec(),
        verdict,
        threats: Vec::new(),
        apps: b.app.into_iter().collect(),
    }
}

/// Draws a destination: a realistic mix where a good share are blocked Command and Control
/// and Cryptomining, some of those categories allowed (no policy blocks them), the rest
/// ordinary traffic.
fn draw_destination(rng: &mut ChaCha8Rng, o: &Overrides) -> Destination {
    if let Some(c) = o.category {
        let is_security = category(c).is_some_and(|c| c.kind == "security");
        let verdict = o.verdict.unwrap_or(if is_security && rng.random_bool(0.9) {
            "blocked"
        } else {
            "allowed"
        });
        if is_security {
            return security_destination(rng, c, verdict);
        }
        let candidates: Vec<&Benign> = BENIGN
            .iter()
            .filter(|b| b.categories.contains(&c))
            .collect();
        let mut d = match candidates.as_slice() {
            [] => Destination {
                domain: format!("www.{}.com", random_label(rng, 8)),
                categories: vec![c],
                verdict,
                threats: Vec::new(),
                apps: Vec::new(),
            },
            list => {
                let b = list[rng.random_range(0..list.len())];
                Destination {
                    domain: b.domain.to_string(),
                    categories: b.categories.to_vec(),
                    verdict,
                    threats: Vec::new(),
                    apps: b.app.into_iter().collect(),
                }
            }
        };
        d.verdict = verdict;
        return d;
    }
    let roll = rng.random_range(0..100u32);
    let mut d = match roll {
        0..=19 => security_destination(rng, COMMAND_AND_CONTROL, "blocked"),
        20..=33 => security_destination(rng, CRYPTOMINING, "blocked"),
        34..=36 => {
            let c = [COMMAND_AND_CONTROL, CRYPTOMINING][rng.random_range(0..2)];
            security_destination(rng, c, "allowed")
        }
        37..=46 => {
            let c = [61, 67, 68, 108, 109][rng.random_range(0..5)];
            let verdict = if rng.random_bool(0.7) {
                "blocked"
            } else {
                "allowed"
            };
            security_destination(rng, c, verdict)
        }
        47..=54 => benign_destination(rng, "proxied"),
        _ => benign_destination(rng, "allowed"),
    };
    if let Some(v) = o.verdict {
        d.verdict = v;
    }
    d
}

fn draw_kind(rng: &mut ChaCha8Rng) -> Kind {
    match rng.random_range(0..100u32) {
        0..=69 => Kind::Dns,
        70..=83 => Kind::Proxy,
        84..=91 => Kind::Firewall,
        92..=95 => Kind::Intrusion,
        _ => Kind::Ip,
    }
}

/// The identities of a record: one, and for a roaming computer sometimes its AD user too.
fn draw_identities(rng: &mut ChaCha8Rng, w: &OrgWorld, fixed: Option<usize>) -> Vec<usize> {
    if let Some(i) = fixed {
        return vec![i];
    }
    let i = rng.random_range(0..w.identities.len());
    let mut out = vec![i];
    if w.identities[i].ty.id == ROAMING.id && rng.random_bool(0.3) {
        if let Some(user) = w
            .identities
            .iter()
            .position(|u| u.computer == Some(i) && u.ty.id == AD_USER.id)
        {
            out.push(user);
        }
    }
    out
}

/// What makes two records of one organisation different on the wire.
pub(crate) type Fingerprint = (i64, Kind, usize, String);

/// Makes one record at `ts_ms` (DNS and IP records are stamped on the whole second, as the
/// service does; the others keep the millisecond). `taken` holds the fingerprints already
/// used: the record is redrawn (then varied) until it differs from every other.
pub(crate) fn generate(
    rng: &mut ChaCha8Rng,
    w: &OrgWorld,
    seq: u64,
    ts_ms: i64,
    o: &Overrides,
    taken: &mut HashSet<Fingerprint>,
) -> Record {
    let kind = o.kind.unwrap_or_else(|| {
        if o.category.is_some() {
            if rng.random_bool(0.8) {
                Kind::Dns
            } else {
                Kind::Proxy
            }
        } else {
            draw_kind(rng)
        }
    });
    let ts_ms = match kind {
        Kind::Dns | Kind::Ip => ts_ms - ts_ms.rem_euclid(1000),
        _ => ts_ms,
    };
    for attempt in 0..16 {
        let mut r = draw_record(rng, w, seq, ts_ms, kind, o);
        if attempt >= 8 {
            // Crowded: vary the host so the record stays distinct.
            if !r.domain.is_empty() {
                r.domain = format!("{}.{}", random_label(rng, 5), r.domain);
                if let Detail::Proxy { url, .. } = &mut r.detail {
                    *url = format!("https://{}/{}", r.domain, random_label(rng, 8));
                }
            }
        }
        if taken.insert(fingerprint(&r)) {
            return r;
        }
    }
    // Ports and hosts drawn 16 times collided: a fresh random host cannot.
    let mut r = draw_record(rng, w, seq, ts_ms, kind, o);
    r.domain = format!(
        "{}.{}",
        random_label(rng, 16),
        r.domain.trim_start_matches('.')
    );
    if let Detail::Proxy { url, .. } = &mut r.detail {
        *url = format!("https://{}/{}", r.domain, random_label(rng, 12));
    }
    r.destination_ip = public_ip(rng);
    taken.insert(fingerprint(&r));
    r
}

fn fingerprint(r: &Record) -> Fingerprint {
    let target = match &r.detail {
        Detail::Dns { querytype, .. } => format!("{}/{querytype}", r.domain),
        Detail::Proxy { url, .. } => url.clone(),
        Detail::Firewall {
            source_port,
            destination_port,
            ..
        }
        | Detail::Intrusion {
            source_port,
            destination_port,
            ..
        }
        | Detail::Ip {
            source_port,
            destination_port,
        } => format!(
            "{}:{source_port}>{}:{destination_port}",
            r.internal_ip, r.destination_ip
        ),
    };
    (
        r.ts_ms,
        r.kind,
        r.identities.first().copied().unwrap_or(0),
        target,
    )
}

fn draw_record(
    rng: &mut ChaCha8Rng,
    w: &OrgWorld,
    seq: u64,
    ts_ms: i64,
    kind: Kind,
    o: &Overrides,
) -> Record {
    let identities = draw_identities(rng, w, o.identity);
    let first = &w.identities[identities[0]];
    let internal_ip = first.internal_ip.clone();
    let external_ip = w.external_ips[rng.random_range(0..w.external_ips.len())].clone();
    let ephemeral = |rng: &mut ChaCha8Rng| rng.random_range(49152..=65535u16);
    let mut r = Record {
        seq,
        ts_ms,
        kind,
        verdict: "allowed",
        categories: Vec::new(),
        policycategories: Vec::new(),
        threats: Vec::new(),
        identities,
        domain: String::new(),
        external_ip,
        internal_ip,
        destination_ip: String::new(),
        apps: Vec::new(),
        detail: Detail::Ip {
            source_port: 0,
            destination_port: 0,
        },
    };
    match kind {
        Kind::Dns | Kind::Proxy => {
            let d = draw_destination(rng, o);
            r.policycategories = if d.verdict == "blocked" {
                d.categories
                    .iter()
                    .copied()
                    .filter(|c| category(*c).is_some_and(|c| c.kind == "security"))
                    .collect()
            } else {
                Vec::new()
            };
            r.verdict = d.verdict;
            r.categories = d.categories;
            r.threats = d.threats;
            r.apps = d.apps;
            r.domain = d.domain;
            r.detail = if kind == Kind::Dns {
                Detail::Dns {
                    querytype: ["A", "A", "A", "AAAA", "HTTPS", "TXT"][rng.random_range(0..6)],
                    returncode: if rng.random_bool(0.95) { 0 } else { 3 },
                }
            } else {
                let blocked = r.verdict == "blocked";
                let mut sha = [0u8; 32];
                rng.fill(&mut sha);
                Detail::Proxy {
                    url: format!("https://{}/{}", r.domain, random_label(rng, 10)),
                    useragent: [
                        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                        "Microsoft-CryptoAPI/10.0",
                        "curl/8.4.0",
                    ][rng.random_range(0..3)],
                    statuscode: if blocked { 403 } else { 200 },
                    requestsize: rng.random_range(200..2_000),
                    responsesize: if blocked {
                        0
                    } else {
                        rng.random_range(500..900_000)
                    },
                    sha256: if blocked {
                        String::new()
                    } else {
                        hex::encode(sha)
                    },
                    contenttype: if blocked { "" } else { "text/html" },
                    port: 443,
                }
            };
        }
        Kind::Firewall => {
            let blocked = rng.random_bool(0.4);
            r.verdict = if blocked { "blocked" } else { "allowed" };
            r.destination_ip = public_ip(rng);
            r.categories = if blocked && rng.random_bool(0.5) {
                vec![[COMMAND_AND_CONTROL, CRYPTOMINING, 67][rng.random_range(0..3)]]
            } else {
                Vec::new()
            };
            let (protocol, port) = match rng.random_range(0..4) {
                0 => ((17, "UDP"), 53),
                1 => ((6, "TCP"), 3389),
                2 => ((6, "TCP"), 4444),
                _ => ((6, "TCP"), 443),
            };
            r.detail = Detail::Firewall {
                source_port: ephemeral(rng),
                destination_port: port,
                protocol,
                packetsize: rng.random_range(40..1500),
                rule_id: rng.random_range(100_000..999_999),
            };
        }
        Kind::Intrusion => {
            r.verdict = if rng.random_bool(0.6) {
                "blocked"
            } else {
                "allowed"
            };
            r.destination_ip = public_ip(rng);
            let signature = [
                (
                    58_102u64,
                    "MALWARE-CNC Win.Trojan.Emotet outbound connection",
                    "HIGH",
                ),
                (
                    49_377,
                    "POLICY-OTHER Cryptocurrency mining pool stratum login",
                    "MEDIUM",
                ),
                (
                    57_916,
                    "SERVER-WEBAPP Apache Log4j logging remote code execution attempt",
                    "CRITICAL",
                ),
            ][rng.random_range(0..3)];
            r.detail = Detail::Intrusion {
                source_port: ephemeral(rng),
                destination_port: [443u16, 80, 3333][rng.random_range(0..3)],
                protocol: (6, "TCP"),
                signature: (signature.0, signature.1, signature.2),
                severity: signature.2,
                session_id: rng.random_range(1_000_000_000..9_999_999_999u64),
            };
        }
        Kind::Ip => {
            let blocked = rng.random_bool(0.5);
            r.verdict = if blocked { "blocked" } else { "allowed" };
            r.destination_ip = public_ip(rng);
            r.categories = vec![if blocked { COMMAND_AND_CONTROL } else { 167 }];
            r.detail = Detail::Ip {
                source_port: ephemeral(rng),
                destination_port: [443u16, 8080, 4444][rng.random_range(0..3)],
            };
        }
    }
    if let Some(v) = o.verdict {
        r.verdict = v;
    }
    r
}

/// `date` and `time` of an epoch-millisecond time in a fixed offset.
fn date_time(ts_ms: i64, tz: FixedOffset) -> (String, String) {
    let t = DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .with_timezone(&tz);
    (
        t.format("%Y-%m-%d").to_string(),
        t.format("%H:%M:%S").to_string(),
    )
}

impl Record {
    /// The record on the wire, `date`/`time` in `tz`.
    pub fn render(&self, w: &OrgWorld, tz: FixedOffset) -> Value {
        let (date, time) = date_time(self.ts_ms, tz);
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind.as_str()));
        m.insert("timestamp".into(), json!(self.ts_ms));
        m.insert("date".into(), json!(date));
        m.insert("time".into(), json!(time));
        m.insert("verdict".into(), json!(self.verdict));
        let identities: Vec<Value> = self
            .identities
            .iter()
            .filter_map(|i| w.identities.get(*i))
            .map(Identity::to_json)
            .collect();
        m.insert("identities".into(), Value::Array(identities));
        let cats = |ids: &[u32]| Value::Array(ids.iter().map(|c| category_json(*c)).collect());
        let apps: Vec<Value> = self
            .apps
            .iter()
            .filter_map(|a| APPS.get(*a))
            .map(|a| {
                json!({"id": a.id, "label": a.label, "category": {"id": a.category_id, "label": a.category_label}})
            })
            .collect();
        let app_members = |m: &mut Map<String, Value>, verdict: &str| {
            let (allowed, blocked) = if verdict == "blocked" {
                (Vec::new(), apps.clone())
            } else {
                (Vec::new(), Vec::new())
            };
            m.insert("allapplications".into(), Value::Array(apps.clone()));
            m.insert("allowedapplications".into(), Value::Array(allowed));
            m.insert("blockedapplications".into(), Value::Array(blocked));
        };
        let threats = Value::Array(
            self.threats
                .iter()
                .map(|(label, ty)| json!({"label": label, "type": ty}))
                .collect(),
        );
        match &self.detail {
            Detail::Dns {
                querytype,
                returncode,
            } => {
                m.insert("domain".into(), json!(self.domain));
                m.insert("externalip".into(), json!(self.external_ip));
                m.insert("internalip".into(), json!(self.internal_ip));
                m.insert("querytype".into(), json!(querytype));
                m.insert("returncode".into(), json!(returncode));
                m.insert("categories".into(), cats(&self.categories));
                m.insert("policycategories".into(), cats(&self.policycategories));
                m.insert("threats".into(), threats);
                app_members(&mut m, self.verdict);
            }
            Detail::Proxy {
                url,
                useragent,
                statuscode,
                requestsize,
                responsesize,
                sha256,
                contenttype,
                port,
            } => {
                m.insert("externalip".into(), json!(self.external_ip));
                m.insert("internalip".into(), json!(self.internal_ip));
                m.insert("url".into(), json!(url));
                m.insert("referer".into(), json!(""));
                m.insert("useragent".into(), json!(useragent));
                m.insert("statuscode".into(), json!(statuscode));
                m.insert("requestsize".into(), json!(requestsize));
                m.insert("responsesize".into(), json!(responsesize));
                m.insert("responsebodysize".into(), json!(responsesize));
                m.insert("sha256".into(), json!(sha256));
                m.insert("contenttype".into(), json!(contenttype));
                m.insert("port".into(), json!(port));
                m.insert("avdetections".into(), json!([]));
                m.insert("ampdisposition".into(), json!("unknown"));
                m.insert("ampmalware".into(), json!(""));
                m.insert("ampscore".into(), json!(0));
                m.insert("forwardingmethod".into(), json!("CONNECT"));
                m.insert("categories".into(), cats(&self.categories));
                m.insert("policycategories".into(), cats(&self.policycategories));
                m.insert("threats".into(), threats);
                app_members(&mut m, self.verdict);
            }
            Detail::Firewall {
                source_port,
                destination_port,
                protocol,
                packetsize,
                rule_id,
            } => {
                m.insert("sourceip".into(), json!(self.internal_ip));
                m.insert("sourceport".into(), json!(source_port));
                m.insert("destinationip".into(), json!(self.destination_ip));
                m.insert("destinationport".into(), json!(destination_port));
                m.insert(
                    "protocol".into(),
                    json!({"id": protocol.0, "label": protocol.1}),
                );
                m.insert("direction".into(), json!("outbound"));
                m.insert("packetsize".into(), json!(packetsize));
                m.insert(
                    "rule".into(),
                    json!({"id": rule_id, "label": "Default outbound rule", "privateapplicationgroup": null}),
                );
                m.insert("applicationprotocols".into(), json!([]));
                m.insert("categories".into(), cats(&self.categories));
                app_members(&mut m, self.verdict);
            }
            Detail::Intrusion {
                source_port,
                destination_port,
                protocol,
                signature,
                severity,
                session_id,
            } => {
                m.insert("sourceip".into(), json!(self.internal_ip));
                m.insert("sourceport".into(), json!(source_port));
                m.insert("destinationip".into(), json!(self.destination_ip));
                m.insert("destinationport".into(), json!(destination_port));
                m.insert(
                    "protocol".into(),
                    json!({"id": protocol.0, "label": protocol.1}),
                );
                m.insert("sessionid".into(), json!(session_id));
                m.insert("severity".into(), json!(severity));
                m.insert(
                    "classification".into(),
                    json!("A Network Trojan was detected"),
                );
                m.insert(
                    "signature".into(),
                    json!({"id": signature.0, "generatorid": 1, "label": signature.1, "cves": []}),
                );
                m.insert("signaturelist".into(), json!({"id": 1}));
            }
            Detail::Ip {
                source_port,
                destination_port,
            } => {
                m.insert("sourceip".into(), json!(self.internal_ip));
                m.insert("sourceport".into(), json!(source_port));
                m.insert("destinationip".into(), json!(self.destination_ip));
                m.insert("destinationport".into(), json!(destination_port));
                m.insert("categories".into(), cats(&self.categories));
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn records_render_distinct_and_dns_on_whole_seconds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w = OrgWorld::generate(&mut rng, "acme.example");
        let mut taken = HashSet::new();
        let mut seen = HashSet::new();
        let o = Overrides {
            kind: Some(Kind::Dns),
            category: Some(COMMAND_AND_CONTROL),
            verdict: Some("blocked"),
            identity: Some(0),
        };
        for seq in 0..300 {
            let r = generate(&mut rng, &w, seq, 1_700_000_000_123, &o, &mut taken);
            assert_eq!(r.ts_ms, 1_700_000_000_000);
            let v = r.render(&w, FixedOffset::east_opt(0).unwrap());
            assert!(seen.insert(v.to_string()), "a record repeats: {v}");
            assert_eq!(v["identities"][0]["type"]["type"], "roaming");
        }
    }

    #[test]
    fn date_and_time_follow_the_offset() {
        let (d, t) = date_time(1_662_978_435_000, FixedOffset::east_opt(0).unwrap());
        assert_eq!((d.as_str(), t.as_str()), ("2022-09-12", "10:27:15"));
        let (d, t) = date_time(1_662_978_435_000, FixedOffset::west_opt(11 * 3600).unwrap());
        assert_eq!((d.as_str(), t.as_str()), ("2022-09-11", "23:27:15"));
    }
}
